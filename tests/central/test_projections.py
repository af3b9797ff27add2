"""Projections after ingest's insert: each sees exactly the events a push inserted, once,
inside the push's transaction, on the short path and the careful one (both databases).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, insert, select

from central_api.errors import ConflictError
from central_api.models import ledger_events, site_credentials, site_sync_state, stock_balances
from central_api.services.ingest import ingest_batch
from central_api.services.projections import AcceptedEvents, Projections
from jxc.contract import PushBatch
from jxc.paths import SYNC_EVENTS
from tests.central.conftest import problem

INGEST_LOG = "central_api.services.ingest"


@dataclass
class Spy:
    """A projection that records what it was given, and what it saw of the transaction."""

    calls: list[AcceptedEvents] = field(default_factory=list)
    balances_seen: list[Decimal] = field(default_factory=list)

    def __call__(self, connection: Connection, accepted: AcceptedEvents) -> None:
        self.calls.append(accepted)
        total = connection.execute(select(func.sum(stock_balances.c.qty))).scalar_one()
        self.balances_seen.append(Decimal(0) if total is None else total)

    def seqs(self) -> list[list[int]]:
        return [[event.seq for event in call.events] for call in self.calls]

    def event_ids(self) -> list[str]:
        return [str(event.event_id) for call in self.calls for event in call.events]


def push(client: TestClient, batch: dict[str, Any]) -> dict[str, Any]:
    response = client.post(SYNC_EVENTS, json=batch)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def paths_taken(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(r.path) for r in caplog.records if r.name == INGEST_LOG and hasattr(r, "path")]


def held(engine: Engine) -> tuple[int, list[Decimal], int | None]:
    """(events held, balances, S01's watermark) as the database has them."""
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(ledger_events)).scalar_one()
        balances = list(connection.execute(select(stock_balances.c.qty)).scalars())
        watermark = connection.execute(
            select(site_sync_state.c.acked_through_seq).where(site_sync_state.c.site_id == "S01")
        ).scalar_one_or_none()
    return count, balances, watermark


