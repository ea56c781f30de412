import pino, { type DestinationStream, type Logger } from "pino";

/**
 * Structured JSON logs on stdout. Credentials never reach a log line: the paths below are removed wherever a
 * logged object carries them, and request lines log the path without its query string.
 */
export const REDACTED_PATHS = [
  "req.headers.authorization",
  "headers.authorization",
  "authorization",
  "token",
  "access_token",
  "secret",
  "*.secret",
  "*.token",
];

/**
 * Without a destination, lines go to stdout synchronously. pino's default (asynchronous) destination flushes its
 * buffer at exit and retries forever when stdout is a pipe whose reader is gone (EPIPE), which kept a stopped
 * service from exiting; the synchronous one writes each line at once and stops logging on EPIPE.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "seintje" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, remove: true },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

export type { Logger };
