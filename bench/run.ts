import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import {
  type Figure,
  hasCommand,
  loadAverage,
  type Scenario,
  type ScenarioResult,
  type Size,
} from "./harness.js";
import { SCENARIO_NAMES } from "./names.js";
import { whyNoNchan } from "./nchan.js";
import { cachedReads } from "./scenarios/caching.js";
import { longpollFanout, sseFanout, sseMemory } from "./scenarios/fanout.js";
import { pingCoalescing, pingFanout, pingThroughput } from "./scenarios/pings.js";
import { pgCrossNode, pgPublish } from "./scenarios/postgres.js";
import {
  publishBatch,
  publishSchema,
  publishSingle,
  readDepth,
  readSequential,
} from "./scenarios/throughput.js";

/**
 * `npm run bench [-- <scenario...>] [--quick] [--json <file>]`: runs the scenarios one after another, each with its
 * baselines (and nchan, where it is a peer) measured in the same run, and prints a table of figures and ratios.
 * These machines are shared and noisy: the ratios are what to read, the absolute figures only beside them.
 */

export const SCENARIOS: readonly Scenario[] = [
  publishSingle,
  publishSchema,
  publishBatch,
  readSequential,
  readDepth,
  cachedReads,
  sseFanout,
  sseMemory,
  longpollFanout,
  pingFanout,
  pingThroughput,
  pingCoalescing,
  pgPublish,
  pgCrossNode,
];

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  strict: true,
  options: { quick: { type: "boolean" }, json: { type: "string" }, help: { type: "boolean", short: "h" } },
});

const names = SCENARIOS.map((scenario) => scenario.name);
if (names.join() !== SCENARIO_NAMES.join())
  throw new Error(`bench/names.ts lists ${SCENARIO_NAMES.join()}, not ${names.join()}`);

if (values.help) {
  process.stdout.write(
    `Usage: npm run bench -- [scenario...] [--quick] [--json <file>]\n\nScenarios:\n${SCENARIOS.map((scenario) => `  ${scenario.name.padEnd(17)} ${scenario.description}`).join("\n")}\n`,
  );
  process.exit(0);
}

const unknown = positionals.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name));
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario(s): ${unknown.join(", ")}; npm run bench -- --help lists them\n`);
  process.exit(2);
}
if (!hasCommand("wrk")) {
  process.stderr.write("the benchmarks drive load with wrk: apt-get install wrk\n");
  process.exit(2);
}

const size: Size = values.quick
  ? { quick: true, seconds: 1, rounds: 1 }
  : { quick: false, seconds: 5, rounds: 3 };
const chosen =
  positionals.length > 0 ? SCENARIOS.filter((scenario) => positionals.includes(scenario.name)) : SCENARIOS;

function format(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "-";
  if (unit === "bytes") return `${(value / 1024).toFixed(1)} KiB`;
  if (unit === "ms") return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`;
  return `${Math.round(value).toLocaleString("en")} ${unit}`;
}

function row(figure: Figure): string[] {
  const ratio = (other: number) =>
    Number.isFinite(other) && other !== 0 ? `${(figure.ours / other).toFixed(2)}×` : "-";
  const peer = figure.peer;
  return [
    figure.name,
    format(figure.ours, figure.unit),
    figure.baseline ? `${format(figure.baseline.value, figure.unit)} (${figure.baseline.name})` : "-",
    figure.baseline ? ratio(figure.baseline.value) : "-",
    peer === undefined
      ? "-"
      : "skipped" in peer
        ? "skipped"
        : `${format(peer.value, figure.unit)} (${peer.name})`,
    peer && !("skipped" in peer) ? ratio(peer.value) : "-",
    figure.target ? `${figure.target.met ? "met" : "NOT MET"}: ${figure.target.text}` : "-",
  ];
}

const started = new Date();
process.stdout.write(
  `seintje benchmarks, ${values.quick ? "quick" : "full"} run, ${started.toISOString()}\n` +
    `machine: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}\n` +
    (whyNoNchan() ? `peer: ${whyNoNchan()}\n` : "") +
    "\n",
);

const results: ScenarioResult[] = [];
for (const scenario of chosen) {
  const loadBefore = loadAverage();
  process.stdout.write(`${scenario.name} (load average ${loadBefore.toFixed(2)}) ... `);
  const at = performance.now();
  try {
    const figures = await scenario.run(size);
    results.push({ scenario: scenario.name, loadBefore, seconds: (performance.now() - at) / 1000, figures });
    process.stdout.write(`${((performance.now() - at) / 1000).toFixed(0)} s\n`);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    results.push({
      scenario: scenario.name,
      loadBefore,
      seconds: (performance.now() - at) / 1000,
      figures: [],
      error: message,
    });
    process.stdout.write(`FAILED: ${message.split("\n")[0]}\n`);
  }
}

const header = ["scenario", "figure", "seintje", "baseline", "ratio", "peer", "ratio", "target"];
const rows: string[][] = [];
for (const result of results) {
  if (result.error)
    rows.push([result.scenario, `error: ${result.error.split("\n")[0]}`, "", "", "", "", "", ""]);
  for (const figure of result.figures) rows.push([result.scenario, ...row(figure)]);
}
const widths = header.map((title, column) =>
  Math.max(title.length, ...rows.map((cells) => cells[column]!.length)),
);
const line = (cells: string[]) =>
  `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ")} |`;
process.stdout.write(`\n${line(header)}\n|${widths.map((width) => "-".repeat(width + 2)).join("|")}|\n`);
for (const cells of rows) process.stdout.write(`${line(cells)}\n`);
for (const result of results) {
  for (const figure of result.figures) {
    for (const note of figure.notes ?? []) process.stdout.write(`- ${result.scenario}: ${note}\n`);
  }
}

if (values.json) {
  writeFileSync(
    values.json,
    `${JSON.stringify(
      {
        started: started.toISOString(),
        quick: Boolean(values.quick),
        machine: {
          cores: cpus().length,
          model: cpus()[0]?.model,
          memoryBytes: totalmem(),
          node: process.version,
        },
        scenarios: Object.fromEntries(results.map((result) => [result.scenario, result])),
      },
      null,
      2,
    )}\n`,
  );
}
process.exit(results.some((result) => result.error) ? 1 : 0);
