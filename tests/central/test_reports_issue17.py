"""Issue 17's count accuracy, receivables ageing and stock-out rate as reports of the
report centre, on SQLite and PostgreSQL, on the three-site chain of
``tests/central/test_reports.py``.

Figures by hand:

* Count accuracy: the ``counted`` fixture counts S01's three keys (TEA at A-01, PILL L1
  at B-01, PILL L2 at B-02), finds one more TEA than the system holds (twice, so it is
  no miscount) and the rest right: 1 session, 3 lines counted, 2 right, 0.6667. The
  report is what ``GET /stock-counts/accuracy`` says. Value-weighted, at the snapshot's
  cost (``test_reports``' chain: S01's TEA 11 kg worth 104.5, so 9.5 a kg; its PILL
  40 片 worth 32, so 0.8 a 片, the L1 line kept in 盒 of 10): TEA counted 12 → 114,
  PILL L1 1 盒 = 10 片 → 8, L2 30 片 → 24; value counted 146, counted right 32 (the
  two PILL lines), 32 / 146 = 0.2192. A role without the financial group sees none of
  the three value figures.
* Receivables ageing: the chain invoiced CUS-1 and CUS-2 on 2026-12-01 and nobody paid,
  so on that day everything is current; what each owes is each invoice's gross amount,
  and the report agrees with ``GET /receivables/ageing`` on that day and on a day long
  after (every amount past due), bucket by bucket.
* Stock-out rate, November (30 days): S03's TEA was first held on 11-10 (21 days from
  then), issued to nothing on 11-20 and received again on 11-25, so the ends of 11-20 to
  11-24 had none: 5 of 21 days, 0.2381. S02's PILL was first held on 11-15 (16 days),
  S01's TEA and PILL from 11-01 and S02's TEA from October (30 days each): never out.
  All together 5 of 21 + 16 + 30 × 3 = 127 days, 0.0394. In S01's PILL the 盒 count
  as 10 片 (20 片 on 11-01, 50 from 11-05).
* Purchase price variance (the ``received`` PO of ``test_receiving``: S01, SUP-A, line
  1 2 箱 PILL at 150, line 2 TEA at 80 a kg): INV-P bills line 1 at 155 (2 箱 = 240 片:
  300 at the PO's price, 310 invoiced, +10, 0.0333), INV-T 10 kg of line 2 at 78 (800,
  780, −20, −0.025), INV-X 0.5 kg at 90 and is disputed, so it is left out. Totals
  1100, 1090, −10; TEA first (the larger variance by size).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from central_api.models.audit import audit_log
from jxc.paths import COUNT_ACCURACY, REPORTS, SALES_INVOICES, STOCK_COUNTS, SUPPLIER_INVOICES
from tests.central.test_audit_api import add_role
from tests.central.test_counts import enter, entry
from tests.central.test_inventory import key
from tests.central.test_purchasing import (
    as_user,
    master,  # noqa: F401 (a fixture)
    ok,
    refused,
)
from tests.central.test_receivables import ageing
from tests.central.test_receiving import invoice, received, shop  # noqa: F401 (fixtures)
from tests.central.test_reports import chain, report, rows  # noqa: F401 (a fixture)

D = Decimal
BUCKET_KEYS = {
    "current": "current",
    "1-30": "days_1_30",
    "31-60": "days_31_60",
    "61-90": "days_61_90",
    "over_90": "over_90",
    "total": "total",
}


@pytest.fixture
def counted(chain: TestClient) -> TestClient:  # noqa: F811
    """The chain and one posted count of S01: one line off by one, counted twice."""
    manager = as_user(chain, "manager", ["store_manager"])
    clerk = as_user(chain, "clerk", ["warehouse_clerk"], sites=["S01"])
    lead = as_user(chain, "lead", ["warehouse_clerk"], sites=["S01"])
    opened = ok(
        chain.post(STOCK_COUNTS, json={"site_id": "S01"}, headers={**manager, **key("c1")}), 201
    )
    lines = sorted(opened["lines"], key=lambda line: (line["item_code"], line["location"]))
    assert [(line["item_code"], line["location"]) for line in lines] == [
        ("PILL", "B-01"),
        ("PILL", "B-02"),
        ("TEA", "A-01"),
    ]

    def counts(*, off: bool) -> list[dict[str, Any]]:
        return [
            entry(
                line["location"],
                str(D(line["expected_qty"]) + (1 if off and line["item_code"] == "TEA" else 0)),
                line["lot"],
                line["item_code"],
            )
            for line in lines
        ]

    count_id = opened["count_id"]
    ok(enter(chain, count_id, clerk, *counts(off=True)))
    submitted = ok(chain.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}, headers=clerk))
    assert submitted["status"] == "counting"  # the TEA line is counted again
    ok(enter(chain, count_id, lead, *[e for e in counts(off=True) if e["item_code"] == "TEA"]))
    review = ok(chain.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}, headers=clerk))
    assert review["status"] == "review"
    posted = ok(
        chain.post(
            f"{STOCK_COUNTS}/{count_id}/approve",
            json={},
            headers={**manager, "If-Match": f'"{review["version"]}"'},
        )
    )
    assert posted["status"] == "posted"
    return chain


def test_count_accuracy_report_by_hand_and_as_the_count_api_says(counted: TestClient) -> None:
    answer = report(counted, "count-accuracy")
    assert [(c["key"], c["financial"]) for c in answer["columns"]] == [
        ("site_id", False),
        ("sessions", False),
        ("lines_counted", False),
        ("lines_right", False),
        ("accuracy", False),
        ("value_counted", True),
        ("value_right", True),
        ("value_accuracy", True),
    ]
    assert answer["rows"] == [
        {
            "site_id": "S01",
            "sessions": 1,
            "lines_counted": 3,
            "lines_right": 2,
            "accuracy": "0.6667",
            "value_counted": "146",
            "value_right": "32",
            "value_accuracy": "0.2192",
        }
    ]
    assert answer["totals"] == {
        "accuracy": "0.6667",
        "value_counted": "146",
        "value_right": "32",
        "value_accuracy": "0.2192",
    }
    assert ok(counted.get(COUNT_ACCURACY)) == answer["rows"]
    assert report(counted, "count-accuracy", site_id="S02")["rows"] == []
    # A period: the sessions whose snapshot falls in it (the count above was opened now).
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert report(counted, "count-accuracy", since=hour_ago)["rows"] == answer["rows"]
    assert report(counted, "count-accuracy", since=in_an_hour)["rows"] == []
    assert report(counted, "count-accuracy", until=hour_ago)["rows"] == []
    assert ok(counted.get(COUNT_ACCURACY, params={"since": hour_ago})) == answer["rows"]
    assert ok(counted.get(COUNT_ACCURACY, params={"until": hour_ago})) == []
    bad_day = counted.get(COUNT_ACCURACY, params={"since": "0001-01-01T00:00:00+14:00"})
    assert bad_day.status_code == 422, bad_day.text
    # Without the financial group: the line figures only, in the report and the API.
    add_role(counted.app.state.engine, "count_reader", "stock_count.read", financial=False)  # type: ignore[attr-defined]
    counter = as_user(counted, "counter", ["count_reader"])
    plain = report(counted, "count-accuracy", headers=counter)
    assert [c["key"] for c in plain["columns"]] == [
        "site_id",
        "sessions",
        "lines_counted",
        "lines_right",
        "accuracy",
    ]
    assert plain["totals"] == {"accuracy": "0.6667"}
    assert (
        ok(counted.get(COUNT_ACCURACY, headers=counter))
        == plain["rows"]
        == [
            {
                "site_id": "S01",
                "sessions": 1,
                "lines_counted": 3,
                "lines_right": 2,
                "accuracy": "0.6667",
            }
        ]
    )

    sheet = counted.get(
        f"{REPORTS}/count-accuracy", params={"format": "csv"}, headers={"Accept-Language": "en"}
    )
    assert sheet.status_code == 200, sheet.text
    lines = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert lines == [
        [
            "Site",
            "Count sessions",
            "Lines counted",
            "Lines without a variance",
            "Count accuracy",
            "Value counted",
            "Value counted right",
            "Value-weighted accuracy",
        ],
        ["S01", "1", "3", "2", "0.6667", "146", "32", "0.2192"],
    ]
    book = counted.get(f"{REPORTS}/count-accuracy", params={"format": "xlsx"})
    sheet_xlsx = load_workbook(io.BytesIO(book.content)).active
    assert sheet_xlsx is not None
    assert sheet_xlsx["E2"].value == D("0.6667") or sheet_xlsx["E2"].value == 0.6667
    assert sheet_xlsx["E2"].number_format == "0.00%"

    clerk = as_user(counted, "clerk2", ["warehouse_clerk"])
    assert "count-accuracy" not in [e["name"] for e in ok(counted.get(REPORTS, headers=clerk))]
    refused(counted.get(f"{REPORTS}/count-accuracy", headers=clerk), 403)
    s02 = as_user(counted, "manager2", ["store_manager"], sites=["S02"])
    assert report(counted, "count-accuracy", headers=s02)["rows"] == []
    refused(counted.get(f"{REPORTS}/count-accuracy", params={"site_id": "S01"}, headers=s02), 403)
    with counted.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        entries = connection.execute(
            select(audit_log.c.site_id).where(
                audit_log.c.action == "report.read", audit_log.c.resource_id == "count-accuracy"
            )
        ).all()
    # json, json of S02, three of a period, the counter's, csv, xlsx, the S02 manager's
    assert len(entries) == 9


def test_receivables_ageing_report_as_the_ageing_api_says(chain: TestClient) -> None:  # noqa: F811
    invoices = ok(chain.get(SALES_INVOICES))["sales_invoices"]
    owed = {each["customer"]: D(each["gross_amount"]) for each in invoices}
    assert set(owed) == {"CUS-1", "CUS-2"}

    first = report(chain, "receivables-ageing", on="2026-12-01")
    assert all(c["financial"] for c in first["columns"][1:])
    assert rows(first, "customer", "current", "over_90", "total") == [
        ("CUS-1", str(owed["CUS-1"]), "0", str(owed["CUS-1"])),
        ("CUS-2", str(owed["CUS-2"]), "0", str(owed["CUS-2"])),
    ]
    assert D(first["totals"]["total"]) == owed["CUS-1"] + owed["CUS-2"]
    for day in ("2026-12-01", "2027-06-01"):
        mine = report(chain, "receivables-ageing", on=day)
        theirs = ageing(chain, day)
        assert {
            row["customer"]: {bucket: D(row[column]) for bucket, column in BUCKET_KEYS.items()}
            for row in mine["rows"]
        } == {
            customer: {bucket: D(value) for bucket, value in buckets.items()}
            for customer, buckets in theirs.items()
        }, day
    late = report(chain, "receivables-ageing", on="2027-06-01")
    assert D(late["totals"]["over_90"]) == owed["CUS-1"] + owed["CUS-2"]
    assert report(chain, "receivables-ageing", on="2026-11-30")["rows"] == []
    assert rows(report(chain, "receivables-ageing", customer="CUS-2"), "customer") == [("CUS-2",)]
    assert report(chain, "receivables-ageing", site_id="S02")["rows"] == []
    assert len(report(chain, "receivables-ageing", site_id="S01")["rows"]) == 2

    clerk = as_user(chain, "clerk", ["warehouse_clerk"])
    refused(chain.get(f"{REPORTS}/receivables-ageing", headers=clerk), 403)
    assert "receivables-ageing" not in [e["name"] for e in ok(chain.get(REPORTS, headers=clerk))]
    s02 = as_user(chain, "fin2", ["finance"], sites=["S02"])
    assert report(chain, "receivables-ageing", headers=s02)["rows"] == []
    refused(chain.get(f"{REPORTS}/receivables-ageing", params={"site_id": "S01"}, headers=s02), 403)
    refused(chain.get(f"{REPORTS}/receivables-ageing", params={"on": "0001-01-01"}), 422)
    sheet = chain.get(
        f"{REPORTS}/receivables-ageing",
        params={"format": "xlsx", "on": "2026-12-01"},
        headers={"Accept-Language": "en"},
    )
    book = load_workbook(io.BytesIO(sheet.content)).active
    assert book is not None
    assert book["A1"].value == "Customer"
    assert book["B2"].number_format == "#,##0.00"
    assert D(str(book["G2"].value)) == owed["CUS-1"]


def test_stock_out_rate_by_hand(chain: TestClient) -> None:  # noqa: F811
    november = {"since": "2026-11-01", "until": "2026-11-30"}
    answer = report(chain, "stock-outs", **november)
    assert not any(c["financial"] for c in answer["columns"])
    assert rows(answer, "site_id", "item", "days", "days_out", "stockout_rate", "closing_qty") == [
        ("S03", "TEA", 21, 5, "0.2381", "3"),
        ("S01", "PILL", 30, 0, "0", "50"),
        ("S01", "TEA", 30, 0, "0", "16"),
        ("S02", "PILL", 16, 0, "0", "10"),
        ("S02", "TEA", 30, 0, "0", "5"),
    ]
    assert answer["totals"] == {"stockout_rate": "0.0394"}
    only = report(chain, "stock-outs", site_id="S03", item="TEA", since="2026-11-21",
                  until="2026-11-25")  # fmt: skip
    assert rows(only, "days", "days_out", "stockout_rate") == [(5, 4, "0.8")]
    assert report(chain, "stock-outs", since="2026-09-01", until="2026-09-30")["rows"] == []

    clerk = as_user(chain, "clerk", ["warehouse_clerk"], sites=["S03"])
    mine = report(chain, "stock-outs", headers=clerk, **november)
    assert rows(mine, "site_id", "item") == [("S03", "TEA")]
    refused(
        chain.get(f"{REPORTS}/stock-outs", params={**november, "site_id": "S01"}, headers=clerk),
        403,
    )
    refused(
        chain.get(f"{REPORTS}/stock-outs", params={"since": "2026-11-02", "until": "2026-11-01"}),
        422,
    )
    refused(
        chain.get(f"{REPORTS}/stock-outs", params={"since": "2000-01-01", "until": "2026-11-01"}),
        422,
    )
    refused(chain.get(f"{REPORTS}/stock-outs"), 422)
    sheet = chain.get(
        f"{REPORTS}/stock-outs",
        params={**november, "format": "csv"},
        headers={"Accept-Language": "en"},
    )
    lines = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert lines[0][3:6] == ["Days stocked", "Days out of stock", "Stock-out rate"]
    assert lines[1][:6] == ["S03", "TEA", "茶", "21", "5", "0.2381"]


def test_purchase_price_variance_by_hand(shop: TestClient, received: dict[str, Any]) -> None:  # noqa: F811
    entered = as_user(shop, "fin-in", ["finance"])
    po_id = received["po_id"]
    ok(invoice(shop, po_id, "INV-P", {"po_line": 1, "qty": "2", "unit_price": "155",
                                     "tax_rate": "0.13"}, headers=entered), 201)  # fmt: skip
    ok(invoice(shop, po_id, "INV-T", {"po_line": 2, "qty": "10", "unit_price": "78",
                                     "tax_rate": "0"}, headers=entered), 201)  # fmt: skip
    x = ok(invoice(shop, po_id, "INV-X", {"po_line": 2, "qty": "0.5", "unit_price": "90",
                                         "tax_rate": "0"}, headers=entered), 201)  # fmt: skip
    checker = as_user(shop, "fin-check", ["finance"])
    ok(
        shop.post(
            f"{SUPPLIER_INVOICES}/{x['invoice_id']}/dispute",
            json={"reason": "not ordered at that price"},
            headers={**checker, "If-Match": f'"{x["version"]}"'},
        )
    )
    answer = report(shop, "purchase-price-variance")
    assert rows(
        answer, "site_id", "supplier", "item", "invoices", "qty", "uom", "po_amount",
        "invoiced_amount", "variance", "variance_rate",
    ) == [
        ("S01", "SUP-A", "TEA", 1, "10", "kg", "800", "780", "-20", "-0.025"),
        ("S01", "SUP-A", "PILL", 1, "240", "片", "300", "310", "10", "0.0333"),
    ]  # fmt: skip
    assert answer["totals"] == {"po_amount": "1100", "invoiced_amount": "1090", "variance": "-10"}
    assert report(shop, "purchase-price-variance", supplier="SUP-B")["rows"] == []
    assert report(shop, "purchase-price-variance", until="2000-01-01")["rows"] == []

    clerk = as_user(shop, "clerk", ["warehouse_clerk"])
    refused(shop.get(f"{REPORTS}/purchase-price-variance", headers=clerk), 403)
    s02 = as_user(shop, "fin-s02", ["finance"], sites=["S02"])
    assert report(shop, "purchase-price-variance", headers=s02)["rows"] == []
    refused(
        shop.get(f"{REPORTS}/purchase-price-variance", params={"site_id": "S01"}, headers=s02),
        403,
    )
    sheet = shop.get(
        f"{REPORTS}/purchase-price-variance",
        params={"format": "xlsx"},
        headers={"Accept-Language": "en"},
    )
    book = load_workbook(io.BytesIO(sheet.content)).active
    assert book is not None
    assert [cell.value for cell in book[1]][7:] == [
        "At the PO's price",
        "As invoiced",
        "Price variance",
        "Variance rate",
    ]
    assert D(str(book["J2"].value)) == D("-20")
    assert book["K2"].number_format == "0.00%"
