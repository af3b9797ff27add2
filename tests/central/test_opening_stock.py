"""Opening stock (期初库存) imported from CSV and XLSX through the API, on SQLite and
PostgreSQL: booked as central's own events (balances move in the same transaction), all or
nothing with every error as row/column/reason, a re-import of the same file books nothing,
a changed quantity for a key already imported is refused, and the import keeps the site
scope and the financial field group."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import Workbook
from sqlalchemy import func, select
from typer.testing import CliRunner

from central_api.cli import app
from central_api.models.audit import audit_log
from central_api.models.ledger import central_events
from central_api.services.central_events import balance
from tests.central.conftest import user_token
from tests.central.test_master_data import location, ok, site
from tests.central.test_master_import import csv_bytes, send

KIND = "opening_stock"
HEADER = ["site_id", "location", "item_code", "lot", "expiry", "qty", "uom", "unit_cost"]
GOOD = [
    HEADER,
    ["S01", "A", "MASK", "L1", "2027-03-31", "2", "箱", "60"],  # 2 cartons of 12 boxes
    ["S01", "A", "MASK", "L2", "2027-06-30", "5", "", "4.8"],
    ["S02", "A", "RICE", "", "", "12.5", "kg", ""],
]


def _master(client: TestClient) -> None:
    for site_id in ("S01", "S02"):
        site(client, site_id)
        ok(location(client, "A", site_id=site_id, level="zone"))
    ok(
        client.put(
            "/api/v1/items/MASK",
            json={
                "name": "口罩",
                "uom": "盒",
                "units": [{"uom": "箱", "factor": "12"}],
                "lot_tracked": True,
                "expiry_tracked": True,
            },
        )
    )
    ok(client.put("/api/v1/items/RICE", json={"name": "大米", "uom": "kg"}))


def _events(client: TestClient) -> list[Any]:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return list(
            connection.execute(
                select(central_events).order_by(central_events.c.site_id, central_events.c.seq)
            )
        )


def _on_hand(client: TestClient, site_id: str, item: str, lot: str | None) -> Any:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return balance(connection, site_id, "A", item, lot)


def test_opening_stock_is_booked_once_and_a_reimport_changes_nothing(client: TestClient) -> None:
    _master(client)
    first = send(client, KIND, csv_bytes(GOOD))
    assert first.status_code == 200, first.text
    assert (first.json()["created"], first.json()["unchanged"]) == (3, 0)
    assert _on_hand(client, "S01", "MASK", "L1") == ("盒", Decimal(24))
    assert _on_hand(client, "S01", "MASK", "L2") == ("盒", Decimal(5))
    assert _on_hand(client, "S02", "RICE", None) == ("kg", Decimal("12.5"))
    events = _events(client)
    assert [(e.site_id, e.seq, e.kind, e.item) for e in events] == [
        ("S01", 1, "adjustment", "MASK"),
        ("S01", 2, "adjustment", "MASK"),
        ("S02", 1, "adjustment", "RICE"),
    ]
    assert events[0].unit_cost == Decimal(5)  # 60 a carton of 12: 5 a box
    assert str(events[0].expiry) == "2027-03-31"
    assert events[0].ref.endswith("row 2")
    again = send(client, KIND, csv_bytes(GOOD))
    assert again.status_code == 200
    assert (again.json()["created"], again.json()["unchanged"]) == (0, 3)
    assert len(_events(client)) == 3
    assert _on_hand(client, "S01", "MASK", "L1") == ("盒", Decimal(24))
    # the same key with another quantity: refused, naming the row it came from
    changed = send(client, KIND, csv_bytes([HEADER, ["S02", "A", "RICE", "", "", "13", "", ""]]))
    assert changed.status_code == 422
    [error] = changed.json()["errors"]
    assert (error["row"], error["column"]) == (2, "qty")
    assert "row 4 of file" in error["reason"]
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        logged = connection.execute(
            select(audit_log.c.after).where(audit_log.c.action == "import.opening_stock")
        ).scalars()
        assert [json.loads(after)["created"] for after in logged] == [3, 0]


def test_an_xlsx_file_is_read_like_a_csv(client: TestClient) -> None:
    _master(client)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [HEADER, ["S02", "A", "RICE", "", "", 7, "kg", 3.25]]:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    answer = send(client, KIND, buffer.getvalue(), fmt="xlsx")
    assert answer.status_code == 200, answer.text
    assert _on_hand(client, "S02", "RICE", None) == ("kg", Decimal(7))
    assert _events(client)[0].unit_cost == Decimal("3.25")


def test_a_file_with_three_bad_rows_books_nothing_and_names_each(client: TestClient) -> None:
    _master(client)
    rows = [
        HEADER,
        ["S01", "A", "MASK", "L1", "2027-03-31", "1", "", ""],
        ["S01", "A", "MASK", "", "2027-03-31", "1", "", ""],  # lot-tracked, no lot
        ["S01", "Z", "RICE", "", "", "1", "", ""],  # no such location
        ["S02", "A", "RICE", "", "", "-3", "袋", ""],  # negative, and an unknown unit
        ["S02", "A", "RICE", "L9", "", "1", "", ""],
    ]
    refused = send(client, KIND, csv_bytes(rows))
    assert refused.status_code == 422, refused.text
    found = [(e["row"], e["column"]) for e in refused.json()["errors"]]
    assert found == [(3, "lot"), (4, "location"), (5, "qty"), (5, "uom")]
    assert _events(client) == []
    assert _on_hand(client, "S01", "MASK", "L1") is None
    twice = send(client, KIND, csv_bytes([HEADER, GOOD[1], GOOD[1]]))
    assert [(e["row"], e["column"]) for e in twice.json()["errors"]] == [(3, "item_code")]
    for bad_cell, column in (("abc", "qty"), ("1e400", "qty"), ("0.0000001", "qty")):
        answer = send(client, KIND, csv_bytes([HEADER, ["S02", "A", "RICE", "", "", bad_cell]]))
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["column"] == column
    bad_date = send(client, KIND, csv_bytes([HEADER, ["S01", "A", "MASK", "L", "31/03/27", "1"]]))
    assert bad_date.json()["errors"][0]["column"] == "expiry"
    assert _events(client) == []


def test_the_import_keeps_the_action_the_site_scope_and_the_money(client: TestClient) -> None:
    _master(client)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    clerk = {"Authorization": f"Bearer {user_token(engine, 'clerk', ['warehouse_clerk'])}"}
    assert send(client, KIND, csv_bytes(GOOD), headers=clerk).status_code == 403
    # a role that may import stock but sees no money may not send a cost column
    ok(client.put("/api/v1/roles/stocker", json={"actions": ["stock.import"]}))
    stocker = {"Authorization": f"Bearer {user_token(engine, 'stocker', ['stocker'])}"}
    money = send(client, KIND, csv_bytes(GOOD), headers=stocker)
    assert money.status_code == 422
    assert [(e["row"], e["column"]) for e in money.json()["errors"]] == [(1, "unit_cost")]
    manager = {
        "Authorization": f"Bearer {user_token(engine, 'mgr', ['store_manager'], sites=['S01'])}"
    }
    plain = [row[:7] for row in GOOD]
    other_site = send(client, KIND, csv_bytes(plain), headers=manager)
    assert [(e["row"], e["column"]) for e in other_site.json()["errors"]] == [(4, "site_id")]
    own = send(client, KIND, csv_bytes(plain[:3]), headers=manager)
    assert own.status_code == 200, own.text
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(central_events)).scalar()
    assert count == 2


def test_the_cli_imports_opening_stock_with_the_same_rules(
    client: TestClient, database_url: str, tmp_path: Path
) -> None:
    _master(client)
    file = tmp_path / "opening.csv"
    file.write_bytes(csv_bytes(GOOD))
    runner = CliRunner()
    done = runner.invoke(app, ["import", KIND, str(file), "--database-url", database_url])
    assert done.exit_code == 0, done.output
    assert "opening_stock: 3 rows, 3 created, 0 updated, 0 unchanged" in done.output
    again = runner.invoke(app, ["import", KIND, str(file), "--database-url", database_url])
    assert "0 created, 0 updated, 3 unchanged" in again.output
    assert len(_events(client)) == 3
    file.write_bytes(csv_bytes([HEADER, ["S01", "A", "NOPE", "", "", "1"]]))
    refused = runner.invoke(app, ["import", KIND, str(file), "--database-url", database_url])
    assert refused.exit_code == 1
    assert "row 2, item_code" in refused.output
    export = runner.invoke(
        app, ["export", KIND, str(tmp_path / "x.csv"), "--database-url", database_url]
    )
    assert export.exit_code == 2
