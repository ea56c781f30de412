import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { databaseEnv } from "./database.js";

/** The real `seintje` command, run from the TypeScript sources in a child process. */

const ENTRY = new URL("../../src/cli/main.ts", import.meta.url).pathname;
/** The TypeScript loader by its full URL, so that a script started in another directory still finds it. */
const TSX = import.meta.resolve("tsx");

/** The command line that runs `seintje` from the sources, as a shell would be given it. */
export const SEINTJE_COMMAND = [process.execPath, "--import", TSX, ENTRY];

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  lines: string[];
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

/** A child process with its output collected. */
export interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null when a signal ended it), once its output is all read. */
  exited: Promise<number | null>;
}

/** A script of the project's, from its TypeScript source, in a child process with its output collected. */
export function runScript(file: string, args: string[], env: Record<string, string>, cwd?: string): Running {
  return runCommand(process.execPath, ["--import", TSX, file, ...args], env, cwd);
}

/** Any command in a child process (`python3 ...`), with its output collected. */
export function runCommand(
  command: string,
  args: string[],
  env: Record<string, string>,
  cwd?: string,
): Running {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    cwd,
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk;
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk;
  });
  // "close", not "exit": a process can exit before its last output has been read from the pipes.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

export function runCli(args: string[], env: Record<string, string>): ChildProcess {
  return runScript(ENTRY, args, env).child;
}

/** The environment plus, for a data dir without a DATABASE_URL, the suite's database for that dir. */
async function withDatabase(env: Record<string, string>): Promise<Record<string, string>> {
  const dir = env.SEINTJE_DATA_DIR;
  if (dir === undefined || env.DATABASE_URL !== undefined) return env;
  return { ...(await databaseEnv(dir)), ...env };
}

/** Starts `seintje serve` on a free port and waits (at most `timeoutMs`) until it says where it listens. */
export async function startServerProcess(
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<ServerProcess> {
  const child = runCli(["serve"], { SEINTJE_PORT: "0", ...(await withDatabase(env)) });
  const lines: string[] = [];
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
  createInterface({ input: child.stderr! }).on("line", (line) => lines.push(line));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${lines.join("\n")}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === "seintje is listening" && entry.url) {
          clearTimeout(timer);
          resolve(entry.url);
        }
      } catch {
        // not a log line
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening: ${lines.join("\n")}`));
    });
  });
  return { child, url, lines, exited };
}

/** Collects a command's output and exit code, killing it after `timeoutMs`; run in `cwd` when given. */
export async function runToEnd(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
  cwd?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const running = runScript(ENTRY, args, await withDatabase(env), cwd);
  const timer = setTimeout(() => running.child.kill("SIGKILL"), timeoutMs);
  const code = await running.exited;
  clearTimeout(timer);
  const [stdout, stderr] = [running.stdout(), running.stderr()];
  return { code, stdout, stderr };
}
