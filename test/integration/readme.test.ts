import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCommand, SEINTJE_COMMAND, type ServerProcess, startServerProcess } from "../support/process.js";
import { tempDir } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * The README's one-minute tour, run as it is written: every shell command of it, in order, in bash, from a
 * directory whose ./data is the service's, against a real service. What a person does between the commands the
 * test does: it starts the service with the settings the tour asks for, lets the commands that wait for more (the
 * long-poll, `tail`, the stream, the receiver) go on in the background as another terminal would, publishes again
 * where a comment says to, and checks what each command printed. What it changes in the text: the two addresses
 * (a free port for the service and for the receiver, not 8080 and 9000), and `npx seintje`, which runs the command
 * from the sources (`npm start` runs the build).
 */

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The commands of the tour's shell blocks: lines joined while a command goes on (a trailing `\` or an open quote). */
function tourCommands(readme: string): string[] {
  const start = readme.indexOf("## A one-minute tour");
  const tour = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const commands: string[] = [];
  for (const [, block] of tour.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let current = "";
    for (const line of block!.split("\n")) {
      if (current === "" && (line.trim() === "" || line.trim().startsWith("#"))) continue;
      current = current === "" ? line : `${current}\n${line}`;
      const quoteOpen = (current.match(/'/g) ?? []).length % 2 === 1;
      if (!quoteOpen && !line.endsWith("\\")) {
        commands.push(current);
        current = "";
      }
    }
    assert.equal(current, "", "every command of the tour ends in its block");
  }
  return commands;
}

/** Commands that go on until they are stopped: another terminal in the tour. */
const GOES_ON = /[?&]wait=|seintje tail|curl -N|\.listen\(/;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once("error", reject);
  });
}

