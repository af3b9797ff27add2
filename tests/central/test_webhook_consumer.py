"""The example consumer of docs/examples/webhook_consumer.py against central's own worker on
loopback: it takes a real delivery, refuses a tampered body, a stale signature and a
rotated secret it was not given (central logs the 401 and retries), and takes a replayed
delivery once. Loaded from its file, as a reader would run it."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models.webhooks import webhook_deliveries
from central_api.services import webhooks
from jxc.paths import WEBHOOKS
from tests.central.test_webhooks import deliveries, hooks, ok, raise_alert, run_pass
from tests.patience import wait_for
from tests.ports import free_port

__all__ = ["hooks"]  # the fixture, used by name

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "webhook_consumer.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jxc_docs_webhook_consumer", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def post(url: str, body: bytes, signature: str, delivery_id: str) -> int:
    headers = {
        "Content-Type": "application/json",
        "Jxc-Webhook-Id": delivery_id,
        "Jxc-Webhook-Signature": signature,
    }
    return httpx.post(url, content=body, headers=headers, trust_env=False).status_code


def test_the_example_consumer_verifies_dedupes_and_refuses(
    hooks: TestClient, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("JXC_WEBHOOK_QUIET", "1")
    consumer_module = example()
    engine = hooks.app.state.engine  # type: ignore[attr-defined]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    made = ok(hooks.post(WEBHOOKS, json={"url": url, "events": ["alert.*"]}), 201)
    secret, subscription = made["secret"], made["subscription_id"]
    handled: list[dict[str, Any]] = []
    consumer = consumer_module.Consumer(
        [secret], port=port, inbox=str(tmp_path / "inbox.sqlite3"), handle=handled.append
    )
    with consumer:
        # a real delivery: accepted (2xx), kept once, handled by the worker thread
        raise_alert(engine, "PILL")
        assert run_pass(hooks).delivered == 1
        assert wait_for(lambda: len(handled) == 1)
        (first,) = deliveries(hooks, subscription)
        assert (first["status"], first["last_status_code"]) == ("delivered", 204)
        assert handled[0]["type"] == "alert.raise"
        assert handled[0]["resource_id"] == "low-stock/S01/PILL"
        with engine.connect() as connection:
            payload = connection.execute(select(webhook_deliveries.c.payload)).scalar_one()
        assert json.loads(payload) == handled[0]

        # the same delivery replayed by hand: central sends it again, the consumer answers
        # 200 and does not handle it twice
        ok(hooks.post(f"{WEBHOOKS}/deliveries/{first['delivery_id']}/replay"))
        assert run_pass(hooks).delivered == 1
        (replayed,) = deliveries(hooks, subscription)
        assert (replayed["status"], replayed["last_status_code"]) == ("delivered", 200)

        # a tampered body, a stale signature, no signature, a repeat signed afresh
        body = payload.encode()
        now = int(time.time())
        signed = webhooks.sign(secret, body, now)
        tampered = body.replace(b"PILL", b"PILX")
        assert post(url, tampered, signed, "00000000-0000-7000-8000-000000000001") == 401
        stale = webhooks.sign(secret, body, now - 301)
        assert post(url, body, stale, "00000000-0000-7000-8000-000000000002") == 401
        assert post(url, body, "", "00000000-0000-7000-8000-000000000003") == 401
        assert post(url, body, signed, first["delivery_id"]) == 200
        assert consumer.inbox.count() == 1

        # central rotates the secret; the consumer, not yet told, refuses what it signs;
        # central logs the 401 and retries; given the new secret, the retry is taken
        rotated = ok(hooks.post(f"{WEBHOOKS}/{subscription}/rotate-secret"))["secret"]
        raise_alert(engine, "SOAP")
        start = datetime.now(UTC)
        assert run_pass(hooks, start).failed_attempts == 1
        refused = deliveries(hooks, subscription)[-1]
        assert (refused["status"], refused["last_status_code"]) == ("pending", 401)
    assert len(handled) == 1
    assert consumer_module.Inbox(str(tmp_path / "inbox.sqlite3")).count() == 1

    again = consumer_module.Consumer(
        [rotated, secret], port=port, inbox=str(tmp_path / "inbox.sqlite3"), handle=handled.append
    )
    with again:
        assert run_pass(hooks, start + timedelta(hours=1)).delivered == 1
        assert wait_for(lambda: len(handled) == 2)
    assert handled[1]["resource_id"] == "low-stock/S01/SOAP"
    assert [d["status"] for d in deliveries(hooks, subscription)] == ["delivered", "delivered"]


def test_the_check_is_the_one_central_signs_for() -> None:
    """The example's check agrees with central's signing, both ways, for one or two secrets."""
    check = example().signature_problem
    body = b'{"event_id":1}'
    now = time.time()
    header = webhooks.sign("whsec_new", body, int(now))
    assert check(["whsec_new"], header, body, now=now) is None
    assert check(["whsec_new", "whsec_old"], header, body, now=now) is None
    assert check(["whsec_old"], header, body, now=now) is not None
    assert check(["whsec_new"], header, body + b" ", now=now) is not None
    assert check(["whsec_new"], header, body, now=now + 301) is not None
    assert check(["whsec_new"], "v1=" + header.split("v1=")[1], body, now=now) is not None
    assert check(["whsec_new"], f"t=1,t=2,{header}", body, now=now) is not None
