"""What the audit log costs (issue #12): a command, and ingest, with and without its entry.

1. **A command.** ``upsert_item`` renaming an item (its own write transaction: the item
   row, its change-feed row, and the audit entry with the item before and after), timed
   N times with the audit entry and N times without it, alternating call by call in the
   same run and database, so both sides share the disk, cache and neighbours. "Without"
   is the same service with its ``record`` call replaced by a no-op. The added cost is
   the median of the paired differences.
2. **Ingest.** Pushes of 5000 events through ``ingest_batch`` (as the route calls it),
   one site with its one entry per push and another without (``_record_push`` a no-op),
   alternating batch by batch; the ratio of the two rates, and the entry's own time
   inside each audited push (a timer around ``_record_push``), which the machine's
   neighbours disturb far less than a difference of two whole pushes.

Run ``.venv/bin/python bench/audit.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from common import ROOT, cli, console, finish, progress_bars, table
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, func, select
from sync import Database, batches_of, build_events, machine, scratch_database

from central_api.core.db import create_db_engine
from central_api.models import audit_log
from central_api.services import ingest as ingest_module
from central_api.services import items as items_module
from central_api.services.audit import Actor, ActorKind, AuditContext, verify_chain
from central_api.services.ingest import ingest_batch
from central_api.services.items import upsert_item
from central_api.services.projections import Projections
from jxc import uuid7
from jxc.contract import PushBatch
from jxc.feed import BarcodeData, ItemData

app = cli(__doc__)

CLERK = AuditContext(Actor(ActorKind.USER, "bench"), request_id="bench", source="127.0.0.1")


@dataclass
class CommandResult:
    database: str
    calls: int
    with_p50_ms: float
    without_p50_ms: float
    added_p50_ms: float
    with_p90_ms: float
    without_p90_ms: float


@dataclass
class IngestResult:
    database: str
    events_each: int
    with_ev_s: float
    without_ev_s: float
    ratio: float
    with_p50_ms: float
    without_p50_ms: float
    entry_p50_ms: float
    """The push's own ``_record_push`` call, timed inside the audited pushes."""
    entry_max_ms: float


@dataclass
class Report:
    command: str
    machine: dict[str, Any]
    commands: list[CommandResult] = field(default_factory=list)
    ingests: list[IngestResult] = field(default_factory=list)


