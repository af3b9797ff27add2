"""Generic against custom plans for every read of a busy and an ordinary key (issue 17).

psycopg prepares a statement after five executions, and PostgreSQL may then plan it once
for any parameters (a generic plan), estimating a key's rows as an average key's: for the
busy key of ``bench/central.py`` (100,000 movements where an average key has a dozen) an
order the index does not give alone then sorts every entry. This runs each read a console
user or a push makes, for the busy key and an ordinary one, ``--runs`` times under
``plan_cache_mode = force_generic_plan`` and as many under ``force_custom_plan``, on a
PostgreSQL database built by ``bench/central.py`` (``--database``; use a copy: nothing is
written, but keep the cache clean), and prints per call, once psycopg has prepared (the
median of the calls after the sixth): wall, this process's CPU and the server backend's
CPU (from ``/proc``, so the figures hold on a loaded machine). A read where generic is
over three times custom and over 20 ms is a finding.

    .venv/bin/python bench/generic_plans.py --database jxc_bench_gp
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from central import HEAVY_ITEM, HEAVY_SITE, LOCATION, SPAN, T0
from common import cli, console, process_tree_cpu_s

from central_api.core.db import create_db_engine
from central_api.core.principal import Principal
from central_api.services import reports, valuation
from central_api.services.stock import list_balances
from central_api.web import dashboard

app = cli(__doc__)

PREPARED_AFTER = 5
"""psycopg's default ``prepare_threshold``."""

MODES = ("force_generic_plan", "force_custom_plan")


def _reads(site: str, item: str) -> dict[str, Callable[[Any], Any]]:
    """Each read of one (site, item), as a function of a connection."""
    middle = T0 + SPAN * 0.5
    since, until = (middle - timedelta(days=30)).date(), middle.date()
    end = (T0 + SPAN).date()
    key = reports.StockFilter(site_id=site, item=item)
    placed = reports.StockFilter(site_id=site, item=item, location=LOCATION)
    point = (middle, "")
    user = Principal(
        kind="user",
        name="bench",
        actions=frozenset({"*"}),
        financial=True,
        sites=frozenset({site}),
    )
    return {
        "stock_on_hand now (key)": lambda c: reports.stock_on_hand(c, key, financial=True),
        "stock_on_hand as-of (key)": lambda c: reports.stock_on_hand(
            c, key, as_of=middle, financial=True
        ),
        "stock_on_hand as-of (key, location)": lambda c: reports.stock_on_hand(
            c, placed, as_of=middle, financial=True
        ),
        "movements page (site+item, since)": lambda c: reports.movements(
            c, reports.MovementFilter(site_id=site, item=item, since=middle), financial=True
        ),
        "movements page (site+item, next page)": lambda c: reports.movements(
            c,
            reports.MovementFilter(site_id=site, item=item),
            after=reports.encode_cursor(middle, ""),
            financial=True,
        ),
        "movements page (site+item)": lambda c: reports.movements(
            c, reports.MovementFilter(site_id=site, item=item), financial=True
        ),
        "movements page (item)": lambda c: reports.movements(
            c, reports.MovementFilter(item=item), financial=True
        ),
        "movements page (site)": lambda c: reports.movements(
            c, reports.MovementFilter(site_id=site), financial=True
        ),
        "gross_margin (site, 30 days)": lambda c: reports.gross_margin(
            c, since=since, until=until, site_id=site
        ),
        "slow_moving (site)": lambda c: reports.slow_moving(
            c, on=T0 + SPAN, site_id=site, financial=True
        ),
        "expiry (site+item)": lambda c: reports.expiry(
            c, on=end, site_id=site, item=item, financial=True
        ),
        "stock_outs (site+item, 30 days)": lambda c: reports.stock_outs(
            c, since=since, until=until, site_id=site, item=item
        ),
        "turnover (site, 30 days)": lambda c: reports.turnover(
            c, since=since, until=until, site_id=site
        ),
        "list_states (key)": lambda c: valuation.list_states(
            c, site_id=site, item=item, sites=None
        ),
        "list_entries (key, 100)": lambda c: valuation.list_entries(
            c, site_id=site, item=item, limit=100
        ),
        "list_balances (key)": lambda c: list_balances(connection=c, site_id=site, item=item),
        "dashboard figures (site)": lambda c: dashboard.figures(c, user, end, now=T0 + SPAN),
        "_state_before (key, middle)": lambda c: valuation._state_before(
            c, (site, item), valuation.MOVING_AVERAGE, point
        ),
        "_read_history (key, middle)": lambda c: valuation._read_history(
            c, (site, item), valuation.MOVING_AVERAGE, point
        ),
    }


def _ordinary_key(connection: Any) -> tuple[str, str]:
    """A key of another site with about an average key's entries."""
    row = connection.exec_driver_sql(
        "SELECT site_id, item FROM valuation_entries WHERE site_id = 'S001' "
        "GROUP BY site_id, item ORDER BY count(*) DESC, item LIMIT 1"
    ).one()
    return str(row.site_id), str(row.item)


def _measure(
    connection: Any, read: Callable[[Any], Any], mode: str, runs: int, backend: int
) -> tuple[float, float, float]:
    """Median wall, client CPU and server CPU (ms) of the calls after psycopg prepared."""
    connection.exec_driver_sql(f"SET plan_cache_mode = {mode}")
    connection.commit()
    walls, cpus, server = [], [], []
    for n in range(runs):
        started, cpu, served = (
            time.perf_counter(),
            time.process_time(),
            process_tree_cpu_s(backend, children=False),
        )
        read(connection)
        connection.rollback()
        if n > PREPARED_AFTER:
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            server.append((process_tree_cpu_s(backend, children=False) - served) * 1000)
    return statistics.median(walls), statistics.median(cpus), statistics.median(server)


@app.command()
def main(
    database: Annotated[str, typer.Option(help="the PostgreSQL database (a copy)")],
    server: Annotated[
        str, typer.Option(help="the server")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432",
    runs: Annotated[int, typer.Option(help="calls per read and mode (past 6)")] = 8,
    only: Annotated[str, typer.Option(help="only reads whose name contains this")] = "",
) -> None:
    """Each read, busy and ordinary key, generic and custom plans alternating."""
    if runs <= PREPARED_AFTER + 1:
        raise typer.BadParameter(f"--runs: more than {PREPARED_AFTER + 1}")
    engine = create_db_engine(f"{server}/{database}")
    load = os.getloadavg()
    with engine.connect() as connection:
        backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        ordinary = _ordinary_key(connection)
        connection.rollback()
        for label, (site, item) in (("busy", (HEAVY_SITE, HEAVY_ITEM)), ("ordinary", ordinary)):
            for name, read in _reads(site, item).items():
                if only and only not in name:
                    continue
                got = {mode: _measure(connection, read, mode, runs, backend) for mode in MODES}
                generic, custom = got[MODES[0]], got[MODES[1]]
                ratio = generic[0] / custom[0] if custom[0] else float("inf")
                finding = ratio > 3 and generic[0] > 20
                console.print(
                    f"{name:<38} {label:<8} generic {generic[0]:8.1f} ms (cpu {generic[1]:.1f}, "
                    f"server {generic[2]:.0f}) custom {custom[0]:8.1f} ms (cpu {custom[1]:.1f}, "
                    f"server {custom[2]:.0f}) x{ratio:.1f}{'  FINDING' if finding else ''}"
                )
        connection.exec_driver_sql("RESET plan_cache_mode")
        connection.commit()
    engine.dispose()
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {load} at start, "
        f"{os.getloadavg()} at end (2 cores, shared)"
    )


if __name__ == "__main__":
    app()