describe("the README's one-minute tour", () => {
  const dir = tempDir("seintje-readme-");
  const background: Array<{ command: string; child: ChildProcess; output: () => string }> = [];
  let server: ServerProcess;
  let receiverPort: number;

  before(async () => {
    receiverPort = await freePort();
    // The settings the tour restarts the service with before its webhook part; the part before needs none.
    server = await startServerProcess({
      SEINTJE_DATA_DIR: join(dir, "data"),
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
    });
    const { port } = new URL(server.url);
    // Each command starts a bash of its own: the shell's state (TOKEN, READER, ...) is kept in state.sh between them.
    writeFileSync(
      join(dir, "tour.sh"),
      [
        `SEINTJE=(${SEINTJE_COMMAND.map((part) => `'${part}'`).join(" ")})`,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: bash's array expansion, not a template
        'npx() { if [ "$1" = seintje ]; then shift; "${SEINTJE[@]}" "$@"; else command npx "$@"; fi; }',
        // The service's own settings, which the seintje command reads to find it, as on the service's machine.
        `export SEINTJE_HOST=127.0.0.1 SEINTJE_PORT=${port}`,
        "[ -f state.sh ] && source state.sh",
        "",
      ].join("\n"),
    );
  });

  after(async () => {
    for (const { child } of background) {
      try {
        // The whole group: bash and what it started (curl, node).
        process.kill(-child.pid!, "SIGTERM");
      } catch {
        // gone already
      }
    }
    if (server) {
      server.child.kill("SIGTERM");
      await server.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** The command with this test's addresses in place of the README's. */
  function here(command: string): string {
    return command
      .replaceAll("http://127.0.0.1:8080", server.url)
      .replaceAll("127.0.0.1:9000", `127.0.0.1:${receiverPort}`)
      .replaceAll("listen(9000,", `listen(${receiverPort},`);
  }

  async function run(command: string): Promise<string> {
    const script = `source ./tour.sh\n${here(command)}\nstatus=$?\nexport -p > state.sh\nexit $status`;
    const running = runCommand("bash", ["-c", script], {}, dir);
    const timer = setTimeout(() => running.child.kill("SIGKILL"), 30_000);
    const code = await running.exited;
    clearTimeout(timer);
    assert.equal(code, 0, `${command}\n${running.stderr()}`);
    assert.doesNotMatch(running.stdout(), /urn:seintje:problem:/, command);
    return running.stdout();
  }

  function goOn(command: string): void {
    const child = spawn("bash", ["-c", `source ./tour.sh\n${here(command)}`], {
      cwd: dir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    background.push({ command, child, output: () => output });
  }

  /** What the command that went on has printed, once `done` says it printed enough. */
  function printed(pattern: RegExp, done: (output: string) => boolean): Promise<string> {
    const entry = background.find(({ command }) => pattern.test(command));
    assert.ok(entry, `the tour has a command like ${pattern}`);
    return eventually(() => done(entry.output()) && entry.output(), 20_000, `the output of ${entry.command}`);
  }

  it("runs as written, and each command does what its comment says", { timeout: 180_000 }, async () => {
    const commands = tourCommands(README);
    assert.ok(commands.length >= 15, `the tour has its commands (${commands.length})`);
    const answers = new Map<string, unknown>();
    for (const command of commands) {
      if (GOES_ON.test(command)) {
        goOn(command);
        continue;
      }
      if (/\/v1\/subscriptions -H/.test(command) && !command.includes("-X POST")) {
        // The list after "Publish again (the binary-mode command above with another ce-id)": the ping goes out
        // and the subscription's acked moves to the head.
        const binary = commands.find((line) => line.includes("-H 'ce-id: 2'"));
        assert.ok(binary, "the tour publishes in binary mode with ce-id 2");
        await run(binary.replace("ce-id: 2", "ce-id: 5"));
        await eventually(
          async () => {
            const { subscriptions } = JSON.parse(await run(command)) as {
              subscriptions: Array<{ acked: string; head: string }>;
            };
            return subscriptions.length === 1 && subscriptions[0]!.acked === subscriptions[0]!.head;
          },
          20_000,
          "the subscription acked at the head",
        );
        continue;
      }
      const output = await run(command);
      if (output.trim().startsWith("{")) answers.set(command, JSON.parse(output));
    }

    const answer = (pattern: RegExp) => {
      const found = [...answers].find(([command]) => pattern.test(command));
      assert.ok(found, `the tour has a command like ${pattern}`);
      return found[1] as Record<string, any>;
    };
    assert.equal(answer(/-X PUT/).name, "brk");
    assert.equal(answer(/cloudevents\+json/).events[0].sequence, "1");
    assert.equal(answer(/ce-id: 2/).events[0].sequence, "2");
    const read = answer(/after=0&limit=100/);
    assert.deepEqual(
      read.events.map((event: { sequence: string }) => event.sequence),
      ["1", "2"],
    );
    assert.equal(read.next, "2");
    const filtered = answer(/type=nl\.kadaster\.brk\.perceel-gesplitst/);
    assert.deepEqual(
      filtered.events.map((event: { id: string }) => event.id),
      ["2"],
    );
    const subscribed = answer(/-X POST [^\n]*\/v1\/subscriptions/);
    assert.match(subscribed.secret, /^whsec_/);

    // The long-poll after 2 got the event the seintje command published next.
    const whole = (output: string) => {
      try {
        JSON.parse(output);
        return true;
      } catch {
        return false;
      }
    };
    const polled = JSON.parse(await printed(/wait=/, whole));
    assert.deepEqual(
      polled.events.map((event: { sequence: string }) => event.sequence),
      ["3"],
    );
    const tailed = await printed(/seintje tail/, (output) => output.split("\n").length > 3);
    assert.deepEqual(
      tailed
        .split("\n")
        .slice(0, 3)
        .map((line) => JSON.parse(line).sequence),
      ["1", "2", "3"],
    );
    await printed(/curl -N/, (output) => /^id: 3$/m.test(output) && /^data: \{/m.test(output));
    const pinged = await printed(/\.listen\(/, (output) => output.includes("nl.seintje.feed.updated"));
    assert.match(pinged, /"head":"4"/);
  });
});
