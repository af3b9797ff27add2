"""Counter benchmark: one counter sale of a 3-line basket, committed at a till.

Per sale: three scans put three items in the basket (one lot-tracked, sold FEFO from the lots
the edge holds), then ``PAY cash`` takes the next receipt number, books one ``sale`` event
per line and lot, and writes the receipt and its lines in one SQLite transaction (a real
ledger file, ``synchronous=FULL``), as ``edge_agent.stations.counter`` does. The scanner is
left out (``bench/stations.py`` measures that path): this is what the counter adds. The
ledger grows as it runs (the lot stock is read incrementally, so a late sale should cost
what an early one does: the last tenth is printed apart).

The **floor**, measured in the same run, sale by sale: the same transaction as raw SQL on a
file with the same settings (counter update, receipt row, three event, outbox and line
rows), so load on the machine weighs on both alike.

Run ``.venv/bin/python bench/counter.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from common import ROOT, cli, console

sys.path.insert(0, str(ROOT))

from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.counter import CounterStation
from jxc.contract import EventKind
from jxc.feed import ChangePage

app = cli(__doc__)
CODES = {"PILL": "09506000134352", "SOAP": "6901234567892", "GUM": "4006381333931"}


def _page() -> ChangePage:
    changes: list[tuple[str, str, dict[str, str]]] = []
    for item, code in CODES.items():
        changes.append(("item", item, {"item_code": item, "uom": "EA"}))
        changes.append(("barcode", code, {"barcode": code, "item_code": item}))
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


def _scan(data: str) -> Scan:
    return Scan("till-1", data.encode(), data, None, None, datetime.now(UTC))


def _floor_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, last INTEGER)")
    conn.execute("INSERT INTO counter VALUES (1, 0)")
    conn.execute("CREATE TABLE receipts (number INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE lines (seq INTEGER PRIMARY KEY, body TEXT)")
    return conn


def _floor_once(conn: sqlite3.Connection, body: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    (last,) = conn.execute("SELECT last FROM counter WHERE id = 1").fetchone()
    conn.execute("UPDATE counter SET last = ? WHERE id = 1", (last + 1,))
    conn.execute("INSERT INTO receipts VALUES (?, ?)", (last + 1, body))
    for _ in range(3):
        (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetchone()
        conn.execute("INSERT INTO events VALUES (?, ?)", (seq, body))
        conn.execute("INSERT INTO outbox VALUES (?)", (seq,))
        conn.execute("INSERT INTO lines VALUES (?, ?)", (seq, body))
    conn.execute("COMMIT")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@app.command()
def main(sales: int = 500) -> None:
    """Sell SALES baskets of three lines one at a time; print p50/p99 against the floor."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "edge.db", site_id="S01")
        Catalog(ledger).apply(_page())
        for n, days in enumerate((30, 60, 90)):
            ledger.append(
                EventDraft(
                    kind=EventKind.RECEIPT, item="PILL", lot=f"L{n}",
                    expiry=datetime.now(UTC).date() + timedelta(days=days),
                    location="SHOP", qty=Decimal(sales), uom="EA",
                )
            )  # fmt: skip
        prices = {"PILL": Decimal("12.5"), "SOAP": Decimal("3.3"), "GUM": Decimal("0.99")}
        station = CounterStation(ledger, Catalog(ledger), location="SHOP", prices=prices)
        floor = _floor_db(Path(folder) / "floor.db")
        body = "x" * 600  # about an event's JSON
        station_ms: list[float] = []
        floor_ms: list[float] = []
        for _ in range(sales):
            start = time.perf_counter()
            _floor_once(floor, body)
            floor_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            for code in CODES.values():
                station.on_scan(_scan(code))
            station.on_scan(_scan("PAY cash"))
            station_ms.append((time.perf_counter() - start) * 1000)
        ledger.close()
        floor.close()
    console.print(f"{sales} counter sales of 3 lines, one receipt each")
    late = station_ms[-max(1, sales // 10) :]
    for name, values in (("station", station_ms), ("last 10%", late), ("floor", floor_ms)):
        console.print(
            f"{name:8} p50 {statistics.median(values):7.2f} ms   p99 {_pct(values, 0.99):7.2f} ms"
        )
    ratio = statistics.median(station_ms) / statistics.median(floor_ms)
    console.print(f"station / floor at p50: {ratio:.1f}x")


if __name__ == "__main__":
    app()
