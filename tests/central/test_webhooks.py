"""Outbound webhooks: a real receiver on loopback checks every signature the way
docs/integrations.md tells receivers to; retries, bounds, replay and a restart of the
worker are driven through central's own worker pass (its schedule's clock handed in, so
no test waits for a backoff) and, once, through the worker the app's lifespan starts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from central_api.core.config import Settings
from central_api.core.db import create_db_engine, write_transaction
from central_api.models import audit_log
from central_api.services import webhooks
from central_api.services.audit import record, system_context
from jxc.paths import API_ROOT, ITEMS, PARTNERS, PURCHASE_ORDERS, SITES, WEBHOOKS
from tests.central.conftest import central_app, user_token
from tests.patience import wait_for
from tests.ports import free_port

HOUR = timedelta(hours=1)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 500 to its first ``fail_first`` requests,
    then 204; keeps every request with whether its signature checked out."""

    def __init__(self, fail_first: int = 0) -> None:
        self.secret = ""
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("Jxc-Webhook-Signature", "")
                receiver.requests.append(
                    {
                        "id": self.headers.get("Jxc-Webhook-Id"),
                        "event": self.headers.get("Jxc-Webhook-Event"),
                        "body": json.loads(body),
                        "verified": signature_checks(receiver.secret, header, body),
                    }
                )
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/jxc"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def signature_checks(secret: str, header: str, body: bytes) -> bool:
    """The receiver's check exactly as docs/integrations.md spells it (not central's code)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "v1" not in fields:
        return False
    if abs(time.time() - int(fields["t"])) > 300:
        return False
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def hooks(client: TestClient) -> TestClient:
    """The client with loopback targets allowed, a 10 s backoff, and the lifespan's worker
    paused (poll 0): each test runs the worker's passes itself."""
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    client.app.state.settings = settings.model_copy(  # type: ignore[attr-defined]
        update={"webhook_allow_private": True, "webhook_poll_s": 0, "webhook_backoff_s": 10}
    )
    return client


def run_pass(client: TestClient, at: datetime | None = None) -> webhooks.PassReport:
    state = client.app.state  # type: ignore[attr-defined]
    moment = at or datetime.now(UTC)
    return webhooks.run_pass(state.engine, state.settings, now=lambda: moment)


def subscribe(client: TestClient, receiver: Receiver, events: list[str], **extra: Any) -> str:
    made = ok(client.post(WEBHOOKS, json={"url": receiver.url, "events": events, **extra}), 201)
    receiver.secret = made["secret"]
    return str(made["subscription_id"])


def raise_alert(engine: Engine, item: str = "PILL") -> None:
    """An alert as whatever raises one records it: an audit entry in its transaction."""
    with engine.connect() as connection, write_transaction(connection):
        record(
            connection,
            system_context("test"),
            action="alert.raise",
            resource="alert",
            resource_id=f"low-stock/S01/{item}",
            site_id="S01",
            after={"item": item, "on_hand": "2", "unit_cost": "1.5"},
        )


def deliveries(client: TestClient, subscription_id: str) -> list[dict[str, Any]]:
    page = ok(client.get(f"{WEBHOOKS}/{subscription_id}/deliveries"))
    return list(page["deliveries"])


