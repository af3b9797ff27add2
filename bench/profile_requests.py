"""Where one small request's time goes: a push of one event or an item create, in process.

``--what create`` is ``bench/requests.py``'s "create an item" row (``PUT`` of a new code);
``--what create-post`` makes the item with ``POST`` and an ``Idempotency-Key``, as a
console or a client that may retry does.

The app is called through ``httpx.ASGITransport`` (no server, no socket) on a database
prepared as ``bench/requests.py`` prepares it. Every statement sent to the database is
counted with an SQLAlchemy ``before_cursor_execute`` listener (``COMMIT`` is not a
statement there). ``--profile`` runs the thread-pool trips inline so that one cProfile
sees the whole request, prints the top of it and writes ``var/bench/profile-<db>-<what>.prof``;
without it the figures are the process's CPU and wall time per request, profiler-free, and
on PostgreSQL the CPU of the server's processes for the bench's database (from ``/proc``).
Drop a projection with ``--drop valuation,alerts`` to see what it costs.
Findings: ``docs/performance.md``, "Cost per request: pushes and item creates".
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import io
import pstats
import time
import uuid
from typing import Annotated, Any

import anyio.to_thread
import httpx
import requests as bench  # bench/requests.py
import starlette.concurrency
import typer
from common import ROOT, cli, process_tree_cpu_s
from sqlalchemy import event

from central_api.core import driver
from central_api.core.config import Settings
from central_api.main import create_app

app = cli(__doc__)


async def _inline(func: Any, *args: Any, **kwargs: Any) -> Any:
    for name in ("limiter", "abandon_on_cancel", "cancellable"):
        kwargs.pop(name, None)
    return func(*args, **kwargs)


def _run_inline() -> None:
    import central_api.api.deps as deps  # noqa: PLC0415
    import central_api.api.routes.sync as sync  # noqa: PLC0415

    anyio.to_thread.run_sync = _inline  # type: ignore[assignment]
    starlette.concurrency.run_in_threadpool = _inline  # type: ignore[assignment]
    for module in (sync, deps):
        if hasattr(module, "run_in_threadpool"):
            module.run_in_threadpool = _inline  # type: ignore[attr-defined]


def _backends(engine: Any) -> list[int]:
    """The PostgreSQL server processes of ``engine``'s database (its pool's connections),
    whose CPU ``/proc`` shows when the server runs on this machine; none on SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        return [int(pid) for (pid,) in found]


def _cpu_s(pids: list[int]) -> float:
    return sum(process_tree_cpu_s(pid, children=False) for pid in pids)


def _poster(client: httpx.AsyncClient, items: str, headers: dict[str, str]) -> Any:
    """``POST`` of a new item with an ``Idempotency-Key`` (bench._creator sends ``PUT``)."""
    turn = iter(range(1 << 62))

    async def call() -> tuple[httpx.Response, int]:
        number = next(turn)
        code = f"NEW-post-{number:07d}"
        body = {"item_code": code, "name": f"New item {code}", "uom": "pcs"}
        keyed = {**headers, "idempotency-key": f"profile-{number}-{uuid.uuid4()}"}
        return await client.post(items, json=body, headers=keyed), 1

    return call


@app.command()
def main(
    database_kind: Annotated[str, typer.Option("--database", help="sqlite or postgresql")],
    what: Annotated[str, typer.Option(help="push, create (PUT) or create-post")] = "push",
    requests: Annotated[int, typer.Option(help="requests measured (after 30 to warm up)")] = 300,
    profile: Annotated[bool, typer.Option(help="cProfile, thread trips inline")] = False,
    drop: Annotated[str, typer.Option(help="projections to take out, comma-separated")] = "",
) -> None:
    """Count statements and CPU per request (or profile it) for one kind of request."""
    if profile:
        _run_inline()
    with bench.database(database_kind) as url:
        fixture = bench.prepare(url)
        served = create_app(Settings(database_url=url))
        for name in filter(None, drop.split(",")):
            served.state.projections.remove(name)
        statements: collections.Counter[str] = collections.Counter()

        @event.listens_for(served.state.engine, "before_cursor_execute")
        def _count(*args: Any) -> None:
            words = args[2].split()
            statements[" ".join(words[:4])[:90]] += 1

        # Statements run at the driver (central_api.core.driver) pass no SQLAlchemy event.
        at_driver = driver._execute

        def _count_at_driver(connection: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            words = sql.split()
            statements["(driver) " + " ".join(words[:4])[:80]] += 1
            return at_driver(connection, sql, *args, **kwargs)

        driver._execute = _count_at_driver

        async def measure() -> None:
            async with (
                served.router.lifespan_context(served),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=served), base_url="http://central"
                ) as client,
            ):
                pusher = bench.Pusher(client, "S01", bench.SYNC_EVENTS, 1)
                await pusher.login(fixture.secrets["S01"])
                headers = {"authorization": f"Bearer {fixture.user_token}"}
                creator = bench._creator(client, bench.ITEMS, "profile", headers)
                call = {"push": pusher, "create": creator}.get(what) or _poster(
                    client, bench.ITEMS, headers
                )
                for _ in range(30):
                    answer, _units = await call()
                    answer.raise_for_status()
                backends = _backends(served.state.engine)
                statements.clear()
                profiler = cProfile.Profile()
                server = _cpu_s(backends)
                wall, cpu = time.perf_counter(), time.process_time()
                if profile:
                    profiler.enable()
                for _ in range(requests):
                    answer, _units = await call()
                    answer.raise_for_status()
                if profile:
                    profiler.disable()
                wall = (time.perf_counter() - wall) * 1000 / requests
                cpu = (time.process_time() - cpu) * 1000 / requests
                print(f"{database_kind} {what}: {wall:.2f} ms wall, {cpu:.2f} ms CPU per request")
                if backends:
                    server = (_cpu_s(backends) - server) * 1000 / requests
                    print(
                        f"PostgreSQL's backends ({len(backends)}): {server:.2f} ms CPU per request"
                    )
                print(f"statements per request: {sum(statements.values()) / requests:.2f}")
                for text, count in statements.most_common():
                    print(f"  {count / requests:5.2f}  {text}")
                if profile:
                    out = ROOT / "var" / "bench" / f"profile-{database_kind}-{what}.prof"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    profiler.dump_stats(out)
                    shown = io.StringIO()
                    stats = pstats.Stats(profiler, stream=shown).sort_stats("cumulative")
                    stats.print_stats("central_api", 40)
                    print(shown.getvalue())

        asyncio.run(measure())


if __name__ == "__main__":
    app()
