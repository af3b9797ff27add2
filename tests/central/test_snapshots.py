"""Stock snapshots (``services.snapshots``) stay exactly the ledger's sums, and stock as of
a moment read from any of them equals the plain sum of the ledger rows up to it.

Hypothesis draws histories of two items at two locations (one with a lot) at a site,
pushed by the edge (ingest) or booked by central itself (``central_events.book``), each
movement dated anywhere in the first half of 2026 independently of when it arrives, so
most arrive late: after snapshots of later month starts were written. Between batches,
snapshots of random month starts are written as the monitor writes them (the site's lock
held; for the items with at least one, or three, movements since their last snapshot).
After each batch: ``snapshots.check`` finds nothing, and at random moments, for
every filter (the item; a location; a location and lot), the stock read from *each*
snapshot of the key (before the moment, adding; after it, subtracting) and the report's
own choice equal the sum of the ledger rows with ``occurred_at`` at or before the moment.
On both databases.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select, text

from central_api.core.db import write_transaction
from central_api.models import central_events, ledger_events
from central_api.models.stock import NO_LOT, stock_snapshot_runs, stock_snapshots
from central_api.services import central_events as central_booking
from central_api.services import reports, snapshots, valuation
from central_api.services.ingest import ingest_batch
from central_api.services.projections import AcceptedEvents, Projections
from jxc.contract import LedgerEvent, PushBatch
from jxc.paths import ITEMS, SYNC_EVENTS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import master, ok
from tests.patience import patience_timeout

__all__ = ["master"]  # the fixture, imported to be used here

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 181  # to 2026-07-01
MONTHS = [datetime(2026, month, 1, tzinfo=UTC) for month in range(2, 8)]
PLACES = [("L1", None), ("L1", "A"), ("L2", None)]
UNITS = {"PILL": "片", "BOLT": "pcs"}
_MONTH_MINUTES = [int((moment - T0).total_seconds()) // 60 for moment in MONTHS]
# Minutes from T0: on the hour, or exactly at a month start (a snapshot's own moment:
# the boundary a read or a correction could get wrong by one event).
_minute = st.integers(0, DAYS * 24 - 1).map(lambda hour: hour * 60) | st.sampled_from(
    _MONTH_MINUTES
)

_movement = st.fixed_dictionaries(
    {
        "item": st.sampled_from(["PILL", "BOLT"]),
        "place": st.sampled_from(PLACES),
        "qty": st.integers(-30, 40).filter(bool),
        "minute": _minute,
        "central": st.booleans(),
    }
)
_batch = st.fixed_dictionaries(
    {
        "moves": st.lists(_movement, min_size=1, max_size=8),
        "snapshot": st.none() | st.sampled_from(MONTHS),
        "least": st.sampled_from([1, 1, 3]),
        "as_of": st.lists(_minute, min_size=1, max_size=3),
    }
)


def _when(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def plain_sums(
    connection: Connection, site_id: str, item: str, as_of: datetime
) -> dict[tuple[str, str | None], tuple[str, Decimal]]:
    """(location, lot) -> (uom, qty) summed over both ledgers up to ``as_of``, non-zero."""
    sums: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    units: dict[tuple[str, str | None], str] = {}
    for table in (ledger_events, central_events):
        found = connection.execute(
            select(table.c.location, table.c.lot, table.c.uom, table.c.qty).where(
                table.c.site_id == site_id, table.c.item == item, table.c.occurred_at <= as_of
            )
        )
        for location, lot, uom, qty in found:
            sums[(location, lot)] += qty
            units[(location, lot)] = uom
    return {key: (units[key], qty) for key, qty in sums.items() if qty}


def _as_read(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], tuple[str, Decimal]]:
    return {(row["location"], row["lot"]): (row["uom"], row["qty"]) for row in rows}


def _book_centrally(engine: Engine, projections: Any, moves: list[dict[str, Any]]) -> None:
    """Central's own booking of ``moves`` (receipts only: a booking may not go below zero),
    each dated at its own moment, as a count's adjustments are."""
    now = datetime.now(UTC)
    with engine.connect() as connection, write_transaction(connection):
        central_booking.lock_site(connection, "S01", now=now)
        for move in moves:
            location, lot = move["place"]
            central_booking.book(
                connection,
                site_id="S01",
                movements=[
                    central_booking.Movement(
                        kind="adjustment",
                        item=move["item"],
                        location=location,
                        lot=lot,
                        qty=Decimal(abs(move["qty"])),
                        uom=UNITS[move["item"]],
                    )
                ],
                actor="test",
                ref="snapshot property",
                now=now,
                projections=projections,
                occurred_at=_when(move["minute"]),
            )


