"""Group commit on SQLite: pushes waiting together commit together, and each keeps its promises.

Each push of a group is merged in its own savepoint and answered only after the group's
commit; one that fails is answered its own error while the others are stored; each has
its own audit entry; a push not taken into a group within the bound is refused as busy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select

from central_api.core.db import create_db_engine, upgrade_database, write_gate, write_transaction
from central_api.errors import SequenceGapError, WriteBusyError
from central_api.models import audit_log, ledger_events
from central_api.services.audit import verify_chain
from central_api.services.ingest import (
    UNDO_BY_ROLLBACK,
    CarefulPathNeeded,
    PushOutcome,
    merge_push,
)
from central_api.services.projections import Projections
from central_api.services.push_group import PushGroup
from jxc.contract import PushBatch
from tests.central.conftest import SiteLedger
from tests.patience import patience_timeout


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    engine = create_db_engine(url, write_wait_s=patience_timeout(10))
    yield engine
    engine.dispose()


def push(group: PushGroup, batch: PushBatch) -> PushOutcome:
    merged = group.run(
        lambda connection: merge_push(
            connection, batch=batch, received_at=datetime.now(UTC), projections=Projections()
        ),
        events=len(batch.events),
    )
    return merged.committed()


@contextmanager
def gate_held(engine: Engine) -> Iterator[None]:
    """Another writer of this process holds the write lock until the block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.connect() as connection, write_transaction(connection):
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


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + patience_timeout(10)
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.005)
    assert condition(), what  # type: ignore[operator]


def count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar())  # type: ignore[arg-type]


def test_pushes_waiting_together_are_committed_together(sqlite_engine: Engine) -> None:
    group = PushGroup(sqlite_engine, wait_s=patience_timeout(10))
    sites = [SiteLedger(f"S{n:02d}") for n in range(1, 9)]
    batches = [PushBatch.model_validate(site.batch(site.receipts(3))) for site in sites]
    gate = write_gate(sqlite_engine)
    assert gate is not None

    with ThreadPoolExecutor(len(batches)) as pool, gate_held(sqlite_engine):
        first = pool.submit(push, group, batches[0])
        wait_until(lambda: gate.waiting == 1, "the first push leads and waits at the gate")
        rest = [pool.submit(push, group, batch) for batch in batches[1:]]
        wait_until(lambda: len(group._line) == len(rest), "the others wait in line")
    outcomes = [first.result(), *(future.result() for future in rest)]

    assert [outcome.acked_through_seq for outcome in outcomes] == [3] * len(batches)
    assert group.merged == len(batches)
    assert group.commits == 2  # the first alone, then the seven that waited behind it
    assert count(sqlite_engine, ledger_events) == 3 * len(batches)
    assert count(sqlite_engine, audit_log) == len(batches)  # one entry per push
    with sqlite_engine.connect() as connection:
        assert verify_chain(connection).broken_at is None


def test_a_failing_push_is_answered_its_error_and_the_others_are_stored(
    sqlite_engine: Engine,
) -> None:
    group = PushGroup(sqlite_engine, wait_s=patience_timeout(10))
    good, bad = SiteLedger("S01"), SiteLedger("S02")
    bad.seq = 5  # its first event is seq 6: a gap, since central holds nothing of S02
    batches = [
        PushBatch.model_validate(good.batch(good.receipts(2))),
        PushBatch.model_validate(bad.batch(bad.receipts(2))),
        PushBatch.model_validate(good.batch(good.receipts(2))),
    ]
    gate = write_gate(sqlite_engine)
    assert gate is not None
    results: list[Future[PushOutcome]] = []
    with ThreadPoolExecutor(4) as pool, gate_held(sqlite_engine):
        first = SiteLedger("S09")
        leader = pool.submit(push, group, PushBatch.model_validate(first.batch(first.receipts(1))))
        wait_until(lambda: gate.waiting == 1, "the leader waits at the gate")
        for batch in batches:
            results.append(pool.submit(push, group, batch))
            queued = len(results)
            wait_until(lambda: len(group._line) == queued, "in line in order")  # noqa: B023

    assert leader.result().acked_through_seq == 1
    assert results[0].result().acked_through_seq == 2
    with pytest.raises(SequenceGapError):
        results[1].result()
    assert results[2].result().acked_through_seq == 4
    assert count(sqlite_engine, ledger_events) == 1 + 4
    assert count(sqlite_engine, audit_log) == 3  # the refused push left no entry
    with sqlite_engine.connect() as connection:
        assert verify_chain(connection).broken_at is None


def test_a_push_alone_runs_without_a_savepoint_and_fails_alone(sqlite_engine: Engine) -> None:
    """A group of one has no savepoint (two statements fewer a push): a push that fails
    alone rolls its transaction back, is answered its error, and leaves nothing; the
    site's next push goes through as if the failed one had never come."""
    group = PushGroup(sqlite_engine, wait_s=patience_timeout(10))
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(sqlite_engine, "before_cursor_execute", seen)
    try:
        site = SiteLedger("S01")
        first = PushBatch.model_validate(site.batch(site.receipts(2)))
        assert push(group, first).acked_through_seq == 2
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", seen)
    # Only the common path's own savepoint (a replay falls back to the careful path).
    assert [text for text in statements if text.startswith("SAVEPOINT")] == [
        "SAVEPOINT sa_savepoint_1"
    ]
    gap = SiteLedger("S01")
    gap.seq = 5
    with pytest.raises(SequenceGapError):
        push(group, PushBatch.model_validate(gap.batch(gap.receipts(1))))
    assert count(sqlite_engine, ledger_events) == 2
    assert count(sqlite_engine, audit_log) == 1
    site_next = PushBatch.model_validate(site.batch(site.receipts(1)))
    assert push(group, site_next).acked_through_seq == 3
    assert (group.commits, group.merged) == (2, 2)
    with sqlite_engine.connect() as connection:
        assert verify_chain(connection).broken_at is None


