"""What one request costs central, against a bare FastAPI app doing the same SQL (issue 19).

Two real uvicorn processes on one freshly migrated database: ``jxc central serve`` (with
``--workers N``) and the floor, ``bench/floor_app.py`` (a bare FastAPI app with ``def``
routes doing each request's own statements on the same database with the same engine
settings, and nothing else: no credential, no audit, no middleware). Clients are asyncio
tasks with ``httpx.AsyncClient`` in this process, one connection each. Rows:

1. **push 1 event**: one site pushes one-event batches with its token, one at a time;
2. **stock of 1 item**: a signed-in user reads one item's balances, one at a time;
3. **create an item**: a signed-in user PUTs a new item, one at a time;
4. **8 sites, 1 event**: eight sites push one-event batches at once;
5. **8 sites, 100 events**: eight sites push 100-event batches at once;
6. **console reads**: four users at once, each going round: stock of one item, a site's
   stock, a page of 50 items, one item.

Each row runs for ``--seconds`` on the floor and on central in turn, ``--rounds`` times,
floor first in odd rounds and central first in even ones, so load from the rest of the
machine falls on both alike: read the ratios. An error is any answer but 200 (a 503
counts) or a failed request. ``--rows 4,5`` runs only those rows; ``--pushes-in-flight N``
also runs the 8-site rows, in the same rounds, against a second central that lets N pushes
in at once (``JXC_CENTRAL_MAX_PUSHES_IN_FLIGHT``). Each phase also reads the server's CPU
(user + system, its workers included, from ``/proc``), shown per request: on a shared
machine the CPU a request costs moves less than its wall time. Figures and how to read them:
``docs/performance.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from common import (
    ROOT,
    Server,
    central_server,
    cli,
    console,
    finish,
    machine_info,
    postgres_database,
    process_tree_cpu_s,
    server,
    table,
)
from floor_app import create_floor_tables

from central_api.core.db import create_db_engine, upgrade_database
from central_api.services.audit import system_context
from central_api.services.auth import add_site
from central_api.services.barcodes import gs1_check_digit
from central_api.services.items import upsert_item
from central_api.services.people import create_user, sign_in
from jxc.feed import BarcodeData, ItemData
from jxc.ids import uuid7
from jxc.paths import ITEMS, STOCK, SYNC_EVENTS, SYNC_TOKEN

app = cli(__doc__)

SITES = [f"S{n:02d}" for n in range(1, 9)]
SOLO_SITES = [f"S{n:02d}" for n in range(11, 19)]
"""The sites of the second central (which commits every push alone with ``--group-commit
compare`` on SQLite, or takes ``--pushes-in-flight``), so that both centrals' seqs never
meet."""
GROUP_ROWS = ("8 sites, 1 event", "8 sites, 100 events")
ITEM_COUNT = 50
PASSWORD = "bench password"


@dataclass
class Side:
    requests: int = 0
    errors: int = 0
    units: int = 0
    """Events for a push row, else requests."""
    seconds: float = 0.0
    cpu_s: float = 0.0
    """User + system CPU of the server's processes (workers included) during the phase."""
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_error: str | None = None

    def add(self, other: Side) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.units += other.units
        self.seconds += other.seconds
        self.cpu_s += other.cpu_s
        self.latencies_ms += other.latencies_ms
        self.first_error = self.first_error or other.first_error

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms) or [0.0]

        def pct(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {
            "requests": self.requests,
            "errors": self.errors,
            "per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "units_per_s": round(self.units / self.seconds, 1) if self.seconds else 0,
            "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1], 2),
            "cpu_ms_per_request": round(self.cpu_s * 1000 / self.requests, 2)
            if self.requests
            else 0,
            "first_error": self.first_error,
        }


@dataclass
class RequestsReport:
    database: str
    workers: int
    seconds: float
    rounds: int
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    second_central: str = ""
    """What the second central measured on the 8-site rows differs in, if one ran."""


@dataclass
class AllReports:
    runs: list[RequestsReport] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- servers


def central(
    url: str,
    workers: int,
    log_path: Path,
    *,
    group_commit: bool = True,
    settings: dict[str, str] | None = None,
) -> contextlib.AbstractContextManager[Server]:
    return central_server(url, workers, log_path, group_commit=group_commit, settings=settings)


def floor(url: str, workers: int, log_path: Path) -> contextlib.AbstractContextManager[Server]:
    argv = [sys.executable, "-m", "uvicorn", "--factory", "floor_app:create_app"]
    argv += ["--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", "{port}"]
    argv += ["--workers", str(workers)] if workers > 1 else []
    return server(argv, {**os.environ, "FLOOR_DATABASE_URL": url}, log_path)


# --------------------------------------------------------------------------- database


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="jxc-bench-requests-", dir=ROOT / "var"))
        try:
            yield f"sqlite:///{folder / 'central.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    with postgres_database("jxc_bench_requests") as url:
        yield url


