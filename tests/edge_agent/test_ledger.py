"""The edge ledger: gapless seq, outbox = unsynced tail, events fixed once written."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.ledger import (
    DiskReserveError,
    DiskSpaceError,
    EventDraft,
    Ledger,
    LedgerError,
    Refusal,
    default_lease_holder,
    holder_is_gone,
)
from jxc.contract import EventKind


def draft(qty: str = "1", item: str = "ITEM-1") -> EventDraft:
    return EventDraft(
        kind=EventKind.RECEIPT, item=item, location="DOCK-1", qty=Decimal(qty), uom="EA"
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


def test_append_writes_event_and_outbox_row_together(ledger: Ledger) -> None:
    first = ledger.append(draft("2.5"))
    second = ledger.append(draft("1"))
    assert (first.seq, second.seq) == (1, 2)
    assert [e.event_id for e in ledger.pending(10)] == [first.event_id, second.event_id]
    assert ledger.pending(10)[0].qty == Decimal("2.5")
    counts = ledger.counts()
    assert (counts.last_seq, counts.pending, counts.synced_through) == (2, 2, 0)


def test_a_queued_label_wakes_a_waiting_spooler(ledger: Ledger) -> None:
    """The wait ends because a label was queued, not because it timed out: the timeout is
    far longer than the test's own (a missed wake-up fails the test instead of passing)."""
    seen = ledger.label_generation
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(ledger.wait_for_labels(seen, 3600)))
    waiter.start()
    ledger.append(draft())  # no label: no wake-up
    ledger.append(draft(), label_printer="printer-1")
    waiter.join()
    assert woke == [seen + 1]
    assert ledger.reprint_labels([2]) == [2]
    assert ledger.label_generation == seen + 2, "a reprint wakes the spooler too"


def test_an_ack_drops_only_the_acked_prefix(ledger: Ledger) -> None:
    for _ in range(5):
        ledger.append(draft())
    assert ledger.apply_ack(1, 3) == 3
    assert [e.seq for e in ledger.pending(10)] == [4, 5]
    assert ledger.apply_ack(1, 3) == 0, "a repeated ack changes nothing"
    assert ledger.counts().synced_through == 3


def test_a_refused_event_becomes_a_dead_letter_and_can_be_requeued(ledger: Ledger) -> None:
    for _ in range(5):
        ledger.append(draft())
    marked = ledger.apply_ack(1, 4, refused={2: Refusal("invalid", "counted in pcs, not kg")})

    assert marked == 3
    assert [e.seq for e in ledger.pending(10)] == [5]
    [letter] = ledger.dead_letters()
    assert (letter.seq, letter.status, letter.detail) == (2, "invalid", "counted in pcs, not kg")
    assert ledger.event(2) is not None
    assert ledger.event(2)[1] is None, "a dead letter is not synced"  # type: ignore[index]
    counts = ledger.counts()
    assert (counts.pending, counts.dead, counts.synced_through) == (1, 1, 4)

    assert ledger.requeue([2, 3]) == [2], "only dead letters are requeued"
    assert ledger.dead_letters() == []
    assert [p.event.seq for p in ledger.pending_bodies(10)] == [2], "a batch is contiguous"
    assert [p.event.seq for p in ledger.pending_bodies(10, contiguous=False)] == [2, 5]
    assert ledger.counts().synced_through == 1

    assert ledger.apply_ack(2, 2) == 1, "accepted this time"
    assert [e.seq for e in ledger.pending(10)] == [5]
    assert ledger.counts().dead == 0


def test_an_ack_may_not_refuse_what_it_does_not_settle(ledger: Ledger) -> None:
    ledger.append(draft())
    with pytest.raises(ValueError, match="within"):
        ledger.apply_ack(1, 1, refused={2: Refusal("invalid")})


def test_event_survives_reopen_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    first = Ledger(path, site_id="S01")
    written = first.append(draft("7"))
    first.close()
    again = Ledger(path, site_id="S01")
    try:
        (reread,) = again.pending(10)
        assert reread == written
        assert reread.content_digest() == written.content_digest()
        assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert again.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        again.close()


