"""What the alerts projection adds to ingest (issue 16: "alert evaluation after a batch of
5,000 events adds under 10 % to the ingest time").

The events of ``bench/sync.py`` (one site, 300 items; receipts, sales, transfers, counts;
many items go below zero, so negative-stock alerts are raised and cleared all along) are
pushed through the real ``ingest_batch`` into two fresh databases of the same kind, batch
by batch in alternation so both run under the same load: the baseline with the app's
projections but ``alerts``, the other with all of them. Every item has safety stock and a
reorder point at the site in both, so the level check reads balances as in production.
Printed: total ingest seconds of each and the difference in percent; and, steadier on a
loaded machine, the seconds spent inside the projection (timed around it) over the rest of
the same pushes' ingest time.

The random movements drive about one balance key in ten below zero at some point: a worst
case. ``--negative-share 0.01`` keeps that share of keys going negative (chosen at random
among those that do) and gives every other key, before the timed pushes, an opening
receipt that covers its lowest point, so it never goes below zero (a site where negative
stock is rare, as it should be).

    .venv/bin/python bench/alerts.py --events 50000 --database both
    .venv/bin/python bench/alerts.py --events 50000 --database both --negative-share 0.01
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Connection, Engine, func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sync as sync_bench
from common import ROOT, cli, console, progress_bars

from central_api.core.db import create_db_engine, write_transaction
from central_api.models import alerts, item_site_levels, items
from central_api.services import alerts as alerts_module
from central_api.services.ingest import ingest_batch
from central_api.services.projections import AcceptedEvents, Projections, built_in_projections
from jxc import uuid7
from jxc.contract import EventKind, LedgerEvent, PushBatch

app = cli(__doc__)


def _levels(engine: Engine, codes: list[str]) -> None:
    """The items and their levels at the site: safety 10, reorder point 30, qty 100."""
    now = datetime.now(UTC)
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            insert(items),
            [
                {
                    "item_code": code,
                    "name": code,
                    "uom": "pcs",
                    "active": True,
                    "version": 1,
                    "updated_at": now,
                }
                for code in codes
            ],
        )
        connection.execute(
            insert(item_site_levels),
            [
                {
                    "site_id": sync_bench.SITE,
                    "item_code": code,
                    "safety_stock": Decimal(10),
                    "reorder_point": Decimal(30),
                    "reorder_qty": Decimal(100),
                    "version": 1,
                    "updated_at": now,
                }
                for code in codes
            ],
        )


def _opening(
    built: list[LedgerEvent], share: float | None, seed: int
) -> tuple[list[LedgerEvent], list[LedgerEvent], int, int]:
    """(opening receipts, the backlog renumbered after them, keys that go negative, keys).

    Without ``share`` there is no opening stock: the backlog as it is. With it, that share
    of all keys stays among those going negative; each other key that would go negative
    gets one receipt of its lowest point, dated an hour before the backlog starts."""
    running: dict[tuple[str, str, str | None], Decimal] = defaultdict(Decimal)
    lowest: dict[tuple[str, str, str | None], Decimal] = {}
    first: dict[tuple[str, str, str | None], LedgerEvent] = {}
    cost: dict[str, Decimal] = {}
    for event in built:
        key = (event.location, event.item, event.lot)
        running[key] += event.qty
        lowest[key] = min(lowest.get(key, Decimal(0)), running[key])
        first.setdefault(key, event)
        if event.unit_cost is not None:
            cost.setdefault(event.item, event.unit_cost)
    negative = sorted((key for key, low in lowest.items() if low < 0), key=str)
    if share is None:
        return [], built, len(negative), len(lowest)
    keep = set(random.Random(seed).sample(negative, min(len(negative), round(share * len(lowest)))))
    at = built[0].occurred_at - timedelta(hours=1)
    opening = [
        LedgerEvent.model_validate(
            first[key].model_dump()
            | {
                "event_id": uuid7(),
                "seq": number,
                "occurred_at": at,
                "kind": EventKind.RECEIPT,
                "qty": -lowest[key],
                "unit_cost": cost.get(key[1], Decimal(1)),
                "ref": f"OPENING-{number}",
            }
        )
        for number, key in enumerate((key for key in negative if key not in keep), start=1)
    ]
    backlog = [event.model_copy(update={"seq": event.seq + len(opening)}) for event in built]
    return opening, backlog, len(keep), len(lowest)


SPENT = {"alerts": 0.0, "alerts_cpu": 0.0, "with_cpu": 0.0}
"""Seconds inside the alerts projection itself (timed around it, in the "with" database),
wall and this process's CPU; and the CPU seconds of the "with" pushes in all. CPU time is
the steadier figure when other work shares the machine (on SQLite it is all of the work;
on PostgreSQL the server's share is not in it)."""


def _timed_alerts(connection: Connection, accepted: AcceptedEvents) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    alerts_module.project(connection, accepted)
    SPENT["alerts"] += time.perf_counter() - started
    SPENT["alerts_cpu"] += time.process_time() - cpu


def _push(engine: Engine, batch: PushBatch, projections: Projections) -> float:
    gc.collect()
    with engine.connect() as connection:
        started, cpu = time.perf_counter(), time.process_time()
        ingest_batch(
            connection=connection,
            batch=batch,
            received_at=datetime.now(UTC),
            projections=projections,
        )
        if alerts_module.NAME in projections.names():
            SPENT["with_cpu"] += time.process_time() - cpu
        return time.perf_counter() - started


@app.command()
def main(
    events: Annotated[int, typer.Option(min=5000, help="events in all")] = 50_000,
    database: Annotated[
        sync_bench.Database, typer.Option(help="sqlite, postgresql or both")
    ] = sync_bench.Database.BOTH,
    postgres_url: Annotated[str, typer.Option()] = "postgresql://postgres@127.0.0.1:5432/test",
    seed: Annotated[int, typer.Option()] = 3,
    negative_share: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="share of balance keys that go negative (default: all that do)"
        ),
    ] = None,
) -> None:
    """Ingest with and without the alerts projection, alternating batch by batch."""
    workdir = ROOT / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    with progress_bars() as progress:
        built = sync_bench.build_events(events, seed=seed, progress=progress)
    opening, built, going_negative, keys = _opening(built, negative_share, seed)
    console.print(
        f"{going_negative} of {keys} balance keys go below zero "
        f"({going_negative / keys * 100:.1f} %); {len(opening)} opening receipts"
    )
    batches = sync_bench.batches_of(built, 5000)
    codes = sorted({event.item for event in built})
    without = built_in_projections()
    without.remove(alerts_module.NAME)
    with_alerts = built_in_projections()
    with_alerts.remove(alerts_module.NAME)
    with_alerts.add(alerts_module.NAME, _timed_alerts)
    kinds = (
        [sync_bench.Database.SQLITE, sync_bench.Database.POSTGRESQL]
        if database is sync_bench.Database.BOTH
        else [database]
    )
    for kind in kinds:
        with (
            sync_bench.scratch_database(
                kind, name=f"alerts-base-{kind}", workdir=workdir, admin_url=postgres_url
            ) as base_url,
            sync_bench.scratch_database(
                kind, name=f"alerts-with-{kind}", workdir=workdir, admin_url=postgres_url
            ) as with_url,
        ):
            base, other = create_db_engine(base_url), create_db_engine(with_url)
            SPENT["alerts"] = 0.0
            try:
                _levels(base, codes)
                _levels(other, codes)
                for batch in sync_bench.batches_of(opening, 5000):  # not timed
                    _push(base, batch, without)
                    _push(other, batch, with_alerts)
                SPENT.update(alerts=0.0, alerts_cpu=0.0, with_cpu=0.0)
                base_s = with_s = 0.0
                for number, batch in enumerate(batches):
                    # Alternate which goes first, so neither always meets a warmer cache.
                    if number % 2:
                        with_s += _push(other, batch, with_alerts)
                        base_s += _push(base, batch, without)
                    else:
                        base_s += _push(base, batch, without)
                        with_s += _push(other, batch, with_alerts)
                with other.connect() as connection:
                    raised: dict[str, int] = dict(
                        connection.execute(
                            select(alerts.c.kind, func.count()).group_by(alerts.c.kind)
                        ).all()
                    )
            finally:
                base.dispose()
                other.dispose()
        inside, inside_cpu, with_cpu = SPENT["alerts"], SPENT["alerts_cpu"], SPENT["with_cpu"]
        console.print(
            f"{kind}: {events} events in {len(batches)} pushes of 5000; ingest without alerts "
            f"{base_s:.2f} s, with alerts {with_s:.2f} s: +{(with_s / base_s - 1) * 100:.1f} % "
            f"between the databases; inside the projection {inside:.2f} s = "
            f"{inside / (with_s - inside) * 100:.1f} % of the rest of that ingest; CPU "
            f"{inside_cpu:.2f} s of {with_cpu:.2f} s = "
            f"{inside_cpu / (with_cpu - inside_cpu) * 100:.1f} % of the rest "
            f"(alerts raised: {', '.join(f'{k} {n}' for k, n in sorted(raised.items()))})"
        )


if __name__ == "__main__":
    app()
