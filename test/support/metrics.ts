import { call } from "./http.js";

/** Reads samples out of Prometheus text format (0.0.4), for asserting on /metrics. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? "").matchAll(LABEL)) {
      labels[name!] = value!.replace(/\\(.)/g, (_, char: string) => (char === "n" ? "\n" : char));
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample with this name and (at least) these labels; 0 when there is none. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter(
    (sample) =>
      sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

export async function scrape(base: string, headers: Record<string, string> = {}): Promise<Sample[]> {
  const reply = await call<string>(`${base}/metrics`, { headers });
  if (reply.status !== 200) throw new Error(`/metrics answered ${reply.status}: ${reply.text}`);
  return parseMetrics(reply.text);
}

/**
 * Waits until the service holds `count` long-polls (the seintje_longpolls_waiting gauge), for at most `timeoutMs`;
 * answers how many it holds then.
 */
export async function heldLongPolls(base: string, count: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const held = sampleValue(await scrape(base), "seintje_longpolls_waiting");
    if (held === count || Date.now() > deadline) return held;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
