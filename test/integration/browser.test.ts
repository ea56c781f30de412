import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium } from "../support/chromium.js";
import { cloudEvent, publish, putFeed } from "../support/http.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { pause } from "../support/wait.js";

/**
 * A page in headless Chromium (Debian's package) follows a feed with the browser's own EventSource, across a
 * connection the server drops. `.ci/run` installs chromium when it is missing; this test never skips.
 */

describe("a browser's EventSource", () => {
  let svc: TestService;
  let page: Server;
  let pageUrl: string;
  let browser: Browser;

  before(async () => {
    page = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end("<!doctype html><title>seintje follower</title><p>following</p>");
    });
    await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
    pageUrl = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
    svc = await startTestService({ SEINTJE_CORS_ORIGINS: pageUrl, SEINTJE_STREAM_RETRY: "200" });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await svc?.stop();
    page?.closeAllConnections();
    page?.close();
  });

  it("receives events and resumes after the server drops the connection", async () => {
    await putFeed(svc.url, "browser");
    for (let i = 0; i < 3; i += 1) await publish(svc.url, "browser", cloudEvent({ id: `before-${i}` }));
    const token = await tokenFor(svc.dir, "read:browser");

    const tab = await browser.newPage();
    await tab.goto(pageUrl);
    await tab.evaluate(
      ({ url }) => {
        const state = { ids: [] as string[], eventIds: [] as string[], opens: 0 };
        (globalThis as unknown as { follower: typeof state }).follower = state;
        const source = new EventSource(url);
        source.onopen = () => {
          state.opens += 1;
        };
        source.onmessage = (message) => {
          state.ids.push(message.lastEventId);
          state.eventIds.push(JSON.parse(message.data).id);
        };
      },
      { url: `${svc.url}/v1/feeds/browser/events?access_token=${token}` },
    );
    const follower = () =>
      tab.evaluate(
        () =>
          (globalThis as unknown as { follower: { ids: string[]; eventIds: string[]; opens: number } })
            .follower,
      );
    const waitFor = async (count: number) => {
      for (let i = 0; i < 300 && (await follower()).ids.length < count; i += 1) await pause(50);
      return follower();
    };

    assert.equal((await waitFor(3)).ids.length, 3);
    await publish(svc.url, "browser", cloudEvent({ id: "live" }));
    assert.equal((await waitFor(4)).ids.length, 4);

    svc.service.server.closeAllConnections();
    await pause(100);
    for (let i = 0; i < 3; i += 1) await publish(svc.url, "browser", cloudEvent({ id: `after-${i}` }));
    const state = await waitFor(7);
    assert.ok(state.opens >= 2, "the browser reconnected");
    assert.deepEqual(state.ids, ["1", "2", "3", "4", "5", "6", "7"]);
    assert.deepEqual(state.eventIds, [
      "before-0",
      "before-1",
      "before-2",
      "live",
      "after-0",
      "after-1",
      "after-2",
    ]);
  });
});
