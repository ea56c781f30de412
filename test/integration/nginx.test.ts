import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort } from "../../bench/harness.js";
import { nginxConfig } from "../../bench/nginx.js";
import { call, cloudEvent, publishBatch, putFeed } from "../support/http.js";
import { scrape } from "../support/metrics.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { openStream } from "../support/sse.js";
import { eventually } from "../support/wait.js";

/**
 * The reverse-proxy configuration shipped in deploy/nginx, included as written into a real nginx (Debian's) in
 * front of seintje on loopback: complete pages are served from its cache, a herd of long-polls at the head of a
 * public feed costs seintje a handful of requests, and streams pass through unbuffered. The origin's own
 * /metrics counts what reached it.
 */

const NGINX = "/usr/sbin/nginx";
const DEPLOY = new URL("../../deploy/nginx/", import.meta.url).pathname;
const ANONYMOUS = { authorization: "" };

/** Requests for the events routes that reached seintje. */
async function originPageRequests(base: string): Promise<number> {
  return (await scrape(base))
    .filter(
      (sample) =>
        sample.name === "seintje_http_requests_total" &&
        sample.labels.method === "GET" &&
        sample.labels.route?.startsWith("/v1/feeds/:feed/events"),
    )
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** An anonymous GET through nginx on its own connection pool; resolves with status and body. */
function get(
  url: string,
  agent: Agent,
  onSent?: () => void,
): Promise<{ status: number; body: string; cache: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode!, body, cache: String(res.headers["x-cache-status"] ?? "") }),
      );
    });
    req.on("error", reject);
    if (onSent) req.on("finish", onSent);
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url}`)));
    req.end();
  });
}

describe("the shipped nginx configuration in front of seintje", () => {
  let svc: TestService;
  let nginx: ChildProcess;
  let proxy: string;
  let dir: string;
  const errors: string[] = [];

  before(async () => {
    assert.ok(existsSync(NGINX), "this test runs Debian's nginx: apt-get install nginx-light");
    svc = await startTestService();
    dir = mkdtempSync(join(tmpdir(), "seintje-nginx-"));
    // nginx's workers run as another user (www-data) when it is started as root, and write the cache in here.
    chmodSync(dir, 0o755);
    const port = await freePort();
    const origin = new URL(svc.url);
    writeFileSync(
      join(dir, "nginx.conf"),
      nginxConfig(
        dir,
        `  include ${DEPLOY}seintje-http.conf;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=seintje:10m max_size=1g inactive=1h;
  upstream seintje { server ${origin.host}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    include ${DEPLOY}seintje-locations.conf;
  }`,
      ),
    );
    nginx = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: ["ignore", "pipe", "pipe"] });
    nginx.stderr!.on("data", (chunk: Buffer) => errors.push(chunk.toString()));
    proxy = `http://127.0.0.1:${port}`;
    await eventually(
      async () => (await fetch(`${proxy}/healthz`).catch(() => undefined))?.ok,
      15_000,
      `nginx to answer (${errors.join("")})`,
    );
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((resolve) => nginx.once("exit", resolve));
      nginx.kill("SIGQUIT");
      await exited;
    }
    await svc?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("serves 1,000 requests for 10 complete pages of a public feed with at most 10 requests to seintje", async () => {
    await putFeed(svc.url, "cached", { public: true });
    for (let batch = 0; batch < 2; batch += 1) {
      await publishBatch(
        svc.url,
        "cached",
        Array.from({ length: 500 }, () => cloudEvent()),
      );
    }
    const pages = Array.from(
      { length: 10 },
      (_, index) => `/v1/feeds/cached/events?after=${index * 50 + 1}&limit=50`,
    );
    const expected = await Promise.all(pages.map(async (path) => (await call(`${svc.url}${path}`)).text));
    const before = await originPageRequests(svc.url);
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 1000 }, (_, index) => get(`${proxy}${pages[index % 10]}`, agent)),
      );
      for (const [index, answer] of answers.entries()) {
        assert.equal(answer.status, 200);
        assert.equal(answer.body, expected[index % 10], "the cached page is the page");
      }
      assert.ok(answers.filter((answer) => answer.cache === "HIT").length >= 990);
    } finally {
      agent.destroy();
    }
    const reached = (await originPageRequests(svc.url)) - before;
    if (process.env.SEINTJE_TEST_SHOW) console.log(`pages: ${reached} requests reached seintje`);
    assert.ok(reached <= 10, `${reached} requests reached seintje`);
    assert.ok(reached >= 1, "the pages came from seintje once");
  });

  it("keeps a private feed's pages and any request with a token out of the cache", async () => {
    await putFeed(svc.url, "private-cached");
    await publishBatch(svc.url, "private-cached", [cloudEvent(), cloudEvent(), cloudEvent()]);
    const path = "/v1/feeds/private-cached/events?after=1&limit=1";
    const reader = { authorization: `Bearer ${await tokenFor(svc.dir, "read")}` };
    const before = await originPageRequests(svc.url);
    for (let index = 0; index < 3; index += 1) {
      const refused = await call(`${proxy}${path}`, { headers: ANONYMOUS });
      assert.equal(refused.status, 401, "no token, private feed: refused, and the refusal is not kept");
      const read = await call(`${proxy}${path}`, { headers: reader });
      assert.equal(read.status, 200);
      assert.equal(read.headers.get("cache-control"), "private, max-age=31536000, immutable");
      assert.notEqual(read.headers.get("x-cache-status"), "HIT");
    }
    const publicToo = { authorization: `Bearer ${await tokenFor(svc.dir, "read")}` };
    for (let index = 0; index < 2; index += 1) {
      const read = await call(`${proxy}/v1/feeds/cached/events?after=1&limit=50`, { headers: publicToo });
      assert.equal(read.headers.get("x-cache-status"), "BYPASS", "a request with a token goes to seintje");
    }
    assert.equal((await originPageRequests(svc.url)) - before, 8, "every one reached seintje");
  });

  it("answers 200 long-polls at the head of a public feed, woken by one publish, with a handful of requests to seintje", async () => {
    await putFeed(svc.url, "herd", { public: true });
    await publishBatch(svc.url, "herd", [cloudEvent()]);
    const before = await originPageRequests(svc.url);
    const agent = new Agent({ keepAlive: true, maxSockets: 200 });
    let sent = 0;
    try {
      const waiting = Array.from({ length: 200 }, () =>
        get(`${proxy}/v1/feeds/herd/events?after=1&wait=20`, agent, () => {
          sent += 1;
        }),
      );
      await eventually(() => sent === 200, 10_000, "the 200 long-polls to be sent");
      await eventually(
        async () =>
          (await call(`${svc.url}/v1/feeds/herd/events?after=1`)).status === 200 &&
          (await scrape(svc.url)).some(
            (sample) => sample.name === "seintje_longpolls_waiting" && sample.value >= 1,
          ),
        10_000,
        "a long-poll to wait at seintje",
      );
      const event = cloudEvent({ id: "wakes-the-herd" });
      assert.equal((await publishBatch(svc.url, "herd", [event])).status, 201);
      const answers = await Promise.all(waiting);
      for (const answer of answers) {
        assert.equal(answer.status, 200);
        const page = JSON.parse(answer.body);
        assert.deepEqual(
          page.events.map((stored: { id: string }) => stored.id),
          ["wakes-the-herd"],
        );
      }
    } finally {
      agent.destroy();
    }
    // The reads this test made itself, directly, are counted too: one to see that a long-poll waits, per try.
    const reached = (await originPageRequests(svc.url)) - before;
    if (process.env.SEINTJE_TEST_SHOW) console.log(`herd: ${reached} requests reached seintje`);
    assert.ok(reached <= 10, `${reached} requests reached seintje for 200 long-polls`);
  });

  it("passes a stream through unbuffered", async () => {
    await putFeed(svc.url, "streamed", { public: true });
    const stream = await openStream(`${proxy}/v1/feeds/streamed/events?after=0`, ANONYMOUS);
    try {
      assert.equal(stream.status, 200);
      assert.match(stream.headers.get("content-type") ?? "", /^text\/event-stream/);
      assert.notEqual(stream.headers.get("x-cache-status"), "HIT");
      await stream.waitFor((text) => text.startsWith("retry:"), 5000);
      for (const id of ["first", "second"]) {
        await publishBatch(svc.url, "streamed", [cloudEvent({ id })]);
        // One small event, far below any buffer: it arrives only if nginx passes every write on at once.
        await stream.waitFor((text) => text.includes(`"id":"${id}"`), 3000);
      }
    } finally {
      stream.close();
    }
  });
});
