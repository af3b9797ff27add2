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
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from central_api.api.admission import MAX_AUTOMATIC, Admission, automatic_limit
from central_api.api.routes import sync
from central_api.core.config import Settings
from central_api.errors import WriteBusyError
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


def test_the_automatic_limit_stays_within_the_pool_and_the_ceiling(database_url: str) -> None:
    from central_api.core.db import create_db_engine  # noqa: PLC0415

    small = create_db_engine(database_url, pool_size=2, max_overflow=3)
    default = create_db_engine(database_url)
    try:
        assert automatic_limit(small) == 5
        assert 1 <= automatic_limit(default) <= MAX_AUTOMATIC
    finally:
        small.dispose()
        default.dispose()
