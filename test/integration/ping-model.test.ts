import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as fc from "fast-check";
import { Webhook } from "standardwebhooks";
import { call, cloudEvent, publishBatch, putFeed, subscribe } from "../support/http.js";
import { type Received, type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Wake-up pings against a model of the contract. fast-check generates runs: a few subscriptions to one feed, each
 * with its own filters and a script of answers its receiver gives (2xx, 500, 503, 429, then 204), and batches of
 * events published with or without waiting for the pings in between. When every subscription has settled, each
 * one's pings, in the order they arrived at a real receiver on loopback, must show what the contract promises:
 *
 * - every ping is signed with the subscription's secret (Standard Webhooks) and one id always carries one body;
 * - a ping announces only matching events beyond `acked`: `after` is the subscription's `acked` when it was sent
 *   (the `after` it was created with, or the head then; later the `head` of the last ping a 2xx answered), `head`
 *   a matching sequence beyond it, never lower than an earlier ping's, and `events` exactly the matching events in
 *   (after, head];
 * - its `url` reads those events;
 * - at the end `acked` is the newest matching sequence, so that together the answered pings announced every
 *   matching event, each once.
 *
 * The seed is fixed; `SEINTJE_PING_MODEL_SEED` and `SEINTJE_PING_MODEL_RUNS` run others.
 */

const SEED = Number(process.env.SEINTJE_PING_MODEL_SEED ?? 20261202);
const RUNS = Number(process.env.SEINTJE_PING_MODEL_RUNS ?? 40);

const TYPES = ["nl.example.zaak.aangemaakt", "nl.example.zaak.gesloten", "nl.example.document.toegevoegd"];
const SUBJECTS = [undefined, "zaak-1", "zaak-2"];
const PREFIXES = ["nl.example.zaak.", "nl.example.zaak.gesloten", "nl.example.document", "nl.other"];
const ANSWERS = [200, 204, 500, 503, 429];

interface PlannedSubscription {
  types: string[];
  subject: string | undefined;
  /** `after` in the request that creates it, as a pick below the feed's head then; none: from the head. */
  start: number | null;
  /** The statuses its receiver answers its first pings with; 204 after them. */
  answers: number[];
}

interface PlannedBatch {
  events: Array<{ type: string; subject: string | undefined }>;
  /** Whether to wait, before publishing it, until every subscription has acknowledged what came before. */
  settleFirst: boolean;
}

interface Stored {
  sequence: number;
  id: string;
  type: string;
  subject: string | undefined;
}

interface Live {
  id: string;
  secret: string;
  plan: PlannedSubscription;
  /** `acked` when it was created: its `after`, or else the feed's head then. */
  acked: number;
}

const matches = (plan: PlannedSubscription, event: Stored) =>
  (plan.types.length === 0 || plan.types.some((prefix) => event.type.startsWith(prefix))) &&
  (plan.subject === undefined || event.subject === plan.subject);

const subscriptionPlan = fc.record({
  types: fc.subarray(PREFIXES, { maxLength: 2 }),
  subject: fc.constantFrom(...SUBJECTS),
  start: fc.option(fc.nat({ max: 100 })),
  answers: fc.array(fc.constantFrom(...ANSWERS), { maxLength: 4 }),
});

const batchPlan = fc.record({
  events: fc.array(fc.record({ type: fc.constantFrom(...TYPES), subject: fc.constantFrom(...SUBJECTS) }), {
    minLength: 1,
    maxLength: 5,
  }),
  settleFirst: fc.boolean(),
});

describe("wake-up pings against a model of the contract", () => {
  let svc: TestService;
  let receiver: Receiver;
  /** Per subscription id: its pings as they arrived, each with the status its receiver answered. */
  const received = new Map<string, Array<{ ping: Received; status: number }>>();
  /** Per subscription id: the statuses still to answer, in order. */
  const scripts = new Map<string, number[]>();

  before(async () => {
    svc = await startTestService({
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      // Retries 50 ms apart (before jitter): a failed ping is sent again while the run waits.
      SEINTJE_PING_RETRY: "0.05",
      SEINTJE_PING_TIMEOUT: "2",
    });
    receiver = await startReceiver();
    receiver.respond = (ping) => {
      const id = ping.event.data.subscription as string;
      const status = scripts.get(id)?.shift() ?? 204;
      let pings = received.get(id);
      if (!pings) {
        pings = [];
        received.set(id, pings);
      }
      pings.push({ ping, status });
      // Without Retry-After (which waits at least 1 s), a failure is retried on the 50 ms schedule.
      return { status };
    };
  });
  after(async () => {
    await receiver.close();
    await svc.stop();
  });

  /** The subscription's `acked`, as the API shows it. */
  async function ackedOf(id: string): Promise<number> {
    const reply = await call(`${svc.url}/v1/subscriptions/${id}`);
    assert.equal(reply.status, 200, reply.text);
    return Number(reply.body.acked);
  }

  /** Waits until every subscription has acknowledged the newest event it matches. */
  async function settled(live: Live[], stored: Stored[]): Promise<void> {
    for (const subscription of live) {
      const newest = stored.filter((event) => matches(subscription.plan, event)).at(-1)?.sequence;
      const expected = Math.max(subscription.acked, newest ?? 0);
      await eventually(
        async () => (await ackedOf(subscription.id)) === expected,
        15_000,
        `subscription ${subscription.id} acknowledges ${expected}`,
      );
    }
  }

  /** Checks one subscription's pings against the model; `stored` is every event of the feed. */
  async function checkPings(feed: string, subscription: Live, stored: Stored[]): Promise<void> {
    const pings = received.get(subscription.id) ?? [];
    const bodies = new Map<string, string>();
    let acked = subscription.acked;
    let highest = acked;
    for (const [index, { ping, status }] of pings.entries()) {
      const where = `ping ${index} of ${JSON.stringify(subscription.plan)}`;
      const headers = ping.headers as Record<string, string>;
      assert.deepEqual(new Webhook(subscription.secret).verify(ping.body, headers), ping.event, where);
      const id = headers["webhook-id"]!;
      assert.equal(ping.event.id, id, where);
      assert.equal(bodies.get(id) ?? ping.body, ping.body, `${where}: one id, one body`);
      bodies.set(id, ping.body);
      const data = ping.event.data;
      assert.equal(data.feed, feed, where);
      assert.equal(Number(data.after), acked, `${where}: after is acked`);
      const head = Number(data.head);
      assert.ok(head > acked, `${where}: head ${head} beyond acked ${acked}`);
      assert.ok(head >= highest, `${where}: head ${head} below an earlier ping's ${highest}`);
      highest = head;
      const announced = stored.filter(
        (event) => event.sequence > acked && event.sequence <= head && matches(subscription.plan, event),
      );
      assert.equal(announced.at(-1)?.sequence, head, `${where}: head is a matching event`);
      assert.deepEqual(
        data.events.map((event: Record<string, string | null>) => [
          Number(event.sequence),
          event.id,
          event.type,
          event.subject ?? undefined,
        ]),
        announced.map((event) => [event.sequence, event.id, event.type, event.subject]),
        where,
      );
      assert.equal(data.truncated, false, where);
      const page = await call<any>(data.url);
      assert.equal(page.status, 200, `${where}: ${data.url}`);
      assert.deepEqual(
        page.body.events
          .slice(0, announced.length)
          .map((event: { sequence: string }) => Number(event.sequence)),
        announced.map((event) => event.sequence),
        `${where}: its url reads what it announced`,
      );
      if (status < 300) acked = head;
    }
    const newest = stored.filter((event) => matches(subscription.plan, event)).at(-1)?.sequence;
    assert.equal(
      acked,
      Math.max(subscription.acked, newest ?? 0),
      "the answered pings announced every event",
    );
  }

  it("announces every matching event beyond acked, once acknowledged, whatever the receiver answered", async (t) => {
    let runs = 0;
    let pings = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(batchPlan, { maxLength: 2 }),
        fc.array(subscriptionPlan, { minLength: 1, maxLength: 3 }),
        fc.array(batchPlan, { minLength: 1, maxLength: 6 }),
        async (prelude, plans, batches) => {
          runs += 1;
          const feed = `pings-${runs}`;
          assert.equal((await putFeed(svc.url, feed)).status, 201);
          const stored: Stored[] = [];
          const publish = async (batch: PlannedBatch) => {
            const events = batch.events.map(({ type, subject }) =>
              cloudEvent(subject === undefined ? { type } : { type, subject }),
            );
            const reply = await publishBatch(svc.url, feed, events);
            assert.equal(reply.status, 201, reply.text);
            reply.body.events.forEach((event: { sequence: string }, index: number) => {
              const { type, subject } = batch.events[index]!;
              stored.push({ sequence: Number(event.sequence), id: String(events[index]!.id), type, subject });
            });
          };
          // Events before the subscriptions: a subscription is told of what comes after its `after`, or else after it.
          for (const batch of prelude) await publish(batch);
          const live: Live[] = [];
          for (const plan of plans) {
            const head = stored.at(-1)?.sequence ?? 0;
            const start = plan.start === null ? undefined : plan.start % (head + 1);
            const body = {
              feed,
              url: receiver.url,
              types: plan.types,
              ...(plan.subject ? { subject: plan.subject } : {}),
              ...(start === undefined ? {} : { after: String(start) }),
            };
            const created = await subscribe(svc.url, body);
            assert.equal(created.status, 201, created.text);
            const subscription = created.body as { id: string; secret: string; acked: string };
            assert.equal(Number(subscription.acked), start ?? head);
            scripts.set(subscription.id, [...plan.answers]);
            live.push({
              id: subscription.id,
              secret: subscription.secret,
              plan,
              acked: Number(subscription.acked),
            });
          }
          for (const batch of batches) {
            if (batch.settleFirst) await settled(live, stored);
            await publish(batch);
          }
          await settled(live, stored);
          for (const subscription of live) {
            await checkPings(feed, subscription, stored);
            pings += received.get(subscription.id)?.length ?? 0;
            // Done with: its feed goes, and with it the subscription.
            scripts.delete(subscription.id);
          }
          assert.equal((await call(`${svc.url}/v1/feeds/${feed}`, { method: "DELETE" })).status, 204);
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
    t.diagnostic(`${runs} runs, ${pings} pings`);
    const errors = svc.logs.filter((line) => Number(line.level) >= 50);
    assert.deepEqual(errors, [], "no errors logged");
  });
});