def test_a_document_change_is_delivered_signed_and_logged(hooks: TestClient) -> None:
    with Receiver() as receiver:
        key = {"Idempotency-Key": "webhook-create-1"}
        body = {"url": receiver.url, "events": ["purchase_order.*"]}
        made = ok(hooks.post(WEBHOOKS, json=body, headers=key), 201)
        receiver.secret = made["secret"]
        assert made["secret"].startswith("whsec_")
        again = hooks.post(WEBHOOKS, json=body, headers=key)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["subscription_id"] == made["subscription_id"]
        assert again.json()["secret"] is None, "the secret is shown once"
        listed = ok(hooks.get(WEBHOOKS))
        assert [s["subscription_id"] for s in listed] == [made["subscription_id"]]
        assert "secret" not in listed[0]

        ok(hooks.put(f"{SITES}/S01", json={"kind": "store", "name": "S01"}))
        ok(hooks.post(PARTNERS, json={"code": "SUP-A", "is_supplier": True, "name": "A"}), 201)
        ok(hooks.post(ITEMS, json={"item_code": "TEA", "name": "茶", "uom": "kg"}), 201)
        po = ok(
            hooks.post(
                PURCHASE_ORDERS,
                json={
                    "supplier": "SUP-A",
                    "site_id": "S01",
                    "lines": [{"item_code": "TEA", "qty": "10.5", "unit_price": "80"}],
                },
            ),
            201,
        )
        ok(hooks.post(f"{PURCHASE_ORDERS}/{po['po_id']}/cancel", json={"reason": "缺货"}))

        report = run_pass(hooks)
        assert (report.fanned_out, report.delivered) == (2, 2)

    got = receiver.requests
    assert [r["event"] for r in got] == ["purchase_order.create", "purchase_order.cancel"]
    assert all(r["verified"] for r in got)
    cancel = got[1]["body"]
    assert (cancel["resource_id"], cancel["site_id"]) == (po["po_id"], "S01")
    assert cancel["before"]["status"] == "draft"
    assert cancel["after"]["status"] == "cancelled"
    assert "unit_price" not in json.dumps(got[0]["body"]), "financial fields are stripped"
    log = deliveries(hooks, made["subscription_id"])
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("delivered", 1, 204),
        ("delivered", 1, 204),
    ]
    assert {d["delivery_id"] for d in log} == {r["id"] for r in got}
    # a signature over another body, or too old, does not check out
    raw = json.dumps(cancel).encode()
    signed = webhooks.sign(receiver.secret, raw, int(time.time()))
    assert signature_checks(receiver.secret, signed, raw)
    assert not signature_checks(receiver.secret, signed, raw + b" ")
    stale = webhooks.sign(receiver.secret, raw, int(time.time()) - 301)
    assert not webhooks.verify(receiver.secret, stale, raw, now=time.time())
    # the secret is in no audit entry; the create is audited
    engine = hooks.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        entries = connection.execute(select(audit_log)).all()
    assert "webhook.create" in {e.action for e in entries}
    assert not any(receiver.secret in f"{e.before}{e.after}" for e in entries)


def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(hooks: TestClient) -> None:
    with Receiver(fail_first=2) as receiver:
        subscription = subscribe(hooks, receiver, ["alert.*"])
        raise_alert(hooks.app.state.engine)  # type: ignore[attr-defined]
        start = datetime.now(UTC)
        assert run_pass(hooks, start).failed_attempts == 1
        (first,) = deliveries(hooks, subscription)
        assert (first["status"], first["attempts"], first["last_status_code"]) == (
            "pending",
            1,
            500,
        )
        wait = datetime.fromisoformat(first["next_attempt_at"]) - start
        assert timedelta(seconds=5) <= wait <= timedelta(seconds=10), "backoff 10 s, jittered"
        assert run_pass(hooks, start).failed_attempts == 0, "not due yet: nothing is sent"
        assert run_pass(hooks, start + HOUR).failed_attempts == 1
        assert run_pass(hooks, start + 2 * HOUR).delivered == 1

    (done,) = deliveries(hooks, subscription)
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("delivered", 3, 204)
    assert len({r["id"] for r in receiver.requests}) == 1, "one delivery id, three attempts"
    assert all(r["verified"] for r in receiver.requests)
    assert "unit_cost" not in receiver.requests[-1]["body"]["after"]


def test_attempts_are_bounded_and_a_failed_delivery_is_replayed_by_hand(
    hooks: TestClient,
) -> None:
    state = hooks.app.state  # type: ignore[attr-defined]
    state.settings = state.settings.model_copy(update={"webhook_max_attempts": 2})
    with Receiver(fail_first=2) as receiver:
        subscription = subscribe(hooks, receiver, ["*"], financial=True)
        raise_alert(state.engine)
        start = datetime.now(UTC)
        run_pass(hooks, start)
        run_pass(hooks, start + HOUR)
        (failed,) = deliveries(hooks, subscription)
        assert (failed["status"], failed["attempts"], failed["next_attempt_at"]) == (
            "failed",
            2,
            None,
        )
        assert run_pass(hooks, start + 9 * HOUR).failed_attempts == 0, "given up"

        url = f"{WEBHOOKS}/deliveries/{failed['delivery_id']}/replay"
        key = {"Idempotency-Key": "replay-1"}
        replayed = ok(hooks.post(url, headers=key))
        assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
        assert hooks.post(url, headers=key).headers["Idempotent-Replayed"] == "true"
        assert run_pass(hooks).delivered == 1

    (done,) = deliveries(hooks, subscription)
    assert (done["status"], done["attempts"]) == ("delivered", 1)
    assert receiver.requests[-1]["body"]["after"]["unit_cost"] == "1.5", "financial: true"
    unknown = hooks.post(f"{WEBHOOKS}/deliveries/{'0' * 8}-0000-0000-0000-{'0' * 12}/replay")
    assert unknown.status_code == 404
    with state.engine.connect() as connection:
        actions = connection.execute(select(audit_log.c.action)).scalars().all()
    assert actions.count("webhook.replay") == 1


