"""Pushing a site's ledger: exactly-once effect on balances, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from central_api.models import ledger_events, refused_events, site_sync_state, stock_balances
from central_api.services.ingest import stored_event
from jxc.contract import LedgerEvent, PushAck
from jxc.paths import STOCK, SYNC_EVENTS, SYNC_REFUSED
from tests.central.conftest import problem

PUSH = SYNC_EVENTS


def push(client: TestClient, batch: dict[str, Any]) -> Any:
    response = client.post(PUSH, json=batch)
    assert response.status_code == 200, response.text
    return response.json()


def statuses(ack: dict[str, Any]) -> list[str]:
    return [result["status"] for result in ack["results"]]


def stock(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get(STOCK, params=params)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def held_event_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ledger_events)).scalar_one()


def refused_seqs(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.connect() as connection:
        return [
            (row.seq, row.status, row.attempts)
            for row in connection.execute(select(refused_events).order_by(refused_events.c.seq))
        ]


def test_accepted_batch_updates_balances_exactly(client: TestClient, site: Any) -> None:
    ack = push(
        client,
        site.batch([site.event("receipt", "1.5"), site.event("receipt", "2.25")]),
    )

    assert statuses(ack) == ["accepted", "accepted"]
    assert ack["acked_through_seq"] == 2
    assert PushAck.model_validate(ack).site_id == "S01", "the answer keeps the wire contract"
    assert stock(client) == [
        {
            "site_id": "S01",
            "location": "A-01",
            "item": "ITEM-1",
            "lot": None,
            "uom": "pcs",
            "qty": "3.75",
        }
    ]


def test_outbound_events_reduce_the_balance_to_the_last_micro_unit(
    client: TestClient, site: Any
) -> None:
    push(
        client,
        site.batch(
            [
                site.event("receipt", "10"),
                site.event("sale", "-0.000001"),
                site.event("scrap", "-2.5"),
                site.event("adjustment", "0.1"),
            ]
        ),
    )

    assert stock(client)[0]["qty"] == "7.599999"


def test_replayed_batch_changes_nothing(client: TestClient, engine: Engine, site: Any) -> None:
    batch = site.batch([site.event("receipt", "1.5"), site.event("sale", "-0.25")])
    push(client, batch)
    before = stock(client)

    replay = push(client, batch)

    assert statuses(replay) == ["duplicate", "duplicate"]
    assert replay["acked_through_seq"] == 2
    assert stock(client) == before
    assert before[0]["qty"] == "1.25"
    assert held_event_count(engine) == 2


def test_same_id_with_different_content_is_a_conflict(
    client: TestClient, engine: Engine, site: Any
) -> None:
    original = site.event("receipt", "5")
    push(client, site.batch([original]))

    tampered = {**original, "qty": "50"}
    ack = push(client, site.batch([tampered]))

    assert statuses(ack) == ["conflict"]
    assert original["event_id"] in ack["results"][0]["detail"]
    assert "different content" in ack["results"][0]["detail"]
    assert stock(client)[0]["qty"] == "5"
    assert held_event_count(engine) == 1


def test_seq_held_by_another_event_is_a_conflict(client: TestClient, site: Any) -> None:
    """An edge restored from an old backup re-uses seqs central already holds."""
    first = site.event("receipt", "1")
    push(client, site.batch([first]))

    site.seq = 0  # the restored edge numbers its next event 1 again
    reused = site.event("receipt", "7")
    ack = push(client, site.batch([reused]))

    assert statuses(ack) == ["conflict"]
    assert f"already held by event {first['event_id']}" in ack["results"][0]["detail"]
    assert stock(client)[0]["qty"] == "1"


def test_seq_gap_is_refused_naming_the_missing_range(
    client: TestClient, engine: Engine, site: Any
) -> None:
    push(client, site.batch(site.receipts(4)))
    site.seq = 6

    response = client.post(PUSH, json=site.batch(site.receipts(2)))

    assert response.status_code == 409
    assert response.json() == problem(
        409, "site S01: central holds seq through 4; batch starts at 7; missing 5..6"
    )
    assert held_event_count(engine) == 4
    assert stock(client)[0]["qty"] == "4"


def test_first_push_of_a_site_must_start_at_seq_1(
    client: TestClient, engine: Engine, site: Any
) -> None:
    site.seq = 2

    response = client.post(PUSH, json=site.batch(site.receipts(1)))

    assert response.status_code == 409
    assert "missing 1..2" in response.json()["detail"]
    with engine.connect() as connection:
        # The refused push must not even leave the site's sync row behind.
        assert connection.execute(select(site_sync_state)).all() == []


def test_partial_overlap_accepts_only_the_new_events(
    client: TestClient, engine: Engine, site: Any
) -> None:
    events = site.receipts(6, "2")
    push(client, site.batch(events[:4]))

    ack = push(client, site.batch(events[2:6]))

    assert [(r["seq"], r["status"]) for r in ack["results"]] == [
        (3, "duplicate"),
        (4, "duplicate"),
        (5, "accepted"),
        (6, "accepted"),
    ]
    assert ack["acked_through_seq"] == 6
    assert stock(client)[0]["qty"] == "12"
    assert held_event_count(engine) == 6


def test_replay_of_old_events_below_the_watermark_is_fine(client: TestClient, site: Any) -> None:
    events = site.receipts(5)
    push(client, site.batch(events))

    ack = push(client, site.batch(events[1:3]))

    assert statuses(ack) == ["duplicate", "duplicate"]
    assert ack["acked_through_seq"] == 5


def test_balances_are_kept_per_location_item_and_lot(client: TestClient, site: Any) -> None:
    push(
        client,
        site.batch(
            [
                site.event("receipt", "3", lot="L1"),
                site.event("receipt", "4", lot="L2"),
                site.event("receipt", "5"),
                site.event("receipt", "6", location="B-02", lot="L1"),
                site.event("transfer_out", "-1", lot="L1"),
            ]
        ),
    )

    assert [(r["location"], r["lot"], r["qty"]) for r in stock(client)] == [
        ("A-01", None, "5"),
        ("A-01", "L1", "2"),
        ("A-01", "L2", "4"),
        ("B-02", "L1", "6"),
    ]


def test_sites_are_independent(client: TestClient, site: Any, other_site: Any) -> None:
    push(client, site.batch(site.receipts(3)))
    ack = push(client, other_site.batch(other_site.receipts(1, "9")))

    assert ack["acked_through_seq"] == 1
    assert [(r["site_id"], r["qty"]) for r in stock(client)] == [("S01", "3"), ("S02", "9")]


def test_event_id_held_by_another_site_is_a_conflict(
    client: TestClient, site: Any, other_site: Any
) -> None:
    stolen = site.event("receipt", "1")
    push(client, site.batch([stolen]))

    copy = {**other_site.event("receipt", "1"), "event_id": stolen["event_id"]}
    ack = push(client, other_site.batch([copy]))

    assert statuses(ack) == ["conflict"]
    assert "site S01" in ack["results"][0]["detail"]
    assert ack["acked_through_seq"] == 1, "refused for good, so settled: S02 goes on"


def test_unit_other_than_the_balance_unit_is_invalid(
    client: TestClient, engine: Engine, site: Any
) -> None:
    push(client, site.batch([site.event("receipt", "10", uom="pcs")]))

    ack = push(
        client,
        site.batch([site.event("receipt", "2", uom="kg"), site.event("receipt", "1")]),
    )

    assert statuses(ack) == ["invalid", "accepted"]
    assert "counted in pcs, not kg" in ack["results"][0]["detail"]
    assert ack["acked_through_seq"] == 3, "the refused seq 2 is settled, not a hole"
    assert stock(client)[0]["qty"] == "11"
    assert refused_seqs(engine) == [(2, "invalid", 1)]


def test_a_refused_event_does_not_hold_back_the_ones_after_it(
    client: TestClient, engine: Engine, site: Any
) -> None:
    push(client, site.batch([site.event("receipt", "1")]))
    bad = site.event("receipt", "1", uom="kg")  # seq 2: refused, unit differs
    rest = site.receipts(3)  # seqs 3..5

    ack = push(client, site.batch([bad, *rest]))
    assert statuses(ack) == ["invalid", "accepted", "accepted", "accepted"]
    assert ack["acked_through_seq"] == 5
    more = push(client, site.batch(site.receipts(2)))
    assert more["acked_through_seq"] == 7, "later pushes go on past the refusal"

    replay = push(client, site.batch([bad, *rest]))
    assert statuses(replay) == ["invalid", "duplicate", "duplicate", "duplicate"]
    assert refused_seqs(engine) == [(2, "invalid", 2)], "a repeated refusal counts an attempt"
    assert stock(client)[0]["qty"] == "6"


def test_a_requeued_event_is_accepted_once_its_cause_is_fixed(
    client: TestClient, engine: Engine, site: Any
) -> None:
    push(client, site.batch([site.event("receipt", "10", uom="pcs")]))
    bad = site.event("receipt", "4", uom="box")
    push(client, site.batch([bad, site.event("receipt", "1")]))
    with engine.begin() as connection:
        # Someone at headquarters fixes the cause: the balance is kept in boxes after all.
        connection.execute(update(stock_balances).values(uom="box"))

    ack = push(client, site.batch([bad]))

    assert statuses(ack) == ["accepted"]
    assert ack["acked_through_seq"] == 3
    assert refused_seqs(engine) == []
    assert stock(client)[0]["qty"] == "15"
    assert held_event_count(engine) == 3


def test_a_refused_seq_is_never_reused_by_another_event(
    client: TestClient, engine: Engine, site: Any
) -> None:
    push(client, site.batch([site.event("receipt", "10", uom="pcs")]))
    bad = site.event("receipt", "1", uom="kg")
    push(client, site.batch([bad]))

    other = {**bad, "event_id": site.event()["event_id"], "uom": "pcs"}
    ack = push(client, site.batch([other]))

    assert statuses(ack) == ["conflict"]
    assert bad["event_id"] in ack["results"][0]["detail"]
    assert refused_seqs(engine) == [(2, "invalid", 1)]
    assert stock(client)[0]["qty"] == "10"


def test_refused_events_are_listed_for_headquarters(client: TestClient, site: Any) -> None:
    push(client, site.batch([site.event("receipt", "10", uom="pcs")]))
    bad = site.event("receipt", "1", uom="kg")
    push(client, site.batch([bad]))

    response = client.get(SYNC_REFUSED, params={"site_id": "S01"})

    assert response.status_code == 200
    [row] = response.json()
    assert (row["seq"], row["event_id"], row["status"], row["attempts"]) == (
        2,
        bad["event_id"],
        "invalid",
        1,
    )
    assert row["event"]["uom"] == "kg"
    assert "counted in pcs" in row["detail"]
    unknown = client.get(SYNC_REFUSED, params={"site_id": "S99"})
    assert unknown.status_code == 404


def test_optional_fields_are_stored(client: TestClient, engine: Engine, site: Any) -> None:
    event = site.event(
        "receipt",
        "12.5",
        lot="LOT-7",
        expiry="2027-03-31",
        unit_cost="3.141592",
        ref="PO-1/2",
        device_id="scale-1",
        actor="王五",
    )
    push(client, site.batch([event]))

    with engine.connect() as connection:
        row = connection.execute(select(ledger_events)).one()
    assert str(row.qty) == "12.5"
    assert str(row.unit_cost) == "3.141592"
    assert (row.ref, row.device_id, row.actor, str(row.expiry)) == (
        "PO-1/2",
        "scale-1",
        "王五",
        "2027-03-31",
    )
    assert stored_event(row._mapping) == LedgerEvent.model_validate(event)


def test_a_full_batch_is_ingested_in_one_request(client: TestClient, site: Any) -> None:
    events = [site.event("receipt", "0.5", item=f"ITEM-{n % 50}") for n in range(5000)]

    ack = push(client, site.batch(events))

    assert ack["acked_through_seq"] == 5000
    assert set(statuses(ack)) == {"accepted"}
    rows = stock(client)
    assert len(rows) == 50
    assert {row["qty"] for row in rows} == {"50"}


# --- the common push and its way back to the careful path ------------------------------
#
# A push that starts right after the watermark is inserted at once inside a savepoint;
# these break each check the database makes for it, and show that the rolled-back attempt
# left nothing behind (no row, no quantity) and the careful path gave the true verdicts.
# Each push logs the path it took, which shows the short path was tried and undone.


def paths_taken(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(record.path)
        for record in caplog.records
        if record.name == "central_api.services.ingest" and hasattr(record, "path")
    ]


def test_a_plain_push_takes_the_common_path(
    client: TestClient, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    push(client, site.batch(site.receipts(3)))
    push(client, site.batch(site.receipts(2)))
    assert paths_taken(caplog) == ["common", "common"]


def test_a_common_push_with_an_id_held_elsewhere_gets_every_verdict_right(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    held = site.event("receipt", "5")
    push(client, site.batch([held]))
    first = site.event("receipt", "1")
    reused = {**site.event("receipt", "7"), "event_id": held["event_id"]}
    last = site.event("sale", "-2")

    ack = push(client, site.batch([first, reused, last]))

    assert statuses(ack) == ["accepted", "conflict", "accepted"]
    assert "already held with different content (site S01, seq 1)" in ack["results"][1]["detail"]
    assert ack["acked_through_seq"] == 4
    assert held_event_count(engine) == 3
    assert stock(client)[0]["qty"] == "4", "5 + 1 - 2: the rolled-back attempt added nothing"
    assert paths_taken(caplog)[-1] == "careful: an event id or seq is held already"


def test_a_common_push_into_a_balance_of_another_unit_gets_every_verdict_right(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    push(client, site.batch([site.event("receipt", "10", uom="pcs")]))

    # Within the batch the units agree, so only the balance upsert can tell.
    ack = push(
        client,
        site.batch(
            [
                site.event("receipt", "3", item="ITEM-2", uom="kg"),
                site.event("receipt", "2", uom="kg"),
                site.event("receipt", "4", item="ITEM-2", uom="kg"),
            ]
        ),
    )

    assert statuses(ack) == ["accepted", "invalid", "accepted"]
    assert "counted in pcs, not kg" in ack["results"][1]["detail"]
    assert ack["acked_through_seq"] == 4
    assert held_event_count(engine) == 3
    assert {(row["item"], row["uom"], row["qty"]) for row in stock(client)} == {
        ("ITEM-1", "pcs", "10"),
        ("ITEM-2", "kg", "7"),
    }
    assert refused_seqs(engine) == [(3, "invalid", 1)]
    assert paths_taken(caplog)[-1] == (
        "careful: a balance is kept in another unit or would grow too large"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"lot": "L-2"},
        {"expiry": "2027-01-02"},
        {"unit_cost": "0"},
        {"unit_cost": None},
        {"occurred_at": "2026-12-02T08:00:00.000001+00:00"},
        {"ref": None},
        {"actor": "李四"},
        {"kind": "adjustment"},
    ],
)
def test_a_replay_with_any_field_changed_is_a_conflict(
    client: TestClient, engine: Engine, site: Any, change: dict[str, Any]
) -> None:
    original = site.event(
        "receipt",
        "5",
        lot="L-1",
        expiry="2027-01-01",
        unit_cost="3.1",
        occurred_at="2026-12-02T08:00:00+00:00",
        ref="PO-1",
        actor="王五",
    )
    push(client, site.batch([original]))

    ack = push(client, site.batch([{**original, **change}]))

    assert statuses(ack) == ["conflict"]
    assert held_event_count(engine) == 1
    assert stock(client)[0]["qty"] == "5"


def test_a_replay_spelled_differently_is_a_duplicate(
    client: TestClient, engine: Engine, site: Any
) -> None:
    """Content is compared as values, the way the digest of the contract defines it."""
    original = site.event(
        "receipt", "5.5", occurred_at="2026-12-02T08:00:00+00:00", unit_cost="3.10"
    )
    push(client, site.batch([original]))

    respelled = {
        **original,
        "qty": "5.500000",
        "unit_cost": "3.1",
        "occurred_at": "2026-12-02T16:00:00.000000+08:00",
    }
    ack = push(client, site.batch([respelled]))

    assert statuses(ack) == ["duplicate"]
    assert held_event_count(engine) == 1
    with engine.connect() as connection:
        row = connection.execute(select(ledger_events)).one()
    assert stored_event(row._mapping).content_digest() == (
        LedgerEvent.model_validate(respelled).content_digest()
    )


def test_a_balance_never_grows_beyond_the_largest_amount(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    """Before: SQLite turned the sum into a float, PostgreSQL failed with a 500."""
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    push(client, site.batch([site.event("receipt", "999999999999")]))

    ack = push(
        client,
        site.batch([site.event("receipt", "1"), site.event("receipt", "1", item="ITEM-2")]),
    )

    assert statuses(ack) == ["invalid", "accepted"]
    assert "beyond the largest amount central keeps" in ack["results"][0]["detail"]
    assert ack["acked_through_seq"] == 3
    assert {(row["item"], row["qty"]) for row in stock(client)} == {
        ("ITEM-1", "999999999999"),
        ("ITEM-2", "1"),
    }
    assert paths_taken(caplog)[-1] == (
        "careful: a balance is kept in another unit or would grow too large"
    )
    with engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT qty FROM stock_balances ORDER BY item").all()
    assert [type(qty) for (qty,) in stored] == [int, int], "kept as exact integers"


def test_events_of_one_push_that_together_overflow_a_balance_are_all_refused(
    client: TestClient, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger="central_api.services.ingest")
    halves = [site.event("receipt", "600000000000") for _ in range(2)]

    ack = push(client, site.batch([*halves, site.event("sale", "-1", item="ITEM-2")]))

    assert statuses(ack) == ["invalid", "invalid", "accepted"]
    assert ack["acked_through_seq"] == 3
    assert [(row["item"], row["qty"]) for row in stock(client)] == [("ITEM-2", "-1")]
    assert paths_taken(caplog)[-1] == "careful: a balance would grow too large"


def test_a_held_row_todays_contract_would_refuse_is_a_conflict_not_a_500(
    client: TestClient, engine: Engine, site: Any
) -> None:
    """A row stored before a rule was tightened (here: a tab in ``ref``) is still held."""
    original = site.event("receipt", "5", ref="PO-1")
    push(client, site.batch([original]))
    with engine.begin() as connection:
        connection.execute(update(ledger_events).values(ref="PO\t1"))

    ack = push(client, site.batch([original]))

    assert statuses(ack) == ["conflict"]
    assert held_event_count(engine) == 1
