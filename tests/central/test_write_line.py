"""Writers wait in line for the write lock, and not for ever: past the bound, 503 + Retry-After.

A push that cannot have the database's write lock within ``write_wait_s`` is answered
503 with ``Retry-After`` and changes nothing; the same push goes through once the lock is
free. On SQLite the line is central's own :class:`~central_api.core.db.WriteGate` (first
come, first served); on PostgreSQL it is the server's lock queue, bounded by
``lock_timeout``.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from central_api.core import db
from central_api.core.config import Settings
from central_api.core.db import WriteGate, after_commit, write_gate, write_transaction
from central_api.errors import WriteBusyError
from central_api.main import create_app
from central_api.models import ledger_events
from jxc.paths import HEALTH, SYNC_EVENTS
from tests.central.conftest import EverySiteAuth, SiteLedger
from tests.patience import patience_timeout

RETRY_AFTER_S = 3


@pytest.fixture
def busy_client(database_url: str) -> Iterator[TestClient]:
    """Central with a short bound on waiting for the write lock."""
    settings = Settings(database_url=database_url, write_wait_s=0.2, busy_retry_after_s=3)
    app = create_app(settings)
    with TestClient(app) as client:
        client.auth = EverySiteAuth(app)
        yield client


@contextmanager
def lock_held(engine: Engine) -> Iterator[None]:
    """Another writer holds the lock every push needs until the block ends.

    SQLite: a write transaction of this process (it holds the write gate and SQLite's
    lock). PostgreSQL: the audit chain's head row, locked by another transaction, which
    every audited write must lock too.
    """
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                with write_transaction(connection):
                    holding.set()
                    release.wait(patience_timeout(30))
            else:
                with connection.begin():
                    connection.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
                    holding.set()
                    release.wait(patience_timeout(30))

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(patience_timeout(10))
    try:
        yield
    finally:
        release.set()
        holder.join(patience_timeout(10))


def held_events(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(ledger_events)).scalar())


def assert_busy_answer(answer: Any, retry_after_s: int) -> None:
    """The busy answer the edge honours: 503, ``Retry-After``, a problem saying so."""
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == str(retry_after_s)
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == 503
    assert "busy" in body["detail"]
    assert "nothing was changed" in body["detail"]


def test_a_push_that_cannot_get_the_lock_in_time_is_answered_503_with_retry_after(
    busy_client: TestClient, site: SiteLedger
) -> None:
    engine: Engine = busy_client.app.state.engine  # type: ignore[attr-defined]
    auth: EverySiteAuth = busy_client.auth  # type: ignore[assignment]
    auth.token_for("S01")  # the credential is made (a write) before the lock is taken
    batch = site.batch(site.receipts(3))

    with lock_held(engine):
        answer = busy_client.post(SYNC_EVENTS, json=batch)

    assert_busy_answer(answer, RETRY_AFTER_S)
    assert held_events(engine) == 0

    again = busy_client.post(SYNC_EVENTS, json=batch)
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["results"]] == ["accepted"] * 3
    assert held_events(engine) == 3


def test_a_push_waiting_in_line_does_not_hold_up_other_requests(
    tmp_path: Any, site: SiteLedger
) -> None:
    """While a push waits for the write lock, the event loop answers other requests."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", write_wait_s=60)
    from central_api.core.db import upgrade_database  # noqa: PLC0415

    upgrade_database(settings.database_url)
    app = create_app(settings)
    with TestClient(app) as client:
        client.auth = EverySiteAuth(app)
        client.auth.token_for("S01")
        answers: list[int] = []
        with lock_held(app.state.engine):
            pusher = threading.Thread(
                target=lambda: answers.append(
                    client.post(SYNC_EVENTS, json=site.batch(site.receipts(1))).status_code
                )
            )
            pusher.start()
            gate = write_gate(app.state.engine)
            assert gate is not None
            deadline = time.monotonic() + patience_timeout(10)
            while gate.waiting == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gate.waiting == 1, "the push should be waiting in line"
            assert client.get(HEALTH).status_code == 200
            assert answers == [], "the push must still be waiting"
        pusher.join(patience_timeout(30))
        assert answers == [200]


def test_writers_are_let_in_first_come_first_served() -> None:
    gate = WriteGate(wait_s=None)
    order: list[int] = []
    gate.acquire()

    def writer(number: int) -> None:
        gate.acquire()
        order.append(number)
        gate.release()

    threads = []
    for number in range(6):
        thread = threading.Thread(target=writer, args=(number,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + patience_timeout(5)
        while gate.waiting < number + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert gate.waiting == number + 1
    gate.release()
    for thread in threads:
        thread.join(patience_timeout(5))
    assert order == list(range(6))


def test_a_writer_not_let_in_within_its_bound_leaves_the_line() -> None:
    gate = WriteGate(wait_s=0.05, retry_after_s=7)
    gate.acquire()
    refused: list[WriteBusyError] = []

    def writer() -> None:
        try:
            gate.acquire()
        except WriteBusyError as busy:
            refused.append(busy)

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(patience_timeout(5))
    assert len(refused) == 1
    assert refused[0].retry_after_s == 7
    assert gate.waiting == 0
    gate.release()
    assert gate.acquire()  # free again: the next writer walks in
    gate.release()


def test_the_holder_opening_a_second_write_is_not_made_to_wait_for_itself() -> None:
    gate = WriteGate(wait_s=None)
    assert gate.acquire()
    assert gate.acquire() is False  # goes straight on (SQLite's own lock decides)
    gate.release()
    assert gate.waiting == 0


def test_work_queued_after_commit_runs_once_committed_as_a_loop_and_bounded(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``after_commit``: dropped on rollback, once per key, outside the transaction; work
    queuing more in a transaction of its own is run by the same loop (a chain as long as
    the bound, not a recursion as deep as the chain), and stops at the bound."""
    ran: list[object] = []

    def note(key: object) -> Any:
        def work(connection: Any) -> None:
            assert not connection.in_transaction()
            ran.append(key)

        return work

    with engine.connect() as connection:

        def queue_and_fail() -> None:
            with write_transaction(connection):
                after_commit(connection, "lost", note("lost"))
                raise RuntimeError

        with pytest.raises(RuntimeError):
            queue_and_fail()
        with write_transaction(connection):
            after_commit(connection, "a", note("a"))
            after_commit(connection, "a", note("a again"))
            after_commit(connection, "b", note("b"))
        assert ran == ["a", "b"]

        ran.clear()
        depth: list[int] = []

        def chain(step: int) -> Any:
            def work(connection: Any) -> None:
                depth.append(len(inspect.stack(0)))
                ran.append(step)
                with write_transaction(connection):
                    after_commit(connection, ("chain", step + 1), chain(step + 1))

            return work

        monkeypatch.setattr(db, "MAX_AFTER_COMMIT", 50)
        with write_transaction(connection):
            after_commit(connection, ("chain", 0), chain(0))
        assert ran == list(range(50))
        assert max(depth) == min(depth)
