/**
 * Strict decoding of the files switchboard reads as text (CSV recipient lists, template files). A file is
 * decoded as UTF-8 unless the operator names its encoding (`--encoding`, a WHATWG label such as
 * `windows-1252`, `latin1`, `utf-16le`; https://encoding.spec.whatwg.org/#names-and-labels), with
 * `TextDecoder` in fatal mode: an invalid byte stops the command with exit 2 naming the line and column,
 * instead of a U+FFFD sent to every recipient. A byte order mark is dropped.
 */
import fs from 'node:fs';
import { Transform } from 'node:stream';
import { TextDecoder } from 'node:util';
import { UsageError } from '../errors.js';

/** The default encoding of input files. */
export const UTF8 = 'utf-8';

/** Bytes read per step when locating an error in a file. */
const STEP = 64 * 1024;

/**
 * The WHATWG name of an encoding label (`latin1` → `windows-1252`, `UTF8` → `utf-8`); `undefined` → `utf-8`.
 * @throws UsageError naming `flag` when the label is not one TextDecoder knows.
 */
export function encodingName(label: string | undefined, flag = '--encoding'): string {
  if (label === undefined) return UTF8;
  try {
    return new TextDecoder(label.trim()).encoding;
  } catch {
    throw new UsageError(`${flag} ${label}: not an encoding label (use a WHATWG label such as utf-8, windows-1252, latin1, iso-8859-15, utf-16le, utf-16be, shift_jis)`);
  }
}

/** Random access to the bytes being decoded (a buffer, or a file read on demand when locating an error). */
interface ByteSource {
  read(offset: number, length: number): Buffer;
}

function bufferSource(bytes: Buffer): ByteSource {
  return { read: (offset, length) => bytes.subarray(offset, offset + length) };
}

