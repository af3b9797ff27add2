"""What operability costs (issue 18): the metrics middleware and access line per request,
and a verified backup against a plain copy of the same database.

1. **Per request**: central in-process (``TestClient``), JSON logging at INFO rendered to
   /dev/null, one-event pushes and ``GET /healthz`` one at a time, on two apps on their
   own SQLite files: one as shipped, one whose ``MetricsMiddleware`` is a pass-through.
   Rounds alternate which goes first, so machine load falls on both alike.
2. **Backup**: a central database with ``--events`` ingested events; ``backup_database``
   (copy or dump, then read back and every table counted) against the baseline in the
   same run: ``shutil.copyfile`` of the SQLite file, a plain ``pg_dump -Fc`` of the
   PostgreSQL database. Figures: ``docs/performance.md``, "Operations".
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from common import cli, console, machine_info, table
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import make_url

import central_api.main as central_main
from central_api.api.metrics import CentralMetrics
from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.services.auth import add_site
from central_api.services.backup import backup_database
from edge_agent.auth import SiteTokenAuth
from jxc.ids import uuid7
from jxc.logs import configure_logging
from jxc.paths import HEALTH, SYNC_EVENTS

app = cli(__doc__)

POSTGRES = os.environ.get("JXC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class _PassThrough:
    def __init__(self, app: Any, **_: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _events(site: str, first: int, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": str(uuid7()),
            "site_id": site,
            "seq": seq,
            "occurred_at": now,
            "kind": "receipt",
            "item": f"ITEM-{seq % 500}",
            "lot": None,
            "location": "A-01",
            "qty": "1.5",
            "uom": "pcs",
        }
        for seq in range(first, first + count)
    ]


@contextmanager
def _client(url: str, *, metrics: bool) -> Iterator[TestClient]:
    upgrade_database(url)
    kept = central_main.MetricsMiddleware
    if not metrics:
        central_main.MetricsMiddleware = _PassThrough  # type: ignore[misc,assignment]
    try:
        built = central_main.create_app(Settings(database_url=url))
    finally:
        central_main.MetricsMiddleware = kept  # type: ignore[misc]
    with TestClient(built) as client:
        with built.state.engine.connect() as connection:
            client.auth = SiteTokenAuth("S01", add_site(connection, "S01"))
        yield client


def _time_each(action: Callable[[], Any], count: int) -> list[float]:
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        spent.append(time.perf_counter() - started)
    return spent


def _per_request(directory: Path, requests: int, rounds: int) -> None:
    with (
        _client(f"sqlite:///{directory / 'with.db'}", metrics=True) as shipped,
        _client(f"sqlite:///{directory / 'without.db'}", metrics=False) as bare,
    ):
        seqs = {"shipped": 0, "bare": 0}
        clients = {"shipped": shipped, "bare": bare}
        timings: dict[tuple[str, str], list[float]] = {}

        def push(name: str) -> None:
            seqs[name] += 1
            answer = clients[name].post(
                SYNC_EVENTS,
                json={
                    "contract_version": 1,
                    "site_id": "S01",
                    "events": _events("S01", seqs[name], 1),
                },
            )
            assert answer.status_code == 200, answer.text

        for round_no in range(rounds):
            order = ["shipped", "bare"] if round_no % 2 == 0 else ["bare", "shipped"]
            for name in order:
                timings.setdefault(("push 1 event", name), []).extend(
                    _time_each(lambda name=name: push(name), requests)  # type: ignore[misc]
                )
                timings.setdefault(("GET /healthz", name), []).extend(
                    _time_each(lambda name=name: clients[name].get(HEALTH), requests)  # type: ignore[misc]
                )
    report = table(
        "Per request, in-process (µs)",
        ["request", "bare p50", "shipped p50", "difference p50", "bare mean", "shipped mean"],
        left=["request"],
    )
    for request in ("push 1 event", "GET /healthz"):
        bare_t, shipped_t = timings[(request, "bare")], timings[(request, "shipped")]
        report.add_row(
            request,
            f"{statistics.median(bare_t) * 1e6:.0f}",
            f"{statistics.median(shipped_t) * 1e6:.0f}",
            f"{(statistics.median(shipped_t) - statistics.median(bare_t)) * 1e6:+.0f}",
            f"{statistics.fmean(bare_t) * 1e6:.0f}",
            f"{statistics.fmean(shipped_t) * 1e6:.0f}",
        )
    console.print(report)


def _bookkeeping(iterations: int = 20_000) -> None:
    """The middleware's own work per request, alone: what load on the machine hides above.

    Baseline in the same run: the same loop doing only its two clock reads.
    """
    metrics = CentralMetrics(lambda: None)
    access = logging.getLogger("central_api.access")

    def once() -> None:
        started = time.perf_counter()
        elapsed = time.perf_counter() - started
        metrics.requests.labels(method="POST", route=SYNC_EVENTS, status="200").inc()
        metrics.latency.labels(method="POST", route=SYNC_EVENTS).observe(elapsed)
        access.info(
            "request",
            extra={"method": "POST", "route": SYNC_EVENTS, "status": 200, "duration_ms": 1.0},
        )

    def baseline() -> None:
        started = time.perf_counter()
        _ = time.perf_counter() - started

    spent = {}
    for name, action in (("baseline", baseline), ("bookkeeping", once)) * 2:
        started = time.perf_counter()
        for _ in range(iterations):
            action()
        spent[name] = (time.perf_counter() - started) / iterations
    console.print(
        f"middleware bookkeeping per request (counter, histogram, JSON access line to "
        f"/dev/null): {spent['bookkeeping'] * 1e6:.1f} µs; baseline loop "
        f"{spent['baseline'] * 1e6:.2f} µs"
    )


def _fill(url: str, events: int) -> None:
    with _client(url, metrics=True) as client:
        for first in range(1, events + 1, 5000):
            count = min(5000, events - first + 1)
            answer = client.post(
                SYNC_EVENTS,
                json={
                    "contract_version": 1,
                    "site_id": "S01",
                    "events": _events("S01", first, count),
                },
            )
            assert answer.status_code == 200, answer.text


def _backups(directory: Path, events: int) -> None:
    report = table(
        f"Backup of a central holding {events:,} events",
        ["database", "baseline", "baseline s", "verified backup s", "ratio", "size MB"],
        left=["database", "baseline"],
    )
    sqlite_url = f"sqlite:///{directory / 'backup-me.db'}"
    _fill(sqlite_url, events)
    source = Path(make_url(sqlite_url).database or "")
    started = time.perf_counter()
    shutil.copyfile(source, directory / "plain-copy.db")
    plain = time.perf_counter() - started
    started = time.perf_counter()
    made = backup_database(sqlite_url, directory / "backups", keep=2)
    verified = time.perf_counter() - started
    report.add_row(
        "SQLite",
        "copyfile",
        f"{plain:.2f}",
        f"{verified:.2f}",
        f"{verified / plain:.1f}",
        f"{made.path.stat().st_size / 1e6:.1f}",
    )
    name = f"jxc_bench_ops_{uuid7().hex[-8:]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        pg = make_url(POSTGRES).set(drivername="postgresql+psycopg", database=name)
        pg_url = pg.render_as_string(hide_password=False)
        _fill(pg_url, events)
        started = time.perf_counter()
        subprocess.run(
            [
                "pg_dump",
                "--format=custom",
                f"--file={directory / 'plain.dump'}",
                pg.set(drivername="postgresql").render_as_string(hide_password=False),
            ],
            check=True,
        )
        plain = time.perf_counter() - started
        started = time.perf_counter()
        made = backup_database(pg_url, directory / "backups", keep=2)
        verified = time.perf_counter() - started
        report.add_row(
            "PostgreSQL",
            "pg_dump -Fc",
            f"{plain:.2f}",
            f"{verified:.2f}",
            f"{verified / plain:.1f}",
            f"{made.path.stat().st_size / 1e6:.1f}",
        )
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    console.print(report)


@app.command()
def main(
    skip_backups: Annotated[bool, typer.Option(help="only the per-request part")] = False,
    requests: Annotated[int, typer.Option(help="requests per kind, app and round")] = 300,
    rounds: Annotated[int, typer.Option(help="rounds, the order swapped each")] = 4,
    events: Annotated[int, typer.Option(help="events in the database backed up")] = 100_000,
) -> None:
    """Run both parts and print their tables."""
    configure_logging("INFO")
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115 - for the run
    console.print(machine_info())
    with tempfile.TemporaryDirectory(prefix="jxc-bench-ops-") as scratch:
        _bookkeeping()
        _per_request(Path(scratch), requests, rounds)
        if not skip_backups:
            _backups(Path(scratch), events)


if __name__ == "__main__":
    sys.exit(app())
