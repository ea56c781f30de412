"""A webhook receiver for seintje's wake-up pings. Standard library only.

    SEINTJE_URL=http://127.0.0.1:8080 SEINTJE_TOKEN=... PUBLIC_URL=https://hooks.example.nl/seintje \\
        PORT=9000 python3 examples/python/receiver.py brk

It subscribes to the feed's pings (once: the subscription's id, secret and cursor are kept in STATE_FILE, default
.seintje-state/<feed>.python.receiver.json), answers the CloudEvents webhook handshake, verifies each ping as
Standard Webhooks prescribes (HMAC-SHA256 over "id.timestamp.body", compared in constant time, timestamp within
five minutes), answers it at once and then pulls the feed from its own cursor. The token needs `read` and
`subscribe` on the feed.
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FEED = sys.argv[1] if len(sys.argv) > 1 else "brk"
URL = os.environ.get("SEINTJE_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("SEINTJE_TOKEN")
PORT = int(os.environ.get("PORT", "9000"))
PUBLIC_URL = os.environ.get("PUBLIC_URL", f"http://127.0.0.1:{PORT}/seintje")
STATE_FILE = os.environ.get("STATE_FILE", os.path.join(".seintje-state", f"{FEED}.python.receiver.json"))
TOLERANCE_SECONDS = 5 * 60

state = None
state_lock = threading.Lock()
pull_lock = threading.Lock()
pinged_again = threading.Event()


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(f"{URL}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if TOKEN:
        request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def save_state(next_state):
    global state
    os.makedirs(os.path.dirname(STATE_FILE) or ".", mode=0o700, exist_ok=True)
    temporary = f"{STATE_FILE}.{os.getpid()}.tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as file:
        json.dump(next_state, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, STATE_FILE)
    state = next_state


def verify(headers, body, secret):
    """Returns None for a ping that may be trusted, else why not (Standard Webhooks)."""
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not message_id or not timestamp or not signatures:
        return "missing-headers"
    try:
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            return "timestamp-out-of-range"
    except ValueError:
        return "bad-timestamp"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode("utf-8") + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "bad-signature"


def pull():
    """Reads every event after the cursor, a page at a time; one pull at a time, again if pinged meanwhile."""
    if not pull_lock.acquire(blocking=False):
        pinged_again.set()
        return
    try:
        while True:
            pinged_again.clear()
            while True:
                query = urllib.parse.urlencode({"after": state["cursor"], "limit": 1000})
                page = call("GET", f"/v1/feeds/{urllib.parse.quote(FEED)}/events?{query}")
                for event in page["events"]:
                    # Here a real receiver updates its copy of the register.
                    print(json.dumps({"sequence": event["sequence"], "id": event["id"], "type": event["type"]}),
                          flush=True)
                with state_lock:
                    save_state({**state, "cursor": page["next"]})
                if page["next"] == page["head"]:
                    break
            if not pinged_again.is_set():
                return
    except Exception as error:  # noqa: BLE001 - a failed pull waits for the next ping
        print(f"pull failed (the next ping tries again): {error}", file=sys.stderr, flush=True)
    finally:
        pull_lock.release()


class Handler(BaseHTTPRequestHandler):
    def do_OPTIONS(self):
        # The CloudEvents webhook handshake, answered when the subscription is created.
        self.send_response(200)
        self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", "*"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if state is None:
            self.answer(503)
            return
        refusal = verify({name.lower(): value for name, value in self.headers.items()}, body, state["secret"])
        if refusal is not None:
            print(f"refused a ping: {refusal}", file=sys.stderr, flush=True)
            self.answer(401)
            return
        self.answer(204)
        threading.Thread(target=pull, daemon=True).start()

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with open(STATE_FILE, encoding="utf-8") as file:
            save_state(json.load(file))
    except FileNotFoundError:
        created = call(
            "POST",
            "/v1/subscriptions",
            {"feed": FEED, "url": PUBLIC_URL, "description": "examples/python/receiver.py"},
        )
        save_state({"subscription": created["id"], "secret": created["secret"], "cursor": created["acked"]})
    print(f"receiving pings for {FEED} at {PUBLIC_URL} (subscription {state['subscription']})",
          file=sys.stderr, flush=True)
    pull()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
