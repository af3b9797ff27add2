"""Issue 17's count accuracy and receivables ageing as reports of the report centre, on
SQLite and PostgreSQL, on the three-site chain of ``tests/central/test_reports.py``.

Figures by hand:

* Count accuracy: the ``counted`` fixture counts S01's three keys (TEA at A-01, PILL L1
  at B-01, PILL L2 at B-02), finds one more TEA than the system holds (twice, so it is
  no miscount) and the rest right: 1 session, 3 lines counted, 2 right, 0.6667. The
  report is what ``GET /stock-counts/accuracy`` says.
* Receivables ageing: the chain invoiced CUS-1 and CUS-2 on 2026-12-01 and nobody paid,
  so on that day everything is current; what each owes is each invoice's gross amount,
  and the report agrees with ``GET /receivables/ageing`` on that day and on a day long
  after (every amount past due), bucket by bucket.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from central_api.models.audit import audit_log
from jxc.paths import COUNT_ACCURACY, REPORTS, SALES_INVOICES, STOCK_COUNTS
from tests.central.test_counts import enter, entry
from tests.central.test_inventory import key
from tests.central.test_purchasing import as_user, ok, refused
from tests.central.test_receivables import ageing
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
    assert [c["key"] for c in answer["columns"]] == [
        "site_id",
        "sessions",
        "lines_counted",
        "lines_right",
        "accuracy",
    ]
    assert not any(c["financial"] for c in answer["columns"])
    assert answer["rows"] == [
        {
            "site_id": "S01",
            "sessions": 1,
            "lines_counted": 3,
            "lines_right": 2,
            "accuracy": "0.6667",
        }
    ]
    assert answer["totals"] == {"accuracy": "0.6667"}
    assert ok(counted.get(COUNT_ACCURACY)) == answer["rows"]
    assert report(counted, "count-accuracy", site_id="S02")["rows"] == []

    sheet = counted.get(
        f"{REPORTS}/count-accuracy", params={"format": "csv"}, headers={"Accept-Language": "en"}
    )
    assert sheet.status_code == 200, sheet.text
    lines = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert lines == [
        ["Site", "Count sessions", "Lines counted", "Lines without a variance", "Count accuracy"],
        ["S01", "1", "3", "2", "0.6667"],
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
    assert len(entries) == 5  # json, json of S02, csv, xlsx, the S02 manager's json


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