def test_ledger_of_another_site_is_refused(tmp_path: Path) -> None:
    Ledger(tmp_path / "edge.db", site_id="S01").close()
    with pytest.raises(LedgerError, match="S01"):
        Ledger(tmp_path / "edge.db", site_id="S02")


def test_invalid_draft_leaves_no_trace(ledger: Ledger) -> None:
    ledger.append(draft())
    with pytest.raises(ValueError, match="positive"):
        ledger.append(draft("-1"))
    ledger.append(draft())
    assert [e.seq for e in ledger.events()] == [1, 2], "a refused event must not burn a seq"


def test_concurrent_appends_keep_seq_gapless(ledger: Ledger) -> None:
    def writer() -> None:
        for _ in range(50):
            ledger.append(draft())

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in ledger.events()]
    assert seqs == list(range(1, 201))
    assert len({e.event_id for e in ledger.events()}) == 200


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3)),
        st.tuples(st.just("push"), st.integers(1, 8), st.integers(0, 40), st.integers(0, 6)),
        st.tuples(st.just("requeue"), st.integers(0, 40)),
        st.tuples(st.just("reopen")),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=operations)
def test_any_interleaving_keeps_the_invariants(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    """Appends, pushes (a batch taken, central settling a prefix of it and refusing some),
    requeues and crashes (reopen), against a model of which state each event is in."""
    path = tmp_path_factory.mktemp("prop") / "edge.db"
    ledger = Ledger(path, site_id="S01")
    synced: set[int] = set()
    dead: set[int] = set()
    try:
        for op, *args in ops:
            if op == "append":
                for _ in range(args[0]):
                    ledger.append(draft())
            elif op == "push":
                size, through, refuse_every = args
                batch = [p.event.seq for p in ledger.pending_bodies(size)]
                if batch:
                    # central settles up to its watermark, at most what it was sent
                    last = min(batch[-1], max(batch[0] - 1, through))
                    refused = {
                        seq: Refusal("invalid")
                        for seq in batch
                        if seq <= last and refuse_every and seq % (refuse_every + 1) == 0
                    }
                    if last >= batch[0]:
                        ledger.apply_ack(batch[0], last, refused=refused)
                        settled = set(range(batch[0], last + 1))
                        dead = (dead - settled) | set(refused)
                        synced |= settled - set(refused)
            elif op == "requeue":
                chosen = None if args[0] == 0 else [args[0]]
                dead -= set(ledger.requeue(chosen))
            else:
                ledger.close()
                ledger = Ledger(path, site_id="S01")
            seqs = [e.seq for e in ledger.events()]
            assert seqs == list(range(1, len(seqs) + 1)), "seq is gapless"
            outbox = [p.event.seq for p in ledger.pending_bodies(10_000, contiguous=False)]
            assert {letter.seq for letter in ledger.dead_letters()} == dead
            assert outbox == sorted(set(seqs) - synced - dead), "outbox = neither synced nor dead"
            run = [p.event.seq for p in ledger.pending_bodies(10_000)]
            assert run == outbox[: len(run)], "a batch is the outbox's head"
            assert run == list(range(outbox[0], outbox[0] + len(run))) if outbox else not run
            synced_at = {e.seq for e in ledger.events() if ledger.event(e.seq)[1] is not None}  # type: ignore[index]
            assert synced_at == synced
    finally:
        ledger.close()


def test_disk_reserve_refuses_new_events_and_keeps_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        ledger.append(draft())
        ledger.free_disk_reserve = shutil.disk_usage(tmp_path).free + 2**40  # "disk full"
        with pytest.raises(DiskReserveError, match="reserve") as refused:
            ledger.append(draft())
        # The event is gone, and the message says so: whatever made it must be redone.
        assert "NOT recorded" in str(refused.value)
        assert "scan again" in str(refused.value)
        assert "nothing lost" not in str(refused.value)
        assert ledger.integrity_ok()
        assert [e.seq for e in ledger.events()] == [1]
        ledger.free_disk_reserve = 0  # space freed: recording goes on, gapless
        assert ledger.append(draft()).seq == 2
    finally:
        ledger.close()


def test_sqlite_full_is_a_clear_error_and_the_ledger_stays_intact(ledger: Ledger) -> None:
    """A database that cannot grow (here: capped pages) fails the event, not the ledger."""
    ledger.append(draft())
    (pages,) = ledger.conn.execute("PRAGMA page_count").fetchone()
    ledger.conn.execute(f"PRAGMA max_page_count = {pages}")

    def fill() -> None:
        for _ in range(10_000):
            ledger.append(draft(item="X" * 60))

    with pytest.raises(DiskSpaceError, match="full"):
        fill()
    held = ledger.counts().last_seq
    assert ledger.integrity_ok()
    assert [e.seq for e in ledger.events()] == list(range(1, held + 1))
    assert [e.seq for e in ledger.pending(100_000)] == list(range(1, held + 1))


def test_pending_is_bounded_by_bytes_but_never_empty(ledger: Ledger) -> None:
    for _ in range(10):
        ledger.append(draft())
    one = len(ledger.pending_bodies(1)[0].body) + 1
    assert len(ledger.pending_bodies(100, max_bytes=one * 3)) == 3
    assert len(ledger.pending_bodies(100, max_bytes=1)) == 1, "a big event must not stall"


def test_sender_lease_admits_one_holder_until_it_expires(ledger: Ledger) -> None:
    assert ledger.acquire_sender_lease("a", ttl_s=60)
    assert not ledger.acquire_sender_lease("b", ttl_s=60)
    assert ledger.acquire_sender_lease("a", ttl_s=60), "the holder renews"
    ledger.release_sender_lease("a")
    assert ledger.acquire_sender_lease("b", ttl_s=0.01)
    time.sleep(0.02)
    assert ledger.acquire_sender_lease("a", ttl_s=60), "an expired lease is taken over"
    assert ledger.sender_lease() is not None
    assert ledger.sender_lease()[0] == "a"  # type: ignore[index]


def dead_pid() -> int:
    """The pid of a process that has run and been reaped: no process has it now."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_lease_whose_holder_provably_died_is_taken_over_at_once(ledger: Ledger) -> None:
    """An agent restarted on the same machine does not wait out its predecessor's lease."""
    host = socket.gethostname()
    dead = f"{host}:{dead_pid()}:0a1b2c3d"
    assert ledger.acquire_sender_lease(dead, ttl_s=3600)
    successor = default_lease_holder()
    assert ledger.acquire_sender_lease(successor, ttl_s=15)
    assert ledger.sender_lease()[0] == successor  # type: ignore[index]


@pytest.mark.parametrize(
    "holder",
    [
        "other-host:1:0a1b2c3d",  # another machine: its processes cannot be seen from here
        f"{socket.gethostname()}:{os.getppid()}:0a1b2c3d",  # a live process on this host
        "agent-a",  # not host:pid:random
        f"{socket.gethostname()}:x:0a1b2c3d",
    ],
)
def test_a_lease_whose_holder_may_live_is_waited_out(ledger: Ledger, holder: str) -> None:
    assert ledger.acquire_sender_lease(holder, ttl_s=3600)
    assert not holder_is_gone(holder)
    assert not ledger.acquire_sender_lease(default_lease_holder(), ttl_s=15)


def test_a_holder_with_this_process_s_pid_is_alive_only_if_this_process_made_it() -> None:
    """A container restarted as pid 1 finds its predecessor's pid 1 holder: that one is gone."""
    ours = default_lease_holder()
    predecessor = f"{socket.gethostname()}:{os.getpid()}:ffffffff"
    assert not holder_is_gone(ours)
    assert holder_is_gone(predecessor)


def test_holding_the_lease_marks_the_agent_seen(ledger: Ledger) -> None:
    assert ledger.agent_seen_at() is None
    holder = default_lease_holder()
    ledger.acquire_sender_lease(holder, ttl_s=15)
    renewed = ledger.agent_seen_at()
    assert renewed is not None
    ledger.release_sender_lease(holder)
    released = ledger.agent_seen_at()
    assert released is not None
    assert released >= renewed


def test_idle_checkpoint_truncates_the_wal(ledger: Ledger) -> None:
    for _ in range(200):
        ledger.append(draft())
    wal = Path(f"{ledger.path}-wal")
    assert not ledger.checkpoint_if_idle(idle_s=3600), "not idle yet"
    assert ledger.checkpoint_if_idle(idle_s=0)
    assert wal.stat().st_size == 0
    assert ledger.counts().last_seq == 200
