import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cloudEvent, publish, putFeed } from "../support/http.js";
import { type Running, runCommand, runScript } from "../support/process.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * The examples in examples/ run as their headers say (from the repository's root, state where they keep it by
 * default), against a real service; then git sees nothing new and the lint still passes.
 */

const ROOT = new URL("../../", import.meta.url).pathname;
const EXAMPLES = join(ROOT, "examples");
/** Feed names of this run, so the state files the examples leave are this run's alone. */
const FOLLOWED = `followed-${process.pid}`;
const RECEIVED = `received-${process.pid}`;
const STATE_FILES = [
  `.seintje-state/${FOLLOWED}.cursor`,
  `.seintje-state/${RECEIVED}.receiver.json`,
  `.seintje-state/${FOLLOWED}.python.cursor`,
  `.seintje-state/${RECEIVED}.python.receiver.json`,
  `.seintje-state/${FOLLOWED}.java.cursor`,
  `.seintje-state/${RECEIVED}.java.receiver.json`,
];

const git = (...args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" });

function runExample(file: string, args: string[], env: Record<string, string>): Running {
  return runScript(join(EXAMPLES, file), args, env);
}

/** An example in Python (standard library only), run as its header says: `python3 examples/python/<file>`. */
function runPython(file: string, args: string[], env: Record<string, string>): Running {
  return runCommand("python3", [join(EXAMPLES, "python", file), ...args], env, ROOT);
}

/** The Java example (Java 17, the JDK only), run as its header says: `java examples/java/Seintje.java <mode>`. */
function runJava(args: string[], env: Record<string, string>): Running {
  return runCommand("java", [join(EXAMPLES, "java", "Seintje.java"), ...args], env, ROOT);
}

/** A ping not signed with the subscription's secret: the receiver answers 401 and says why on stderr. */
async function assertRefusesForgedPing(port: number, receiver: Running): Promise<void> {
  const forged = await fetch(`http://127.0.0.1:${port}/seintje`, {
    method: "POST",
    headers: {
      "content-type": "application/cloudevents+json",
      "webhook-id": "forged",
      "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
      "webhook-signature": `v1,${Buffer.alloc(32).toString("base64")}`,
    },
    body: "{}",
  });
  assert.equal(forged.status, 401);
  // The child's stderr reaches us through a pipe, which may be read after the HTTP answer.
  await eventually(
    () => /refused a ping: bad-signature/.test(receiver.stderr()),
    5_000,
    `refusal logged: ${receiver.stderr()}`,
  );
}

/** A port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

async function stopped(running: Running): Promise<number | null> {
  running.child.kill("SIGTERM");
  const timer = setTimeout(() => running.child.kill("SIGKILL"), 10_000);
  const code = await running.exited;
  clearTimeout(timer);
  return code;
}

const lines = (text: string) =>
  text
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));

describe("the examples", () => {
  let svc: TestService;
  let gitBefore: string;
  before(async () => {
    assert.equal(process.cwd(), ROOT.replace(/\/$/, ""), "the examples run from the repository's root");
    gitBefore = git("status", "--porcelain");
    svc = await startTestService({ SEINTJE_CALLBACK_HTTP: "true", SEINTJE_CALLBACK_ALLOW: "127.0.0.1" });
  });
  after(async () => {
    await svc.stop();
    for (const file of STATE_FILES) rmSync(join(ROOT, file), { force: true });
  });

  it("consumer.ts follows a feed and resumes from its saved cursor after a restart", async () => {
    await putFeed(svc.url, FOLLOWED);
    const env = {
      SEINTJE_URL: svc.url,
      SEINTJE_TOKEN: await tokenFor(svc.dir, `read:${FOLLOWED}`),
    };
    const cursorFile = join(ROOT, STATE_FILES[0]!);
    for (let i = 0; i < 3; i += 1) await publish(svc.url, FOLLOWED, cloudEvent());
    const first = runExample("consumer.ts", [FOLLOWED], env);
    await eventually(() => lines(first.stdout()).length === 3, 15_000, `3 events: ${first.stderr()}`);
    assert.equal(await stopped(first), 0, first.stderr());
    assert.equal(readFileSync(cursorFile, "utf8"), "3\n");

    await publish(svc.url, FOLLOWED, cloudEvent({ type: "nl.example.after-restart" }));
    const second = runExample("consumer.ts", [FOLLOWED], env);
    await eventually(() => lines(second.stdout()).length === 1, 15_000, `1 event: ${second.stderr()}`);
    assert.deepEqual(lines(second.stdout())[0], { sequence: "4", type: "nl.example.after-restart" });
    assert.equal(await stopped(second), 0);
  });

  it("receiver.ts subscribes, verifies pings, and pulls what they announce", async () => {
    await putFeed(svc.url, RECEIVED);
    const port = await freePort();
    const receiver = runExample("receiver.ts", [RECEIVED], {
      SEINTJE_URL: svc.url,
      SEINTJE_TOKEN: await tokenFor(svc.dir, `read:${RECEIVED} subscribe:${RECEIVED}`, {
        subject: "example",
      }),
      PORT: String(port),
    });
    try {
      await eventually(
        () => receiver.stderr().includes("receiving pings"),
        15_000,
        `started: ${receiver.stderr()}`,
      );
      const events = [cloudEvent(), cloudEvent(), cloudEvent()];
      for (const event of events) await publish(svc.url, RECEIVED, event);
      await eventually(() => lines(receiver.stdout()).length === 3, 15_000, `3 events: ${receiver.stderr()}`);
      assert.deepEqual(
        lines(receiver.stdout()).map((line) => line.id),
        events.map((event) => event.id),
      );
      // The receiver saves its cursor after it has written the page's events.
      await eventually(
        () => JSON.parse(readFileSync(join(ROOT, STATE_FILES[1]!), "utf8")).cursor === "3",
        5_000,
        "the cursor saved as 3",
      );

      await assertRefusesForgedPing(port, receiver);
    } finally {
      await stopped(receiver);
    }
  });

  /**
   * A consumer in another language reads the TypeScript consumer's feed again with a cursor file of its own: all
   * `held` events, then, after a restart, only the one published meanwhile.
   */
  async function followsAcrossRestart(
    start: (env: Record<string, string>) => Running,
    cursorFile: string,
    held: number,
    language: string,
  ) {
    const env = { SEINTJE_URL: svc.url, SEINTJE_TOKEN: await tokenFor(svc.dir, `read:${FOLLOWED}`) };
    const first = start(env);
    // Java compiles its file before it runs: allow for that.
    await eventually(
      () => lines(first.stdout()).length === held,
      30_000,
      `${held} events: ${first.stderr()}`,
    );
    assert.equal(await stopped(first), 0, first.stderr());
    assert.equal(readFileSync(join(ROOT, cursorFile), "utf8"), `${held}\n`);
    const type = `nl.example.after-${language}-restart`;
    await publish(svc.url, FOLLOWED, cloudEvent({ type }));
    const second = start(env);
    await eventually(() => lines(second.stdout()).length === 1, 30_000, `1 event: ${second.stderr()}`);
    const [event] = lines(second.stdout());
    assert.deepEqual([event.sequence, event.type], [String(held + 1), type]);
    assert.equal(await stopped(second), 0, second.stderr());
    assert.deepEqual(
      lines(first.stdout()).map((line) => line.sequence),
      Array.from({ length: held }, (_, index) => String(index + 1)),
    );
  }

  /** A receiver in another language subscribes, is pinged, pulls each new event once, and refuses a forgery. */
  async function receivesPings(start: (env: Record<string, string>) => Running, language: string) {
    const port = await freePort();
    const receiver = start({
      SEINTJE_URL: svc.url,
      SEINTJE_TOKEN: await tokenFor(svc.dir, `read:${RECEIVED} subscribe:${RECEIVED}`, { subject: language }),
      PORT: String(port),
    });
    try {
      await eventually(
        () => receiver.stderr().includes("receiving pings"),
        30_000,
        `started: ${receiver.stderr()}`,
      );
      const events = [cloudEvent(), cloudEvent()];
      for (const event of events) await publish(svc.url, RECEIVED, event);
      await eventually(() => lines(receiver.stdout()).length === 2, 15_000, `2 events: ${receiver.stderr()}`);
      assert.deepEqual(
        lines(receiver.stdout()).map((line) => line.id),
        events.map((event) => event.id),
        "only what came after its subscription, each once",
      );
      await assertRefusesForgedPing(port, receiver);
    } finally {
      assert.equal(await stopped(receiver), 0, receiver.stderr());
    }
  }

  it("python/consumer.py reads every event once across a restart", () =>
    followsAcrossRestart((env) => runPython("consumer.py", [FOLLOWED], env), STATE_FILES[2]!, 4, "python"));

  it("python/receiver.py subscribes, verifies pings, and pulls what they announce", () =>
    receivesPings((env) => runPython("receiver.py", [RECEIVED], env), "python"));

  it("java Seintje.java follow reads every event once across a restart", () =>
    followsAcrossRestart((env) => runJava(["follow", FOLLOWED], env), STATE_FILES[4]!, 5, "java"));

  it("java Seintje.java receive subscribes, verifies pings, and pulls what they announce", () =>
    receivesPings((env) => runJava(["receive", RECEIVED], env), "java"));

  it("leave nothing that git would commit or the lint would read", () => {
    for (const file of STATE_FILES) assert.ok(existsSync(join(ROOT, file)), `${file} was written`);
    assert.equal(git("status", "--porcelain"), gitBefore, "git status shows nothing new");
    const lint = spawnSync(join(ROOT, "node_modules/.bin/biome"), ["check", "."], {
      cwd: ROOT,
      encoding: "utf8",
    });
    assert.equal(lint.status, 0, `${lint.stdout}${lint.stderr}`);
  });
});
