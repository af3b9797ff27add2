"""Damage recorded on the spot at the edge: a ``scrap`` event with a reason code from the
reason list the feed brought, in any unit of the item, under a gapless per-site number;
the CLI; and central (in-process, SQLite and PostgreSQL) making each a write-off document
on arrival, pending above its approval threshold, approved without booking it twice.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edge_agent.catalog import Catalog, Puller
from edge_agent.cli import app
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.write_off import (
    WriteOff,
    WriteOffRefusedError,
    record_write_off,
    write_off_reasons,
)
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.feed import ChangePage
from jxc.paths import ITEMS, REASON_CODES, STOCK, WRITE_OFFS
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import location, ok, site
from tests.central.test_purchasing import as_user
from tests.edge_agent.site_kit import feed_page, ledger  # noqa: F401 (the ledger fixture)


def page() -> ChangePage:
    """PILL counted in EA (a box is 10), and reason codes: DMG and EXP for write-offs,
    FOUND for other receipts, OLD withdrawn."""
    changes: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("item", "PILL", "upsert", {"item_code": "PILL", "uom": "EA"}),
        ("item_unit", "PILL BOX", "upsert", {"item_code": "PILL", "uom": "BOX", "factor": "10"}),
    ]
    for code, applies, active in (
        ("DMG", ["write_off"], True),
        ("EXP", ["write_off"], True),
        ("FOUND", ["other_receipt"], True),
        ("OLD", ["write_off"], False),
    ):
        entry = {"list": "reason_codes", "code": code, "attrs": {"applies_to": applies}}
        changes.append(("reference", f"reason_codes {code}", "upsert", entry | {"active": active}))
    return feed_page(*changes)


def test_a_write_off_is_a_scrap_event_with_its_reason_and_a_gapless_number(
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    catalog = Catalog(ledger)
    catalog.apply(page())
    assert write_off_reasons(catalog) == ["DMG", "EXP"]  # not FOUND, not the withdrawn OLD
    with pytest.raises(WriteOffRefusedError, match=r"'FOUND' is no reason.*DMG, EXP"):
        record_write_off(ledger, catalog, WriteOff("PILL", Decimal(1), "A1", "FOUND"))
    with pytest.raises(WriteOffRefusedError, match="no unit 'CASE'"):
        record_write_off(ledger, catalog, WriteOff("PILL", Decimal(1), "A1", "DMG", uom="CASE"))
    with pytest.raises(WriteOffRefusedError, match="unknown"):
        record_write_off(ledger, catalog, WriteOff("TEA", Decimal(1), "A1", "DMG"))
    with pytest.raises(WriteOffRefusedError, match="positive"):
        record_write_off(ledger, catalog, WriteOff("PILL", Decimal(0), "A1", "DMG"))
    assert ledger.counts().last_seq == 0, "nothing of a refusal is booked"
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT, item="PILL", lot="L1", location="A1", qty=Decimal(50),
            uom="EA", expiry=None,
        )
    )  # fmt: skip
    first = record_write_off(
        ledger, catalog, WriteOff("PILL", Decimal("1.5"), "A1", "DMG", uom="BOX", lot="L1")
    )
    second = record_write_off(ledger, catalog, WriteOff("PILL", Decimal(2), "A1", "EXP"))
    assert (first.kind, first.qty, first.uom, first.lot, first.ref) == (
        EventKind.SCRAP, Decimal(-15), "EA", "L1", "reason DMG",
    )  # fmt: skip
    assert (first.doc_type, first.doc_id, first.doc_line) == ("write_off", "S01-WO00000001", 1)
    assert second.doc_id == "S01-WO00000002"


def test_the_cli_records_a_write_off_and_says_why_it_refuses(tmp_path: Path) -> None:
    site_file = tmp_path / "site.toml"
    site_file.write_text(f'[site]\nid = "S01"\n[ledger]\npath = "{tmp_path / "edge.db"}"\n')
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    Catalog(opened).apply(page())
    opened.close()
    base = ["write-off", "-c", str(site_file), "--item", "PILL", "--location", "A1"]
    result = CliRunner().invoke(app, [*base, "--qty", "2", "--reason", "DMG", "--by", "li"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["kind"], shown["qty"], shown["actor"], shown["doc_id"]) == (
        "scrap", "-2", "li", "S01-WO00000001",
    )  # fmt: skip
    refused = CliRunner().invoke(app, [*base, "--qty", "2", "--reason", "LOST"])
    assert refused.exit_code == 1
    assert "'LOST' is no reason for a write-off" in refused.stderr
    bad = CliRunner().invoke(app, [*base, "--qty", "two", "--reason", "DMG"])
    assert bad.exit_code == 2
    assert "no decimal number" in bad.stderr


def test_central_makes_edge_write_offs_documents_under_its_approval_threshold(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    """Recorded offline: 2 EA at 4 (8, booked as posted) and 300 EA (1200, above the
    default 1000: pending). The stock left at once, and approving books nothing again."""
    site(client)
    ok(location(client, "A1", level="zone", kind="storage"))
    ok(client.put(f"{ITEMS}/PILL", json={"name": "药片", "uom": "EA", "cost": "4"}))
    for code in ("DMG", "EXP"):
        ok(client.put(f"{REASON_CODES}/{code}", json={"name": code, "applies_to": ["write_off"]}))
    catalog = Catalog(ledger)
    pusher = Pusher(ledger, client)
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT, item="PILL", location="A1", qty=Decimal(500), uom="EA",
            unit_cost=Decimal(4),
        )
    )  # fmt: skip
    pusher.run()
    puller = Puller(catalog, pusher.client, site_id="S01")
    while puller.pull_once():
        pass
    assert write_off_reasons(catalog) == ["DMG", "EXP"]

    offline = Pusher(ledger, httpx.Client(base_url="http://127.0.0.1:9", timeout=0.2))
    record_write_off(ledger, catalog, WriteOff("PILL", Decimal(2), "A1", "DMG", actor="li"))
    record_write_off(ledger, catalog, WriteOff("PILL", Decimal(300), "A1", "EXP", actor="li"))
    offline.run()
    assert ledger.counts().pending == 2
    assert ok(client.get(WRITE_OFFS, params={"site_id": "S01"}))["documents"] == []

    pusher.run()
    pusher.run()  # nothing more to send: no second document
    documents = ok(client.get(WRITE_OFFS, params={"site_id": "S01"}))["documents"]
    assert [
        (d["reason_code"], d["status"], d["value"], d["edge_ref"], d["created_by"])
        for d in documents
    ] == [
        ("DMG", "posted", "8", "S01 S01-WO00000001", "li"),
        ("EXP", "pending", "1200", "S01 S01-WO00000002", "li"),
    ]
    assert documents[1]["lines"][0]["base_qty"] == "300"

    def on_hand() -> Decimal:
        rows = ok(client.get(STOCK, params={"site_id": "S01"}))
        return sum((Decimal(row["qty"]) for row in rows), Decimal(0))

    assert on_hand() == Decimal(198)  # the goods are gone, approved or not
    boss = as_user(client, "boss", ["store_manager"])
    url = f"{WRITE_OFFS}/{documents[1]['doc_id']}/approve"
    got = ok(client.post(url, json={}, headers={**boss, "If-Match": '"1"'}))
    assert (got["status"], got["decided_by"]) == ("posted", "boss")
    assert on_hand() == Decimal(198)  # approval books nothing twice
