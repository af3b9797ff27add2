"""At most N pushes in flight per process; the next waits on the event loop, bounded, then 503.

A push that finds ``max_pushes_in_flight`` pushes inside waits, holding no worker thread
and no connection, at most ``write_wait_s``; then it is answered the busy answer the
edge honours (503, ``Retry-After``, nothing stored). Once a slot is free it goes through.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from central_api.api.admission import (
    MAX_AUTOMATIC,
    POSTGRESQL_AUTOMATIC,
    Admission,
    automatic_limit,
)
from central_api.api.routes import sync
from central_api.core.config import Settings
from central_api.errors import WriteBusyError
from central_api.main import attach_database
from jxc.paths import SYNC_EVENTS
from tests.central.conftest import EverySiteAuth, SiteLedger, central_app
from tests.central.test_write_line import assert_busy_answer
from tests.patience import patience_timeout

RETRY_AFTER_S = 3


@pytest.fixture
def one_push_client(database_url: str) -> Iterator[TestClient]:
    """Central letting one push in at a time, with a short bound on waiting."""
    settings = Settings(
        database_url=database_url,
        write_wait_s=0.2,
        busy_retry_after_s=RETRY_AFTER_S,
        max_pushes_in_flight=1,
    )
    with central_app(settings) as app, TestClient(app) as client:
        client.auth = EverySiteAuth(app)
        yield client


def busy_count(registry: CollectorRegistry, at: str) -> float:
    return registry.get_sample_value("jxc_ingest_pushes_busy_total", {"at": at}) or 0.0


def test_a_push_beyond_the_limit_is_answered_503_and_goes_through_once_a_slot_is_free(
    one_push_client: TestClient, site: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = one_push_client
    app: Any = client.app
    registry = app.state.metrics.registry
    refused_before = busy_count(registry, "admission")
    client.auth.token_for("S01")  # type: ignore[union-attr]  # the credential, made first
    inside, release = threading.Event(), threading.Event()
    real_push = sync._push

    def held_push(*args: Any) -> bytes:
        inside.set()
        assert release.wait(patience_timeout(30))
        return real_push(*args)

    monkeypatch.setattr(sync, "_push", held_push)
    first, second = site.batch(site.receipts(2)), site.batch(site.receipts(1))
    answers: list[int] = []
    pusher = threading.Thread(
        target=lambda: answers.append(client.post(SYNC_EVENTS, json=first).status_code)
    )
    pusher.start()
    try:
        assert inside.wait(patience_timeout(10)), "the first push should be inside"
        refused = client.post(SYNC_EVENTS, json=second)
    finally:
        release.set()
        pusher.join(patience_timeout(30))

    assert_busy_answer(refused, RETRY_AFTER_S)
    assert busy_count(registry, "admission") == refused_before + 1
    assert answers == [200]
    assert app.state.push_admission.inside == 0

    again = client.post(SYNC_EVENTS, json=second)
    assert again.status_code == 200, again.text
    assert again.json()["acked_through_seq"] == 3


def test_the_line_lets_in_first_come_first_served_and_refuses_past_its_bound() -> None:
    async def scenario() -> tuple[list[int], float]:
        admission = Admission(limit=1, wait_s=patience_timeout(10), retry_after_s=2)
        order: list[int] = []
        lined_up = [asyncio.Event() for _ in range(3)]

        async def push(number: int) -> None:
            lined_up[number].set()
            async with admission.admitted():
                order.append(number)

        async with admission.admitted():
            tasks = []
            for number in range(3):  # each joins the line before the next starts
                tasks.append(asyncio.create_task(push(number)))
                await lined_up[number].wait()
            assert admission.waiting == 3
        await asyncio.gather(*tasks)
        assert admission.inside == 0

        admission.wait_s = 0.01
        async with admission.admitted():
            with pytest.raises(WriteBusyError) as refused:
                async with admission.admitted():
                    pass
        assert admission.waiting == 0
        assert admission.inside == 0
        return order, refused.value.retry_after_s

    order, retry_after_s = asyncio.run(scenario())
    assert order == [0, 1, 2]
    assert retry_after_s == 2


def test_the_automatic_limit_is_the_pools_configured_capacity_within_the_ceiling() -> None:
    assert automatic_limit(pool_size=2, max_overflow=3) == 5
    assert automatic_limit(pool_size=5, max_overflow=10) == 15
    assert automatic_limit(pool_size=20, max_overflow=10) == MAX_AUTOMATIC
    assert automatic_limit(pool_size=4, max_overflow=-1) == MAX_AUTOMATIC  # no bound


def test_on_postgresql_the_automatic_limit_is_a_few_pushes_within_the_pool() -> None:
    """A process's Python runs one thread at a time: on PostgreSQL a few pushes in flight
    fill each other's database waits, and the rest wait in the first-come line."""
    for pool_size, max_overflow in ((5, 10), (20, 10), (4, -1)):
        limit = automatic_limit(
            pool_size=pool_size, max_overflow=max_overflow, dialect="postgresql"
        )
        assert limit == POSTGRESQL_AUTOMATIC
    assert automatic_limit(pool_size=1, max_overflow=0, dialect="postgresql") == 1


def test_central_sizes_its_pool_and_its_limit_from_the_public_settings(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool settings reach the engine, and the automatic limit is computed from them,
    not read back from the pool's private attributes."""
    monkeypatch.setenv("JXC_CENTRAL_POOL_SIZE", "2")
    monkeypatch.setenv("JXC_CENTRAL_POOL_MAX_OVERFLOW", "1")
    settings = Settings(database_url=database_url)
    assert (settings.pool_size, settings.pool_max_overflow) == (2, 1)
    automatic = 3 if settings.database_url.startswith("sqlite") else POSTGRESQL_AUTOMATIC
    for given, limit in (
        (settings, automatic),
        (settings.model_copy(update={"max_pushes_in_flight": 7}), 7),
    ):
        app = FastAPI()  # what the database part of the app is made of, without routes
        attach_database(app, given)
        try:
            assert app.state.engine.pool.size() == 2
            assert app.state.push_admission.limit == limit
        finally:
            app.state.engine.dispose()


def test_each_event_loop_has_a_line_of_its_own() -> None:
    """Two loops on two threads share one Admission (as the test suite's apps do): each
    lets in up to the limit, and a push waiting on one loop is let in by that loop's own
    release, never by the other's."""
    admission = Admission(limit=1, wait_s=patience_timeout(10))
    both_inside = threading.Barrier(2, timeout=patience_timeout(10))
    outcome: dict[str, list[str]] = {}

    async def on_a_loop(name: str) -> None:
        steps: list[str] = []
        outcome[name] = steps
        lined_up = asyncio.Event()

        async def second() -> None:
            lined_up.set()
            async with admission.admitted():
                steps.append("second in")

        async with admission.admitted():
            steps.append("first in")
            # The other loop's first push is inside at the same time: the limit is per loop.
            await asyncio.to_thread(both_inside.wait)
            waiter = asyncio.create_task(second())
            await lined_up.wait()
            steps.append("first out")
        await waiter

    threads = [
        threading.Thread(target=lambda name=name: asyncio.run(on_a_loop(name)))
        for name in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(patience_timeout(30))
    assert outcome == {name: ["first in", "first out", "second in"] for name in ("a", "b")}
    assert admission.inside == 0
    assert admission.waiting == 0
    assert admission.refused == 0