@dataclass
class Fixture:
    secrets: dict[str, str]
    user_token: str


def prepare(url: str) -> Fixture:
    """Schema, eight sites, a user, 50 items with a barcode each, the floor's tables."""
    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        create_floor_tables(engine)
        with engine.connect() as connection:
            secrets = {site: add_site(connection, site) for site in SITES + SOLO_SITES}
            create_user(connection, username="boss", password=PASSWORD, role_names=["admin"])
            token = sign_in(
                connection,
                username="boss",
                password=PASSWORD,
                address="bench",
                kind="bearer",
                ttl_s=3600,
            ).token
            for number in range(ITEM_COUNT):
                code = _item(number)
                upsert_item(
                    connection=connection,
                    item=ItemData(item_code=code, name=f"Item {number}", uom="pcs", active=True),
                    barcodes=[BarcodeData(barcode=_ean13(number), item_code=code)],
                    audit=system_context("bench"),
                )
    finally:
        engine.dispose()
    return Fixture(secrets=secrets, user_token=token)


def _ean13(number: int) -> str:
    """A valid EAN-13 (central checks the digit since master data came)."""
    body = f"69{number:010d}"
    return f"{body}{gs1_check_digit(body)}"


def _item(number: int) -> str:
    return f"SKU-{number:04d}"


# --------------------------------------------------------------------------- clients

_EVENT = (
    '{{"event_id":"{id}","site_id":"{site}","seq":{seq},"occurred_at":"{at}",'
    '"kind":"receipt","item":"{item}","location":"A-01","qty":"1","uom":"pcs",'
    '"device_id":"bench","actor":"bench"}}'
)


class Pusher:
    """One site's client: its own connection, token and seq."""

    def __init__(self, client: httpx.AsyncClient, site: str, path: str, events: int) -> None:
        self.client, self.site, self.path, self.events = client, site, path, events
        self.seq = 0
        self.headers = {"content-type": "application/json"}

    async def login(self, secret: str) -> None:
        answer = await self.client.post(SYNC_TOKEN, json={"site_id": self.site, "secret": secret})
        answer.raise_for_status()
        self.headers["authorization"] = f"Bearer {answer.json()['access_token']}"

    async def __call__(self) -> tuple[httpx.Response, int]:
        at = datetime.now(UTC).isoformat()
        body = ",".join(
            _EVENT.format(
                id=uuid7(), site=self.site, seq=self.seq + n, at=at, item=_item(n % ITEM_COUNT)
            )
            for n in range(1, self.events + 1)
        )
        content = f'{{"contract_version":1,"site_id":"{self.site}","events":[{body}]}}'
        answer = await self.client.post(self.path, content=content, headers=self.headers)
        if answer.status_code == 200:
            self.seq = int(answer.json()["acked_through_seq"])
        return answer, self.events


Call = Callable[[], Awaitable[tuple[httpx.Response, int]]]


async def _phase(calls: list[Call], seconds: float) -> Side:
    side = Side()
    deadline = time.perf_counter() + seconds

    async def worker(call: Call) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                answer, units = await call()
                ok = answer.status_code == 200
                error = None if ok else f"{answer.status_code}: {answer.text[:200]}"
            except httpx.HTTPError as exc:
                ok, units, error = False, 0, f"{type(exc).__name__}: {exc}"
            side.latencies_ms.append((time.perf_counter() - started) * 1000)
            side.requests += 1
            if ok:
                side.units += units
            else:
                side.errors += 1
                side.first_error = side.first_error or error

    started = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in calls))
    side.seconds = time.perf_counter() - started
    return side


