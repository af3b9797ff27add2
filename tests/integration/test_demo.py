"""``jxc demo --once``: the README's first command, end to end, as a new user runs it.

Then every module the demo filled is read back through central's API (in process, on the
demo's own SQLite file, so no second server starts): each holds the document the demo
says it made, in the state a person looking at the console should find it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
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
    for page in (
        "purchase-orders",
        "sales-orders",
        "transfers",
        "stock-counts",
        "periods",
        "feedback",
        "webhooks",
        "recall?item=SUGAR-1KG&lot=L-7781",
        "reports/count-accuracy",
        "reports/purchase-price-variance",
    ):
        assert f"/console/{page}" in out, f"where to look names {page}"
    assert re.search(r"user guide http://127\.0\.0\.1:\d+/guide/", out), "the guide's URL"
    assert re.search(r"webhooks [1-9]\d* event\(s\) received", out), "deliveries arrived"
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
        assert count["status"] == "posted"
        assert all(line["counted_qty"] is not None for line in count["lines"])
        # valuation
        value = sum(Decimal(row["value"]) for row in get(paths.VALUATION, site_id="DEMO-01"))
        assert value == Decimal(made["stock_value"]) > 0
        # reports: the count, the sugar invoiced dearer, the part-paid invoice, stock-outs
        accuracy = get(f"{paths.REPORTS}/count-accuracy")["rows"]
        assert [(row["site_id"], row["sessions"]) for row in accuracy] == [("DEMO-01", 1)]
        variance = get(f"{paths.REPORTS}/purchase-price-variance")["rows"]
        assert [row["item"] for row in variance] == ["SUGAR-1KG"]
        assert Decimal(variance[0]["variance"]) > 0
        assert get(f"{paths.REPORTS}/receivables-ageing")["rows"]
        today = datetime.now(UTC).date()  # the demo's moves are dated today (or yesterday)
        since, until = (today - timedelta(days=29)).isoformat(), today.isoformat()
        assert get(f"{paths.REPORTS}/stock-outs", since=since, until=until)["rows"]
        # period close: last month closed by finance
        periods = get(paths.PERIODS)
        assert periods["closed_through"] == made["period"]
        closed = [(p["period"], p["status"], p["closed_by"]) for p in periods["periods"]]
        assert closed == [(made["period"], "closed", "demo-finance")]
        # lot recall: the sugar lot came from the supplier and went to the customer
        recall = get(paths.LOT_RECALL, item="SUGAR-1KG", lot="L-7781")
        assert recall["suppliers"]
        assert recall["customers"]
        # feedback: the clerk's note in the admin's inbox
        notes = get(paths.FEEDBACK)["entries"]
        assert [(n["feedback_id"], n["sender"], n["status"]) for n in notes] == [
            (made["feedback"], "demo-clerk", "open")
        ]
        # webhooks: one subscription, to the demo's own listener, that delivered
        hooks = get(paths.WEBHOOKS)
        assert [(h["subscription_id"], h["active"]) for h in hooks] == [(made["webhook"], True)]
        assert hooks[0]["url"].startswith("http://127.0.0.1:")
        deliveries = get(f"{paths.WEBHOOKS}/{made['webhook']}/deliveries")
        assert deliveries["deliveries"], "central fanned the demo's documents out to it"
