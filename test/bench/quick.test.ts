import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SCENARIO_NAMES } from "../../bench/names.js";
import { whyNoNchan } from "../../bench/nchan.js";
import { tempDir } from "../support/service.js";

/**
 * CI does not run the benchmarks for their figures, but this runs `npm run bench -- --quick --json` once: every
 * scenario must finish without an error and report finite figures, each with its baseline, so that the harness
 * cannot rot unnoticed. Whether a target is met is not asserted: speed is for the benchmarks, not the tests.
 */

/** Runs `npm run -s bench -- <args>` and answers its exit code and output. */
async function bench(args: string[], env: Record<string, string> = {}, timeoutMs = 9 * 60_000) {
  const child = spawn("npm", ["run", "-s", "bench", "--", ...args], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  return { code, output };
}

describe("the benchmarks without their peer", () => {
  it("say how to install nginx with nchan when it is missing", () => {
    assert.match(
      whyNoNchan("/no/such/ngx_nchan_module.so") ?? "",
      /apt-get install nginx-light libnginx-mod-nchan/,
    );
  });

  it("skip only the peer column when there is no peer", { timeout: 5 * 60_000 }, async () => {
    const { code, output } = await bench(["publish-single", "--quick"], { SEINTJE_BENCH_NCHAN: "off" });
    assert.equal(code, 0, output);
    assert.match(output, /^peer: the peer is turned off/m);
    const row = output.split("\n").find((line) => line.startsWith("| publish-single"));
    assert.ok(row, output);
    const cells = row.split("|").map((cell) => cell.trim());
    assert.match(cells[3]!, /req\/s$/, "seintje's figure");
    assert.match(cells[4]!, /bare Koa/, "the baseline");
    assert.equal(cells[6], "skipped", "the peer");
  });
});

describe("npm run bench -- --quick --json", () => {
  it("runs every scenario and reports each one's figures", { timeout: 10 * 60_000 }, async () => {
    const dir = tempDir("seintje-bench-test-");
    const file = join(dir, "results.json");
    try {
      const { code, output } = await bench(["--quick", "--json", file]);
      assert.equal(code, 0, output);
      assert.match(
        output,
        /\| scenario +\| figure +\| seintje +\| baseline +\| ratio +\| peer +\| ratio +\| target/,
      );

      const results = JSON.parse(readFileSync(file, "utf8"));
      assert.equal(results.quick, true);
      assert.deepEqual(Object.keys(results.scenarios).sort(), [...SCENARIO_NAMES].sort());
      for (const name of SCENARIO_NAMES) {
        const scenario = results.scenarios[name];
        assert.equal(scenario.error, undefined, `${name}: ${scenario.error}`);
        assert.equal(typeof scenario.loadBefore, "number", name);
        assert.ok(scenario.figures.length > 0, name);
        for (const figure of scenario.figures) {
          assert.ok(
            Number.isFinite(figure.ours) && figure.ours > 0,
            `${name}: ${figure.name} = ${figure.ours}`,
          );
          assert.ok(Number.isFinite(figure.baseline.value) && figure.baseline.value > 0, `${name}: baseline`);
          assert.equal(typeof figure.target.met, "boolean", name);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
