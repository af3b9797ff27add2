"""An example receiver of jxc's outbound webhooks, standard library only.

Run it (Python 3.11+, nothing to install)::

    JXC_WEBHOOK_SECRET=whsec_... python docs/examples/webhook_consumer.py --port 8080

and subscribe ``http://<this host>:8080/`` in the console (Webhooks) or with
``POST /api/v1/webhooks``. The secret comes from the environment rather than the command
line so it does not show in the process list; after rotating the secret at central, give
``new,old`` (comma separated) for as long as deliveries signed with the old one may still
be retried, then the new one alone.

What it does, in the order a receiver must (docs/integrations.md, "Verifying the
signature"):

1. reads the raw body bytes, before any JSON parsing (a re-serialised body would not
   match the signature), refusing a body over 1 MiB (413);
2. checks ``Jxc-Webhook-Signature: t=<unix seconds>,v1=<hex>``: ``t`` within 300 s of
   this machine's clock (so a captured request cannot be replayed later) and ``v1`` the
   HMAC-SHA256 of ``<t>.`` + body keyed with the secret, compared in constant time;
   anything else is 401 and nothing is kept;
3. writes the event to its inbox, an SQLite table keyed by ``Jxc-Webhook-Id``, in one
   statement: a delivery seen before (delivery is at least once: a lost answer, a replay
   by hand) is answered 200 and not handled again;
4. answers 2xx at once. The work (here: printing a line) runs on a worker thread that
   reads the inbox in ``event_id`` order, so a slow handler never makes central time out
   and retry, and an event taken but not yet handled survives a restart of the receiver.

Answering 2xx only after the inbox row is committed is what makes "at least once" safe:
a crash before the commit is a 5xx or a dropped connection, and central tries again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIGNATURE_HEADER = "Jxc-Webhook-Signature"
DELIVERY_HEADER = "Jxc-Webhook-Id"
EVENT_HEADER = "Jxc-Webhook-Event"
TOLERANCE_S = 300
"""How far the signature's ``t`` may be from this machine's clock, either way."""
MAX_BODY = 1 << 20

Handler = Callable[[dict[str, Any]], None]


def signature_problem(
    secrets: Sequence[str], header: str, body: bytes, *, now: float | None = None
) -> str | None:
    """None if ``header`` signs ``body`` with one of ``secrets`` at a time within
    :data:`TOLERANCE_S` of ``now``; otherwise why not (for the receiver's own log only:
    the answer to the sender says no more than 401)."""
    stamps: list[str] = []
    offered: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            offered.append(value)
    if len(stamps) != 1 or not stamps[0].isdigit():
        return "no timestamp t=<unix seconds>"
    if not offered:
        return "no v1= signature"
    moment = time.time() if now is None else now
    if abs(moment - int(stamps[0])) > TOLERANCE_S:
        return f"timestamp more than {TOLERANCE_S} s from this clock (replayed, or clock off)"
    signed = stamps[0].encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        # compare_digest: the time taken does not tell how much of a guess was right
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return None
    return "signature does not match this body with the secret"


class Inbox:
    """Deliveries taken, keyed by their id: the dedupe and the queue in one table, so a
    repeat is recognised across restarts and a taken event is never lost."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self.arrived = threading.Condition(self._lock)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (delivery_id TEXT PRIMARY KEY, event_id INTEGER,"
            " event_type TEXT, body TEXT NOT NULL, received_at REAL NOT NULL, handled_at REAL)"
        )

    def take(self, delivery_id: str, event: dict[str, Any], body: bytes) -> bool:
        """Keep the delivery; False if it was kept before (a repeat)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO inbox (delivery_id, event_id, event_type, body,"
                " received_at) VALUES (?, ?, ?, ?, ?)",
                (delivery_id, event.get("event_id"), event.get("type"), body, time.time()),
            )
            new = cursor.rowcount == 1
            if new:
                self.arrived.notify_all()
            return new

    def next_unhandled(self) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT delivery_id, body FROM inbox WHERE handled_at IS NULL"
                " ORDER BY event_id, received_at LIMIT 1"
            ).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def mark_handled(self, delivery_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE inbox SET handled_at = ? WHERE delivery_id = ?", (time.time(), delivery_id)
            )

    def count(self, *, handled: bool | None = None) -> int:
        query = {
            None: "SELECT count(*) FROM inbox",
            True: "SELECT count(*) FROM inbox WHERE handled_at IS NOT NULL",
            False: "SELECT count(*) FROM inbox WHERE handled_at IS NULL",
        }[handled]
        with self._lock:
            return int(self._db.execute(query).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _request_handler(secrets: Sequence[str], inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status = self._receive()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _receive(self) -> HTTPStatus:
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                return HTTPStatus.LENGTH_REQUIRED
            if int(length) > MAX_BODY:
                return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            body = self.rfile.read(int(length))  # the raw bytes: verified before parsing
            problem = signature_problem(secrets, self.headers.get(SIGNATURE_HEADER, ""), body)
            if problem is not None:
                self.log_message("refused %s: %s", self.headers.get(DELIVERY_HEADER), problem)
                return HTTPStatus.UNAUTHORIZED
            delivery_id = self.headers.get(DELIVERY_HEADER, "")
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            if not delivery_id or not isinstance(event, dict):
                return HTTPStatus.BAD_REQUEST
            if inbox.take(delivery_id, event, body):
                return HTTPStatus.NO_CONTENT
            return HTTPStatus.OK  # a repeat: taken before, not handled again

        def log_message(self, format: str, *args: Any) -> None:
            if os.environ.get("JXC_WEBHOOK_QUIET") is None:
                super().log_message(format, *args)

    return Receive


def print_event(event: dict[str, Any]) -> None:
    """The example's work: one line per event. Put the real work here (idempotent by
    ``event_id`` if several subscriptions send the same events to one inbox)."""
    print(f"event {event['event_id']} {event['type']} {event['resource']} {event['resource_id']}")


class Consumer:
    """The HTTP server and the worker thread that handles what it took."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        inbox: str = "webhook-inbox.sqlite3",
        handle: Handler = print_event,
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError("give the webhook's secret (whsec_...)")
        self.inbox = Inbox(inbox)
        self.handle = handle
        self.server = ThreadingHTTPServer((host, port), _request_handler(secrets, self.inbox))
        self._stopping = False
        self._threads = [
            threading.Thread(
                target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            ),
            threading.Thread(target=self._work, daemon=True),
        ]

    def _work(self) -> None:
        while not self._stopping:
            with self.inbox.arrived:  # looked and waited under one lock: no wake-up is missed
                found = self.inbox.next_unhandled()
                if found is None:
                    self.inbox.arrived.wait(timeout=1.0)
                    continue
            delivery_id, event = found
            self.handle(event)
            self.inbox.mark_handled(delivery_id)

    def __enter__(self) -> Consumer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self.server.shutdown()
        self.server.server_close()
        with self.inbox.arrived:
            self.inbox.arrived.notify_all()
        for thread in self._threads:
            thread.join()
        self.inbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a receiver listens)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--inbox", default="webhook-inbox.sqlite3", help="SQLite file")
    arguments = parser.parse_args()
    secrets = [s.strip() for s in os.environ.get("JXC_WEBHOOK_SECRET", "").split(",") if s.strip()]
    if not secrets:
        parser.error("set JXC_WEBHOOK_SECRET to the webhook's secret (new,old while rotating)")
    with Consumer(secrets, host=arguments.host, port=arguments.port, inbox=arguments.inbox):
        print(f"listening on {arguments.host}:{arguments.port}; Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
