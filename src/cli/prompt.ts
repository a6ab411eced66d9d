/**
 * Prompts (@inquirer/prompts, loaded only when a prompt is shown). Used only when {@link CliContext.interactive};
 * otherwise a missing value is a usage error that names the flag.
 */
import type { CliContext } from './context.js';
import { OperationFailed, UsageError } from '../errors.js';

/**
 * Confirms a destructive action (DESIGN §2): returns at once with `--yes`; on a terminal asks `question`
 * (default no); without one refuses.
 * @throws UsageError (exit 2) naming `--yes` when there is no terminal to ask on; OperationFailed (exit 1,
 *   "nothing changed") when the user declines.
 */
export async function confirmOrYes(cli: CliContext, yes: boolean | undefined, question: string): Promise<void> {
  if (yes) return;
  const action = question.replace(/\?$/, '');
  if (!cli.interactive) throw new UsageError(`${action}: refusing without --yes (no terminal to ask on)`);
  if (!(await askConfirm(question, false))) throw new OperationFailed(`${action}: declined; nothing changed`);
}

/** Masked input for a secret (never echoed). Returns '' if the user leaves an optional one empty. */
export async function askSecret(label: string, required: boolean): Promise<string> {
  const { password } = await import('@inquirer/prompts');
  return password({
    message: `${label}${required ? '' : ' (leave empty to skip)'}`,
    mask: '*',
    validate: (v) => (!required || v.length > 0 ? true : `${label} is required`),
  });
}

/** A choice list (arrow keys and Enter). Returns the chosen value. */
export async function askSelect<T extends string>(message: string, choices: Array<{ value: T; name: string; description?: string }>): Promise<T> {
  const { select } = await import('@inquirer/prompts');
  return select<T>({ message, choices });
}

/**
 * A line of text. `validate` returns true or the message to show; `required` refuses an empty answer.
 * Returns the trimmed answer ('' when an optional one is left empty).
 */
export async function askInput(message: string, opts: { default?: string; required?: boolean; validate?: (v: string) => true | string } = {}): Promise<string> {
  const { input } = await import('@inquirer/prompts');
  const answer = await input({
    message: opts.required ? message : `${message} (leave empty to skip)`,
    default: opts.default,
    required: opts.required ?? false,
    validate: (v) => (v.trim() === '' ? (opts.required ? `${message} is required` : true) : (opts.validate?.(v.trim()) ?? true)),
  });
  return answer.trim();
}

/** A yes/no question. */
export async function askConfirm(message: string, defaultAnswer: boolean): Promise<boolean> {
  const { confirm } = await import('@inquirer/prompts');
  return confirm({ message, default: defaultAnswer });
}
