"""Two sites whose late events cascade into each other through transfers never deadlock.

A late receipt at a site re-values that site's stock, which changes what its
transfer_out cost, which is the receiving site's transfer_in cost. The receiving site is
re-valued in a transaction of its own, after the push committed, holding only that
site's lock (``docs/valuation.md``, "Transfers"), from a durable ``valuation_pending``
row that its next push or ``jxc central check --repair`` settles if a crash came first.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from central_api.core.db import write_transaction
from central_api.models import valuation_entries, valuation_pending
from central_api.services import valuation
from central_api.services.ingest import ingest_batch
from central_api.services.projections import AcceptedEvents, Projections
from jxc.contract import PushBatch
from tests.central.conftest import SiteLedger
from tests.patience import patience_timeout

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _at(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def _transfer(ledger: SiteLedger, kind: str, qty: str, transfer: str, minute: int) -> Any:
    return ledger.event(
        kind,
        qty,
        item="TEA",
        uom="kg",
        occurred_at=_at(minute),
        doc_type="transfer_order",
        doc_id=transfer,
        doc_line=1,
    )


def _push(
    engine: Engine, ledger: SiteLedger, events: list[Any], projections: Projections | None = None
) -> None:
    if projections is None:
        projections = Projections()
        projections.add(valuation.NAME, valuation.project)
    with engine.connect() as connection:
        ingest_batch(
            connection=connection,
            batch=PushBatch.model_validate(ledger.batch(events)),
            received_at=datetime.now(UTC),
            projections=projections,
        )


def _two_sites_shipping_to_each_other(engine: Engine) -> tuple[SiteLedger, SiteLedger]:
    """S01 and S02 each receive tea, ship 4 kg to the other and receive the other's 4 kg."""
    s01, s02 = SiteLedger("S01"), SiteLedger("S02")
    for ledger, transfer, cost in ((s01, "TR1", "80"), (s02, "TR2", "50")):
        receipt = ledger.event(
            "receipt", "10", item="TEA", uom="kg", unit_cost=cost, occurred_at=_at(10)
        )
        _push(engine, ledger, [receipt, _transfer(ledger, "transfer_out", "-4", transfer, 20)])
    _push(engine, s01, [_transfer(s01, "transfer_in", "4", "TR2", 30)])
    _push(engine, s02, [_transfer(s02, "transfer_in", "4", "TR1", 30)])
    return s01, s02


def _late_receipt(ledger: SiteLedger, cost: str) -> Any:
    return ledger.event("receipt", "10", item="TEA", uom="kg", unit_cost=cost, occurred_at=_at(5))


def _assert_equal_to_from_scratch(connection: Connection) -> None:
    fresh = valuation.value_from_scratch(connection)
    stored = {
        (row.site_id, row.item): (row.qty, row.value)
        for row in connection.execute(select(*valuation._STATE_COLUMNS))
    }
    assert stored == {key: (s.qty, s.value) for key, s in fresh.states.items()}
    cogs = {
        row.event_id: (row.cogs, row.in_cost)
        for row in connection.execute(select(*valuation._ENTRY_COLUMNS))
    }
    assert cogs == {
        event_id: (result.cogs, fresh.moves[event_id].in_cost)
        for event_id, result in fresh.results.items()
    }
    assert [d for d in valuation.check(connection) if d.what != "balance"] == []
    assert connection.execute(select(valuation_pending)).all() == []


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_sites_cascading_into_each_other_at_once_both_commit(engine: Engine) -> None:
    """Each push holds its own site's lock (ingest's first statement) when the barrier
    lets both value their late receipt, whose re-valuation cascades into the other site.
    Re-valuing the other site in the push's transaction deadlocked here (PostgreSQL
    failed one push); now both commit and the values equal a valuation from scratch."""
    s01, s02 = _two_sites_shipping_to_each_other(engine)
    both_locked = threading.Barrier(2, timeout=patience_timeout(10))

    def wait_for_the_other(_connection: Connection, _accepted: AcceptedEvents) -> None:
        both_locked.wait()

    racing = Projections()
    racing.add("barrier", wait_for_the_other)
    racing.add(valuation.NAME, valuation.project)
    late = [(s01, [_late_receipt(s01, "100")]), (s02, [_late_receipt(s02, "20")])]
    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(_push, engine, ledger, events, racing) for ledger, events in late]
        for future in done:
            future.result()  # raises the push's error, a deadlock's among them

    with engine.connect() as connection:
        # S01: 20 kg worth 1800 (90 each) when 4 left for S02; S02's 20 kg 700 (35 each).
        ins = dict(
            connection.execute(
                select(valuation_entries.c.site_id, valuation.micro(valuation_entries.c.in_cost))
                .where(valuation_entries.c.kind == "transfer_in")
                .order_by(valuation_entries.c.site_id)
            ).all()
        )
        assert ins == {"S01": 35_000_000, "S02": 90_000_000}
        _assert_equal_to_from_scratch(connection)