function fileSource(file: string): ByteSource {
  return {
    read(offset, length) {
      const out = Buffer.alloc(length);
      const fd = fs.openSync(file, 'r');
      try {
        return out.subarray(0, fs.readSync(fd, out, 0, length, offset));
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

function bomLength(head: Buffer, encoding: string): number {
  if (encoding === 'utf-8' && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 3;
  if (encoding === 'utf-16le' && head[0] === 0xff && head[1] === 0xfe) return 2;
  if (encoding === 'utf-16be' && head[0] === 0xfe && head[1] === 0xff) return 2;
  return 0;
}

/** Feeds `[from, to)` of `src` to `decoder` in large pieces (streaming); returns the text. */
function feed(decoder: TextDecoder, src: ByteSource, from: number, to: number, onText?: (text: string) => void): void {
  for (let at = from; at < to; at += STEP) {
    const text = decoder.decode(src.read(at, Math.min(STEP, to - at)), { stream: true });
    onText?.(text);
  }
}

/**
 * The offset where the first invalid byte sequence starts, given that decoding `[0, windowStart)` succeeds
 * and the first failure is before `windowEnd` (or at the end of input when `atEnd`). Re-decodes the prefix once,
 * then the window one byte at a time, noting where each character began.
 */
function firstInvalid(src: ByteSource, encoding: string, windowStart: number, windowEnd: number, atEnd: boolean): number {
  // Characters are at most 4 bytes, so a sequence begun before `start` has been completed by `windowStart`.
  const start = Math.max(0, windowStart - 12);
  const decoder = new TextDecoder(encoding, { fatal: true });
  feed(decoder, src, 0, start);
  const bytes = src.read(start, windowEnd - start);
  let sequenceStart = start === 0 ? bomLength(bytes, encoding) : start;
  for (let i = 0; i < bytes.length; i++) {
    try {
      if (decoder.decode(bytes.subarray(i, i + 1), { stream: true }) !== '') sequenceStart = start + i + 1;
    } catch {
      return Math.max(sequenceStart, start);
    }
  }
  if (atEnd) return sequenceStart; // an incomplete sequence at the end of the input
  return windowEnd;
}

/** Line (1-based; CRLF, LF or a lone CR each end one) and column (1-based, in characters) of byte `offset`. */
function position(src: ByteSource, encoding: string, offset: number): { line: number; column: number } {
  const decoder = new TextDecoder(encoding, { fatal: true });
  let line = 1;
  let column = 1;
  let lastCR = false;
  feed(decoder, src, 0, offset, (text) => {
    for (const ch of text) {
      if (ch === '\n') {
        if (!lastCR) line++;
        column = 1;
      } else if (ch === '\r') {
        line++;
        column = 1;
      } else {
        column++;
      }
      lastCR = ch === '\r';
    }
  });
  return { line, column };
}

/** How the error message names the file and the flag that sets its encoding. */
export interface DecodeLabel {
  /** e.g. `--csv /path/rows.csv` or `--template-file /path/t.html`. */
  what: string;
  /** The flag that names the file's encoding, e.g. `--encoding`. */
  flag: string;
}

function decodeError(src: ByteSource, encoding: string, offset: number, label: DecodeLabel): UsageError {
  const { line, column } = position(src, encoding, offset);
  const bad = src.read(offset, 4);
  const bytes = bad.length > 0 ? `byte 0x${bad[0]!.toString(16).toUpperCase().padStart(2, '0')}` : 'an incomplete character at the end';
  const head = src.read(0, 2);
  const hint =
    encoding === UTF8 && head[0] === 0xff && head[1] === 0xfe
      ? `it starts with a UTF-16LE byte order mark: give ${label.flag} utf-16le`
      : encoding === UTF8 && head[0] === 0xfe && head[1] === 0xff
        ? `it starts with a UTF-16BE byte order mark: give ${label.flag} utf-16be`
        : `if the file is in another encoding, name it with ${label.flag} <label>, e.g. ${label.flag} windows-1252`;
  return new UsageError(`${label.what} line ${line} column ${column}: ${bytes} is not valid ${encoding.toUpperCase()}; ${hint}`);
}

/**
 * Decodes a whole file's bytes strictly.
 * @param encoding a name from {@link encodingName}.
 * @throws UsageError naming the file, line and column of the first invalid byte.
 */
export function decodeStrict(bytes: Buffer, encoding: string, label: DecodeLabel): string {
  try {
    return new TextDecoder(encoding, { fatal: true }).decode(bytes);
  } catch {
    const src = bufferSource(bytes);
    // Find the failing step first, so a large file is walked byte by byte only around the error.
    const decoder = new TextDecoder(encoding, { fatal: true });
    let at = 0;
    for (; at < bytes.length; at += STEP) {
      try {
        decoder.decode(bytes.subarray(at, at + STEP), { stream: true });
      } catch {
        break;
      }
    }
    const atEnd = at >= bytes.length;
    const from = atEnd ? Math.max(0, bytes.length - STEP) : at;
    throw decodeError(src, encoding, firstInvalid(src, encoding, from, Math.min(bytes.length, at + STEP), atEnd), label);
  }
}

/**
 * A transform from the bytes of `file` to its text, decoded strictly as it streams (constant memory). For UTF-8
 * the bytes pass through unchanged once checked (so a reader that decodes UTF-8 itself, like csv-parse, does no
 * extra work); other encodings come out as UTF-8.
 * @param encoding a name from {@link encodingName}.
 * The stream fails with a UsageError naming the line and column of the first invalid byte (found by reading
 * the file again up to that point).
 */
export function decodingStream(file: string, encoding: string, label: DecodeLabel): Transform {
  const decoder = new TextDecoder(encoding, { fatal: true });
  const passThrough = encoding === UTF8;
  let offset = 0;
  const fail = (from: number, to: number, atEnd: boolean) => {
    const src = fileSource(file);
    return decodeError(src, encoding, firstInvalid(src, encoding, from, to, atEnd), label);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      let text: string;
      try {
        text = decoder.decode(chunk, { stream: true });
      } catch {
        done(fail(offset, offset + chunk.length, false));
        return;
      }
      offset += chunk.length;
      done(null, passThrough ? chunk : text);
    },
    flush(done) {
      let text: string;
      try {
        text = decoder.decode();
      } catch {
        done(fail(Math.max(0, offset - 16), offset, true));
        return;
      }
      done(null, passThrough ? undefined : text);
    },
  });
}
