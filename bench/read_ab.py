"""Two centrals on one database, a user's reads sent to each in turn (issue 19, reads).

For a change whose gain is smaller than what a shared machine moves from one run of
``bench/requests.py`` to the next: central as built here ("after") and the ``jxc`` of
``BENCH_JXC_BEFORE`` ("before", e.g. a script running a checkout of main) serve one
freshly prepared database at the same time, with the floor beside them, and each read
(the stock of one item; the console mix of ``bench/requests.py`` with four users) goes to
floor, before and after in short phases, rotating, ``--rounds`` times. So load from the
rest of the machine falls on all three alike. Prints requests a second, p50 and the
server's CPU per request for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from common import ROOT, Server, central_server, cli, console, process_tree_cpu_s
from requests import ROWS, Side, Target, _phase, database, floor, prepare

app = cli(__doc__)

READ_ROWS = (ROWS[1], ROWS[5])


async def _run(sides: dict[str, Target], seconds: float, rounds: int) -> dict[str, Any]:
    for target in sides.values():
        await target.start()
    totals = {row: {name: Side() for name in sides} for row in READ_ROWS}
    names = list(sides)
    try:
        for row in READ_ROWS:  # warm
            for target in sides.values():
                await _phase(target.calls(row), 0.3)
        for number in range(rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            for row in READ_ROWS:
                for name in order:
                    target = sides[name]
                    before = process_tree_cpu_s(target.pid)
                    side = await _phase(target.calls(row), seconds)
                    side.cpu_s = process_tree_cpu_s(target.pid) - before
                    totals[row][name].add(side)
    finally:
        for target in sides.values():
            await target.close()
    return {row: {name: side.summary() for name, side in by.items()} for row, by in totals.items()}


@app.command()
def main(
    database_kind: Annotated[
        str, typer.Option("--database", help="sqlite or postgresql")
    ] = "sqlite",
    seconds: Annotated[float, typer.Option(help="length of one phase")] = 1.0,
    rounds: Annotated[int, typer.Option(help="phases per side and row")] = 8,
) -> None:
    """Stock of one item and the console mix: floor, before and after, rotating."""
    before_jxc = os.environ.get("BENCH_JXC_BEFORE")
    if not before_jxc:
        raise typer.BadParameter("set BENCH_JXC_BEFORE to the jxc of the code before")
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    with database(database_kind) as url, contextlib.ExitStack() as servers:
        fixture = prepare(url)
        served: dict[str, Server] = {}
        served["floor"] = servers.enter_context(floor(url, 1, logs / "read-ab-floor.log"))
        os.environ["BENCH_JXC"] = before_jxc
        served["before"] = servers.enter_context(central_server(url, 1, logs / "read-ab-b.log"))
        del os.environ["BENCH_JXC"]
        served["after"] = servers.enter_context(central_server(url, 1, logs / "read-ab-a.log"))
        sides = {
            name: Target(server, is_floor=name == "floor", fixture=fixture, tag=f"ab{name[0]}")
            for name, server in served.items()
        }
        rows = asyncio.run(_run(sides, seconds, rounds))
    for row, by in rows.items():
        floor_rate = by["floor"]["per_s"] or 1
        floor_p50 = by["floor"]["p50_ms"] or 1
        for name, figures in by.items():
            console.print(
                f"{database_kind} {row:<24} {name:<6} {figures['per_s']:7.1f}/s "
                f"ratio {figures['per_s'] / floor_rate:4.2f} p50 {figures['p50_ms']:6.2f} ms "
                f"(× {figures['p50_ms'] / floor_p50:4.2f}) p99 {figures['p99_ms']:6.1f} ms "
                f"cpu {figures['cpu_ms_per_request']:.2f} ms/req errors {figures['errors']}"
            )
    console.print(f"load average {load} at start, {os.getloadavg()} at end")
    Path(logs / "read-ab.txt").write_text(repr(rows))


if __name__ == "__main__":
    app()