def test_a_common_push_is_projected_once_with_every_event_in_seq_order(
    client: TestClient, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    caplog.set_level(logging.INFO, logger=INGEST_LOG)
    spy = Spy()
    client.app.state.projections.add("spy", spy)  # type: ignore[attr-defined]
    events = site.receipts(3, "2")

    push(client, site.batch(events))

    assert paths_taken(caplog) == ["common"]
    assert spy.seqs() == [[1, 2, 3]]
    assert spy.event_ids() == [event["event_id"] for event in events]
    assert spy.calls[0].site_id == "S01"
    assert spy.balances_seen == [Decimal(6)], "it runs after the balances took the push"


def test_a_replay_is_not_projected_again(client: TestClient, site: Any) -> None:
    spy = Spy()
    client.app.state.projections.add("spy", spy)  # type: ignore[attr-defined]
    batch = site.batch(site.receipts(2))

    push(client, batch)
    replayed = push(client, batch)

    assert [result["status"] for result in replayed["results"]] == ["duplicate", "duplicate"]
    assert spy.seqs() == [[1, 2]], "a replay inserts nothing, so nothing is projected"


def test_the_careful_path_projects_only_what_it_inserted(
    client: TestClient, caplog: pytest.LogCaptureFixture, site: Any
) -> None:
    """Duplicates, a conflict and a refused unit are not projected; nor is anything the
    short path's rolled-back attempt had inserted."""
    caplog.set_level(logging.INFO, logger=INGEST_LOG)
    first = site.event("receipt", "10")
    push(client, site.batch([first]))
    spy = Spy()
    client.app.state.projections.add("spy", spy)  # type: ignore[attr-defined]
    wrong_unit = site.event("receipt", "3", uom="kg")
    new_one = site.event("receipt", "1")
    reused_id = {**site.event("receipt", "7"), "event_id": first["event_id"]}
    last = site.event("sale", "-2")

    ack = push(client, site.batch([wrong_unit, new_one, reused_id, last]))

    assert [result["status"] for result in ack["results"]] == [
        "invalid",
        "accepted",
        "conflict",
        "accepted",
    ]
    assert paths_taken(caplog)[-1].startswith("careful:"), "the short path was tried and undone"
    assert spy.event_ids() == [new_one["event_id"], last["event_id"]]
    assert spy.seqs() == [[3, 5]]
    assert spy.balances_seen == [Decimal(9)]

    # The same batch again: the two accepted are duplicates now, the others still refused.
    push(client, site.batch([wrong_unit, new_one, reused_id, last]))
    assert spy.seqs() == [[3, 5]]


def test_a_batch_of_only_refused_events_is_not_projected(client: TestClient, site: Any) -> None:
    push(client, site.batch([site.event("receipt", "1")]))
    spy = Spy()
    client.app.state.projections.add("spy", spy)  # type: ignore[attr-defined]

    ack = push(client, site.batch([site.event("receipt", "1", uom="kg")]))

    assert [result["status"] for result in ack["results"]] == ["invalid"]
    assert spy.calls == []


class HeldStockError(ConflictError):
    """What a projection might refuse a push with (a document already closed, say)."""


def refuse(_connection: Connection, _accepted: AcceptedEvents) -> None:
    raise HeldStockError("the purchase order this receipt belongs to is closed")


def test_a_projection_that_refuses_rolls_the_push_back_and_its_status_answers(
    client: TestClient, engine: Engine, site: Any
) -> None:
    push(client, site.batch(site.receipts(2)))
    client.app.state.projections.add("refuse", refuse)  # type: ignore[attr-defined]

    response = client.post(SYNC_EVENTS, json=site.batch(site.receipts(3)))

    assert response.status_code == 409
    assert response.json() == problem(409, "the purchase order this receipt belongs to is closed")
    assert held(engine) == (2, [Decimal(2)], 2), "nothing of the refused push was kept"


@pytest.mark.parametrize("path", ["common", "careful"])
def test_an_exception_in_a_projection_rolls_the_whole_push_back(
    engine: Engine, site: Any, path: str
) -> None:
    """What a projection writes and what the push inserted go together, or not at all."""
    earlier = site.event("receipt", "4")
    with engine.connect() as connection:
        ingest_batch(
            connection=connection,
            batch=PushBatch.model_validate(site.batch([earlier])),
            received_at=datetime.now(UTC),
            projections=Projections(),
        )
    events = site.receipts(2, "5")
    if path == "careful":
        events = [earlier, *events]  # a duplicate in front: the short path is ruled out
    writes: list[str] = []

    def write(connection: Connection, accepted: AcceptedEvents) -> None:
        # A stand-in for a projection's own table: any write on the push's connection.
        connection.execute(
            insert(site_credentials).values(
                site_id="PROJECTED",
                secret_sha256="0" * 64,
                generation=1,
                revoked=False,
                created_at=accepted.received_at,
                changed_at=accepted.received_at,
            )
        )
        writes.append("PROJECTED")

    def fail(_connection: Connection, _accepted: AcceptedEvents) -> None:
        raise RuntimeError("valuation has no cost for ITEM-1")

    projections = Projections()
    projections.add("writes", write)
    projections.add("fails", fail)

    with engine.connect() as connection, pytest.raises(RuntimeError) as raised:
        ingest_batch(
            connection=connection,
            batch=PushBatch.model_validate(site.batch(events)),
            received_at=datetime.now(UTC),
            projections=projections,
        )

    assert "raised by the ledger projection 'fails'" in (raised.value.__notes__ or [])
    assert writes == ["PROJECTED"], "the first projection ran and wrote"
    assert held(engine) == (1, [Decimal(4)], 1), "the push left no event, quantity or seq"
    with engine.connect() as connection:
        assert connection.execute(select(site_credentials.c.site_id)).all() == []
    with engine.connect() as connection:
        retried = ingest_batch(
            connection=connection,
            batch=PushBatch.model_validate(site.batch(events)),
            received_at=datetime.now(UTC),
            projections=Projections(),
        )
    assert retried.acked_through_seq == 3, "the same push goes through once the cause is gone"


def test_an_unexpected_error_in_a_projection_is_a_500_naming_an_incident(
    client: TestClient, engine: Engine, site: Any
) -> None:
    def broken(_connection: Connection, _accepted: AcceptedEvents) -> None:
        raise RuntimeError("bug in a projection")

    client.app.state.projections.add("broken", broken)  # type: ignore[attr-defined]
    with TestClient(client.app, raise_server_exceptions=False) as plain:
        plain.auth = client.auth
        response = plain.post(SYNC_EVENTS, json=site.batch(site.receipts(1)))

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("internal error; the central log has incident ")
    assert held(engine) == (0, [], None)


def test_projections_run_in_the_order_added_and_names_are_unique() -> None:
    order: list[str] = []
    projections = Projections()
    assert not projections
    projections.add("first", lambda _c, _a: order.append("first"))
    with projections.added("second", lambda _c, _a: order.append("second")):
        assert projections.names() == ["first", "second"]
        projections.run(None, None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'first' is registered already"):
            projections.add("first", lambda _c, _a: None)
    assert projections.names() == ["first"]
    assert order == ["first", "second"]
