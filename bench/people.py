"""What signing in costs a request: the same GET with and without authentication.

One app on a freshly migrated database (SQLite file, or PostgreSQL with ``--postgres``),
one item with a price, requests sent in-process through FastAPI's TestClient, so what
differs between the sides is only central's own work:

* **baseline**: the principal is given (``dependency_overrides`` on ``get_principal``: an
  admin, no credential read, no database lookup); the route's rule still runs.
* **bearer**: a real user token, looked up per request (session, user, roles, sites).
* **cookie**: the same for a cookie session.
* **site**: a site's signed token (HMAC check and the credential's generation).
* **clerk**: a warehouse clerk's token: the lookup, and the financial fields dropped.

The sides alternate in rounds of ``--batch`` requests so load from other work on the
machine falls on all of them alike. Figures and how to read them: ``docs/performance.md``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from common import ROOT, cli, console, finish, machine_info, table
from fastapi.testclient import TestClient

from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.core.principal import Principal, get_principal
from central_api.main import create_app
from central_api.services.auth import add_site
from central_api.services.people import create_user, sign_in

app = cli(__doc__)

PASSWORD = "bench password"
ITEM = "/api/v1/items/RICE-1"


@dataclass
class PeopleReport:
    database: str
    requests_per_side: int
    median_us: dict[str, float] = field(default_factory=dict)
    p90_us: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def _database(postgres: bool) -> tuple[str, Callable[[], None]]:
    if not postgres:
        folder = Path(tempfile.mkdtemp(prefix="jxc-bench-people-"))
        return f"sqlite:///{folder / 'central.db'}", lambda: None
    import psycopg  # noqa: PLC0415

    admin_url = os.environ.get("JXC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
    name = f"jxc_bench_people_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}", drop


@app.command()
def main(
    requests: Annotated[int, typer.Option(help="requests per side")] = 3000,
    batch: Annotated[int, typer.Option(help="requests per side per round")] = 100,
    postgres: Annotated[bool, typer.Option(help="PostgreSQL instead of SQLite")] = False,
    json_out: Annotated[Path | None, typer.Option(help="write the report here")] = None,
) -> None:
    url, drop = _database(postgres)
    try:
        report = _run(url, requests=requests, batch=batch)
    finally:
        drop()
    report.machine = machine_info()
    finish(report, _print, json_out)


def _run(url: str, *, requests: int, batch: int) -> PeopleReport:
    upgrade_database(url)
    central = create_app(Settings(database_url=url))
    engine = central.state.engine
    with engine.connect() as connection:
        create_user(connection, username="boss", password=PASSWORD, role_names=["admin"])
        create_user(connection, username="li", password=PASSWORD, role_names=["warehouse_clerk"])
        tokens = {
            who: sign_in(
                connection,
                username=who,
                password=PASSWORD,
                address="bench",
                kind="bearer",
                ttl_s=3600,
            )
            for who in ("boss", "li")
        }
        cookie = sign_in(
            connection,
            username="boss",
            password=PASSWORD,
            address="bench",
            kind="cookie",
            ttl_s=3600,
        )
        site_token = central.state.token_signer.issue(
            connection, "S01", add_site(connection, "S01")
        )
    admin = Principal(kind="user", name="boss", user_id=1, roles=frozenset({"admin"}),
                      actions=frozenset({"*"}), financial=True, sites=None)  # fmt: skip

    with TestClient(central) as client:
        boss = {"Authorization": f"Bearer {tokens['boss'].token}"}
        put = client.put(ITEM, json={"name": "Rice", "uom": "kg", "price": "4.99"}, headers=boss)
        assert put.status_code == 200, put.text

        def plain() -> None:
            central.dependency_overrides[get_principal] = lambda: admin

        def real() -> None:
            central.dependency_overrides.pop(get_principal, None)

        sides: dict[str, tuple[Callable[[], None], dict[str, str], dict[str, str]]] = {
            "baseline (principal given)": (plain, {}, {}),
            "bearer token": (real, boss, {}),
            "cookie session": (real, {}, {"jxc_session": cookie.token}),
            "site token": (real, {"Authorization": f"Bearer {site_token}"}, {}),
            "clerk token (prices dropped)": (
                real,
                {"Authorization": f"Bearer {tokens['li'].token}"},
                {},
            ),
        }
        timings: dict[str, list[float]] = {name: [] for name in sides}
        rounds = max(1, requests // batch)
        for _ in range(rounds):
            for name, (setup, headers, cookies) in sides.items():
                setup()
                client.cookies.clear()
                for key, value in cookies.items():
                    client.cookies.set(key, value)
                samples = timings[name]
                for _ in range(batch):
                    start = time.perf_counter()
                    response = client.get(ITEM, headers=headers)
                    samples.append(time.perf_counter() - start)
                    if response.status_code != 200:
                        raise RuntimeError(f"{name}: {response.status_code} {response.text}")
        real()
    engine.dispose()
    report = PeopleReport(database=engine.dialect.name, requests_per_side=rounds * batch)
    for name, samples in timings.items():
        ordered = sorted(samples)
        report.median_us[name] = round(statistics.median(ordered) * 1e6, 1)
        report.p90_us[name] = round(ordered[int(len(ordered) * 0.9)] * 1e6, 1)
    return report


def _print(report: PeopleReport) -> None:
    shown = table(
        f"GET {ITEM} on {report.database}, {report.requests_per_side} requests per side",
        ["side", "median µs", "p90 µs", "median − baseline µs"],
        left={"side"},
    )
    base = report.median_us["baseline (principal given)"]
    for name, median in report.median_us.items():
        shown.add_row(name, f"{median:.0f}", f"{report.p90_us[name]:.0f}", f"{median - base:+.0f}")
    console.print(shown)
    console.print(f"(from {ROOT.name}/bench/people.py)")


if __name__ == "__main__":
    app()