def _write_month(engine: Engine, moment: datetime, *, least: int = 1) -> None:
    """The site's snapshots at ``moment`` as the monitor writes them (lock first), once."""
    with engine.connect() as connection, write_transaction(connection):
        central_booking.lock_site(connection, "S01", now=datetime.now(UTC))
        done = connection.execute(
            select(stock_snapshot_runs.c.moment).where(
                stock_snapshot_runs.c.site_id == "S01", stock_snapshot_runs.c.moment == moment
            )
        ).first()
        if done is None:
            keys = snapshots.write_month(connection, "S01", moment, least=least)
            connection.execute(
                stock_snapshot_runs.insert().values(
                    site_id="S01", moment=moment, written_at=datetime.now(UTC), keys=keys
                )
            )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(_batch, min_size=1, max_size=4))
def test_stock_as_of_from_any_snapshot_equals_the_ledger_sum(
    master: TestClient, batches: list[dict[str, Any]]
) -> None:
    state = master.app.state  # type: ignore[attr-defined]
    engine: Engine = state.engine
    if not hasattr(state, "snapshot_ledger"):
        bolt = {"item_code": "BOLT", "name": "螺栓", "uom": "pcs"}
        ok(master.post(ITEMS, json=bolt), 201)
        state.snapshot_ledger = SiteLedger("S01")
    ledger: SiteLedger = state.snapshot_ledger
    for batch in batches:
        edge = [move for move in batch["moves"] if not move["central"]]
        if edge:
            events = [
                ledger.event(
                    "receipt" if move["qty"] > 0 else "sale",
                    str(move["qty"]),
                    item=move["item"],
                    location=move["place"][0],
                    lot=move["place"][1],
                    uom=UNITS[move["item"]],
                    occurred_at=_when(move["minute"]).isoformat(),
                )
                for move in edge
            ]
            answer = ok(master.post(SYNC_EVENTS, json=ledger.batch(events)))
            assert {v["status"] for v in answer["results"]} == {"accepted"}, answer
        central = [move for move in batch["moves"] if move["central"]]
        if central:
            _book_centrally(engine, state.projections, central)
        if batch["snapshot"] is not None:
            _write_month(engine, batch["snapshot"], least=batch["least"])
        with engine.connect() as connection:
            assert snapshots.check(connection) == []
            for minute in batch["as_of"]:
                as_of = _when(minute)
                for item in UNITS:
                    _agree(connection, item, as_of)


def _agree(connection: Connection, item: str, as_of: datetime) -> None:
    """Every way of reading the (S01, item) at ``as_of`` equals the plain ledger sum."""
    held = stock_snapshots.c
    moments = sorted(
        {
            snapshots_aware(moment)
            for moment in connection.execute(
                select(held.moment).where(held.site_id == "S01", held.item == item).distinct()
            ).scalars()
        }
    )
    expected = plain_sums(connection, "S01", item, as_of)
    filters: list[tuple[str | None, str | None]] = [(None, None), ("L1", None), ("L2", None)]
    filters += [("L1", NO_LOT), ("L1", "A")]
    for location, lot in filters:
        chosen = reports.StockFilter(site_id="S01", item=item, location=location, lot=lot)
        wanted = {
            key: value
            for key, value in expected.items()
            if (location is None or key[0] == location)
            and (lot is None or (key[1] or NO_LOT) == lot)
        }
        for moment in moments:
            read = reports.from_snapshot_at(connection, chosen, as_of, moment)
            assert _as_read(read) == wanted, (item, location, lot, as_of, moment)
        chosen_read = reports._balances_at(connection, chosen, as_of)
        assert _as_read(chosen_read) == wanted, (item, location, lot, as_of)


