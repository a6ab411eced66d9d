/**
 * Typed errors of switchboard. Each maps to exactly one exit code in `src/cli/main.ts`
 * (the only place that turns errors into exit codes and one-line messages).
 *
 * Exit codes (DESIGN §2): 0 ok, 1 operation failed, 2 usage error or unusable input,
 * 3 bulk send finished with some rows failed or unknown, 4 store locked, batch being sent by another process or
 * its lease taken over, 5 master key missing or wrong, 75 bulk send paused (no provider of the route could take
 * messages; EX_TEMPFAIL of sysexits.h: try again later), 130 interrupted.
 */

/** Base class: `exitCode` is the process exit code the CLI uses for this error. */
export class SwitchboardError extends Error {
  readonly exitCode: number = 1;
  /** Extra lines printed after the one-line message (e.g. per-row validation errors). */
  details: string[] = [];
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flag, bad argument or unusable input file. Exit 2. The message names the flag, field or row. */
export class UsageError extends SwitchboardError {
  override readonly exitCode = 2;
  constructor(message: string, details: string[] = []) {
    super(message);
    this.details = details;
  }
}

/** Input fields core code names in its errors; the CLI says which flag gives each ({@link FieldError.withFlags}). */
export type InputField = 'csv' | 'subject' | 'template file' | 'stored template' | 'template name' | 'template lang' | 'idempotency key' | 'concurrency';

/** How core code words each {@link InputField} when no CLI is involved. */
const FIELD_WORDS: Record<InputField, string> = {
  csv: 'CSV file',
  subject: 'subject',
  'template file': 'template file',
  'stored template': 'stored template',
  'template name': 'WhatsApp template name',
  'template lang': 'WhatsApp template language',
  'idempotency key': 'idempotency key',
  concurrency: 'concurrency',
};

/**
 * A usage error about input fields, worded by core code in terms of fields ("CSV file … line 1: no recipient
 * column", "subject is required"). `text` writes the message given a name for each field: the message is that
 * text with the fields' own words; {@link withFlags} gives the same text with the CLI's flag names. Exit 2.
 */
export class FieldError extends UsageError {
  constructor(
    private readonly text: (name: (field: InputField) => string) => string,
    details: string[] = [],
  ) {
    super(text((f) => FIELD_WORDS[f]), details);
  }

  /** The same error with each field named by its flag (e.g. `csv` → `--csv`). */
  withFlags(flags: Record<InputField, string>): UsageError {
    return new UsageError(this.text((f) => flags[f]), this.details);
  }
}

/** A named thing (tenant, provider, batch) does not exist. Exit 2 (the argument was wrong). */
export class NotFoundError extends UsageError {}

/** Master key missing, malformed, not matching the store, or a sealed secret failing its integrity check. Exit 5. */
export class KeyError extends SwitchboardError {
  override readonly exitCode = 5;
}

/** The store is locked by another process, or a batch is being worked by another process. Exit 4. */
export class LockedError extends SwitchboardError {
  override readonly exitCode = 4;
}

/** A bulk send finished but some rows failed. Exit 3. Carries the summary for the presenter. */
export class PartialFailure extends SwitchboardError {
  override readonly exitCode = 3;
  constructor(
    message: string,
    readonly result: unknown,
  ) {
    super(message);
  }
}

/**
 * A bulk send paused: no provider of the route could take messages (each one's circuit open), so the rows not
 * sent stay `pending` for the same command or `batch resume`. Exit 75 (EX_TEMPFAIL: try again later).
 */
export class Paused extends SwitchboardError {
  override readonly exitCode = 75;
  constructor(
    message: string,
    readonly result?: unknown,
  ) {
    super(message);
  }
}

/** The run was interrupted (SIGINT/SIGTERM) after saving its state. Exit 130. */
export class Interrupted extends SwitchboardError {
  override readonly exitCode = 130;
  constructor(
    message: string,
    readonly result?: unknown,
  ) {
    super(message);
  }
}

/** An operation failed for a reason outside the user's input (provider refused, I/O error). Exit 1. */
export class OperationFailed extends SwitchboardError {
  constructor(
    message: string,
    readonly result?: unknown,
  ) {
    super(message);
  }
}
