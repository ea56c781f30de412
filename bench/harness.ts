import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/**
 * The benchmark harness's machinery: processes (every server under test and every baseline runs in a process of
 * its own, the load comes from another), wrk, and the figures. Every wait is bounded.
 */

export const ROOT = new URL("..", import.meta.url).pathname;
const BENCH = new URL(".", import.meta.url).pathname;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wall-clock time in milliseconds with sub-millisecond precision, comparable between processes. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  /** Lines the process wrote, both streams. */
  lines: string[];
  /** Resolves with the first line that matches, within `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Calls `listener` with every line written from now on (`lines` keeps only the newest). */
  onLine(listener: (line: string) => void): void;
  /** Sends a line to the process's standard input. */
  send(line: string): void;
  /** Resident memory in bytes, from /proc. */
  rss(): number;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function start(command: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      if (lines.length > 10_000) lines.splice(0, 5_000);
      for (const listener of listeners) listener(line);
    });
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    pid: child.pid!,
    lines,
    waitForLine(pattern, timeoutMs = 60_000) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(
            new Error(
              `${command} ${args.join(" ")}: no line like ${pattern} within ${timeoutMs} ms:\n${lines.slice(-20).join("\n")}`,
            ),
          );
        }, timeoutMs);
        const listener = (line: string) => {
          if (!pattern.test(line)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(line);
        };
        listeners.add(listener);
        void exited.then(() => {
          if (!listeners.has(listener)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          reject(
            new Error(`${command} exited before a line like ${pattern}:\n${lines.slice(-20).join("\n")}`),
          );
        });
      });
    },
    onLine(listener) {
      listeners.add(listener);
    },
    send(line) {
      child.stdin!.write(`${line}\n`);
    },
    rss() {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) * 1024;
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A Node script of the harness (TypeScript, through tsx) in a process of its own. */
export function startScript(file: string, args: string[] = [], env: Record<string, string> = {}): Proc {
  return start(process.execPath, ["--import", "tsx", join(BENCH, file), ...args], env);
}

/** A server of `bench/servers.ts` (a baseline, a peer or a receiver) on a free port, once it listens. */
export async function startBenchServer(
  mode: "node-http" | "koa" | "node-sse" | "node-longpoll" | "sqlite-page" | "receiver",
  extra: string[] = [],
): Promise<{ proc: Proc; url: string }> {
  const port = await freePort();
  const proc = startScript("servers.ts", [mode, String(port), ...extra]);
  await proc.waitForLine(/^listening$/);
  return { proc, url: `http://127.0.0.1:${port}` };
}

/** Waits until `url` answers 200, within `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export interface Seintje {
  proc: Proc;
  url: string;
  dir: string;
  /** A token with every grant. */
  token: string;
  /** The Authorization header with that token. */
  auth: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * The real `seintje serve` from the build, on a free port. Without `dataDir` it gets a fresh temp dir, removed when
 * it stops; with one (several nodes sharing their keys) the caller owns the dir.
 */
