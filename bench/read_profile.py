"""Where a user's read goes (issue 19): statements, thread trips and CPU per request.

In process: central's app (``create_app``) on a fresh database prepared as
``bench/requests.py`` prepares it, called through ``httpx.ASGITransport`` by one client,
one request at a time, for each read of that bench's "stock of 1 item" and "console
reads" rows. For each it prints, per request:

* **statements**: what reached the driver (``before_cursor_execute``; SQLite's ``BEGIN``
  and ``COMMIT`` included, PostgreSQL's implicit ``BEGIN`` not);
* **trips**: calls through the thread pool (``anyio.to_thread.run_sync``, which
  Starlette's ``run_in_threadpool`` and FastAPI's ``def`` dependencies use);
* **wall** and **CPU** (this process, all threads) per request;

then, with ``--profile``, a cProfile of the same requests with the thread-pool trips run
inline (so one profile sees the whole request), the functions with the most own time.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import httpx
import typer
from common import cli, console
from requests import SITES, _item, database, prepare
from sqlalchemy import event

from central_api.core.config import Settings
from central_api.core.gc_tuning import tune_for_serving
from central_api.main import create_app
from jxc.paths import CUSTOMER_RETURNS, ITEMS, RECEIVABLES_AGEING, STOCK

app = cli(__doc__)

T = TypeVar("T")

PATHS = {
    "stock of 1 item": f"{STOCK}?site_id={SITES[0]}&item={_item(7)}",
    "console: stock of 1 item": f"{STOCK}?site_id={SITES[0]}&item={_item(3)}",
    "console: a site's stock": f"{STOCK}?site_id={SITES[0]}",
    "console: 50 items": f"{ITEMS}?limit=50",
    "console: one item": f"{ITEMS}/{_item(11)}",
    # The console's own HTML item list (not in bench/requests.py's mix): its page of
    # items, rendered, with the same bearer token a script would send.
    "console page: items": "/console/items",
    # Routes of routers added last (issue 19, "Routing once, through an index"): FastAPI
    # matched them against every route before theirs, two or three times.
    "late route: ageing": RECEIVABLES_AGEING,
    "late route: cust. returns": f"{CUSTOMER_RETURNS}?limit=50",
}


class Counts:
    statements = 0
    transactions = 0
    trips = 0
    inline = False


def _patch_trips() -> None:
    real = anyio.to_thread.run_sync

    async def run_sync(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        Counts.trips += 1
        if Counts.inline:
            return func(*args)
        return await real(func, *args, **kwargs)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]


async def _run(kind: str, requests: int, profile: bool, top: int) -> None:
    with database(kind) as url:
        fixture = prepare(url)
        central = create_app(Settings(database_url=url))
        # As `jxc central serve` does: a gen0 threshold for serving and the heap frozen.
        tune_for_serving(gen0_threshold=Settings().gc_gen0_threshold)
        engine = central.state.engine

        @event.listens_for(engine, "before_cursor_execute")
        def _statement(*_: Any) -> None:
            Counts.statements += 1

        @event.listens_for(engine, "begin")
        def _begin(*_: Any) -> None:
            Counts.transactions += 1

        headers = {"authorization": f"Bearer {fixture.user_token}"}
        transport = httpx.ASGITransport(app=central)
        async with httpx.AsyncClient(transport=transport, base_url="http://central") as client:

            async def call(path: str) -> None:
                answer = await client.get(path, headers=headers)
                assert answer.status_code == 200, answer.text

            for path in PATHS.values():  # warm: statements compiled, pool filled
                for _ in range(20):
                    await call(path)
            console.print(f"[bold]{kind}[/bold]: {requests} requests each, one at a time")
            for name, path in PATHS.items():
                await _measure(name, call, path, requests)
            if profile:
                Counts.inline = True
                for name, path in PATHS.items():
                    profiler = cProfile.Profile()
                    profiler.enable()
                    for _ in range(requests):
                        await call(path)
                    profiler.disable()
                    out = io.StringIO()
                    stats = pstats.Stats(profiler, stream=out)
                    stats.sort_stats("tottime").print_stats(top)
                    console.print(f"[bold]{kind}, {name}[/bold] (trips inline, by own time)")
                    console.print(out.getvalue().split("\n", 6)[-1])
                Counts.inline = False
        engine.dispose()


async def _measure(
    name: str, call: Callable[[str], Awaitable[None]], path: str, requests: int
) -> None:
    Counts.statements = Counts.transactions = Counts.trips = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await call(path)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    console.print(
        f"  {name:<26} statements {Counts.statements / requests:4.1f}  "
        f"transactions {Counts.transactions / requests:3.1f}  "
        f"trips {Counts.trips / requests:3.1f}  "
        f"wall {wall * 1000 / requests:6.2f} ms  cpu {cpu * 1000 / requests:6.2f} ms"
    )


@app.command()
def main(
    database_kind: Annotated[
        str, typer.Option("--database", help="sqlite, postgresql or both")
    ] = "both",
    requests: Annotated[int, typer.Option(help="requests per read")] = 300,
    profile: Annotated[bool, typer.Option(help="also cProfile each read")] = False,
    top: Annotated[int, typer.Option(help="functions shown per profile")] = 25,
) -> None:
    """Statements, trips, wall and CPU per user read; optionally where the CPU goes."""
    _patch_trips()
    kinds = ["sqlite", "postgresql"] if database_kind == "both" else [database_kind]
    for kind in kinds:
        asyncio.run(_run(kind, requests, profile, top))


if __name__ == "__main__":
    app()