def snapshots_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def test_an_event_dated_this_month_touches_no_snapshot_and_a_late_one_every_later(
    master: TestClient,
) -> None:
    """The correction's cost and reach: an event dated now reads and writes nothing; one
    dated before two snapshots of its key adds to both (a new place gets a row), not to an
    earlier one, nor to another item's."""
    engine: Engine = master.app.state.engine  # type: ignore[attr-defined]
    ledger = SiteLedger("S01")
    early = [
        ledger.event("receipt", "5", item="PILL", location="L1", uom="片", occurred_at=when)
        for when in ("2026-01-10T08:00:00+00:00", "2026-02-10T08:00:00+00:00")
    ]
    ok(master.post(SYNC_EVENTS, json=ledger.batch(early)))
    for moment in MONTHS[:3]:  # Feb, Mar, Apr
        _write_month(engine, moment)

    def stored() -> dict[tuple[datetime, str, str], Decimal]:
        with engine.connect() as connection:
            return {
                (snapshots_aware(row.moment), row.location, row.item): row.qty
                for row in connection.execute(select(stock_snapshots))
            }

    # Feb (the January receipt), Mar (both); no April snapshot: nothing moved in March.
    assert stored() == {
        (MONTHS[0], "L1", "PILL"): Decimal(5),
        (MONTHS[1], "L1", "PILL"): Decimal(10),
    }
    now_event = LedgerEvent.model_validate(
        SiteLedger("S01").event("receipt", "3", item="PILL", location="L1", uom="片")
    )
    with engine.connect() as connection, write_transaction(connection):
        assert snapshots.correct(connection, "S01", [now_event]) == 0
    late = ledger.event(
        "receipt", "2", item="PILL", location="L2", uom="片", occurred_at="2026-01-20T08:00:00Z"
    )
    ok(master.post(SYNC_EVENTS, json=ledger.batch([late])))
    assert stored() == {
        (MONTHS[0], "L1", "PILL"): Decimal(5),
        (MONTHS[0], "L2", "PILL"): Decimal(2),
        (MONTHS[1], "L1", "PILL"): Decimal(10),
        (MONTHS[1], "L2", "PILL"): Decimal(2),
    }
    with engine.connect() as connection:
        assert snapshots.check(connection) == []


