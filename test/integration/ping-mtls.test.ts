import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { TLSSocket } from "node:tls";
import { ConfigError, loadConfig } from "../../src/config.js";
import { cloudEvent, publish, putFeed, subscribe as subscribeTo } from "../support/http.js";
import { startTestService, tempDir } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Mutual TLS to callbacks: a throwaway CA made here with openssl signs a receiver's server certificate and
 * seintje's client certificate; the receiver on 127.0.0.1 demands a client certificate from that CA.
 */

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all valid for a day. */
function makePki(dir: string) {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=seintje test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  for (const [name, extensions] of [
    ["server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"],
    ["client", "extendedKeyUsage=clientAuth\n"],
  ] as const) {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl(dir, [
      "req",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=seintje-${name}`,
    ]);
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
    ]);
  }
  return {
    ca: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server.key"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client.key"),
  };
}

describe("mutual TLS to callbacks", () => {
  const dir = tempDir("seintje-mtls-");
  let pki: ReturnType<typeof makePki>;
  let receiver: Server;
  let url: string;
  const pings: Array<{ clientName: string; body: string }> = [];

  before(async () => {
    pki = makePki(dir);
    receiver = createServer(
      {
        key: readFileSync(pki.serverKey),
        cert: readFileSync(pki.serverCert),
        ca: readFileSync(pki.ca),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        let body = "";
        req.on("data", (chunk: Buffer) => {
          body += chunk;
        });
        req.on("end", () => {
          if (req.method === "OPTIONS") res.setHeader("WebHook-Allowed-Origin", "*");
          else {
            const peer = (req.socket as TLSSocket).getPeerCertificate();
            pings.push({ clientName: String(peer.subject?.CN), body });
          }
          res.statusCode = req.method === "OPTIONS" ? 200 : 204;
          res.end();
        });
      },
    );
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
  });
  after(async () => {
    await new Promise((resolve) => receiver.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const subscribe = (base: string, feed: string) => subscribeTo(base, { feed, url });

  it("presents the configured client certificate, and trusts the added CA", async () => {
    const svc = await startTestService({
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      SEINTJE_CALLBACK_CA: pki.ca,
      SEINTJE_CALLBACK_CLIENT_CERT: pki.clientCert,
      SEINTJE_CALLBACK_CLIENT_KEY: pki.clientKey,
    });
    try {
      await putFeed(svc.url, "mtls");
      const created = await subscribe(svc.url, "mtls");
      assert.equal(created.status, 201, created.text);
      await publish(svc.url, "mtls", cloudEvent());
      await eventually(() => pings.length >= 1, 5000, "a ping over mutual TLS");
      assert.equal(pings[0]!.clientName, "seintje-client");
      assert.equal(JSON.parse(pings[0]!.body).data.subscription, created.body.id);
    } finally {
      await svc.stop();
    }
  });

  it("is refused by the receiver without a client certificate, and refuses a receiver it cannot trust", async () => {
    const noClientCert = await startTestService({
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      SEINTJE_CALLBACK_CA: pki.ca,
    });
    try {
      await putFeed(noClientCert.url, "mtls");
      const refused = await subscribe(noClientCert.url, "mtls");
      assert.equal(refused.status, 400, refused.text);
      assert.equal(refused.body.type, "urn:seintje:problem:callback-refused");
    } finally {
      await noClientCert.stop();
    }
    const noCa = await startTestService({
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      SEINTJE_CALLBACK_CLIENT_CERT: pki.clientCert,
      SEINTJE_CALLBACK_CLIENT_KEY: pki.clientKey,
    });
    try {
      await putFeed(noCa.url, "mtls");
      const untrusted = await subscribe(noCa.url, "mtls");
      assert.equal(untrusted.status, 400, untrusted.text);
      assert.match(untrusted.body.detail, /certificate/i);
    } finally {
      await noCa.stop();
    }
  });

  it("refuses a certificate without its key, and files that are not PEM, naming the variable", () => {
    const expectError = (env: Record<string, string>, variable: string) =>
      assert.throws(
        () => loadConfig({ SEINTJE_DATA_DIR: dir, ...env }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable,
      );
    expectError({ SEINTJE_CALLBACK_CLIENT_CERT: pki.clientCert }, "SEINTJE_CALLBACK_CLIENT_KEY");
    expectError({ SEINTJE_CALLBACK_CLIENT_KEY: pki.clientKey }, "SEINTJE_CALLBACK_CLIENT_CERT");
    expectError({ SEINTJE_CALLBACK_CA: pki.clientKey }, "SEINTJE_CALLBACK_CA");
    expectError({ SEINTJE_CALLBACK_CA: join(dir, "missing.pem") }, "SEINTJE_CALLBACK_CA");
  });
});
