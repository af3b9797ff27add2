"""What valuation's read of a site's pending re-valuations adds to a push (issue 17).

Every push now reads the ``valuation_pending`` records of its site (to settle what a
crash left between another push's commit and its settling; ``docs/valuation.md``,
"Transfers"), and finds none almost always. This measures that read against the push it
is part of, in the same run: a one-event push through ``ingest_batch`` with the built-in
projections (the smallest push, where a fixed cost weighs most), and the read alone on
the same database, alternating round by round, best of ``--rounds`` each (CPU time of
this process and wall time). Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from common import cli, console, finish, machine_info, table
from sync import Database, scratch_database

from central_api.core.db import create_db_engine, write_transaction
from central_api.services import valuation
from central_api.services.ingest import ingest_batch
from central_api.services.projections import built_in_projections
from jxc.contract import PushBatch
from jxc.ids import uuid7

app = cli(__doc__)


@dataclass
class Report:
    command: str
    machine: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def _pushes(url: str, count: int, first_seq: int) -> tuple[float, float]:
    """(wall, CPU) seconds per one-event push, ``count`` of them from ``first_seq``."""
    engine = create_db_engine(url)
    projections = built_in_projections()
    wall, cpu = time.perf_counter(), time.process_time()
    with engine.connect() as connection:
        for seq in range(first_seq, first_seq + count):
            event = {
                "event_id": str(uuid7()),
                "site_id": "S01",
                "seq": seq,
                "occurred_at": datetime.now(UTC).isoformat(),
                "kind": "receipt",
                "item": "ITEM-1",
                "location": "A-01",
                "qty": "1",
                "uom": "pcs",
                "unit_cost": "2.5",
            }
            batch = PushBatch.model_validate(
                {"contract_version": 1, "site_id": "S01", "events": [event]}
            )
            ingest_batch(
                connection=connection,
                batch=batch,
                received_at=datetime.now(UTC),
                projections=projections,
            )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    return wall / count, cpu / count


def _reads(url: str, count: int) -> tuple[float, float]:
    """(wall, CPU) seconds per read of one site's pending records (none), in one
    transaction, as a push makes it."""
    engine = create_db_engine(url)
    with engine.connect() as connection, write_transaction(connection):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            valuation._take_pending(connection, ["S01"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    return wall / count, cpu / count


@app.command()
def main(
    database: Annotated[Database, typer.Option()] = Database.BOTH,
    pushes: Annotated[int, typer.Option(help="one-event pushes per round")] = 300,
    reads: Annotated[int, typer.Option(help="pending reads per round")] = 3000,
    rounds: Annotated[int, typer.Option()] = 3,
    postgres_url: Annotated[
        str, typer.Option(help="an existing PostgreSQL database to create scratch ones from")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Measure and print the table."""
    kinds = [Database.SQLITE, Database.POSTGRESQL] if database is Database.BOTH else [database]
    report = Report(
        command=f"bench/valuation_pending.py --database {database.value} --pushes {pushes} "
        f"--reads {reads} --rounds {rounds}",
        machine=machine_info(),
    )
    with tempfile.TemporaryDirectory() as workdir:
        for kind in kinds:
            with scratch_database(
                kind, name="pending", workdir=Path(workdir), admin_url=postgres_url
            ) as url:
                _pushes(url, 20, 1)  # warm up: imports, statement caches, the site row
                seq = 21
                push_best = read_best = (float("inf"), float("inf"))
                for _round in range(rounds):
                    push_best = min(push_best, _pushes(url, pushes, seq))
                    seq += pushes
                    read_best = min(read_best, _reads(url, reads))
                report.rows.append(
                    {
                        "database": kind.value,
                        "push_wall_us": round(push_best[0] * 1e6),
                        "push_cpu_us": round(push_best[1] * 1e6),
                        "read_wall_us": round(read_best[0] * 1e6),
                        "read_cpu_us": round(read_best[1] * 1e6),
                    }
                )
    finish(report, _print, json_out)


def _print(report: Report) -> None:
    shown = table(
        "valuation_pending read against a one-event push (best round, per call)",
        ["database", "push wall µs", "push CPU µs", "read wall µs", "read CPU µs", "read/push CPU"],
        left={"database"},
    )
    for row in report.rows:
        shown.add_row(
            row["database"],
            str(row["push_wall_us"]),
            str(row["push_cpu_us"]),
            str(row["read_wall_us"]),
            str(row["read_cpu_us"]),
            f"{row['read_cpu_us'] / row['push_cpu_us']:.1%}",
        )
    console.print(shown)
    console.print(report.command)


if __name__ == "__main__":
    app()
