"""Pushes racing each other still apply every event exactly once (both databases).

A timeout after commit makes the edge resend a batch that central is still writing, and
several central processes may serve one site; the site row lock must serialise them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, select

from central_api.models import ledger_events, stock_balances
from central_api.schemas.sync import push_ack
from central_api.services.ingest import ingest_batch
from central_api.services.projections import Projections
from jxc.contract import PushAck, PushBatch

RACERS = 6


def race(engine: Engine, batches: list[PushBatch]) -> list[PushAck]:
    start = threading.Barrier(len(batches))

    def push(batch: PushBatch) -> PushAck:
        with engine.connect() as connection:
            start.wait()
            outcome = ingest_batch(
                connection=connection,
                batch=batch,
                received_at=datetime.now(UTC),
                projections=Projections(),
            )
            return push_ack(outcome)

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(push, batches))


def test_the_same_first_batch_racing_itself_is_applied_once(engine: Engine, site: Any) -> None:
    batch = PushBatch.model_validate(site.batch(site.receipts(50, "0.1")))

    acks = race(engine, [batch] * RACERS)

    verdicts = sorted({r.status.value for r in ack.results} == {"accepted"} for ack in acks)
    assert verdicts == [False] * (RACERS - 1) + [True]
    assert all(ack.acked_through_seq == 50 for ack in acks)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ledger_events)).scalar() == 50
        assert connection.execute(select(stock_balances.c.qty)).scalar_one() == Decimal(5)


def test_sites_pushing_at_once_do_not_disturb_each_other(engine: Engine, ledger_for: Any) -> None:
    ledgers = [ledger_for(f"S{n:02d}") for n in range(RACERS)]
    first = [PushBatch.model_validate(ledger.batch(ledger.receipts(20))) for ledger in ledgers]
    second = [PushBatch.model_validate(ledger.batch(ledger.receipts(20))) for ledger in ledgers]

    race(engine, first)
    acks = race(engine, second)

    assert [ack.acked_through_seq for ack in acks] == [40] * RACERS
    with engine.connect() as connection:
        totals = connection.execute(select(stock_balances.c.site_id, stock_balances.c.qty)).all()
    assert sorted(totals) == [(ledger.site_id, Decimal(40)) for ledger in ledgers]
