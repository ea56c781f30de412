import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { startTestService, type TestService } from "../support/service.js";

/**
 * What deploy/ ships for a platform: Prometheus alerting rules and a Grafana dashboard. The rules pass Prometheus'
 * own checker, and every metric that the rules and the dashboard name is one the service exposes.
 */

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
const RULES = `${DEPLOY}prometheus/seintje-alerts.yaml`;
const DASHBOARD = `${DEPLOY}grafana/seintje-dashboard.json`;
const PROMTOOL = process.env.PROMTOOL_PATH ?? "/usr/bin/promtool";

/** The seintje_ metric families an expression names (a histogram's _bucket, _sum and _count are its family). */
function metricsNamed(text: string): string[] {
  const names = [...text.matchAll(/\bseintje_[a-z_]+/g)].map(([name]) =>
    name.replace(/_(bucket|sum|count)$/, ""),
  );
  return [...new Set(names)].sort();
}

describe("deploy/: alerting rules and the dashboard", () => {
  let svc: TestService;
  let exposed: Set<string>;
  before(async () => {
    svc = await startTestService();
    const text = await (await fetch(`${svc.url}/metrics`)).text();
    exposed = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map(([, name]) => name!));
  });
  after(() => svc.stop());

  it("has rules that promtool check rules accepts", () => {
    assert.ok(existsSync(PROMTOOL), `promtool is needed at ${PROMTOOL} (apt-get install prometheus)`);
    const checked = spawnSync(PROMTOOL, ["check", "rules", RULES], { encoding: "utf8", timeout: 30_000 });
    assert.equal(checked.status, 0, `${checked.stdout}${checked.stderr}`);
    assert.match(checked.stdout, /SUCCESS: \d+ rules found/);
  });

  it("names in the rules only metrics that /metrics exposes", () => {
    const named = metricsNamed(readFileSync(RULES, "utf8"));
    assert.ok(named.length >= 8, named.join(" "));
    assert.deepEqual(
      named.filter((name) => !exposed.has(name)),
      [],
    );
  });

  it("has a dashboard whose every panel queries metrics that /metrics exposes", () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    assert.ok(dashboard.panels.length >= 10);
    for (const panel of dashboard.panels) {
      assert.ok(panel.targets.length > 0, panel.title);
      const named = metricsNamed(panel.targets.map((target) => target.expr).join("\n"));
      assert.ok(named.length > 0, `${panel.title} queries a seintje metric`);
      assert.deepEqual(
        named.filter((name) => !exposed.has(name)),
        [],
        panel.title,
      );
    }
  });
});
