/**
 * An nginx configuration for a benchmark: one worker in the foreground, every file it writes (pid, log, temp
 * paths) in `dir`, and the given `http {}` contents. `prelude` comes first (load_module lines).
 */
export function nginxConfig(
  dir: string,
  http: string,
  options: { prelude?: string; connections?: number; files?: number } = {},
): string {
  return `${options.prelude ?? ""}worker_processes 1;
${options.files ? `worker_rlimit_nofile ${options.files};\n` : ""}daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${options.connections ?? 4096}; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${http}
}
`;
}