def _reader(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Call:
    async def call() -> tuple[httpx.Response, int]:
        return await client.get(path, headers=headers), 1

    return call


def _console(client: httpx.AsyncClient, paths: list[str], headers: dict[str, str]) -> Call:
    turn = iter(range(1 << 62))

    async def call() -> tuple[httpx.Response, int]:
        return await client.get(paths[next(turn) % len(paths)], headers=headers), 1

    return call


def _creator(client: httpx.AsyncClient, items: str, tag: str, headers: dict[str, str]) -> Call:
    turn = iter(range(1 << 62))

    async def call() -> tuple[httpx.Response, int]:
        code = f"NEW-{tag}-{next(turn):07d}"
        body = {"name": f"New item {code}", "uom": "pcs"}
        return await client.put(f"{items}/{code}", json=body, headers=headers), 1

    return call


ROWS = (
    "push 1 event",
    "stock of 1 item",
    "create an item",
    "8 sites, 1 event",
    "8 sites, 100 events",
    "console reads (4 users)",
)


class Target:
    """Requests of every row against one server (central or the floor)."""

    def __init__(
        self,
        served: Server,
        *,
        is_floor: bool,
        fixture: Fixture,
        tag: str,
        sites: list[str] = SITES,
    ) -> None:
        self.base, self.is_floor, self.fixture, self.tag = served.base, is_floor, fixture, tag
        self.pid = served.pid
        self.sites = sites
        self.clients: list[httpx.AsyncClient] = []
        self.pushers: dict[str, Pusher] = {}
        self.bulk: dict[str, Pusher] = {}

    def client(self) -> httpx.AsyncClient:
        made = httpx.AsyncClient(base_url=self.base, timeout=30)
        self.clients.append(made)
        return made

    async def start(self) -> None:
        push = "/push" if self.is_floor else SYNC_EVENTS
        sites = [f"F{site[1:]}" if self.is_floor else site for site in self.sites]
        for site, secret_of in zip(sites, self.sites, strict=True):
            one, bulk = Pusher(self.client(), site, push, 1), Pusher(self.client(), site, push, 100)
            bulk.client = one.client  # one connection per site
            if not self.is_floor:
                await one.login(self.fixture.secrets[secret_of])
                bulk.headers = one.headers
            self.pushers[site], self.bulk[site] = one, bulk
        self.headers = (
            {} if self.is_floor else {"authorization": f"Bearer {self.fixture.user_token}"}
        )

    def sync_seqs(self) -> None:
        for site, one in self.pushers.items():
            bulk = self.bulk[site]
            one.seq = bulk.seq = max(one.seq, bulk.seq)

    def calls(self, row: str) -> list[Call]:
        self.sync_seqs()
        stock = "/stock" if self.is_floor else STOCK
        items = "/items" if self.is_floor else ITEMS
        site = "F01" if self.is_floor else "S01"
        if row == "push 1 event":
            return [self.pushers[site]]
        if row == "stock of 1 item":
            path = f"{stock}?site_id=S01&item={_item(7)}"
            return [_reader(self.client(), path, self.headers)]
        if row == "create an item":
            return [_creator(self.client(), items, self.tag, self.headers)]
        if row == "8 sites, 1 event":
            return list(self.pushers.values())
        if row == "8 sites, 100 events":
            return list(self.bulk.values())
        paths = [
            f"{stock}?site_id=S01&item={_item(3)}",
            f"{stock}?site_id=S01",
            f"{items}?limit=50",
            f"{items}/{_item(11)}",
        ]
        return [_console(self.client(), paths, self.headers) for _ in range(4)]

    async def close(self) -> None:
        for made in self.clients:
            await made.aclose()


async def _measure(
    jxc_base: Server,
    floor_base: Server,
    fixture: Fixture,
    *,
    seconds: float,
    rounds: int,
    tag: str,
    solo_base: Server | None = None,
    only: tuple[str, ...] = ROWS,
) -> dict[str, dict[str, Any]]:
    jxc = Target(jxc_base, is_floor=False, fixture=fixture, tag=tag)
    bare = Target(floor_base, is_floor=True, fixture=fixture, tag=tag)
    sides = [("floor", bare), ("jxc", jxc)]
    solo = None
    if solo_base is not None:
        solo = Target(solo_base, is_floor=False, fixture=fixture, tag=f"{tag}s", sites=SOLO_SITES)
        sides.append(("solo", solo))
    for _, target in sides:
        await target.start()
    # Warm each (first requests compile statements, fill caches, open connections).
    for name, target in sides:
        for row in only if name != "solo" else [r for r in GROUP_ROWS if r in only]:
            await _phase(target.calls(row), 0.3)
    totals = {row: {name: Side() for name, _ in sides} for row in only}
    try:
        for round_number in range(rounds):
            order = sides[:2] if round_number % 2 == 0 else sides[1::-1]
            for row in only:
                for name, target in order + (sides[2:] if row in GROUP_ROWS else []):
                    cpu_before = process_tree_cpu_s(target.pid)
                    side = await _phase(target.calls(row), seconds)
                    side.cpu_s = process_tree_cpu_s(target.pid) - cpu_before
                    totals[row][name].add(side)
                    console.print(
                        f"  round {round_number + 1} {row:<24} {name:<5} "
                        f"{side.requests / side.seconds:8.1f}/s "
                        f"p50 {statistics.median(side.latencies_ms or [0]):7.2f} ms "
                        f"errors {side.errors} "
                        f"CPU {side.cpu_s * 1000 / max(side.requests, 1):.2f} ms/request"
                    )
    finally:
        for _, target in sides:
            await target.close()
    rows: dict[str, dict[str, Any]] = {}
    for row, measured in totals.items():
        ours, base = measured["jxc"].summary(), measured["floor"].summary()
        rows[row] = {
            "jxc": ours,
            "floor": base,
            "throughput_ratio": round(ours["per_s"] / base["per_s"], 2) if base["per_s"] else None,
            "p50_ratio": round(ours["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None,
        }
        if "solo" in measured and measured["solo"].requests:
            rows[row]["jxc_second_central"] = measured["solo"].summary()
    return rows


def run_one(
    kind: str,
    workers: int,
    *,
    seconds: float,
    rounds: int,
    compare_group_commit: bool,
    only: tuple[str, ...] = ROWS,
    pushes_in_flight: int = 0,
) -> RequestsReport:
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with database(kind) as url:
        console.print(f"[bold]{kind}, {workers} worker(s)[/bold]: preparing {url.split('@')[-1]}")
        fixture = prepare(url)
        compare = compare_group_commit and kind == "sqlite"
        with contextlib.ExitStack() as servers:
            jxc_base = servers.enter_context(
                central(url, workers, logs / f"requests-central-{kind}-{workers}.log")
            )
            floor_base = servers.enter_context(
                floor(url, workers, logs / f"requests-floor-{kind}-{workers}.log")
            )
            solo_base = None
            solo_log = logs / f"requests-central-second-{kind}.log"
            if compare:
                solo_base = servers.enter_context(
                    central(url, workers, solo_log, group_commit=False)
                )
            elif pushes_in_flight:
                limit = {"JXC_CENTRAL_MAX_PUSHES_IN_FLIGHT": str(pushes_in_flight)}
                solo_base = servers.enter_context(central(url, workers, solo_log, settings=limit))
            rows = asyncio.run(
                _measure(
                    jxc_base,
                    floor_base,
                    fixture,
                    seconds=seconds,
                    rounds=rounds,
                    tag=f"{kind[0]}{workers}",
                    solo_base=solo_base,
                    only=only,
                )
            )
    report = RequestsReport(database=kind, workers=workers, seconds=seconds, rounds=rounds)
    if solo_base is not None:
        report.second_central = (
            "each push committed alone"
            if compare
            else f"{pushes_in_flight} pushes in flight per process"
        )
    report.rows = rows
    return report


def print_report(reports: AllReports) -> None:
    for report in reports.runs:
        shown = table(
            f"{report.database}, {report.workers} worker(s): "
            f"{report.rounds} × {report.seconds:g} s per side and row "
            "(the machine is shared: read the ratios)",
            [
                "row",
                "jxc /s",
                "floor /s",
                "ratio",
                "jxc p50",
                "floor p50",
                "p50 ×",
                "jxc p99",
                "floor p99",
                "errors jxc/floor",
                "CPU ms/req jxc/floor",
            ],
            left={"row"},
        )
        for row, figures in report.rows.items():
            ours, base = figures["jxc"], figures["floor"]
            unit = " ev" if "100" in row else ""
            shown.add_row(
                row,
                f"{ours['units_per_s' if unit else 'per_s']:,.0f}{unit}",
                f"{base['units_per_s' if unit else 'per_s']:,.0f}{unit}",
                f"{figures['throughput_ratio']}",
                f"{ours['p50_ms']:.1f}",
                f"{base['p50_ms']:.1f}",
                f"{figures['p50_ratio']}",
                f"{ours['p99_ms']:.1f}",
                f"{base['p99_ms']:.1f}",
                f"{ours['errors']}/{base['errors']}",
                f"{ours['cpu_ms_per_request']:.2f}/{base['cpu_ms_per_request']:.2f}",
            )
        console.print(shown)
        for row, figures in report.rows.items():
            solo = figures.get("jxc_second_central")
            if solo:
                ours = figures["jxc"]
                console.print(
                    f"  {row}: as set {ours['units_per_s']:,.0f}/s p50 {ours['p50_ms']} "
                    f"p99 {ours['p99_ms']} ms; {report.second_central} "
                    f"{solo['units_per_s']:,.0f}/s p50 {solo['p50_ms']} p99 {solo['p99_ms']} ms, "
                    f"errors {solo['errors']}"
                )
        for row, figures in report.rows.items():
            for side in ("jxc", "floor"):
                if figures[side]["first_error"]:
                    console.print(f"  {row} {side}: first error {figures[side]['first_error']}")
    console.print(f"(from {ROOT.name}/bench/requests.py)")


@app.command()
def main(
    database_kind: Annotated[
        str, typer.Option("--database", help="sqlite, postgresql or both")
    ] = "both",
    seconds: Annotated[float, typer.Option(help="length of one phase (one side, one row)")] = 5,
    rounds: Annotated[int, typer.Option(help="phases per side and row, alternating")] = 2,
    workers: Annotated[
        str, typer.Option(help="worker counts to run on PostgreSQL, comma-separated")
    ] = "1,2",
    group_commit: Annotated[
        str,
        typer.Option(
            help="SQLite: 'compare' also runs the 8-site rows against a second central that "
            "commits every push alone; 'on' does not"
        ),
    ] = "compare",
    json_out: Annotated[Path | None, typer.Option(help="write the report here")] = None,
    rows: Annotated[
        str,
        typer.Option(help="which rows to run, by number (1-6), comma-separated; all by default"),
    ] = "",
    pushes_in_flight: Annotated[
        int,
        typer.Option(
            help="also run the 8-site rows against a second central with this "
            "JXC_CENTRAL_MAX_PUSHES_IN_FLIGHT (not with --group-commit compare on SQLite)"
        ),
    ] = 0,
) -> None:
    """Run the rows on each database (SQLite: one worker) and print the ratios."""
    kinds = ["sqlite", "postgresql"] if database_kind == "both" else [database_kind]
    only = tuple(ROWS[int(n) - 1] for n in rows.split(",")) if rows else ROWS
    reports = AllReports(machine=machine_info())
    for kind in kinds:
        counts = [1] if kind == "sqlite" else [int(n) for n in workers.split(",")]
        for count in counts:
            reports.runs.append(
                run_one(
                    kind,
                    count,
                    seconds=seconds,
                    rounds=rounds,
                    compare_group_commit=group_commit == "compare",
                    only=only,
                    pushes_in_flight=pushes_in_flight,
                )
            )
    finish(reports, print_report, json_out)


if __name__ == "__main__":
    app()
