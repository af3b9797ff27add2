"""The edge ledger: gapless seq, outbox = unsynced tail, events fixed once written."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.ledger import DiskReserveError, EventDraft, Ledger, LedgerError
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


def test_mark_synced_drops_only_the_acked_prefix(ledger: Ledger) -> None:
    for _ in range(5):
        ledger.append(draft())
    assert ledger.mark_synced(3) == 3
    assert [e.seq for e in ledger.pending(10)] == [4, 5]
    assert ledger.mark_synced(3) == 0, "a repeated ack changes nothing"
    assert ledger.counts().synced_through == 3


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
        st.tuples(st.just("ack"), st.integers(0, 40)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(ops=operations)
def test_any_interleaving_keeps_the_invariants(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "edge.db"
    ledger = Ledger(path, site_id="S01")
    acked = 0
    try:
        for op, arg in ops:
            if op == "append":
                for _ in range(arg):
                    ledger.append(draft())
            elif op == "ack":
                # central can only ack what it was sent: never beyond the last seq
                through = min(arg, ledger.counts().last_seq)
                ledger.mark_synced(through)
                acked = max(acked, through)
            else:
                ledger.close()
                ledger = Ledger(path, site_id="S01")
            events = ledger.events()
            seqs = [e.seq for e in events]
            assert seqs == list(range(1, len(seqs) + 1)), "seq is gapless"
            pending = [e.seq for e in ledger.pending(10_000)]
            assert pending == [s for s in seqs if s > acked], "outbox is the unsynced tail"
    finally:
        ledger.close()


def test_disk_reserve_refuses_new_events_and_loses_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        ledger.append(draft())
        ledger.free_disk_reserve = shutil.disk_usage(tmp_path).free + 2**40  # "disk full"
        with pytest.raises(DiskReserveError, match="reserve"):
            ledger.append(draft())
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

    with pytest.raises(LedgerError, match="full"):
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


def test_idle_checkpoint_truncates_the_wal(ledger: Ledger) -> None:
    for _ in range(200):
        ledger.append(draft())
    wal = Path(f"{ledger.path}-wal")
    assert not ledger.checkpoint_if_idle(idle_s=3600), "not idle yet"
    assert ledger.checkpoint_if_idle(idle_s=0)
    assert wal.stat().st_size == 0
    assert ledger.counts().last_seq == 200
