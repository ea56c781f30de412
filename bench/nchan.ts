import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, type Proc, start, tempDir, waitForHttp } from "./harness.js";
import { nginxConfig } from "./nginx.js";

/**
 * The peer: nginx with the nchan module (Debian's nginx-light and libnginx-mod-nchan), on loopback with a config
 * written into a temp dir. One worker process, as seintje is one process. POST /pub publishes to one channel;
 * GET /sub is an EventSource subscriber of it.
 */

export const NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so";

export interface Nchan {
  url: string;
  /** The worker's resident memory in bytes (the master holds no connections). */
  workerRss(): number;
  stop(): Promise<void>;
}

/** Why the peer is left out of this run (the peer column then says skipped), or undefined when it runs. */
export function whyNoNchan(module = NCHAN_MODULE): string | undefined {
  if (process.env.SEINTJE_BENCH_NCHAN === "off") return "the peer is turned off (SEINTJE_BENCH_NCHAN=off)";
  if (existsSync(module) && existsSync("/usr/sbin/nginx")) return undefined;
  return "nginx with nchan is not installed: apt-get install nginx-light libnginx-mod-nchan (the peer column is skipped)";
}

export async function startNchan(): Promise<Nchan> {
  const dir = tempDir("seintje-bench-nchan-");
  const port = await freePort();
  const config = join(dir.path, "nginx.conf");
  writeFileSync(
    config,
    nginxConfig(
      dir.path,
      `  server {
    listen 127.0.0.1:${port};
    location = /pub { nchan_publisher; nchan_channel_id bench; nchan_message_buffer_length 100; }
    location = /sub { nchan_subscriber eventsource; nchan_channel_id bench; }
  }`,
      { prelude: `load_module ${NCHAN_MODULE};\n`, connections: 19000, files: 20000 },
    ),
  );
  const proc: Proc = start("/usr/sbin/nginx", ["-p", dir.path, "-c", config]);
  const url = `http://127.0.0.1:${port}`;
  // A GET on the publisher location answers the channel's status (404 while it has no messages): nginx is up.
  await waitForHttp(`${url}/pub`, 15_000).catch(async () => {
    const response = await fetch(`${url}/pub`).catch(() => undefined);
    if (!response) throw new Error(`nginx did not start: ${proc.lines.join("\n")}`);
  });
  return {
    url,
    workerRss() {
      const worker = execFileSync("pgrep", ["-P", String(proc.pid)])
        .toString()
        .trim()
        .split("\n")[0]!;
      const status = readFileSync(`/proc/${worker}/status`, "utf8");
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024;
    },
    async stop() {
      await proc.stop("SIGQUIT");
      dir.remove();
    },
  };
}
