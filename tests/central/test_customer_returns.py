"""Customer returns: authorised against shipped lines (never more than shipped, only
shipped lots), received into quarantine (not sellable), then restocked or scrapped with
a reason code, closing when every line is decided. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models.audit import audit_log
from jxc.paths import (
    ALERTS,
    CUSTOMER_RETURNS,
    REASON_CODES,
    SITES,
    STOCK_AVAILABLE,
    SYNC_EVENTS,
)
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import as_user, ok, refused
from tests.central.test_sales import confirm, new_so, shop
from tests.central.test_shipping import TWO_LINES, ship

__all__ = ["shop"]


def lot_stock(client: TestClient, lot: str) -> tuple[str, str]:
    answer = ok(client.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": "PILL"}))
    found = {each["lot"]: each for each in answer["lots"]}[lot]
    return found["on_hand"], found["unsellable"]


def authorise(client: TestClient, so_id: str, lines: list[dict[str, Any]], **kw: Any) -> Any:
    body = {"so_id": so_id, "reason": "破损", "lines": lines}
    return client.post(CUSTOMER_RETURNS, json=body, **kw)


def test_a_return_is_received_into_quarantine_then_restocked_or_scrapped(
    shop: TestClient,
) -> None:
    so = new_so(shop, lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    ok(
        ship(
            shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}, {"so_line": 2, "qty": "5"}]
        ),
        201,
    )
    assert lot_stock(shop, "L3") == ("0", "0")

    lines = [
        {"so_line": 1, "qty": "3", "lot": "L3"},
        {"so_line": 1, "qty": "2", "lot": "L4"},
        {"so_line": 2, "qty": "1"},
    ]
    made = authorise(shop, so["so_id"], lines, headers={"Idempotency-Key": "ra-1"})
    ra = ok(made, 201)
    assert ra["status"] == "authorised"
    assert [(x["lot"], x["qty"], x["disposition"]) for x in ra["lines"]] == [
        ("L3", "3", "pending"),
        ("L4", "2", "pending"),
        (None, "1", "pending"),
    ]
    again = authorise(shop, so["so_id"], lines, headers={"Idempotency-Key": "ra-1"})
    assert ok(again, 201)["return_id"] == ra["return_id"]
    # 5 of line 1's 10 shipped are authorised already: 6 more cannot come back.
    refused(authorise(shop, so["so_id"], [{"so_line": 1, "qty": "6"}]), 409, "shipped 10")
    refused(authorise(shop, so["so_id"], [{"so_line": 1, "qty": "1", "lot": "L1"}]), 422, "L1")

    where = f"{CUSTOMER_RETURNS}/{ra['return_id']}"
    refused(shop.post(f"{where}/receive", headers={"If-Match": '"9"'}), 412)
    received = ok(shop.post(f"{where}/receive", headers={"If-Match": '"1"'}))
    assert received["status"] == "received"
    assert {x["location"] for x in received["lines"]} == {"Q"}
    assert lot_stock(shop, "L3") == ("0", "3")
    refused(shop.post(f"{where}/receive"), 409, "received", "authorised")

    ok(
        shop.post(
            f"{SITES}/S01/locations", json={"code": "B-01", "level": "zone", "kind": "storage"}
        ),
        201,
    )
    restocked = ok(shop.post(f"{where}/restock", json={"line_no": 1, "location": "B-01"}))
    assert restocked["lines"][0]["disposition"] == "restocked"
    assert restocked["lines"][0]["location"] == "B-01"
    assert lot_stock(shop, "L3") == ("3", "0")
    refused(shop.post(f"{where}/restock", json={"line_no": 1, "location": "B-01"}), 409)
    refused(shop.post(f"{where}/restock", json={"line_no": 2, "location": "Q"}), 422, "quarantine")

    refused(shop.post(f"{where}/scrap", json={"line_no": 2, "reason_code": "DMG"}), 422, "DMG")
    ok(shop.put(f"{REASON_CODES}/DMG", json={"name": "破损", "applies_to": ["write_off"]}))
    scrapped = ok(shop.post(f"{where}/scrap", json={"line_no": 2, "reason_code": "DMG"}))
    assert (scrapped["lines"][1]["disposition"], scrapped["lines"][1]["reason_code"]) == (
        "scrapped",
        "DMG",
    )
    assert scrapped["status"] == "received"
    assert lot_stock(shop, "L4")[1] == "0"
    closed = ok(shop.post(f"{where}/scrap", json={"line_no": 3, "reason_code": "DMG"}))
    assert closed["status"] == "closed"

    clerk = as_user(shop, "clerk", ["warehouse_clerk"], sites=["S01"])
    refused(authorise(shop, so["so_id"], [{"so_line": 2, "qty": "1"}], headers=clerk), 403)
    assert (
        ok(shop.get(CUSTOMER_RETURNS, headers=clerk))["customer_returns"][0]["status"] == "closed"
    )
    other = as_user(shop, "far", ["store_manager"], sites=["S02"])
    refused(shop.get(where, headers=other), 404)


def test_an_edges_return_events_advance_the_return_line_by_line(
    shop: TestClient, site: SiteLedger
) -> None:
    """Return events an edge pushes, naming the return's own line, are counted into it in
    the push's transaction: received from the first carton, what arrived per line, restock
    moving what arrived; what no line can take, or comes after a decision, is raised."""
    so = new_so(shop, lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    shipped = [{"so_line": 1, "qty": "1", "uom": "盒"}, {"so_line": 2, "qty": "5"}]
    ok(ship(shop, so["so_id"], shipped), 201)
    lines = [{"so_line": 1, "qty": "3", "lot": "L3"}, {"so_line": 2, "qty": "2"}]
    ra = ok(authorise(shop, so["so_id"], lines), 201)
    where = f"{CUSTOMER_RETURNS}/{ra['return_id']}"

    def back(qty: str, line: int, item: str = "PILL", uom: str = "片") -> dict[str, Any]:
        lot = "L3" if item == "PILL" else None
        return site.event(
            "return", qty, item=item, uom=uom, lot=lot, location="Q",
            doc_type="customer_return", doc_id=ra["return_id"], doc_line=line,
            device_id="ret-1",
        )  # fmt: skip

    first = site.batch([back("2", 1)])
    ok(shop.post(SYNC_EVENTS, json=first))
    ok(shop.post(SYNC_EVENTS, json=first))  # a replay counts nothing twice
    got = ok(shop.get(where))
    assert (got["status"], got["received_by"], got["version"]) == ("received", "ret-1", 2)
    assert [(x["received_qty"], x["location"]) for x in got["lines"]] == [("2", "Q"), ("0", None)]
    assert lot_stock(shop, "L3") == ("0", "2")
    refused(shop.post(f"{where}/receive"), 409, "received")
    refused(
        shop.post(f"{where}/restock", json={"line_no": 2, "location": "A-01"}),
        409,
        "nothing of it has arrived",
    )

    ok(
        shop.post(
            f"{SITES}/S01/locations", json={"code": "B-01", "level": "zone", "kind": "storage"}
        ),
        201,
    )
    restocked = ok(shop.post(f"{where}/restock", json={"line_no": 1, "location": "B-01"}))
    assert restocked["lines"][0]["disposition"] == "restocked"
    assert lot_stock(shop, "L3") == ("2", "0")

    # Late: another carton of the decided line, and TEA booked against the PILL line.
    late = site.batch([back("1", 1), back("1", 1, item="TEA", uom="kg")])
    ok(shop.post(SYNC_EVENTS, json=late))
    ok(shop.post(SYNC_EVENTS, json=late))
    got = ok(shop.get(where))
    assert [x["received_qty"] for x in got["lines"]] == ["3", "0"]
    assert got["lines"][0]["location"] == "B-01"  # where the restocked goods went
    over = ok(shop.get(ALERTS, params={"kind": "return_over"}))["alerts"]
    assert [(a["source"], a["qty"], a["location"]) for a in over] == [("edge_return", "1", "Q")]
    assert "after the line was restocked" in over[0]["detail"]
    unknown = ok(shop.get(ALERTS, params={"kind": "return_unknown"}))["alerts"]
    assert [a["item_code"] for a in unknown] == ["TEA"]
    assert "is PILL in 片, the site received TEA in kg" in unknown[0]["detail"]


def test_a_return_whose_line_never_arrives_is_closed_short_with_a_reason(
    shop: TestClient, site: SiteLedger
) -> None:
    """Line 1 arrives in part at the edge, line 2 never: closing short closes line 2 with
    zero (a reason required, If-Match, Idempotency-Key, audited, scoped), the return stays
    received until line 1's goods are decided; a return with nothing received at all
    closes at once."""
    so = new_so(shop, lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    ok(
        ship(
            shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}, {"so_line": 2, "qty": "5"}]
        ),
        201,
    )
    lines = [{"so_line": 1, "qty": "3", "lot": "L3"}, {"so_line": 2, "qty": "2"}]
    ra = ok(authorise(shop, so["so_id"], lines), 201)
    where = f"{CUSTOMER_RETURNS}/{ra['return_id']}"
    carton = site.event(
        "return", "2", item="PILL", uom="片", lot="L3", location="Q",
        doc_type="customer_return", doc_id=ra["return_id"], doc_line=1, device_id="ret-1",
    )  # fmt: skip
    ok(shop.post(SYNC_EVENTS, json=site.batch([carton])))

    refused(shop.post(f"{where}/close-short", json={"reason": ""}), 422, "reason")
    refused(shop.post(f"{where}/close-short", json={}), 422, "reason")
    refused(
        shop.post(f"{where}/close-short", json={"reason": "x"}, headers={"If-Match": '"1"'}),
        412,
    )
    seller = as_user(shop, "seller", ["sales"], sites=["S01"])
    refused(shop.post(f"{where}/close-short", json={"reason": "x"}, headers=seller), 403)
    other = as_user(shop, "far", ["store_manager"], sites=["S02"])
    refused(shop.post(f"{where}/close-short", json={"reason": "x"}, headers=other), 404)

    key = {"Idempotency-Key": "short-1", "If-Match": '"2"'}
    short = ok(shop.post(f"{where}/close-short", json={"reason": "客户保留"}, headers=key))
    assert short["status"] == "received"
    assert short["version"] == 3
    assert [(x["received_qty"], x["disposition"], x["location"]) for x in short["lines"]] == [
        ("2", "pending", "Q"),
        ("0", "short", None),
    ]
    again = shop.post(f"{where}/close-short", json={"reason": "客户保留"}, headers=key)
    assert ok(again)["version"] == 3  # the replay answers what the first call did
    refused(shop.post(f"{where}/close-short", json={"reason": "again"}), 409, "received something")
    refused(shop.post(f"{where}/restock", json={"line_no": 2, "location": "A-01"}), 409, "short")
    assert lot_stock(shop, "L3") == ("0", "2")  # nothing moved
    ok(
        shop.post(
            f"{SITES}/S01/locations", json={"code": "B-01", "level": "zone", "kind": "storage"}
        ),
        201,
    )
    closed = ok(shop.post(f"{where}/restock", json={"line_no": 1, "location": "B-01"}))
    assert closed["status"] == "closed"
    refused(shop.post(f"{where}/close-short", json={"reason": "x"}), 409, "closed")

    nothing = ok(authorise(shop, so["so_id"], [{"so_line": 2, "qty": "1"}]), 201)
    gone = ok(
        shop.post(f"{CUSTOMER_RETURNS}/{nothing['return_id']}/close-short", json={"reason": "lost"})
    )
    assert (gone["status"], gone["lines"][0]["disposition"]) == ("closed", "short")

    with shop.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        audited = connection.execute(
            select(audit_log.c.resource_id, audit_log.c.after)
            .where(audit_log.c.action == "customer_return.close_short")
            .order_by(audit_log.c.resource_id)
        ).all()
    assert [row.resource_id for row in audited] == [ra["return_id"], nothing["return_id"]]
    assert "客户保留" in str(audited[0].after)
