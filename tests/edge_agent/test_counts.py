"""Stock counts at the edge: sessions from the feed (blind), entries kept in the ledger
file (last wins, the ledger's own balance beside each), refusals, a restart, and the
upload: idempotent per entry id, offline-safe, central's verdicts kept.

The ledger is a real file; central is an ``httpx.MockTransport`` that records what it
was sent (the real central is in ``test_counts_central.py``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog
from edge_agent.cli import app
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations import counts
from edge_agent.stations.counts import (
    CountRefusedError,
    CountStation,
    CountUploader,
    entries,
    record_count,
    unsent,
)
from jxc.contract import EventKind
from jxc.feed import ChangePage
from jxc.paths import SYNC_COUNT_ENTRIES
from tests.edge_agent.site_kit import Change, feed_page

SESSION = {
    "count_id": "SC000001",
    "site_id": "S01",
    "version": 1,
    "snapshot_at": "2026-12-04T10:00:00Z",
    "location_from": "A1",
    "location_to": "A9",
    "lines": [{"line_no": 1, "location": "A1", "item_code": "PILL", "lot": "L1", "uom": "EA"}],
}


GTIN = "09506000134352"
CASE6 = {"barcode": "CASE6", "item_code": "PILL", "qty_per": "6"}
BOX = {"item_code": "PILL", "uom": "BOX", "factor": "10"}


def page(first: int, *changes: Change) -> ChangePage:
    return feed_page(*changes, start=first)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """S01 with PILL (and a box of 10) holding 100 of lot L1 at A1, and session SC000001."""
    made = Ledger(tmp_path / "S01.db", site_id="S01")
    Catalog(made).apply(
        page(
            1,
            ("item", "PILL", "upsert", {"item_code": "PILL", "uom": "EA"}),
            ("item_unit", "PILL BOX", "upsert", BOX),
            ("count", "SC000001", "upsert", SESSION),
        )
    )  # fmt: skip
    made.append(
        EventDraft(
            kind=EventKind.RECEIPT, item="PILL", lot="L1", location="A1", qty=Decimal(100),
            uom="EA",
        )
    )  # fmt: skip
    yield made
    made.close()


def count(ledger: Ledger, qty: str, **more: Any) -> Any:
    wanted: dict[str, Any] = {"location": "A1", "item": "PILL", "lot": "L1"} | more
    return record_count(ledger, Catalog(ledger), count_id="SC000001", qty=Decimal(qty), **wanted)


def test_a_session_arrives_blind_and_leaves_with_its_tombstone(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    (session,) = catalog.count_sessions()
    assert session.count_id == "SC000001"
    assert "expected" not in session.model_dump_json()
    catalog.apply(page(4, ("count", "SC000001", "delete", None)))
    assert catalog.count_session("SC000001") is None
    with pytest.raises(CountRefusedError, match="no open stock count"):
        count(ledger, "5")
    assert unsent(ledger) == 0


def test_entries_are_kept_last_wins_with_the_ledgers_balance_and_survive_a_restart(
    ledger: Ledger, tmp_path: Path
) -> None:
    first = count(ledger, "90", counted_by="li")
    assert (first.qty, first.uom, first.counted_by) == (Decimal(90), "EA", "li")
    # 5 sold after the first count, then the shelf is counted again in boxes: 9 boxes.
    ledger.append(
        EventDraft(
            kind=EventKind.SALE, item="PILL", lot="L1", location="A1", qty=Decimal(-5), uom="EA"
        )
    )
    count(ledger, "9", uom="BOX")
    # Found stock (a lot the session has no line for) and a zero are counts too.
    count(ledger, "0", location="A2", lot="L2")
    ledger.close()
    reopened = Ledger(tmp_path / "S01.db", site_id="S01")
    try:
        standing = entries(reopened, "SC000001")
        assert [(e.location, e.lot, e.qty, e.counted_by) for e in standing] == [
            ("A1", "L1", Decimal(90), "edge S01"),
            ("A2", "L2", Decimal(0), "edge S01"),
        ]
        assert len(entries(reopened, "SC000001", latest=False)) == 3
        with reopened.reading() as conn:
            systems = [r[0] for r in conn.execute("SELECT system_qty FROM count_entries")]
        assert systems == ["100", "95", "0"]  # the ledger's balance at each entry
        assert unsent(reopened) == 3
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("more", "words"),
    [
        ({"location": "B1"}, "outside SC000001"),
        ({"item": "NOPE"}, "unknown at this site"),
        ({"uom": "CASE"}, "no unit 'CASE'"),
    ],
)
def test_what_cannot_be_counted_is_refused_and_nothing_is_kept(
    ledger: Ledger, more: dict[str, Any], words: str
) -> None:
    with pytest.raises(CountRefusedError, match=words):
        count(ledger, "1", **more)
    with pytest.raises(CountRefusedError, match="zero or more"):
        count(ledger, "-1")
    assert unsent(ledger) == 0


class Central:
    """Answers count uploads as central does: each entry id once, verdict as first given."""

    def __init__(self) -> None:
        self.online = True
        self.bodies: list[dict[str, Any]] = []
        self.seen: dict[str, dict[str, Any]] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.online:
            raise httpx.ConnectError("central unreachable", request=request)
        assert request.url.path == SYNC_COUNT_ENTRIES
        body = json.loads(request.content)
        self.bodies.append(body)
        results = []
        for entry in body["entries"]:
            verdict = {"entry_id": entry["entry_id"], "verdict": "taken"}
            if entry["location"] == "A2":
                verdict = {**verdict, "verdict": "refused", "reason": "location A2 is inactive"}
            results.append(self.seen.setdefault(entry["entry_id"], verdict))
        return httpx.Response(200, json={"site_id": body["site_id"], "results": results})


def test_the_upload_waits_offline_then_sends_each_entry_once(ledger: Ledger) -> None:
    central = Central()
    client = httpx.Client(base_url="http://central", transport=httpx.MockTransport(central.handle))
    uploader = CountUploader(ledger, client)
    count(ledger, "98", counted_by="li")
    count(ledger, "4", location="A2", lot="L2")
    central.online = False
    uploader.run()
    assert unsent(ledger) == 2
    assert uploader.last_error is not None
    central.online = True
    uploader.run()
    assert unsent(ledger) == 0
    (sent,) = central.bodies
    assert [(e["qty"], e["system_qty"], e["counted_by"]) for e in sent["entries"]] == [
        ("98", "100", "li"),
        ("4", "0", "edge S01"),
    ]
    assert "expected" not in json.dumps(sent)
    verdicts = [(e.location, e.verdict, e.reason) for e in entries(ledger, "SC000001")]
    assert verdicts == [("A1", "taken", None), ("A2", "refused", "location A2 is inactive")]
    assert (uploader.uploaded, uploader.refused, uploader.last_error) == (1, 1, None)
    uploader.run()  # nothing left: nothing sent again
    assert len(central.bodies) == 1


def uploader_for(central: Central, ledger: Ledger) -> CountUploader:
    transport = httpx.MockTransport(central.handle)
    return CountUploader(ledger, httpx.Client(base_url="http://central", transport=transport))


def test_a_batchs_verdicts_are_kept_in_one_statement(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(counts, "UPLOAD_BATCH", 10)
    for number in range(25):  # three batches: 10, 10 and 5
        count(ledger, str(number), location="A2" if number % 5 == 0 else "A1", lot=f"L{number}")
    central = Central()
    statements: list[str] = []
    ledger.conn.set_trace_callback(statements.append)
    try:
        uploader_for(central, ledger).run()
    finally:
        ledger.conn.set_trace_callback(None)
    settling = [each for each in statements if each.startswith("UPDATE count_entries")]
    assert len(central.bodies) == 3
    assert len(settling) == 3  # one per batch, whatever its size
    assert unsent(ledger) == 0
    kept = {(e.lot, e.verdict, e.reason) for e in entries(ledger, "SC000001", latest=False)}
    assert kept == {
        (f"L{number}", "refused", "location A2 is inactive")
        if number % 5 == 0
        else (f"L{number}", "taken", None)
        for number in range(25)
    }


def test_a_batch_whose_verdicts_cannot_be_kept_stays_unsent_whole_and_goes_again(
    ledger: Ledger,
) -> None:
    """Settling is all or nothing: a failure on the batch's last entry (a full disk, a
    crash before the commit) keeps none of its verdicts, and the next upload sends the
    whole batch again, which central answers as before."""
    for number in range(4):
        count(ledger, str(number), lot=f"L{number}")
    last = entries(ledger, "SC000001")[-1].entry_id
    ledger.conn.execute(
        "CREATE TEMP TRIGGER refuse_last BEFORE UPDATE ON count_entries"
        f" WHEN OLD.entry_id = '{last}' BEGIN SELECT RAISE(ABORT, 'disk gone'); END"
    )
    central = Central()
    uploader = uploader_for(central, ledger)
    with pytest.raises(sqlite3.IntegrityError, match="disk gone"):
        uploader.run()
    assert unsent(ledger) == 4
    assert all(each.verdict is None for each in entries(ledger, "SC000001"))
    ledger.conn.execute("DROP TRIGGER refuse_last")
    uploader.run()
    assert unsent(ledger) == 0
    assert [len(body["entries"]) for body in central.bodies] == [4, 4]
    assert {each.verdict for each in entries(ledger, "SC000001")} == {"taken"}


def test_an_older_central_that_does_not_know_the_route_stops_the_upload(ledger: Ledger) -> None:
    calls = []

    def old(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(404, json={"title": "Not Found"})

    uploader = CountUploader(
        ledger, httpx.Client(base_url="http://central", transport=httpx.MockTransport(old))
    )
    count(ledger, "100")
    uploader.run()
    uploader.run()
    assert len(calls) == 1
    assert uploader.unsupported
    assert unsent(ledger) == 1  # the entry stays for a central that takes it


def test_the_cli_enters_counts_and_lists_them_blind(tmp_path: Path) -> None:
    site_file = tmp_path / "site.toml"
    site_file.write_text(f'[site]\nid = "S01"\n[ledger]\npath = "{tmp_path / "S01.db"}"\n')
    made = Ledger(tmp_path / "S01.db", site_id="S01")
    Catalog(made).apply(
        page(
            1,
            ("item", "PILL", "upsert", {"item_code": "PILL", "uom": "EA"}),
            ("item_unit", "PILL BOX", "upsert", BOX),
            ("count", "SC000001", "upsert", SESSION),
        )
    )
    made.close()
    base = ["count", "enter", "-c", str(site_file), "--count", "SC000001", "--item", "PILL"]
    entered = CliRunner().invoke(
        app, [*base, "--location", "A1", "--lot", "L1", "--qty", "3", "--uom", "BOX", "--by", "li"]
    )
    assert entered.exit_code == 0, entered.stderr
    shown = json.loads(entered.stdout)
    assert (shown["qty"], shown["uom"], shown["counted_by"]) == ("30", "EA", "li")
    outside = CliRunner().invoke(app, [*base, "--location", "Z9", "--qty", "1"])
    assert outside.exit_code == 1
    assert "outside SC000001" in outside.stderr
    bad = CliRunner().invoke(app, [*base, "--location", "A1", "--qty", "NaN"])
    assert bad.exit_code == 2
    assert "no decimal number" in bad.stderr
    listed = CliRunner().invoke(app, ["count", "list", "-c", str(site_file)])
    assert listed.exit_code == 0, listed.stderr
    (session,) = json.loads(listed.stdout)["counts"]
    assert session["lines"] == [
        {"location": "A1", "item": "PILL", "lot": "L1", "uom": "EA", "recount": False}
    ]
    assert [(c["qty"], c["central"]) for c in session["counted"]] == [("30", "not uploaded yet")]


def scan(data: str) -> Scan:
    return Scan("ct-1", data.encode(), data, None, parse_gs1(data) if data[:2] == "01" else None,
                datetime.now(UTC))  # fmt: skip


def test_the_count_station_takes_session_badge_location_item_and_keyed_quantity(
    ledger: Ledger,
) -> None:
    Catalog(ledger).apply(
        page(
            4,
            ("barcode", GTIN, "upsert", {"barcode": GTIN, "item_code": "PILL"}),
            ("barcode", "CASE6", "upsert", CASE6),
        )
    )  # fmt: skip
    station = CountStation(ledger, Catalog(ledger))
    with pytest.raises(CountRefusedError, match="count sheet"):
        station.on_scan(scan("A1"))
    station.on_scan(scan("SC000001"))
    station.on_scan(scan("BY:li"))
    with pytest.raises(CountRefusedError, match="outside SC000001"):
        station.on_scan(scan("B1"))
    station.on_scan(scan("A1"))
    station.on_scan(scan(f"01{GTIN}10L1"))
    assert station.display == "PILL lot L1 at A1: key how many EA"
    station.on_scan(scan("Q97"))
    assert station.display == "COUNTED 97 EA PILL lot L1 at A1; scan the next item"
    station.on_scan(scan("CASE6"))  # no lot on a plain code: the lot-less key
    station.on_scan(scan("2"))
    standing = entries(ledger, "SC000001")
    assert [(e.lot, e.qty, e.counted_by) for e in standing] == [
        (None, Decimal(12), "li"),
        ("L1", Decimal(97), "li"),
    ]
    assert "100" not in json.dumps(station.report())  # blind: the ledger's figure never shows
    assert station.report()["entered"] == 2