export async function startSeintje(env: Record<string, string> = {}, dataDir?: string): Promise<Seintje> {
  const temporary = dataDir === undefined ? tempDir("seintje-bench-") : undefined;
  const dir = dataDir ?? temporary!.path;
  const port = await freePort();
  const main = join(ROOT, "dist/src/cli/main.js");
  // SEINTJE_BENCH_PROF=<dir>: each seintje under test writes a V8 CPU profile there when it stops (where the
  // time goes, for the targets a run does not meet).
  const profile = process.env.SEINTJE_BENCH_PROF;
  const flags = profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [];
  const proc = start(process.execPath, [...flags, main, "serve"], {
    SEINTJE_DATA_DIR: dir,
    SEINTJE_PORT: String(port),
    SEINTJE_LOG_LEVEL: "warn",
    ...env,
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/readyz`);
  const token = execFileSync(process.execPath, [main, "token", "--scope", "admin", "--ttl", "2h"], {
    env: { ...process.env, SEINTJE_DATA_DIR: dir, ...env },
  })
    .toString()
    .trim();
  return {
    proc,
    url,
    dir,
    token,
    auth: { authorization: `Bearer ${token}` },
    async stop() {
      await proc.stop();
      temporary?.remove();
    },
  };
}

/** A JSON request to a seintje, failing loudly on any answer but a 2xx. */
export async function api(
  base: Seintje,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<any> {
  const response = await fetch(`${base.url}${path}`, {
    method,
    headers: { ...base.auth, ...(body === undefined ? {} : { "content-type": contentType }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

let sequenceOfIds = 0;

/** An event of about 300 bytes, like a register's change notice. */
export function benchEvent(index = sequenceOfIds++): Record<string, unknown> {
  return {
    specversion: "1.0",
    id: `bench-${process.pid}-${index}`,
    source: "urn:nld:oin:00000001823288444000:systeem:bench",
    type: "nl.example.bench.changed",
    subject: `object-${index % 1000}`,
    time: "2026-11-29T12:00:00Z",
    datacontenttype: "application/json",
    data: { object: index, note: "x".repeat(120) },
  };
}

/** Publishes `count` events in batches of `batch`, `parallel` requests at a time. */
export async function fill(
  base: Seintje,
  feed: string,
  count: number,
  batch = 1000,
  parallel = 4,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const size = Math.min(batch, count - next);
      const events = Array.from({ length: size }, () => benchEvent());
      next += size;
      await api(base, "POST", `/v1/feeds/${feed}/events`, events, "application/cloudevents-batch+json");
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

export interface WrkResult {
  requestsPerSecond: number;
  /** Mean latency in milliseconds. */
  latencyMs: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

function toMs(value: string, unit: string): number {
  return Number(value) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 }[unit] ?? Number.NaN);
}

/** Runs wrk (Debian's package) against `url` and reads its figures; non-2xx answers count as errors. */
export function wrk(
  url: string,
  options: {
    connections: number;
    seconds: number;
    script?: string;
    env?: Record<string, string>;
    headers?: Record<string, string>;
  },
): Promise<WrkResult> {
  const args = ["-t1", `-c${options.connections}`, `-d${options.seconds}s`, "--latency", "--timeout", "10s"];
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push("-H", `${name}: ${value}`);
  if (options.script) args.push("-s", join(BENCH, "wrk", options.script));
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, {
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.stderr.on("data", (chunk) => {
      out += chunk;
    });
    child.once("error", reject);
    // "close", not "exit": wrk can exit before its report has been read from the pipe (a full run once lost it).
    child.once("close", (code) => {
      const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const latency = /Latency\s+([\d.]+)(us|ms|s|m)/.exec(out);
      const p99 = /\s99%\s+([\d.]+)(us|ms|s|m)/.exec(out);
      const total = /(\d+) requests in/.exec(out);
      if (code !== 0 || !rate || !latency || !total) {
        reject(new Error(`wrk ${args.join(" ")} failed (${code}):\n${out}`));
        return;
      }
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const socketErrors = socket ? socket.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0;
      resolve({
        requestsPerSecond: Number(rate[1]),
        latencyMs: toMs(latency[1]!, latency[2]!),
        p99Ms: p99 ? toMs(p99[1]!, p99[2]!) : Number.NaN,
        requests: Number(total[1]),
        errors: non2xx + socketErrors,
      });
    });
  });
}

export function hasCommand(command: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function median(values: number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function loadAverage(): number {
  return loadavg()[0]!;
}

/** How a scenario's run is sized: quick for a smoke run, full for the figures. */
export interface Size {
  quick: boolean;
  /** Seconds per measured round of a throughput run. */
  seconds: number;
  /** Rounds per figure, interleaved with the baseline's. */
  rounds: number;
}

/** One figure a scenario reports. */
export interface Figure {
  /** What is measured, with its unit. */
  name: string;
  unit: string;
  ours: number;
  baseline?: { name: string; value: number };
  peer?: { name: string; value: number } | { name: string; skipped: string };
  /** The target as text, and whether this run met it. */
  target?: { text: string; met: boolean };
  /** Anything worth knowing beside the figure (errors seen, the size of the run). */
  notes?: string[];
}

export interface ScenarioResult {
  scenario: string;
  loadBefore: number;
  seconds: number;
  figures: Figure[];
  error?: string;
}

export interface Scenario {
  name: string;
  description: string;
  run(size: Size): Promise<Figure[]>;
}
