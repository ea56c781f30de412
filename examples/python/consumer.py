"""A consumer that follows a seintje feed with long-polls and restarts where it stopped. Standard library only.

    SEINTJE_URL=http://127.0.0.1:8080 SEINTJE_TOKEN=$(npx seintje token --scope read:brk) \\
        python3 examples/python/consumer.py brk

It prints each event as a JSON line and saves its cursor after handling each one, in CURSOR_FILE (default
.seintje-state/<feed>.python.cursor): at least once, never skipped. Ctrl-C or SIGTERM stops it.
"""

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

FEED = sys.argv[1] if len(sys.argv) > 1 else "brk"
URL = os.environ.get("SEINTJE_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("SEINTJE_TOKEN")
CURSOR_FILE = os.environ.get("CURSOR_FILE", os.path.join(".seintje-state", f"{FEED}.python.cursor"))
WAIT_SECONDS = 30

stopping = False
waiting = False


class Stopped(Exception):
    """Raised by the signal handler to end a long-poll at once; elsewhere the loop stops at its next turn."""


def stop(_signum, _frame):
    global stopping
    stopping = True
    if waiting:
        raise Stopped()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)


def load_cursor():
    try:
        with open(CURSOR_FILE, encoding="utf-8") as file:
            return file.read().strip() or "0"
    except FileNotFoundError:
        return "0"


def save_cursor(sequence):
    """Writes the cursor to a new file, flushed to disk, then renames it over the old one: never half-written."""
    os.makedirs(os.path.dirname(CURSOR_FILE) or ".", exist_ok=True)
    temporary = f"{CURSOR_FILE}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(f"{sequence}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, CURSOR_FILE)


def read_page(after):
    global waiting
    query = urllib.parse.urlencode({"after": after, "limit": 100, "wait": WAIT_SECONDS})
    request = urllib.request.Request(f"{URL}/v1/feeds/{urllib.parse.quote(FEED)}/events?{query}")
    if TOKEN:
        request.add_header("Authorization", f"Bearer {TOKEN}")
    waiting = True
    try:
        with urllib.request.urlopen(request, timeout=WAIT_SECONDS + 10) as response:
            return json.load(response)
    finally:
        waiting = False


def handle(event):
    # Here a real consumer updates its copy of the register: idempotently, since an event may come twice.
    print(json.dumps({"sequence": event["sequence"], "type": event["type"], "subject": event.get("subject")}),
          flush=True)


def main():
    after = load_cursor()
    backoff = 1
    while not stopping:
        try:
            page = read_page(after)
        except Stopped:
            break
        except urllib.error.HTTPError as error:
            problem = json.loads(error.read() or b"{}")
            if error.code == 410:
                # Retention removed events this consumer never saw: a real one resynchronises here.
                oldest = problem.get("oldest")
                print(f"missed events after {after}; resuming at the oldest kept event, {oldest}", file=sys.stderr)
                after = "0" if oldest is None else str(int(oldest) - 1)
                continue
            if error.code in (401, 403, 404, 400):
                print(f"refused: {error.code} {problem.get('detail', '')}", file=sys.stderr)
                return 1
            print(f"{error.code}; again in {backoff} s", file=sys.stderr)
        except (urllib.error.URLError, OSError) as error:
            if stopping:
                break
            print(f"{error}; again in {backoff} s", file=sys.stderr)
        else:
            backoff = 1
            for event in page["events"]:
                handle(event)
                save_cursor(event["sequence"])
            after = page["next"]
            continue
        time.sleep(backoff)
        backoff = min(backoff * 2, 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
