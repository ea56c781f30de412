/** A raw SSE reader over fetch, for asserting on the exact bytes of a stream. */

export interface RawStream {
  status: number;
  headers: Headers;
  /** Everything received so far. */
  text(): string;
  /** Waits until `predicate(text)` holds, at most `timeoutMs`. */
  waitFor(predicate: (text: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Resolves when the server ends the stream. */
  closed: Promise<void>;
  close(): void;
}

export async function openStream(url: string, headers: Record<string, string> = {}): Promise<RawStream> {
  const controller = new AbortController();
  const response = await fetch(url, {
    headers: { accept: "text/event-stream", ...headers },
    signal: controller.signal,
  });
  let received = "";
  const listeners = new Set<() => void>();
  const decoder = new TextDecoder();
  const closed = (async () => {
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        received += decoder.decode(chunk, { stream: true });
        for (const listener of listeners) listener();
      }
    } catch {
      // aborted by close()
    }
    for (const listener of listeners) listener();
  })();
  let ended = false;
  void closed.then(() => {
    ended = true;
  });
  return {
    status: response.status,
    headers: response.headers,
    text: () => received,
    closed,
    close: () => controller.abort(),
    waitFor(predicate, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (predicate(received)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(received);
          } else if (ended) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`stream ended before the condition held; received:\n${received.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out; received:\n${received.slice(-2000)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}

/** The `id:` values of the messages that carry data, in order. */
export function dataIds(text: string): number[] {
  return text
    .split("\n\n")
    .filter((message) => /^data: /m.test(message))
    .map((message) => Number(/^id: (\d+)$/m.exec(message)?.[1]));
}
