import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Webhook } from "standardwebhooks";
import { verifyPing } from "../../src/client/ping.js";
import { AddressGuard, AddressRefused } from "../../src/webhooks/guard.js";
import { uuidv7 } from "../../src/webhooks/ids.js";
import { ed25519Signer, feedUrl, pingBody, pingHeaders } from "../../src/webhooks/ping.js";
import { generateSecret, generateSigningKeyPair, SecretBox } from "../../src/webhooks/secrets.js";
import { tempDir } from "../support/service.js";

const v1 = (secret: string) => ({ scheme: "v1" as const, secret });

describe("the address guard", () => {
  const guard = new AddressGuard();

  it("allows public unicast addresses", () => {
    for (const address of ["93.184.215.14", "8.8.8.8", "2001:4860:4860::8888", "[2606:4700::1111]"]) {
      assert.ok(guard.allows(address), address);
    }
  });

  it("refuses internal addresses in IPv4 and IPv6, mapped or not", () => {
    for (const address of [
      "127.0.0.1",
      "127.1.2.3",
      "10.0.0.1",
      "172.16.5.4",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "192.0.2.1",
      "::1",
      "[::1]",
      "::",
      "fe80::1",
      "fc00::1",
      "fd12:3456::1",
      "ff02::1",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "::ffff:169.254.169.254",
      "2002:7f00:1::1",
      "64:ff9b::7f00:1",
      "64:ff9b:1::7f00:1",
      "::ffff:0:7f00:1",
      // IPv4-compatible (RFC 4291 §2.5.5.1), as URL parsers write [::127.0.0.1] and [::10.0.0.1]
      "::7f00:1",
      "[::7f00:1]",
      "::a00:1",
      "::a9fe:a9fe",
      "not an address",
    ]) {
      assert.equal(guard.allows(address), false, address);
    }
  });

  it("lets the allow-list open addresses and ranges, matching mapped IPv6 by its IPv4 form", () => {
    const open = new AddressGuard(["127.0.0.1", "10.1.0.0/16", "::1", "fd00::/8"]);
    assert.ok(open.allows("127.0.0.1"));
    assert.ok(open.allows("::ffff:127.0.0.1"));
    assert.ok(open.allows("10.1.200.3"));
    assert.ok(open.allows("::ffff:10.1.0.9"));
    assert.ok(open.allows("::7f00:1"), "IPv4-compatible, by its IPv4 form");
    assert.ok(guard.allows("::808:808"), "a public IPv4 address in IPv4-compatible form is public");
    assert.ok(open.allows("::1"));
    assert.ok(open.allows("fd12::1"));
    assert.equal(open.allows("127.0.0.2"), false);
    assert.equal(open.allows("10.2.0.1"), false);
    assert.equal(open.allows("169.254.169.254"), false);
  });

  it("checks every address a host name resolves to", async () => {
    await assert.rejects(guard.checkHost("localhost"), AddressRefused);
    await assert.rejects(guard.checkHost("[::ffff:127.0.0.1]"), AddressRefused);
    await new AddressGuard(["127.0.0.1", "::1"]).checkHost("localhost");
  });

  it("filters what a connection may look up", async () => {
    const lookup = (g: AddressGuard, host: string) =>
      new Promise<string | Error>((resolve) =>
        g.lookup(host, { family: 4 }, (error, address) => resolve(error ?? (address as string))),
      );
    assert.ok((await lookup(guard, "localhost")) instanceof AddressRefused);
    assert.equal(await lookup(new AddressGuard(["127.0.0.1"]), "localhost"), "127.0.0.1");
  });
});

