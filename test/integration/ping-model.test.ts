import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as fc from "fast-check";
import { Webhook } from "standardwebhooks";
import { DIALECT } from "../support/database.js";
import { call, cloudEvent, publishBatch, putFeed, subscribe } from "../support/http.js";
import { type Received, type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Wake-up pings against a model of the contract. fast-check generates runs: a few subscriptions to one feed, each
 * with its own filters, an `after` or none, and a script of answers its receiver gives (2xx, 500, 503, 429, then
 * 204), and batches of events published with or without waiting for the pings in between, some after a PATCH of
 * a subscription's filters or status (made while no ping is pending). When every subscription has settled, each
 * one's pings, in the order they arrived at a real receiver on loopback, must show what the contract promises:
 *
 * - every ping is signed with the subscription's secret (Standard Webhooks) and one id always carries one body;
 * - a ping announces only matching events beyond `acked`: `after` is the subscription's `acked` when it was sent
 *   (the `after` it was created with, or the head then; later the `head` of the last ping a 2xx answered), `head`
 *   a matching sequence beyond it, never lower than an earlier ping's, and `events` exactly the matching events in
 *   (after, head];
 * - its `url` reads those events;
 * - no ping reaches a disabled subscription; re-enabled, it is told of everything beyond `acked`;
 * - at the end `acked` is the newest matching sequence, so that together the answered pings announced every
 *   matching event, each once.
 *
 * On PostgreSQL two nodes on one database take the requests in turns, and both dispatchers send pings. Each has
 * one ping in flight at most, so that with more than one subscription pings wait for a free slot.
 *
 * The seed is fixed; `SEINTJE_PING_MODEL_SEED` and `SEINTJE_PING_MODEL_RUNS` run others.
 */

const SEED = Number(process.env.SEINTJE_PING_MODEL_SEED ?? 20261202);
const RUNS = Number(process.env.SEINTJE_PING_MODEL_RUNS ?? 40);

const TYPES = ["nl.example.zaak.aangemaakt", "nl.example.zaak.gesloten", "nl.example.document.toegevoegd"];
const SUBJECTS = [undefined, "zaak-1", "zaak-2"];
const PREFIXES = ["nl.example.zaak.", "nl.example.zaak.gesloten", "nl.example.document", "nl.other"];
const ANSWERS = [200, 204, 500, 503, 429];

interface PlannedSubscription extends Filters {
  /** `after` in the request that creates it, as a pick below the feed's head then; none: from the head. */
  start: number | null;
  /** The statuses its receiver answers its first pings with; 204 after them. */
  answers: number[];
}

/** What a filter matches: type prefixes (none: every type) and a subject. */
interface Filters {
  types: string[];
  subject: string | undefined;
}

/** A PATCH of one subscription: new filters, or a new status. */
interface PlannedChange {
  /** Which subscription, as a pick among them. */
  target: number;
  filters: Filters | null;
  status: "active" | "disabled" | null;
}

interface PlannedBatch {
  events: Array<{ type: string; subject: string | undefined }>;
  /** Whether to wait, before publishing it, until every subscription has acknowledged what came before. */
  settleFirst: boolean;
  /** A change made once they have (so that no ping is in flight), before publishing. */
  change: PlannedChange | null;
}

interface Stored {
  sequence: number;
  id: string;
  type: string;
  subject: string | undefined;
}

/**
 * A span of a subscription's life with one set of filters and one status, from its `from`-th ping on. Changes
 * are made only while no ping is pending, so each ping belongs to exactly one epoch.
 */
interface Epoch {
  from: number;
  filters: Filters;
  disabled: boolean;
  /** `acked` when it began: the `after` the subscription was created with (or the head then), later its acked. */
  acked: number;
}

interface Live {
  id: string;
  secret: string;
  epochs: Epoch[];
}

const matches = (filters: Filters, event: Stored) =>
  (filters.types.length === 0 || filters.types.some((prefix) => event.type.startsWith(prefix))) &&
  (filters.subject === undefined || event.subject === filters.subject);

/** The `acked` an epoch ends at once settled: the newest matching event beyond where it began, if any. */
function settledAt(epoch: Epoch, stored: Stored[]): number {
  if (epoch.disabled) return epoch.acked;
  const newest = stored.filter((event) => matches(epoch.filters, event)).at(-1)?.sequence ?? 0;
  return Math.max(epoch.acked, newest);
}

const types = fc.subarray(PREFIXES, { maxLength: 2 });

const subscriptionPlan: fc.Arbitrary<PlannedSubscription> = fc.record({
  types,
  subject: fc.constantFrom(...SUBJECTS),
  start: fc.option(fc.nat({ max: 100 })),
  answers: fc.array(fc.constantFrom(...ANSWERS), { maxLength: 4 }),
});

const batchPlan: fc.Arbitrary<PlannedBatch> = fc.record({
  events: fc.array(fc.record({ type: fc.constantFrom(...TYPES), subject: fc.constantFrom(...SUBJECTS) }), {
    minLength: 1,
    maxLength: 5,
  }),
  settleFirst: fc.boolean(),
  change: fc.option(
    fc.record({
      target: fc.nat({ max: 2 }),
      filters: fc.option(fc.record({ types, subject: fc.constantFrom(...SUBJECTS) })),
      status: fc.constantFrom<"active" | "disabled" | null>("active", "disabled", null),
    }),
    { freq: 3 },
  ),
});

describe("wake-up pings against a model of the contract", () => {
  /** On PostgreSQL two nodes on one database, each with its dispatcher; requests go to them in turns. */
  const nodes: TestService[] = [];
  let turn = 0;
  const base = () => nodes[turn++ % nodes.length]!.url;
  let receiver: Receiver;
  /** Per subscription id: its pings as they arrived, each with the status its receiver answered. */
  const received = new Map<string, Array<{ ping: Received; status: number }>>();
  /** Per subscription id: the statuses still to answer, in order. */
  const scripts = new Map<string, number[]>();
  /** Subscriptions disabled by a PATCH, and pings that reached one of them anyway. */
  const disabled = new Set<string>();
  const unwanted: string[] = [];

  before(async () => {
    const env = {
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      // Retries 50 ms apart (before jitter): a failed ping is sent again while the run waits.
      SEINTJE_PING_RETRY: "0.05",
      SEINTJE_PING_TIMEOUT: "2",
      // One ping in flight per node: a run's other subscriptions wait for the slot, and are claimed by the
      // transaction that records the outcome which freed it (Dispatcher.write).
      SEINTJE_PING_CONCURRENCY: "1",
    };
    const first = await startTestService(env);
    nodes.push(first);
    if (DIALECT === "postgres") nodes.push(await startTestService(env, { dir: first.dir }));
    receiver = await startReceiver();
    receiver.respond = (ping) => {
      const id = ping.event.data.subscription as string;
      if (disabled.has(id)) unwanted.push(`${id}: ${ping.body}`);
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
    for (const node of nodes.slice(1)) await node.stop();
    await nodes[0]?.stop();
  });

  /** The subscription's `acked`, as the API shows it. */
  async function ackedOf(id: string): Promise<number> {
    const reply = await call(`${base()}/v1/subscriptions/${id}`);
    assert.equal(reply.status, 200, reply.text);
    return Number(reply.body.acked);
  }

  /** Waits until every subscription has acknowledged the newest event it matches (a disabled one: nothing). */
  async function settled(live: Live[], stored: Stored[]): Promise<void> {
    for (const subscription of live) {
      const expected = settledAt(subscription.epochs.at(-1)!, stored);
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
    let acked = subscription.epochs[0]!.acked;
    let highest = acked;
    let epoch = subscription.epochs[0]!;
    const enter = (next: Epoch) => {
      assert.equal(acked, next.acked, `acked ${acked} where an epoch began at ${next.acked}`);
      epoch = next;
    };
    for (const [index, { ping, status }] of pings.entries()) {
      for (const next of subscription.epochs) if (next.from === index && next !== epoch) enter(next);
      const where = `ping ${index} of ${JSON.stringify(subscription.epochs)}`;
      assert.equal(epoch.disabled, false, `${where}: sent while disabled`);
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
        (event) => event.sequence > acked && event.sequence <= head && matches(epoch.filters, event),
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
    for (const next of subscription.epochs) if (next.from === pings.length && next !== epoch) enter(next);
    assert.equal(
      acked,
      settledAt(subscription.epochs.at(-1)!, stored),
      "the answered pings announced every event",
    );
  }

  it("announces every matching event beyond acked, once acknowledged, whatever the receiver answered", async (t) => {
    let runs = 0;
    let pings = 0;
    let changes = 0;
    const senders = new Map<string, number>();

    /** PATCHes a subscription while nothing is pending, and begins its next epoch. */
    async function change(live: Live[], stored: Stored[], planned: PlannedChange): Promise<void> {
      const subscription = live[planned.target % live.length]!;
      const last = subscription.epochs.at(-1)!;
      const filters = planned.filters ?? last.filters;
      const isDisabled = planned.status === null ? last.disabled : planned.status === "disabled";
      const body = {
        ...(planned.filters ? { types: filters.types, subject: filters.subject ?? null } : {}),
        ...(planned.status ? { status: planned.status } : {}),
      };
      // The PATCH wakes the dispatcher, so a ping under the new filters, or to the re-enabled subscription, may
      // arrive before its answer is read. Nothing is pending under the old ones (it has settled), so every ping
      // from now on belongs to the new epoch.
      const from = received.get(subscription.id)?.length ?? 0;
      if (!isDisabled) disabled.delete(subscription.id);
      const reply = await call(`${base()}/v1/subscriptions/${subscription.id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      assert.equal(reply.status, 200, `PATCH ${JSON.stringify(body)}: ${reply.text}`);
      assert.equal(reply.body.status, isDisabled ? "disabled" : "active");
      if (isDisabled) disabled.add(subscription.id);
      changes += 1;
      subscription.epochs.push({
        from,
        filters,
        disabled: isDisabled,
        acked: settledAt(last, stored),
      });
    }
    await fc.assert(
      fc.asyncProperty(
        fc.array(batchPlan, { maxLength: 2 }),
        fc.array(subscriptionPlan, { minLength: 1, maxLength: 3 }),
        fc.array(batchPlan, { minLength: 1, maxLength: 6 }),
        async (prelude, plans, batches) => {
          runs += 1;
          const feed = `pings-${runs}`;
          assert.equal((await putFeed(base(), feed)).status, 201);
          const stored: Stored[] = [];
          const publish = async (batch: PlannedBatch) => {
            const events = batch.events.map(({ type, subject }) =>
              cloudEvent(subject === undefined ? { type } : { type, subject }),
            );
            const reply = await publishBatch(base(), feed, events);
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
            const created = await subscribe(base(), body);
            assert.equal(created.status, 201, created.text);
            const subscription = created.body as { id: string; secret: string; acked: string };
            assert.equal(Number(subscription.acked), start ?? head);
            scripts.set(subscription.id, [...plan.answers]);
            const filters = { types: plan.types, subject: plan.subject };
            const acked = Number(subscription.acked);
            live.push({
              id: subscription.id,
              secret: subscription.secret,
              epochs: [{ from: 0, filters, disabled: false, acked }],
            });
          }
          for (const batch of batches) {
            if (batch.settleFirst || batch.change) await settled(live, stored);
            if (batch.change) await change(live, stored, batch.change);
            await publish(batch);
          }
          await settled(live, stored);
          for (const subscription of live) {
            await checkPings(feed, subscription, stored);
            for (const { ping } of received.get(subscription.id) ?? []) {
              // Each node writes its own public URL into the pings it sends.
              const sender = new URL(ping.event.data.url).origin;
              senders.set(sender, (senders.get(sender) ?? 0) + 1);
              pings += 1;
            }
            // Done with: its feed goes, and with it the subscription.
            scripts.delete(subscription.id);
            disabled.delete(subscription.id);
          }
          assert.equal((await call(`${base()}/v1/feeds/${feed}`, { method: "DELETE" })).status, 204);
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
    t.diagnostic(
      `${runs} runs, ${pings} pings (by sender: ${[...senders.values()].join(", ")}), ${changes} changes`,
    );
    assert.deepEqual(unwanted, [], "no ping reached a disabled subscription");
    const errors = nodes.flatMap((node) => node.logs).filter((line) => Number(line.level) >= 50);
    assert.deepEqual(errors, [], "no errors logged");
  });
});
