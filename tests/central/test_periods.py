"""Period close (月结) and the lot recall view (issue 16), on SQLite and PostgreSQL.

Closing: months close in order and only once ended, by a user not limited to some sites;
reopening takes the last one and a reason; both idempotent and audited. The closing
values are kept; a late edge event dated inside a closed month is stored and valued
(facts are never refused) and raises one ``closed_period`` exception, and the month's
value "now" differs from the one it closed with. A central booking dated inside a closed
month is refused unless its user holds ``period.post_closed``.

Recall: a lot received from a supplier against a PO, shipped by an edge to a customer's
sales order, sold at a counter and still held at two locations is traced to all of them;
a reader with only ``stock.read`` sees where it is but not who bought it (a clerk, who
reads sales orders, sees both); a user of another site sees only that site's part.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.errors import ConflictError
from central_api.models import audit_log
from central_api.services import central_events
from central_api.services.central_events import Movement
from jxc.contract import EventKind
from jxc.paths import ALERTS, API_ROOT, LOT_RECALL, PERIODS, SALES_ORDERS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import (
    approved_po,
    as_user,
    master,  # noqa: F401 (a fixture)
    ok,
    push,
    receipt,
    refused,
)


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def at(month: int, day: int) -> str:
    return datetime(2026, month, day, 12, tzinfo=UTC).isoformat()


def close(client: TestClient, period: str, name: str, **headers: str) -> Any:
    return client.post(f"{PERIODS}/{period}/close", headers=key(name) | headers)


def audit_actions(client: TestClient, prefix: str) -> list[str]:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return list(
            connection.execute(
                select(audit_log.c.action)
                .where(audit_log.c.action.like(f"{prefix}%"))
                .order_by(audit_log.c.seq)
            ).scalars()
        )


def test_months_close_in_order_after_they_end_and_reopen_last_first(
    master: TestClient,  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    this_month = f"{now.year:04d}-{now.month:02d}"
    refused(close(master, this_month, "c0"), 409, "has not ended")
    refused(close(master, "2026-13", "bad"), 422)

    first = ok(close(master, "2026-09", "c1"))
    assert (first["period"], first["status"], first["version"]) == ("2026-09", "closed", 1)
    again = close(master, "2026-09", "c1")
    assert again.headers["Idempotent-Replayed"] == "true"
    refused(close(master, "2026-08", "c2"), 409, "next one to close is 2026-10")
    refused(close(master, "2026-11", "c3"), 409, "next one to close is 2026-10")
    ok(close(master, "2026-10", "c4"))
    listing = ok(master.get(PERIODS))
    assert listing["closed_through"] == "2026-10"
    assert listing["next_to_close"] == "2026-11"
    assert [(p["period"], p["status"]) for p in listing["periods"]] == [
        ("2026-10", "closed"),
        ("2026-09", "closed"),
    ]

    refused(
        master.post(f"{PERIODS}/2026-09/reopen", json={"reason": "x"}, headers=key("r1")),
        409,
        "reopen 2026-10 first",
    )
    refused(master.post(f"{PERIODS}/2026-10/reopen", json={"reason": ""}, headers=key("r2")), 422)
    refused(
        master.post(
            f"{PERIODS}/2026-10/reopen",
            json={"reason": "late invoices"},
            headers=key("r3") | {"If-Match": '"7"'},
        ),
        412,
    )
    reopened = ok(
        master.post(
            f"{PERIODS}/2026-10/reopen",
            json={"reason": "late invoices"},
            headers=key("r4") | {"If-Match": '"1"'},
        )
    )
    assert (reopened["status"], reopened["reason"], reopened["version"]) == (
        "reopened",
        "late invoices",
        2,
    )
    assert ok(master.get(PERIODS))["closed_through"] == "2026-09"
    closed_again = ok(close(master, "2026-10", "c5"))
    assert (closed_again["status"], closed_again["version"]) == ("closed", 3)
    assert audit_actions(master, "period.") == [
        "period.close",
        "period.close",
        "period.reopen",
        "period.close",
    ]

    clerk = as_user(master, "clerk", ["warehouse_clerk"])
    refused(master.get(PERIODS, headers=clerk), 403)
    refused(close(master, "2026-11", "c6", **clerk), 403)
    finance_s01 = as_user(master, "fin-s01", ["finance"], sites=["S01"])
    refused(close(master, "2026-11", "c7", **finance_s01), 403, "every site")
    finance = as_user(master, "fin", ["finance"])
    ok(close(master, "2026-11", "c8", **finance))
    refused(
        master.post(f"{PERIODS}/2026-11/reopen", json={"reason": "x"}, headers=key("r5") | finance),
        403,
    )


def test_closing_values_stay_and_a_late_edge_event_raises_one_exception(
    master: TestClient,  # noqa: F811
    site: SiteLedger,
) -> None:
    push(
        master,
        site,
        site.event("receipt", "10", item="PILL", uom="片", unit_cost="2", occurred_at=at(10, 5)),
    )
    ok(close(master, "2026-10", "c1"))
    closed = ok(master.get(f"{PERIODS}/2026-10"))
    assert [(v["site_id"], v["value"], v["items"], v["value_now"]) for v in closed["values"]] == [
        ("S01", "20", 1, "20")
    ]
    alerts_before = ok(master.get(ALERTS, params={"site_id": "S01"}))["alerts"]

    # Dated inside the closed month, arriving now: stored and valued, one exception.
    late = [
        site.event("receipt", "5", item="PILL", uom="片", unit_cost="2", occurred_at=at(10, 20)),
        site.event("issue", "-1", item="PILL", uom="片", occurred_at=at(10, 21)),
    ]
    assert push(master, site, *late)["acked_through_seq"] == 3
    after = ok(master.get(f"{PERIODS}/2026-10"))
    assert [(v["value"], v["value_now"]) for v in after["values"]] == [("20", "28")]
    raised = [
        alert
        for alert in ok(master.get(ALERTS, params={"site_id": "S01"}))["alerts"]
        if alert not in alerts_before and alert["kind"] == "closed_period"
    ]
    assert len(raised) == 1, raised
    assert "seq 2–3" in raised[0]["detail"]
    assert "2026-10" in raised[0]["detail"]
    assert raised[0]["item_code"] == "PILL"

    # An event of this month raises nothing more.
    push(master, site, site.event("issue", "-1", item="PILL", uom="片"))
    kinds = [a["kind"] for a in ok(master.get(ALERTS, params={"site_id": "S01"}))["alerts"]]
    assert kinds.count("closed_period") == 1

    # A reader without the financial group sees the months, not their values.
    ok(
        master.put(
            f"{API_ROOT}/roles/period_viewer",
            json={"actions": ["period.read"], "financial": False},
        )
    )
    viewer = as_user(master, "viewer", ["period_viewer"])
    assert ok(master.get(f"{PERIODS}/2026-10", headers=viewer))["values"] == []
    assert [p["values"] for p in ok(master.get(PERIODS, headers=viewer))["periods"]] == [[]]


def test_a_central_booking_inside_a_closed_month_needs_the_right(
    master: TestClient,  # noqa: F811
    site: SiteLedger,
) -> None:
    push(master, site, site.event("receipt", "10", item="PILL", uom="片", occurred_at=at(10, 5)))
    ok(close(master, "2026-10", "c1"))
    as_user(master, "counter-boss", ["store_manager"])
    as_user(master, "boss", ["admin"])
    engine = master.app.state.engine  # type: ignore[attr-defined]
    move = Movement(
        kind=EventKind.ADJUSTMENT, item="PILL", location="A-01", qty=Decimal(-1), uom="片"
    )

    def book(actor: str, when: datetime) -> None:
        with engine.begin() as connection:
            central_events.lock_site(connection, "S01", now=datetime.now(UTC))
            central_events.book(
                connection,
                site_id="S01",
                movements=[move],
                actor=actor,
                ref="test",
                now=datetime.now(UTC),
                projections=None,
                occurred_at=when,
            )

    with pytest.raises(ConflictError, match="closed period 2026-10"):
        book("counter-boss", datetime(2026, 10, 30, tzinfo=UTC))
    book("boss", datetime(2026, 10, 30, tzinfo=UTC))
    book("counter-boss", datetime(2026, 11, 2, tzinfo=UTC))


def test_recall_traces_a_lot_to_sites_suppliers_customers_and_counters(
    master: TestClient,  # noqa: F811
    site: SiteLedger,
    other_site: SiteLedger,
) -> None:
    po = approved_po(master)
    so = ok(
        master.post(
            SALES_ORDERS,
            json={
                "customer": "CUS-1",
                "site_id": "S01",
                "lines": [{"item_code": "PILL", "qty": "20", "uom": "片", "unit_price": "5"}],
            },
            headers=key("so-1"),
        ),
        201,
    )
    lot = {"lot": "L-RECALL", "expiry": "2027-06-30"}
    push(
        master,
        site,
        receipt(site, po["po_id"], 1, "100", **lot),
        site.event("receipt", "50", item="PILL", uom="片", location="B-02", **lot),
        site.event(
            "issue",
            "-20",
            item="PILL",
            uom="片",
            doc_type="sales_order",
            doc_id=so["so_id"],
            doc_line=1,
            **lot,
        ),
        site.event(
            "sale",
            "-3",
            item="PILL",
            uom="片",
            doc_type="retail_receipt",
            doc_id="R-0001",
            doc_line=1,
            **lot,
        ),
        site.event("receipt", "7", item="PILL", uom="片", lot="OTHER"),
    )
    push(master, other_site, other_site.event("receipt", "4", item="PILL", uom="片", **lot))

    found = ok(master.get(LOT_RECALL, params={"item": "PILL", "lot": "L-RECALL"}))
    assert found["expiry"] == "2027-06-30"
    assert found["on_hand"] == "131"
    assert [(h["site_id"], h["location"], h["qty"]) for h in found["holdings"]] == [
        ("S01", "A-01", "77"),
        ("S01", "B-02", "50"),
        ("S02", "A-01", "4"),
    ]
    assert [(f["doc_id"], f["partner_code"], f["qty"]) for f in found["suppliers"]] == [
        (po["po_id"], "SUP-A", "100")
    ]
    assert [
        (f["doc_id"], f["partner_code"], f["partner_name"], f["qty"]) for f in found["customers"]
    ] == [(so["so_id"], "CUS-1", "c", "20")]
    assert [(f["site_id"], f["doc_id"], f["qty"]) for f in found["counters"]] == [
        ("S01", "R-0001", "3")
    ]
    assert found["customers_hidden"] is False

    ok(master.put(f"{API_ROOT}/roles/stock_viewer", json={"actions": ["stock.read"]}))
    viewer = as_user(master, "viewer", ["stock_viewer"])
    seen = ok(master.get(LOT_RECALL, params={"item": "PILL", "lot": "L-RECALL"}, headers=viewer))
    assert (seen["customers"], seen["customers_hidden"]) == ([], True)
    assert seen["on_hand"] == "131"
    s02 = as_user(master, "s02-clerk", ["warehouse_clerk"], sites=["S02"])
    there = ok(master.get(LOT_RECALL, params={"item": "PILL", "lot": "L-RECALL"}, headers=s02))
    assert [(h["site_id"], h["qty"]) for h in there["holdings"]] == [("S02", "4")]
    assert (there["suppliers"], there["counters"], there["customers_hidden"]) == ([], [], False)
    assert "report.read" in audit_actions(master, "report.")
    refused(master.get(LOT_RECALL, params={"item": "PILL"}), 422)
