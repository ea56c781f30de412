import { writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { api, type Figure, fill, median, type Scenario, startSeintje, wrk } from "../harness.js";
import { startCachingProxy } from "../proxy.js";

/**
 * Reads of a public feed through the nginx cache configured as deploy/nginx ships it, beside nginx serving a file
 * of the same bytes; and what compression does to a 1,000-event page on the wire.
 */

/** The bytes a GET puts on the wire for its body (node:http hands them over undecoded). */
function bodyBytes(
  url: string,
  headers: Record<string, string>,
): Promise<{ bytes: number; encoding: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.on("end", () =>
        resolve({ bytes, encoding: String(res.headers["content-encoding"] ?? "identity") }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

export const cachedReads: Scenario = {
  name: "cached-reads",
  description:
    "events/s in pages of 1,000 of a public feed through the shipped nginx cache, beside nginx serving the same bytes from a file; a page's bytes with and without compression",
  async run(size) {
    const events = size.quick ? 50_000 : 1_000_000;
    const seintje = await startSeintje();
    await api(seintje, "PUT", "/v1/feeds/open", { public: true });
    await fill(seintje, "open", events);
    const pageUrl = `${seintje.url}/v1/feeds/open/events?limit=1000&after=${events / 2}`;
    const page = Buffer.from(await (await fetch(pageUrl, { headers: seintje.auth })).arrayBuffer());
    const pageFile = join(seintje.dir, "page.json");
    writeFileSync(pageFile, page);
    const proxy = await startCachingProxy(seintje.url, pageFile);
    try {
      const served = await bodyBytes(`${proxy.staticUrl}/page`, {});
      if (served.bytes !== page.length)
        throw new Error(`nginx serves ${served.bytes} bytes of the ${page.length}-byte page`);
      // Every page once, so that the rounds measure the cache and not the first fill.
      const pages = events / 1000;
      for (let start = 0; start < pages; start += 16) {
        await Promise.all(
          Array.from({ length: Math.min(16, pages - start) }, async (_, index) => {
            // As wrk asks (no Accept, no Accept-Encoding), so that its requests meet these entries.
            await bodyBytes(
              `${proxy.url}/v1/feeds/open/events?limit=1000&after=${(start + index) * 1000}`,
              {},
            );
          }),
        );
      }
      const ours: number[] = [];
      const bare: number[] = [];
      const direct: number[] = [];
      let errors = 0;
      for (let round = 0; round < size.rounds; round += 1) {
        const cached = await wrk(`${proxy.url}/`, {
          connections: 8,
          seconds: size.seconds,
          script: "pages.lua",
          env: { TOKEN: "", FEED: "open", EVENTS: String(events), LIMIT: "1000" },
        });
        ours.push(cached.requestsPerSecond * 1000);
        errors += cached.errors;
        bare.push(
          (await wrk(`${proxy.staticUrl}/page`, { connections: 8, seconds: size.seconds }))
            .requestsPerSecond * 1000,
        );
        const origin = await wrk(`${seintje.url}/`, {
          connections: 8,
          seconds: size.seconds,
          script: "pages.lua",
          env: { TOKEN: seintje.token, FEED: "open", EVENTS: String(events), LIMIT: "1000" },
        });
        direct.push(origin.requestsPerSecond * 1000);
      }
      const onWire = (encoding: string) =>
        bodyBytes(pageUrl, { ...seintje.auth, "accept-encoding": encoding });
      const identity = await onWire("identity");
      const gzip = await onWire("gzip");
      const br = await onWire("br");
      const figures: Figure[] = [
        {
          name: `events read in pages of 1,000 through the nginx cache (${events.toLocaleString("en")}-event public feed)`,
          unit: "events/s",
          ours: median(ours),
          baseline: { name: "nginx serving the same page's bytes from a file", value: median(bare) },
          // The contract sets none; this is what a cache in front is for: far more than the origin alone.
          target: {
            text: "≥ 10 × seintje read directly",
            met: median(ours) >= 10 * median(direct),
          },
          notes: [
            `${pages} pages, each in the cache before the rounds`,
            `seintje read directly, with a token: ${Math.round(median(direct)).toLocaleString("en")} events/s (the cache serves ${(median(ours) / median(direct)).toFixed(1)} × that)`,
            ...(errors > 0 ? [`${errors} requests failed`] : []),
          ],
        },
        {
          name: "bytes on the wire for a 1,000-event page, brotli",
          unit: "bytes",
          ours: br.bytes,
          baseline: { name: "the same page uncompressed", value: identity.bytes },
          target: { text: "≤ 0.25 × uncompressed", met: br.bytes <= 0.25 * identity.bytes },
          notes: [
            `gzip: ${gzip.bytes.toLocaleString("en")} bytes (${(gzip.bytes / identity.bytes).toFixed(3)} ×)`,
          ],
        },
      ];
      return figures;
    } finally {
      await Promise.all([proxy.stop(), seintje.stop()]);
    }
  },
};