@pytest.fixture
def no_settling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Settling after the commit skipped, as a crash right after it would: the sites
    whose settling was skipped."""
    skipped: list[str] = []
    monkeypatch.setattr(valuation, "settle_site", lambda _c, site_id: skipped.append(site_id))
    return skipped


def _pending(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [
            (row.site_id, row.link)
            for row in connection.execute(select(valuation_pending).order_by("site_id", "link"))
        ]


def _s02_in_cost(engine: Engine) -> int | None:
    with engine.connect() as connection:
        return connection.execute(
            select(valuation.micro(valuation_entries.c.in_cost)).where(
                valuation_entries.c.site_id == "S02",
                valuation_entries.c.kind == "transfer_in",
            )
        ).scalar_one()


@pytest.fixture
def crashed_before_settling(engine: Engine, no_settling: list[str]) -> SiteLedger:
    """S01 shipped 4 kg of tea to S02; a late receipt at S01 changed what it cost, and
    the push committed, but the process died before S02 was re-valued."""
    s01, s02 = SiteLedger("S01"), SiteLedger("S02")
    _push(
        engine,
        s01,
        [
            s01.event("receipt", "10", item="TEA", uom="kg", unit_cost="80", occurred_at=_at(10)),
            _transfer(s01, "transfer_out", "-4", "TR1", 20),
        ],
    )
    _push(engine, s02, [_transfer(s02, "transfer_in", "4", "TR1", 30)])
    assert _s02_in_cost(engine) == 80_000_000
    _push(engine, s01, [_late_receipt(s01, "100")])
    assert no_settling == ["S02"]
    assert _pending(engine) == [("S02", "transfer_order:TR1:1")]
    assert _s02_in_cost(engine) == 80_000_000  # not settled: still the old cost
    with engine.connect() as connection:
        found = {str(d) for d in valuation.check(connection) if d.what != "balance"}
    assert any(d.startswith("pending S02/transfer_order:TR1:1: ") for d in found), found
    assert any(d.startswith("value S02/TEA: ") for d in found), found
    return s02


def test_the_next_push_of_the_receiving_site_settles_what_a_crash_left(
    engine: Engine, crashed_before_settling: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    s02 = crashed_before_settling
    monkeypatch.undo()
    _push(engine, s02, [s02.event("sale", "-1", item="TEA", uom="kg", occurred_at=_at(40))])
    assert _pending(engine) == []
    assert _s02_in_cost(engine) == 90_000_000  # 20 kg worth 1800 when 4 left S01
    with engine.connect() as connection:
        _assert_equal_to_from_scratch(connection)


def test_check_repair_settles_what_a_crash_left(
    engine: Engine, crashed_before_settling: SiteLedger
) -> None:
    with engine.connect() as connection, write_transaction(connection):
        valuation.rebuild(connection, at=datetime.now(UTC))
    assert _pending(engine) == []
    assert _s02_in_cost(engine) == 90_000_000
    with engine.connect() as connection:
        _assert_equal_to_from_scratch(connection)