def test_pending_deliveries_are_delivered_after_a_restart(database_url: str) -> None:
    """Deliveries are rows: a process that stops with some pending (one tried and failed,
    one not yet fanned out) leaves them to the worker of the next process."""
    settings = Settings(
        database_url=database_url,
        webhook_poll_s=0.05,
        webhook_backoff_s=0.05,
        webhook_allow_private=True,
    )
    engine = create_db_engine(database_url)
    try:
        with Receiver() as receiver:
            with engine.connect() as connection:
                made = webhooks.create_subscription(
                    connection,
                    url=receiver.url,
                    events=["alert.raise"],
                    description=None,
                    financial=False,
                    actor="test",
                    audit=system_context("test"),
                    claim=None,
                    allow_private=True,
                )
            receiver.secret = made.secret or ""
            raise_alert(engine, "PILL")
            down = settings.model_copy(update={"webhook_poll_s": 0})
            # the first process tries while the receiver's address refuses connections
            live_url = receiver.url
            _point(engine, made.subscription_id, f"http://127.0.0.1:{free_port()}/gone")
            assert webhooks.run_pass(engine, down).failed_attempts == 1
            _point(engine, made.subscription_id, live_url)
            raise_alert(engine, "TEA")  # committed, not yet fanned out, when it stops

            with central_app(settings) as app, TestClient(app):
                assert wait_for(lambda: len(receiver.requests) >= 2)
            items = sorted(r["body"]["after"]["item"] for r in receiver.requests)
            assert items == ["PILL", "TEA"]
            assert all(r["verified"] for r in receiver.requests)
    finally:
        engine.dispose()


def _point(engine: Engine, subscription_id: str, url: str) -> None:
    """Move a subscription to another URL, as an admin's PATCH would."""
    with engine.connect() as connection:
        webhooks.update_subscription(
            connection,
            subscription_id,
            webhooks.SubscriptionChange(url=url),
            audit=system_context("test"),
            if_match=None,
            allow_private=True,
        )


def test_targets_and_event_types_are_checked_and_only_admins_manage(client: TestClient) -> None:
    def refused(body: dict[str, Any], *words: str) -> None:
        answer = client.post(WEBHOOKS, json={"events": ["*"], **body})
        assert answer.status_code == 422, answer.text
        assert all(word in answer.text for word in words), answer.text

    refused({"url": "http://127.0.0.1:8080/x"}, "loopback, private")
    refused({"url": "http://10.1.2.3/x"}, "private")
    refused({"url": "http://[::1]/x"}, "private")
    refused({"url": "http://localhost:9/x"}, "loopback")
    refused({"url": "ftp://example.com/x"}, "only http")
    refused({"url": "https://user:pw@example.com/x"}, "user name or password")
    refused({"url": "https://example.com/x", "events": ["user.*"]}, "no webhook events")
    assert webhooks._resolves_public("http://localhost:80/") is not None

    engine = client.app.state.engine  # type: ignore[attr-defined]
    clerk = user_token(engine, "clerk", ["store_manager"])
    answer = client.post(
        WEBHOOKS,
        json={"url": "https://example.com/x", "events": ["*"]},
        headers={"Authorization": f"Bearer {clerk}"},
    )
    assert answer.status_code == 403
    assert client.get(WEBHOOKS, headers={"Authorization": f"Bearer {clerk}"}).status_code == 403
    made = ok(client.post(WEBHOOKS, json={"url": "https://example.com/x", "events": ["*"]}), 201)
    sid = made["subscription_id"]
    patched = client.patch(f"{WEBHOOKS}/{sid}", json={"active": False}, headers={"If-Match": '"1"'})
    assert (patched.status_code, patched.json()["active"], patched.headers["ETag"]) == (
        200,
        False,
        '"2"',
    )
    stale = client.patch(f"{WEBHOOKS}/{sid}", json={"active": True}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert client.get(f"{API_ROOT}/webhooks/WH999999").status_code == 404
