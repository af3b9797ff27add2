"""A push of one event, whose row, balance and the seqs past it go to PostgreSQL in one
statement (``services/ingest.py``, ``_insert_one_and_look_past``): every verdict and the
watermark as for any push, on both databases."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, update

from central_api.models import ledger_events, site_sync_state, stock_balances
from central_api.models.base import from_micro_units
from central_api.services import valuation
from tests.central.test_ingest import held_event_count, paths_taken, push, statuses, stock


def test_one_event_after_another_takes_the_common_path(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    acks = [push(client, site.batch([site.event("receipt", "1.5")])) for _ in range(3)]

    assert [ack["acked_through_seq"] for ack in acks] == [1, 2, 3]
    assert [statuses(ack) for ack in acks] == [["accepted"]] * 3
    assert paths_taken(caplog) == ["common"] * 3
    assert stock(client)[0]["qty"] == "4.5"
    assert held_event_count(engine) == 3


def test_one_event_replayed_is_a_duplicate_and_changes_nothing(
    client: TestClient, engine: Engine, site: Any
) -> None:
    batch = site.batch([site.event("receipt", "2")])
    push(client, batch)

    ack = push(client, batch)

    assert statuses(ack) == ["duplicate"]
    assert stock(client)[0]["qty"] == "2"
    assert held_event_count(engine) == 1


def test_one_event_whose_id_is_held_elsewhere_is_a_conflict(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    held = site.event("receipt", "5")
    push(client, site.batch([held]))

    ack = push(client, site.batch([{**site.event("receipt", "7"), "event_id": held["event_id"]}]))

    assert statuses(ack) == ["conflict"]
    assert ack["acked_through_seq"] == 2, "refused and recorded: settled"
    assert stock(client)[0]["qty"] == "5", "the rolled-back attempt added nothing"
    assert held_event_count(engine) == 1
    assert paths_taken(caplog)[-1] == "careful: an event id or seq is held already"


def test_one_event_into_a_balance_of_another_unit_is_invalid(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    push(client, site.batch([site.event("receipt", "10", uom="pcs")]))

    ack = push(client, site.batch([site.event("receipt", "2", uom="kg")]))

    assert statuses(ack) == ["invalid"]
    assert ack["acked_through_seq"] == 2, "refused and recorded: settled"
    assert held_event_count(engine) == 1
    assert [(row["uom"], row["qty"]) for row in stock(client)] == [("pcs", "10")]
    assert paths_taken(caplog)[-1] == (
        "careful: a balance is kept in another unit or would grow too large"
    )


def test_one_event_moves_the_watermark_over_seqs_held_past_it(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    """Seqs held above a hole the event fills: the page read with the insert walks on."""
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    push(client, site.batch(site.receipts(4)))
    with engine.begin() as connection:  # a hole at seq 2, seqs 3 and 4 held past it
        connection.execute(delete(ledger_events).where(ledger_events.c.seq == 2))
        connection.execute(
            update(site_sync_state)
            .where(site_sync_state.c.site_id == "S01")
            .values(acked_through_seq=1)
        )
    site.seq = 1

    ack = push(client, site.batch([site.event("receipt", "1")]))

    assert statuses(ack) == ["accepted"]
    assert ack["acked_through_seq"] == 4
    assert paths_taken(caplog)[-1] == "common"
    with engine.connect() as connection:
        held = connection.execute(select(site_sync_state.c.acked_through_seq)).scalar_one()
        balance = connection.execute(select(stock_balances.c.qty)).scalar_one()
    assert held == 4
    assert balance == Decimal(5), "four receipts of 1 plus this one"


def test_one_event_of_a_valued_key_writes_its_entry_and_state_in_one_statement(
    client: TestClient, engine: Engine, site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL writes the entry in a WITH of the state's update (SQLite: two); either
    way the entries and the state are what a valuation from scratch gives."""
    real = valuation._one_entry_and_its_state
    combined: list[bool] = []

    def recorded(*args: Any, **kwargs: Any) -> bool:
        combined.append(real(*args, **kwargs))
        return combined[-1]

    monkeypatch.setattr(valuation, "_one_entry_and_its_state", recorded)
    for qty in ("10", "-2.5", "4", "-11.5"):
        kind = "receipt" if not qty.startswith("-") else "sale"
        push(client, site.batch([site.event(kind, qty, unit_cost="1.25")]))
    postgresql = engine.dialect.name == "postgresql"
    assert combined == [False, postgresql, postgresql, postgresql]  # the first: no state yet
    with engine.connect() as connection:
        fresh = valuation.value_from_scratch(connection)
        stored = {
            row.event_id: valuation._result_of(row)
            for row in connection.execute(select(*valuation._ENTRY_COLUMNS))
        }
        assert stored == fresh.results
        [state] = connection.execute(select(*valuation._STATE_COLUMNS)).all()
        assert (state.qty, state.value) == (
            from_micro_units(fresh.states[(state.site_id, state.item)].qty),
            from_micro_units(fresh.states[(state.site_id, state.item)].value),
        )
        assert valuation.check(connection) == []