def test_the_monitor_writes_the_month_just_due_once_check_names_a_wrong_one_repair_drops_it(
    master: TestClient,
) -> None:
    """``write_due`` (the monitor's daily step) writes this month's start for the items
    that moved last month, and nothing on a second run; a snapshot changed by hand is
    named by ``snapshots.check`` (``jxc central check``), and ``repair`` (``--repair``)
    drops the key's snapshots, after which it is read from the ledger."""
    engine: Engine = master.app.state.engine  # type: ignore[attr-defined]
    ledger = SiteLedger("S01")
    due = snapshots.due(datetime.now(UTC))
    last_month = snapshots.previous_month(due) + timedelta(days=3)
    ok(
        master.post(
            SYNC_EVENTS,
            json=ledger.batch(
                [
                    ledger.event(
                        "receipt",
                        "7",
                        item="PILL",
                        location="L1",
                        uom="片",
                        occurred_at=last_month.isoformat(),
                    )
                ]
            ),
        )
    )
    assert snapshots.write_due(engine) == 0  # one movement: fewer than LEAST
    with engine.begin() as connection:
        connection.execute(stock_snapshot_runs.delete())
    assert snapshots.write_due(engine, least=1) == 1
    assert snapshots.write_due(engine, least=1) == 0
    with engine.connect() as connection:
        rows = connection.execute(
            select(stock_snapshots).where(stock_snapshots.c.item == "PILL")
        ).all()
        assert [(snapshots_aware(r.moment), r.location, r.qty) for r in rows] == [
            (due, "L1", Decimal(7))
        ]
        assert snapshots.check(connection) == []
    with engine.begin() as connection:
        connection.execute(stock_snapshots.update().values(qty=Decimal(6)))
    with engine.connect() as connection:
        found = snapshots.check(connection)
    assert [str(difference) for difference in found] == [
        f"stock snapshot S01/L1/PILL/- at {due.isoformat()}: stored 6, ledger says 7"
    ]
    with engine.connect() as connection, write_transaction(connection):
        assert snapshots.repair(connection) == 1
    with engine.connect() as connection:
        assert connection.execute(select(stock_snapshots)).all() == []
        assert snapshots.check(connection) == []
        moment = due + timedelta(hours=1)
        still = reports._balances_at(
            connection, reports.StockFilter(site_id="S01", item="PILL", location="L1"), moment
        )
    assert _as_read(still) == {("L1", None): ("片", Decimal(7))}


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_a_snapshot_written_while_a_late_event_is_being_pushed_waits_for_it(
    master: TestClient,
) -> None:
    """The monitor's writer takes the site's lock a push holds: started while a push of a
    late event (dated before the month start it writes) is inside its transaction, it
    waits (seen waiting on a lock in ``pg_stat_activity``), then sums the event in. A
    writer that did not lock would sum the ledger without the uncommitted event, and the
    push's correction would have found no snapshot to correct."""
    engine: Engine = master.app.state.engine  # type: ignore[attr-defined]
    ledger = SiteLedger("S01")
    due = snapshots.due(datetime.now(UTC))
    last_month = snapshots.previous_month(due)

    def pill(qty: str, day: int) -> dict[str, Any]:
        when = (last_month + timedelta(days=day)).isoformat()
        return ledger.event("receipt", qty, item="PILL", location="L1", uom="片", occurred_at=when)

    ok(master.post(SYNC_EVENTS, json=ledger.batch([pill("5", 9)])))
    late = PushBatch.model_validate(ledger.batch([pill("2", 19)]))
    inside, release = threading.Event(), threading.Event()
    patience = patience_timeout(10)

    def hold(_connection: Connection, _accepted: AcceptedEvents) -> None:
        inside.set()
        assert release.wait(patience)

    holding = Projections()
    holding.add("hold", hold)
    # The movements are found through the valuation entries, as the report finds them.
    holding.add(valuation.NAME, valuation.project)

    def push() -> None:
        with engine.connect() as connection:
            ingest_batch(
                connection=connection,
                batch=late,
                received_at=datetime.now(UTC),
                projections=holding,
            )

    def write() -> int:
        return snapshots.write_due(engine, least=1)

    with ThreadPoolExecutor(2) as pool:
        pushed = pool.submit(push)
        assert inside.wait(patience)
        written = pool.submit(write)
        with engine.connect() as connection:
            deadline = time.monotonic() + patience
            while not connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one():
                connection.rollback()
                assert time.monotonic() < deadline, "the writer never waited for the lock"
                assert not written.done(), "the writer did not wait for the push"
                time.sleep(0.01)
        release.set()
        pushed.result()
        assert written.result() == 1
    with engine.connect() as connection:
        held = connection.execute(select(stock_snapshots.c.moment, stock_snapshots.c.qty)).all()
        assert [(snapshots_aware(moment), qty) for moment, qty in held] == [(due, Decimal(7))]
        assert snapshots.check(connection) == []
