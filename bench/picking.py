"""Picking-station benchmark: one carton picked and packed into an SSCC unit, at one station.

Per carton: the station records the pick (a ``picks`` row, one transaction), then ``PACK``
takes the next SSCC serial, books the ``issue`` event, writes the ``packs`` row with its
label owed and marks the pick, in one SQLite transaction (a real ledger file,
``synchronous=FULL``), as ``edge_agent.stations.picking`` does. The scanner and printer are
left out (``bench/stations.py`` measures those paths): this is what picking adds.

The **floor**, measured in the same run, pair by pair: the same two transactions as raw
SQL on a file with the same settings (insert a pick; then counter update, event and outbox
rows, pack row, pick update), so load on the machine weighs on both alike.

Run ``.venv/bin/python bench/picking.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import ROOT, cli, console

sys.path.insert(0, str(ROOT))

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.picking import PickingStation
from edge_agent.stations.sscc import SsccConfig
from jxc.feed import ChangePage

app = cli(__doc__)
GTIN = "09506000134352"


def _page(cartons: int) -> ChangePage:
    expiry = (datetime.now(UTC).date() + timedelta(days=60)).isoformat()
    line = {
        "so_line": 1,
        "item_code": "PILL",
        "uom": "EA",
        "qty": str(cartons),
        "lots": [{"lot": "L1", "expiry": expiry, "qty": str(cartons)}],
    }
    changes = [
        ("item", "PILL", {"item_code": "PILL", "uom": "EA"}),
        ("barcode", GTIN, {"barcode": GTIN, "item_code": "PILL"}),
        ("pick_list", "SO1", {"so_id": "SO1", "customer": "C", "so_version": 1, "lines": [line]}),
    ]
    return ChangePage.model_validate(
        {
            "site_id": "S01",
            "changes": [
                {"version": n, "entity": e, "key": k, "op": "upsert", "data": d}
                for n, (e, k, d) in enumerate(changes, start=1)
            ],
            "next_cursor": len(changes),
            "has_more": False,
        }
    )


def _scan(data: str, gs1: bool = False) -> Scan:
    return Scan(
        "pick-1", data.encode(), data, "]C1" if gs1 else None,
        parse_gs1(data) if gs1 else None, datetime.now(UTC),
    )  # fmt: skip


def _floor_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, last INTEGER)")
    conn.execute("INSERT INTO counter VALUES (1, 0)")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE packs (serial INTEGER PRIMARY KEY, sscc TEXT UNIQUE, body TEXT)")
    conn.execute("CREATE TABLE picks (id INTEGER PRIMARY KEY, body TEXT, pack INTEGER)")
    return conn


def _floor_once(conn: sqlite3.Connection, body: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    pick = conn.execute("INSERT INTO picks (body) VALUES (?)", (body,)).lastrowid
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    (last,) = conn.execute("SELECT last FROM counter WHERE id = 1").fetchone()
    conn.execute("UPDATE counter SET last = ? WHERE id = 1", (last + 1,))
    (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetchone()
    conn.execute("INSERT INTO events VALUES (?, ?)", (seq, body))
    conn.execute("INSERT INTO outbox VALUES (?)", (seq,))
    conn.execute("INSERT INTO packs VALUES (?, ?, ?)", (last + 1, f"{last + 1:018d}", body))
    conn.execute("UPDATE picks SET pack = ? WHERE id = ?", (last + 1, pick))
    conn.execute("COMMIT")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@app.command()
def main(cartons: int = 500) -> None:
    """Pick and pack CARTONS cartons one at a time; print p50/p99 against the floor."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "edge.db", site_id="S01")
        Catalog(ledger).apply(_page(cartons))
        station = PickingStation(ledger, Catalog(ledger), SsccConfig(0, "0614141"))
        station.on_scan(_scan("SO1"))
        station.on_scan(_scan("A-01"))
        expiry = datetime.now(UTC).date() + timedelta(days=60)
        carton = f"01{GTIN}10L1\x1d17{expiry:%y%m%d}371"
        floor = _floor_db(Path(folder) / "floor.db")
        body = "x" * 600  # about an event's JSON
        station_ms: list[float] = []
        floor_ms: list[float] = []
        for _ in range(cartons):
            start = time.perf_counter()
            _floor_once(floor, body)
            floor_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            station.on_scan(_scan(carton, gs1=True))
            station.on_scan(_scan("PACK"))
            station_ms.append((time.perf_counter() - start) * 1000)
        ledger.close()
        floor.close()
    console.print(f"{cartons} cartons picked and packed, one SSCC unit each")
    for name, values in (("station", station_ms), ("floor", floor_ms)):
        console.print(
            f"{name:8} p50 {statistics.median(values):7.2f} ms   p99 {_pct(values, 0.99):7.2f} ms"
        )
    ratio = statistics.median(station_ms) / statistics.median(floor_ms)
    console.print(f"station / floor at p50: {ratio:.1f}x")


if __name__ == "__main__":
    app()