def test_pushes_not_taken_in_time_are_refused_as_busy_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    engine = create_db_engine(url, write_wait_s=0.2, busy_retry_after_s=4)
    try:
        group = PushGroup(engine, wait_s=0.2, retry_after_s=4)
        sites = [SiteLedger(f"S{n:02d}") for n in range(1, 4)]
        with ThreadPoolExecutor(3) as pool, gate_held(engine):
            futures = [
                pool.submit(push, group, PushBatch.model_validate(site.batch(site.receipts(1))))
                for site in sites
            ]
            errors = []
            for future in futures:
                with pytest.raises(WriteBusyError) as refused:
                    future.result(timeout=patience_timeout(10))
                errors.append(refused.value)
        assert all(error.retry_after_s == 4 for error in errors)
        assert count(engine, ledger_events) == 0
        assert not group._line
        # and the line works again once the lock is free
        site = SiteLedger("S01")
        assert (
            push(group, PushBatch.model_validate(site.batch(site.receipts(1)))).acked_through_seq
            == 1
        )
    finally:
        engine.dispose()


def test_a_group_holds_no_more_events_than_its_bound(sqlite_engine: Engine) -> None:
    """Large pushes waiting together are not merged past ``max_events``: the last push
    of a group must be answered within an edge's timeout."""
    group = PushGroup(sqlite_engine, wait_s=patience_timeout(10), max_events=25)
    sites = [SiteLedger(f"S{n:02d}") for n in range(1, 6)]
    batches = [PushBatch.model_validate(site.batch(site.receipts(10))) for site in sites]
    gate = write_gate(sqlite_engine)
    assert gate is not None
    with ThreadPoolExecutor(len(batches)) as pool, gate_held(sqlite_engine):
        futures = [pool.submit(push, group, batches[0])]
        wait_until(lambda: gate.waiting == 1, "the first push leads and waits at the gate")
        for batch in batches[1:]:
            futures.append(pool.submit(push, group, batch))
            queued = len(futures) - 1
            wait_until(lambda: len(group._line) == queued, "in line in order")  # noqa: B023
    assert [future.result().acked_through_seq for future in futures] == [10] * len(batches)
    # the first alone, then 10 + 10 (a third would make 30 > 25), then the same again
    assert group.commits == 3
    assert count(sqlite_engine, ledger_events) == 50


def push_as_the_route_does(group: PushGroup, batch: PushBatch) -> PushOutcome:
    """As ``POST /sync/events`` merges on SQLite: no savepoint of the push's own; a missed
    common path is rolled back (the group's transaction or savepoint) and merged again."""
    merge = partial(
        merge_push, batch=batch, received_at=datetime.now(UTC), projections=Projections()
    )
    try:
        merged = group.run(partial(merge, undo=UNDO_BY_ROLLBACK), events=len(batch.events))
    except CarefulPathNeeded as missed:
        merged = group.run(partial(merge, careful_because=missed.why), events=len(batch.events))
    return merged.committed()


def test_a_replay_in_a_group_without_its_own_savepoint_is_merged_again_carefully(
    sqlite_engine: Engine,
) -> None:
    """The route merges a push with no savepoint of its own (``UNDO_BY_ROLLBACK``): a
    replayed batch among fresh ones breaks the common path's insert, the group's savepoint
    undoes it, and its second merge answers every event a duplicate; the others are stored
    once, each push has its one audit entry, and no statement sent a push's own savepoint."""
    group = PushGroup(sqlite_engine, wait_s=patience_timeout(10))
    fresh, replayed = SiteLedger("S01"), SiteLedger("S02")
    stored = PushBatch.model_validate(replayed.batch(replayed.receipts(2)))
    assert push_as_the_route_does(group, stored).acked_through_seq == 2
    batches = [
        PushBatch.model_validate(fresh.batch(fresh.receipts(2))),
        stored,
        PushBatch.model_validate(fresh.batch(fresh.receipts(1))),
    ]
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    gate = write_gate(sqlite_engine)
    assert gate is not None
    results: list[Future[PushOutcome]] = []
    event.listen(sqlite_engine, "before_cursor_execute", seen)
    try:
        with ThreadPoolExecutor(4) as pool, gate_held(sqlite_engine):
            first = SiteLedger("S09")
            leader = pool.submit(
                push_as_the_route_does,
                group,
                PushBatch.model_validate(first.batch(first.receipts(1))),
            )
            wait_until(lambda: gate.waiting == 1, "the leader waits at the gate")
            for batch in batches:
                results.append(pool.submit(push_as_the_route_does, group, batch))
                queued = len(results)
                wait_until(lambda: len(group._line) == queued, "in line in order")  # noqa: B023
        outcomes = [future.result() for future in results]
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", seen)

    assert leader.result().acked_through_seq == 1
    assert [outcome.acked_through_seq for outcome in outcomes] == [2, 2, 3]
    assert {str(v["status"]) for v in outcomes[1].verdicts} == {"duplicate"}
    assert {str(v["status"]) for v in outcomes[0].verdicts + outcomes[2].verdicts} == {"accepted"}
    assert count(sqlite_engine, ledger_events) == 2 + 1 + 3
    assert count(sqlite_engine, audit_log) == 1 + 1 + 3  # one entry per push stored
    # The group of three has a savepoint per push; nothing else does (the retry is alone).
    assert len([text for text in statements if text.startswith("SAVEPOINT")]) == 3
    with sqlite_engine.connect() as connection:
        assert verify_chain(connection).broken_at is None
