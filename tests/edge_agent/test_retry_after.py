"""The edge honours a busy central's ``Retry-After``: it waits at least that long, loses nothing.

Central answers a push that could not have the write lock in time with 503 and
``Retry-After`` (``tests/central/test_write_line.py``); the pusher keeps every event,
waits at least the time asked, then sends the same batch again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from central_api.core.config import Settings
from central_api.core.db import upgrade_database, write_transaction
from central_api.main import create_app
from central_api.services.auth import add_site
from edge_agent.auth import SiteTokenAuth
from edge_agent.backoff import MAX_RETRY_AFTER_S, Backoff, retry_after_s
from edge_agent.catalog import Catalog, Puller
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from tests.patience import patience_timeout


def receipt() -> EventDraft:
    return EventDraft(
        kind=EventKind.RECEIPT, item="ITEM-1", lot="L1", location="DOCK-1", qty=Decimal(1), uom="EA"
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


def busy_central(retry_after: str | None, seen: list[httpx.Request]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return httpx.Response(503, json={"detail": "central is busy"}, headers=headers)

    return httpx.Client(base_url="http://central.test", transport=httpx.MockTransport(answer))


def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert retry_after_s("5") == 5.0
    assert retry_after_s(" 12 ") == 12.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    assert retry_after_s("86400") == MAX_RETRY_AFTER_S
    assert retry_after_s("soon") is None
    assert retry_after_s("-3") is None
    assert retry_after_s(None) is None


def test_a_floor_from_retry_after_is_never_undercut() -> None:
    for _ in range(200):
        backoff = Backoff(base_s=0.5, max_s=0.01)
        delay = backoff.failed(at_least_s=10)
        assert 10 <= delay <= 15
        assert not backoff.ready()


def test_the_pusher_waits_as_long_as_central_asks(ledger: Ledger) -> None:
    seen: list[httpx.Request] = []
    ledger.append(receipt())
    # Without Retry-After this backoff would allow a retry after at most 10 ms.
    pusher = Pusher(ledger, busy_central("30", seen), max_backoff_s=0.01)

    pusher.run()
    time.sleep(0.05)
    pusher.run()

    assert len(seen) == 1, "the second run must not send before Retry-After has passed"
    assert ledger.counts().pending == 1
    assert "503" in (pusher.state.last_error or "")
    assert not pusher.backoff.ready()


def test_a_503_without_retry_after_backs_off_as_before(ledger: Ledger) -> None:
    seen: list[httpx.Request] = []
    ledger.append(receipt())
    pusher = Pusher(ledger, busy_central(None, seen), max_backoff_s=0.01)
    pusher.run()
    deadline = time.monotonic() + patience_timeout(5)
    while not pusher.backoff.ready() and time.monotonic() < deadline:
        time.sleep(0.005)
    pusher.run()
    assert len(seen) == 2
    assert ledger.counts().pending == 1


def test_the_catalog_puller_honours_retry_after(ledger: Ledger) -> None:
    seen: list[httpx.Request] = []
    client = busy_central("20", seen)
    puller = Puller(Catalog(ledger), client, site_id="S01", max_backoff_s=0.01)
    puller.run()
    time.sleep(0.05)
    puller.run()
    assert len(seen) == 1
    assert not puller.backoff.ready()


def test_against_a_busy_central_the_pusher_keeps_everything_then_delivers(
    tmp_path: Path, ledger: Ledger
) -> None:
    """The real central, its write lock held past the bound: 503 + Retry-After, then done."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    app = create_app(Settings(database_url=url, write_wait_s=0.1, busy_retry_after_s=2))
    for _ in range(5):
        ledger.append(receipt())
    with TestClient(app) as central:
        with app.state.engine.connect() as connection:
            central.auth = SiteTokenAuth("S01", add_site(connection, "S01"))
        central.get("/healthz")
        pusher = Pusher(ledger, central, max_backoff_s=0.01)
        pusher.push_once()  # not yet busy: the token is fetched, one batch goes
        ledger.append(receipt())
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with app.state.engine.connect() as connection, write_transaction(connection):
                holding.set()
                release.wait(patience_timeout(30))

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(patience_timeout(10))
        try:
            started = time.monotonic()
            assert pusher.push_once() is False
        finally:
            release.set()
            holder.join(patience_timeout(10))
        assert ledger.counts().pending == 1
        assert "503" in (pusher.state.last_error or "")
        assert not pusher.backoff.ready()
        pusher.run()  # too early: Retry-After (2 s) has not passed
        assert ledger.counts().pending == 1
        deadline = started + patience_timeout(10)
        while not pusher.backoff.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() - started >= 2
        pusher.run()
        assert ledger.counts().pending == 0
        assert ledger.counts().synced_through == 6