describe("pings", () => {
  const secret = generateSecret();

  it("have secrets that Standard Webhooks libraries read: whsec_ and 32 random bytes", () => {
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.equal(Buffer.from(secret.slice(6), "base64").length, 32);
    assert.notEqual(generateSecret(), secret);
  });

  it("are signed so that the reference library verifies them, with every current secret", () => {
    const body = pingBody("ping-1", "urn:seintje:test", new Date(), "https://seintje.example", {
      feed: "zaken",
      subscription: "s-1",
      after: 4,
      head: 9,
      types: [],
      subject: null,
      events: [],
      truncated: false,
    });
    const previous = generateSecret();
    const headers = pingHeaders("ping-1", body, [v1(secret), v1(previous)], new Date(), "seintje.example");
    assert.equal(headers["webhook-id"], "ping-1");
    assert.equal(headers["webhook-signature"]!.split(" ").length, 2);
    assert.deepEqual(new Webhook(secret).verify(body, headers), JSON.parse(body));
    assert.deepEqual(new Webhook(previous).verify(body, headers), JSON.parse(body));
    assert.throws(() => new Webhook(generateSecret()).verify(body, headers));
    assert.throws(() => new Webhook(secret).verify(body.replace('"9"', '"10"'), headers));
  });

  it("are signed alike by a v1a key opened with its public key or without, and verify with that key only", () => {
    const body = pingBody("ping-2", "urn:seintje:test", new Date(), "https://seintje.example", {
      feed: "zaken",
      subscription: "s-2",
      after: 0,
      head: 1,
      types: [],
      subject: null,
      events: [],
      truncated: false,
    });
    const pair = generateSigningKeyPair();
    const other = generateSigningKeyPair();
    const now = new Date();
    // Opened as a JWK (with the public key) and from its PKCS #8 form (without): Ed25519 signs deterministically.
    const fast = pingHeaders("ping-2", body, [ed25519Signer(pair.privateKey, pair.publicKey)], now, "x");
    const slow = pingHeaders("ping-2", body, [ed25519Signer(pair.privateKey)], now, "x");
    assert.match(fast["webhook-signature"]!, /^v1a,[A-Za-z0-9+/]{86}==$/);
    assert.equal(fast["webhook-signature"], slow["webhook-signature"]);
    assert.equal(verifyPing(fast, body, pair.publicKey).id, "ping-2");
    assert.throws(() => verifyPing(fast, body, other.publicKey), /no v1a signature/);
  });

  it("hold identifiers only, and the feed URL with the cursor and filters", () => {
    const event = JSON.parse(
      pingBody("p", "urn:s", new Date("2026-11-23T12:00:00Z"), "https://s.example", {
        feed: "brk",
        subscription: "s-1",
        after: 4,
        head: 5,
        types: ["nl.kadaster.", "nl.x"],
        subject: "perceel 1",
        events: [{ sequence: 5, id: "e5", type: "nl.kadaster.overdracht", subject: "perceel 1" }],
        truncated: false,
      }),
    );
    assert.deepEqual(event, {
      specversion: "1.0",
      id: "p",
      source: "urn:s",
      type: "nl.seintje.feed.updated",
      time: "2026-11-23T12:00:00.000Z",
      subject: "brk",
      datacontenttype: "application/json",
      dataschema: "https://s.example/v1/schemas/feed-updated/v1.json",
      data: {
        feed: "brk",
        subscription: "s-1",
        after: "4",
        head: "5",
        url: "https://s.example/v1/feeds/brk/events?after=4&type=nl.kadaster.&type=nl.x&subject=perceel+1",
        events: [{ sequence: "5", id: "e5", type: "nl.kadaster.overdracht", subject: "perceel 1" }],
        truncated: false,
      },
    });
    assert.equal(
      feedUrl("https://s.example", "a", 0, [], null),
      "https://s.example/v1/feeds/a/events?after=0",
    );
  });
});

describe("sealed secrets", () => {
  it("open with the same key and subscription only", async () => {
    const dir = tempDir();
    const box = await SecretBox.open(dir);
    const sealed = box.seal("whsec_abc", "sub-1");
    assert.doesNotMatch(sealed, /abc/);
    assert.equal(box.open(sealed, "sub-1"), "whsec_abc");
    assert.equal(
      (await SecretBox.open(dir)).open(sealed, "sub-1"),
      "whsec_abc",
      "the key persists in the data dir",
    );
    assert.throws(() => box.open(sealed, "sub-2"));
    const other = await SecretBox.open(tempDir());
    assert.throws(() => other.open(sealed, "sub-1"));
  });
});

describe("subscription ids", () => {
  it("are UUIDv7 and sort by creation time", () => {
    const first = uuidv7(1_700_000_000_000);
    const second = uuidv7(1_700_000_000_001);
    assert.match(first, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(first < second);
  });
});

describe("Standard Webhooks signing, by the specification's known answer", () => {
  // The reference test vector of the Standard Webhooks libraries: secret, id, timestamp, body and signature.
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
  const timestamp = new Date(1614265330 * 1000);
  const body = '{"test": 2432232314}';
  const expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

  it("signs a ping exactly so", () => {
    const headers = pingHeaders(id, body, [v1(secret)], timestamp, "seintje.example");
    assert.equal(headers["webhook-signature"], expected);
    assert.equal(headers["webhook-timestamp"], "1614265330");
    assert.equal(headers["webhook-id"], id);
  });

  it("signs with both secrets during a rotation, each signature on its own", () => {
    const other = "whsec_dGhlIG90aGVyIHNlY3JldCBvZiAyNCBieXRlcw==";
    const [first, second] = pingHeaders(id, body, [v1(secret), v1(other)], timestamp, "x")[
      "webhook-signature"
    ]!.split(" ");
    assert.equal(first, expected);
    assert.match(second!, /^v1,[A-Za-z0-9+/]{43}=$/);
    assert.notEqual(second, expected);
  });
});