@contextlib.contextmanager
def without(module: Any, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    """``module.name`` replaced for the block: the "without" side of each comparison."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _no_record(*_args: Any, **_kwargs: Any) -> int:
    return 0


def _no_push_record(*_args: Any, **_kwargs: Any) -> None:
    return None


def time_command(engine: Engine, calls: int, progress: Any, label: str) -> CommandResult:
    """Rename item A (audited) and item B (not) in turn, ``calls`` times each."""
    with engine.connect() as connection:
        for code in ("A", "B"):
            upsert_item(
                connection=connection,
                item=ItemData(item_code=code, name="start", uom="pcs"),
                barcodes=[BarcodeData(barcode=f"BC-{code}", item_code=code)],
                audit=CLERK,
            )
        audited: list[float] = []
        bare: list[float] = []
        task = progress.add_task(f"command {label}", total=calls)
        for n in range(calls):
            order = ("A", "B") if n % 2 == 0 else ("B", "A")
            for code in order:
                item = ItemData(item_code=code, name=f"name {n}", uom="pcs")
                if code == "A":
                    started = time.perf_counter()
                    upsert_item(connection=connection, item=item, barcodes=None, audit=CLERK)
                    audited.append(time.perf_counter() - started)
                else:
                    with without(items_module, "record", _no_record):
                        started = time.perf_counter()
                        upsert_item(connection=connection, item=item, barcodes=None, audit=CLERK)
                        bare.append(time.perf_counter() - started)
            progress.advance(task)
        entries = connection.execute(select(func.count()).select_from(audit_log)).scalar_one()
        connection.rollback()
    assert entries == calls + 2, f"expected {calls + 2} audit entries, found {entries}"
    added = [a - b for a, b in zip(audited, bare, strict=True)]
    return CommandResult(
        database=label,
        calls=calls,
        with_p50_ms=statistics.median(audited) * 1e3,
        without_p50_ms=statistics.median(bare) * 1e3,
        added_p50_ms=statistics.median(added) * 1e3,
        with_p90_ms=_p90(audited) * 1e3,
        without_p90_ms=_p90(bare) * 1e3,
    )


def time_ingest(
    engine: Engine, audited: list[PushBatch], bare: list[PushBatch], progress: Any, label: str
) -> IngestResult:
    """Push site A's batches (one entry each) and site B's (none) in turn."""
    times: dict[str, list[float]] = {"with": [], "without": []}
    entry_times: list[float] = []
    record_push = ingest_module._record_push

    def timed_record_push(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        record_push(*args, **kwargs)
        entry_times.append(time.perf_counter() - started)

    task = progress.add_task(f"ingest {label}", total=len(audited))
    with (
        engine.connect() as connection,
        without(ingest_module, "_record_push", timed_record_push),
    ):
        for n, (a, b) in enumerate(zip(audited, bare, strict=True)):
            pairs = [("with", a), ("without", b)]
            for side, batch in pairs if n % 2 == 0 else reversed(pairs):
                replaced = (
                    without(ingest_module, "_record_push", _no_push_record)
                    if side == "without"
                    else contextlib.nullcontext()
                )
                with replaced:
                    started = time.perf_counter()
                    ingest_batch(
                        connection=connection,
                        batch=batch,
                        received_at=datetime.now(UTC),
                        projections=Projections(),
                    )
                    times[side].append(time.perf_counter() - started)
            progress.advance(task)
        report = verify_chain(connection)
    assert report.intact, report.reason
    events = sum(len(batch.events) for batch in audited)
    with_rate = events / sum(times["with"])
    without_rate = events / sum(times["without"])
    return IngestResult(
        database=label,
        events_each=events,
        with_ev_s=with_rate,
        without_ev_s=without_rate,
        ratio=with_rate / without_rate,
        with_p50_ms=statistics.median(times["with"]) * 1e3,
        without_p50_ms=statistics.median(times["without"]) * 1e3,
        entry_p50_ms=statistics.median(entry_times) * 1e3,
        entry_max_ms=max(entry_times) * 1e3,
    )


def _p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def _site_batches(batches: list[PushBatch], site_id: str) -> list[PushBatch]:
    """The same events as another site's: the same work, its own stream."""
    return [
        PushBatch.model_validate(
            {
                **batch.model_dump(),
                "site_id": site_id,
                "events": [
                    {**event.model_dump(), "site_id": site_id, "event_id": uuid7()}
                    for event in batch.events
                ],
            }
        )
        for batch in batches
    ]


def print_report(report: Report) -> None:
    commands = table(
        "A command (upsert_item renaming an item) with and without its audit entry",
        [
            "database",
            "calls each",
            "with p50 ms",
            "without p50 ms",
            "added p50 ms",
            "with p90 ms",
            "without p90 ms",
        ],
        left={"database"},
    )
    for c in report.commands:
        commands.add_row(
            c.database,
            f"{c.calls:,}",
            f"{c.with_p50_ms:.3f}",
            f"{c.without_p50_ms:.3f}",
            f"{c.added_p50_ms:.3f}",
            f"{c.with_p90_ms:.3f}",
            f"{c.without_p90_ms:.3f}",
        )
    console.print(commands)
    ingests = table(
        "Ingest with its one entry per push and without",
        [
            "database",
            "events each",
            "with ev/s",
            "without ev/s",
            "with / without",
            "push p50 ms with",
            "push p50 ms without",
            "its entry p50 / max ms",
        ],
        left={"database"},
    )
    for i in report.ingests:
        ingests.add_row(
            i.database,
            f"{i.events_each:,}",
            f"{i.with_ev_s:,.0f}",
            f"{i.without_ev_s:,.0f}",
            f"{i.ratio:.3f}",
            f"{i.with_p50_ms:.1f}",
            f"{i.without_p50_ms:.1f}",
            f"{i.entry_p50_ms:.2f} / {i.entry_max_ms:.2f}",
        )
    console.print(ingests)


@app.command()
def main(
    calls: Annotated[int, typer.Option(help="command calls on each side (0 skips)")] = 2000,
    events: Annotated[int, typer.Option(help="events pushed on each side (0 skips)")] = 200_000,
    database: Annotated[Database, typer.Option(help="central database(s)")] = Database.BOTH,
    postgres_url: Annotated[
        str, typer.Option(help="existing PostgreSQL database; scratch ones are made")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    workdir: Annotated[Path, typer.Option(help="scratch files (real disk)")] = (
        ROOT / "var" / "bench"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON")
    ] = None,
) -> None:
    """Measure the audit log's cost to a command and to ingest, against no entry."""
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = [Database.SQLITE, Database.POSTGRESQL] if database is Database.BOTH else [database]
    report = Report(
        command=" ".join(["bench/audit.py", *sys.argv[1:]]), machine=machine(postgres_url)
    )
    console.print(f"[bold]machine[/] {report.machine}")
    progress = progress_bars(
        TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with progress:
        audited_batches: list[PushBatch] = []
        bare_batches: list[PushBatch] = []
        if events > 0:
            built = build_events(events, seed=5, progress=progress)
            site = built[0].site_id
            audited_batches = batches_of(built, 5000)
            bare_batches = _site_batches(audited_batches, f"{site}B")
            gc.collect()
            gc.freeze()
        for kind in kinds:
            label = kind.value
            with scratch_database(
                kind, name=f"audit-{label}", workdir=workdir, admin_url=postgres_url
            ) as url:
                engine = create_db_engine(url)
                try:
                    if calls > 0:
                        report.commands.append(time_command(engine, calls, progress, label))
                    if events > 0:
                        report.ingests.append(
                            time_ingest(engine, audited_batches, bare_batches, progress, label)
                        )
                finally:
                    engine.dispose()
    finish(report, print_report, json_out)


if __name__ == "__main__":
    app()
