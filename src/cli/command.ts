/**
 * What every command shares: its help, and the exits scripts can rely on.
 * 0 done; 1 failed (refused by the service, unreachable, or an error while running); 2 bad usage or
 * configuration; 3 the cursor is gone (retention removed events after it).
 */

export const EXIT = { ok: 0, failed: 1, usage: 2, cursorGone: 3 } as const;

export interface Command {
  name: string;
  /** One line for the list of commands. */
  summary: string;
  /** The whole help text of the command. */
  help: string;
  /** The command keeps the process running after run() returns (serve); others exit at once when done. */
  serves?: true;
  run(args: string[]): Promise<void>;
}

/** Bad arguments: the message, then the command's help, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: Command,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

/** A command that could not do its work: the message, exit `code`. */
export class CommandFailed extends Error {
  constructor(
    message: string,
    readonly code: number = EXIT.failed,
  ) {
    super(message);
    this.name = "CommandFailed";
  }
}
