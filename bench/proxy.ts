import { chmodSync, copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, type Proc, ROOT, start, tempDir, waitForHttp } from "./harness.js";
import { nginxConfig } from "./nginx.js";

/**
 * Debian's nginx in front of a seintje with the configuration shipped in deploy/nginx, included as written, plus
 * a second server that serves one file as it is: the baseline for reads through the cache.
 */

export const NGINX = "/usr/sbin/nginx";

export interface CachingProxy {
  /** seintje through the cache. */
  url: string;
  /** nginx serving a copy of `staticFile` at /page. */
  staticUrl: string;
  stop(): Promise<void>;
}

export async function startCachingProxy(origin: string, staticFile: string): Promise<CachingProxy> {
  const dir = tempDir("seintje-bench-proxy-");
  // Started as root, nginx's workers run as www-data and write the cache in here.
  chmodSync(dir.path, 0o755);
  const [port, staticPort] = [await freePort(), await freePort()];
  // A copy the workers may read: the original sits in seintje's data directory, which only root may enter.
  const served = join(dir.path, "page.json");
  copyFileSync(staticFile, served);
  chmodSync(served, 0o644);
  const deploy = join(ROOT, "deploy/nginx");
  const config = join(dir.path, "nginx.conf");
  writeFileSync(
    config,
    nginxConfig(
      dir.path,
      `  include ${deploy}/seintje-http.conf;
  proxy_cache_path ${dir.path}/cache levels=1:2 keys_zone=seintje:10m max_size=4g inactive=1h;
  upstream seintje { server ${new URL(origin).host}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    include ${deploy}/seintje-locations.conf;
  }
  server {
    listen 127.0.0.1:${staticPort};
    location = /page { alias ${served}; default_type application/json; }
  }`,
    ),
  );
  const proc: Proc = start(NGINX, ["-p", dir.path, "-c", config]);
  const url = `http://127.0.0.1:${port}`;
  const staticUrl = `http://127.0.0.1:${staticPort}`;
  await waitForHttp(`${url}/healthz`, 15_000).catch((error: Error) => {
    throw new Error(`nginx did not start: ${error.message}\n${proc.lines.join("\n")}`);
  });
  return {
    url,
    staticUrl,
    async stop() {
      await proc.stop("SIGQUIT");
      dir.remove();
    },
  };
}
