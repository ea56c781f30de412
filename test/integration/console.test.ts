import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchChromium } from "../support/chromium.js";
import { call, cloudEvent, publish, publishBatch, putFeed, subscribe } from "../support/http.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * The web console in Debian's Chromium, driven by playwright-core, against a real service: logging in (by keyboard),
 * the live tail, failing subscriptions first and their repair, what a subscriber token sees, a wrong token, both
 * languages, both widths, no serious accessibility violation (axe-core) and no Content-Security-Policy violation.
 * Screenshots of the main views go to test-output/console/.
 */

const SHOTS = new URL("../../test-output/console/", import.meta.url).pathname;
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

interface Watched {
  page: Page;
  /** Content-Security-Policy violations the page reported, and console errors. */
  violations: string[];
}

describe("the web console", () => {
  let svc: TestService;
  let receiver: Receiver;
  let browser: Browser;
  let admin: string;
  const contexts: BrowserContext[] = [];

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    svc = await startTestService({
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      // A failure is retried after 0.2 s, then after an hour: a failing subscription stays failing.
      SEINTJE_PING_RETRY: "0.2,3600",
    });
    receiver = await startReceiver();
    admin = await tokenFor(svc.dir, "admin", { subject: "operator" });
    browser = await launchChromium();
  });

  after(async () => {
    for (const context of contexts) await context.close();
    await browser?.close();
    await svc?.stop();
    await receiver?.close();
  });

  async function openConsole(options: { width?: number; locale?: string } = {}): Promise<Watched> {
    const context = await browser.newContext({
      viewport: { width: options.width ?? 1280, height: 900 },
      locale: options.locale ?? "en-GB",
    });
    contexts.push(context);
    const page = await context.newPage();
    const violations: string[] = [];
    // Installed by the browser itself, before the page's own scripts, and not subject to its CSP.
    await page.addInitScript(`
      window.cspViolations = [];
      document.addEventListener("securitypolicyviolation", (event) => {
        window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
      });
    `);
    page.on("console", (message) => {
      if (message.type() === "error" && !/Failed to load resource/.test(message.text()))
        violations.push(message.text());
    });
    page.on("pageerror", (error) => violations.push(error.message));
    const response = await page.goto(`${svc.url}/console/`);
    assert.equal(response?.status(), 200);
    return { page, violations };
  }

  /** Logs in by keyboard alone: the token into the field, Tab to the button, Enter. */
  async function logIn(page: Page, token: string) {
    await page.locator("#token").focus();
    await page.keyboard.insertText(token);
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
  }

  async function noViolations(watched: Watched) {
    const reported = (await watched.page.evaluate("window.cspViolations ?? []")) as string[];
    assert.deepEqual([...reported, ...watched.violations], [], "no CSP violation, no script error");
  }

  /** axe-core on the page as it is: no serious or critical violation. */
  async function accessible(page: Page, view: string) {
    await page.evaluate(AXE);
    const results = (await page.evaluate("axe.run().then((run) => run.violations)")) as Array<{
      id: string;
      impact: string;
      nodes: unknown[];
    }>;
    const bad = results.filter(
      (violation) => violation.impact === "serious" || violation.impact === "critical",
    );
    assert.deepEqual(
      bad.map((violation) => `${violation.id} (${violation.impact}, ${violation.nodes.length})`),
      [],
      `axe on ${view}`,
    );
  }

  async function shot(page: Page, name: string) {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }

  it("is served without a token, with a strict Content-Security-Policy", async () => {
    const reply = await fetch(`${svc.url}/console/`);
    assert.equal(reply.status, 200);
    const csp = reply.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(await reply.text(), /<script type="module" src="app.js"><\/script>/);
    const script = await fetch(`${svc.url}/console/app.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get("content-type") ?? "", /javascript/);
    let compressed = 0;
    for (const file of ["", "app.js", "style.css"]) {
      compressed += gzipSync(
        Buffer.from(await (await fetch(`${svc.url}/console/${file}`)).arrayBuffer()),
      ).length;
    }
    assert.ok(compressed < 150 * 1024, `the console weighs ${compressed} bytes compressed`);
    const redirected = await fetch(`${svc.url}/console`, { redirect: "manual" });
    assert.equal(redirected.status, 308);
    assert.equal((await fetch(`${svc.url}/console/missing.js`)).status, 401, "anything else needs a token");
  });

  it("says plainly that a wrong token is not accepted", async () => {
    const watched = await openConsole();
    await accessible(watched.page, "login");
    await shot(watched.page, "login-1280");
    await logIn(watched.page, "not-a-token");
    const alert = watched.page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /This token is not accepted/);
    await noViolations(watched);
  });

  it("logs in, creates a feed by keyboard and shows a published event in the live tail", async () => {
    const watched = await openConsole();
    const { page } = watched;
    await logIn(page, admin);
    await page.getByRole("heading", { name: "Feeds", level: 1 }).waitFor();
    await page.locator("#new-feed").focus();
    await page.keyboard.insertText("con-tail");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "con-tail", level: 1 }).waitFor();
    await publishBatch(svc.url, "con-tail", [cloudEvent({ id: "shown-in-table" })]);
    await page.getByRole("button", { name: "Start live tail" }).click();
    await eventually(
      () =>
        page
          .locator("#tail")
          .innerText()
          .then((text) => text.includes("Waiting")),
      5000,
    );
    // The stream opened at the head it saw; only what comes after appears.
    await publish(
      svc.url,
      "con-tail",
      cloudEvent({ id: "live-event-4711", type: "nl.example.console.live" }),
    );
    await page.locator("#tail li", { hasText: "live-event-4711" }).waitFor({ timeout: 10_000 });
    assert.doesNotMatch(
      await page.locator("#tail").innerText(),
      /shown-in-table/,
      "only what came after the start",
    );
    await accessible(page, "feed");
    await shot(page, "feed-1280");
    await page.getByRole("button", { name: "Stop live tail" }).click();
    await page.getByRole("link", { name: "Feeds" }).click();
    await page.getByRole("link", { name: "con-tail" }).waitFor();
    await accessible(page, "feeds");
    await shot(page, "feeds-1280");
    await noViolations(watched);
  });

  it("lists failing subscriptions first, and repairs one by retry and one by re-enabling, acked catching up", async () => {
    await putFeed(svc.url, "con-subs");
    const healthy = (await subscribe(svc.url, { feed: "con-subs", url: `${receiver.url}?healthy` })).body;
    const failing = (await subscribe(svc.url, { feed: "con-subs", url: `${receiver.url}?failing` })).body;
    const gone = (await subscribe(svc.url, { feed: "con-subs", url: `${receiver.url}?gone` })).body;
    receiver.respond = (ping) =>
      ping.event.data.subscription === failing.id
        ? { status: 500 }
        : ping.event.data.subscription === gone.id
          ? { status: 410 }
          : { status: 204 };
    await publishBatch(svc.url, "con-subs", [cloudEvent(), cloudEvent()]);
    const statusOf = async (id: string) => (await call(`${svc.url}/v1/subscriptions/${id}`)).body;
    await eventually(async () => (await statusOf(failing.id)).failingSince !== null, 10_000, "failing");
    await eventually(async () => (await statusOf(gone.id)).status === "disabled", 10_000, "disabled");
    await eventually(async () => (await statusOf(healthy.id)).acked === "2", 10_000, "healthy acked");

    const watched = await openConsole();
    const { page } = watched;
    await logIn(page, admin);
    await page.getByRole("link", { name: "Subscriptions" }).click();
    await page.getByRole("heading", { name: "Subscriptions", level: 1 }).waitFor();
    const ids = await page
      .locator("tbody tr")
      .evaluateAll((rows) => rows.map((row) => row.getAttribute("data-id")));
    assert.equal(ids[0], failing.id, "the failing one first");
    assert.equal(ids[1], gone.id, "then the disabled one");
    assert.ok(ids.includes(healthy.id));
    await accessible(page, "subscriptions");
    await shot(page, "subscriptions-1280");

    receiver.respond = () => ({ status: 204 });
    await page.goto(`${svc.url}/console/#/subscriptions/${gone.id}`);
    await page.getByRole("button", { name: "Re-enable" }).click();
    await eventually(
      async () => {
        await page.reload();
        await page.locator("#acked").waitFor();
        return (await page.locator("#acked").innerText()) === "2";
      },
      10_000,
      "acked to catch up after re-enabling",
    );
    assert.equal(await page.locator("#status").getAttribute("data-status"), "active");

    await page.goto(`${svc.url}/console/#/subscriptions/${failing.id}`);
    await page.getByRole("button", { name: "Retry now" }).click();
    await page.getByRole("status").filter({ hasText: "Attempt: 204" }).waitFor();
    await eventually(
      async () => (await page.locator("#acked").innerText()) === "2",
      5000,
      "acked after the retry",
    );
    await accessible(page, "subscription");
    await shot(page, "subscription-1280");
    await noViolations(watched);
  });

  it("shows a subscriber only its own subscriptions and no admin actions, and explains a refused callback", async () => {
    await putFeed(svc.url, "con-own");
    const mine = await tokenFor(svc.dir, "subscribe:con-own read:con-own", { subject: "gemeente-x" });
    const own = await subscribe(
      svc.url,
      { feed: "con-own", url: `${receiver.url}?own` },
      { authorization: `Bearer ${mine}` },
    );
    assert.equal(own.status, 201, own.text);
    await subscribe(svc.url, { feed: "con-own", url: `${receiver.url}?operator` });

    const watched = await openConsole({ width: 390 });
    const { page } = watched;
    await logIn(page, mine);
    await page.getByRole("heading", { name: "Feeds", level: 1 }).waitFor();
    assert.equal(await page.locator("#new-feed").count(), 0, "no admin action");
    await shot(page, "feeds-390");
    // By keyboard: Tab from the top of the page to the Subscriptions link, Enter.
    await page.locator(".skip").focus();
    for (let press = 0; press < 6; press += 1) {
      await page.keyboard.press("Tab");
      if ((await page.evaluate("document.activeElement?.textContent")) === "Subscriptions") break;
    }
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Subscriptions", level: 1 }).waitFor();
    const ids = await page
      .locator("tbody tr")
      .evaluateAll((rows) => rows.map((row) => row.getAttribute("data-id")));
    assert.deepEqual(ids, [own.body.id]);
    await shot(page, "subscriptions-390");

    await page.getByRole("link", { name: "New subscription" }).click();
    await page.locator("#feed").fill("con-own");
    await page.locator("#url").fill("http://10.0.0.1/hook");
    await page.getByRole("button", { name: "Create" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /The callback was refused/);
    await accessible(page, "new subscription");
    await shot(page, "new-subscription-390");
    await noViolations(watched);
  });

  it("speaks Dutch to a Dutch browser, and English after the switch", async () => {
    const watched = await openConsole({ locale: "nl-NL" });
    const { page } = watched;
    await page.getByRole("heading", { name: "Inloggen", level: 1 }).waitFor();
    assert.equal(await page.locator("html").getAttribute("lang"), "nl");
    await logIn(page, admin);
    await page.getByRole("link", { name: "Abonnementen" }).waitFor();
    await page.getByRole("button", { name: "English" }).click();
    await page.getByRole("link", { name: "Subscriptions" }).waitFor();
    assert.equal(await page.locator("html").getAttribute("lang"), "en");
    await noViolations(watched);
  });
});
