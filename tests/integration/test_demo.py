"""``jxc demo --once``: the README's first command, end to end, as a new user runs it.

Then every module the demo filled is read back through central's API (in process, on the
demo's own SQLite file, so no second server starts): each holds the document the demo
says it made, in the state a person looking at the console should find it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api.core.config import Settings
from jxc import paths
from jxc.demo import DEMO_ADMIN
from tests.central.conftest import central_app, user_token
from tests.patience import patience_timeout

pytestmark = pytest.mark.integration


def test_demo_once_exits_0_with_data_in_every_module(tmp_path: Path) -> None:
    jxc = Path(sys.executable).with_name("jxc")
    result = subprocess.run(
        [str(jxc), "demo", "--once", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=patience_timeout(240),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = " ".join(result.stdout.split())  # rich wraps lines at the terminal width
    assert "master data 4 items" in out
    assert "0 pending" in out, "everything received reached central"
    assert "RICE-BULK │ │ 4.25 │ kg" in out, "the sack was booked at its weight"
    assert "labels: 7 printed, 0 held by the printer, 0 owed" in out
    assert "web console http://127.0.0.1:" in out, "the console's address is printed"
    for page in ("purchase-orders", "sales-orders", "transfers", "stock-counts"):
        assert f"/console/{page}" in out, f"where to look names {page}"
    made = json.loads((tmp_path / "demo" / "central.db").with_name("demo.json").read_text())
    _every_module_has_its_data(f"sqlite:///{tmp_path / 'demo' / 'central.db'}", made)


def _every_module_has_its_data(database_url: str, made: dict[str, str]) -> None:
    with central_app(Settings(database_url=database_url)) as app, TestClient(app) as client:
        token = user_token(app.state.engine, DEMO_ADMIN)
        client.headers["Authorization"] = f"Bearer {token}"

        def get(path: str, **params: str) -> Any:
            answer = client.get(path, params=params)
            assert answer.status_code == 200, f"{path}: {answer.text}"
            return answer.json()

        # master data
        assert len(get(paths.ITEMS)["items"]) == 4
        # purchasing: a requisition turned into an approved PO, partly received at the edge
        assert get(f"{paths.REQUISITIONS}/{made['requisition']}")["status"] != "draft"
        po = get(f"{paths.PURCHASE_ORDERS}/{made['purchase_order']}")
        received = [Decimal(line["received_qty"]) for line in po["lines"]]
        assert all(qty > 0 for qty in received), "every line got something at the dock"
        assert any(Decimal(line["open_qty"]) > 0 for line in po["lines"]), "partly received"
        invoice = get(f"{paths.SUPPLIER_INVOICES}/{made['supplier_invoice']}")
        assert invoice["status"] == "held"
        # sales
        assert get(f"{paths.PRICE_LISTS}/{made['price_list']}")["lines"]
        so = get(f"{paths.SALES_ORDERS}/{made['sales_order']}")
        assert (so["status"], so["lines"][0]["shipped_qty"]) == ("confirmed", "3")
        assert sum(Decimal(r["qty"]) for r in so["lines"][0]["reservations"]) == 1
        assert get(f"{paths.SHIPMENTS}/{made['shipment']}")["so_id"] == made["sales_order"]
        sold = get(f"{paths.SALES_INVOICES}/{made['sales_invoice']}")
        assert Decimal(sold["paid_amount"]) > 0
        assert Decimal(sold["outstanding"]) > 0
        assert get(f"{paths.CUSTOMER_RETURNS}/{made['customer_return']}")["status"] == "received"
        # inventory
        assert get(f"{paths.OTHER_RECEIPTS}/{made['other_receipt']}")["status"] == "posted"
        assert get(f"{paths.OTHER_ISSUES}/{made['other_issue']}")["status"] == "posted"
        assert get(f"{paths.WRITE_OFFS}/{made['write_off']}")["status"] == "pending"
        assert get(f"{paths.TRANSFERS}/{made['transfer']}")["status"] == "shipped"
        assert [row["qty"] for row in get(paths.STOCK_IN_TRANSIT)] == ["6"]
        count = get(f"{paths.STOCK_COUNTS}/{made['stock_count']}")
        assert any(line["counted_qty"] is not None for line in count["lines"])
        # valuation
        value = sum(Decimal(row["value"]) for row in get(paths.VALUATION, site_id="DEMO-01"))
        assert value == Decimal(made["stock_value"]) > 0
