/**
 * Prompts (@inquirer/prompts, loaded only when a prompt is shown). Used only when {@link CliContext.interactive};
 * otherwise a missing value is a usage error that names the flag.
 */
import type { CliContext } from './context.js';
import { UsageError } from '../core/errors.js';

/**
 * Asks for confirmation of a destructive action. Returns true if `yes` was given or the user agreed.
 * @throws UsageError naming `--yes` when not interactive.
 */
export async function confirmOrYes(cli: CliContext, yes: boolean | undefined, question: string): Promise<boolean> {
  if (yes) return true;
  if (!cli.interactive) throw new UsageError(`${question.replace(/\?$/, '')}: refusing without --yes (no terminal to ask on)`);
  const { confirm } = await import('@inquirer/prompts');
  return confirm({ message: question, default: false });
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
