"""Inventory control at central (issue 16): other receipts and issues with reason codes,
expired lots refused on outbound paths, write-offs with approval above a value threshold.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log, central_events
from central_api.services.documents import now_utc
from jxc.paths import OTHER_ISSUES, OTHER_RECEIPTS, REASON_CODES, SITES, STOCK, WRITE_OFFS
from tests.central.test_purchasing import (
    as_user,
    master,  # noqa: F401 (a fixture)
    ok,
    refused,
)


@pytest.fixture
def store(master: TestClient) -> TestClient:  # noqa: F811
    """test_purchasing's master data (PILL at 1.5 a 片, 盒 = 10), storage A1 and B1 at both
    sites, and reason codes for each kind of movement."""
    for site_id in ("S01", "S02"):
        for code in ("A1", "B1"):
            ok(
                master.post(
                    f"{SITES}/{site_id}/locations",
                    json={"code": code, "level": "zone", "kind": "storage"},
                ),
                201,
            )
    for code, applies in (
        ("FOUND", ["other_receipt"]),
        ("USE", ["other_issue"]),
        ("DMG", ["write_off"]),
        ("EXP", ["write_off"]),
        ("CNT", ["adjustment"]),
    ):
        ok(master.put(f"{REASON_CODES}/{code}", json={"name": code, "applies_to": applies}))
    return master


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def stock(client: TestClient, site_id: str = "S01") -> dict[tuple[str, str, str | None], str]:
    rows = ok(client.get(STOCK, params={"site_id": site_id}))
    return {
        (row["location"], row["item"], row["lot"]): row["qty"]
        for row in rows
        if Decimal(row["qty"])
    }


def move(
    client: TestClient, path: str, reason: str, *lines: dict[str, Any], site: str = "S01", **kw: Any
) -> Any:
    body = {"site_id": site, "reason_code": reason, "lines": list(lines)}
    return client.post(path, json=body, **kw)


def pill(qty: str, location: str = "A1", **extra: Any) -> dict[str, Any]:
    return {"item_code": "PILL", "qty": qty, "location": location, **extra}


def found_in(client: TestClient, *lines: dict[str, Any], site: str = "S01") -> dict[str, Any]:
    return ok(move(client, OTHER_RECEIPTS, "FOUND", *lines, site=site), 201)  # type: ignore[no-any-return]


# --- other receipts and issues ------------------------------------------------------------


def test_other_receipts_and_issues_book_central_events_naming_their_lines(
    store: TestClient,
) -> None:
    answer = move(store, OTHER_RECEIPTS, "FOUND", pill("2", uom="盒", lot="L1"), headers=key("k1"))
    got = ok(answer, 201)
    assert answer.headers["ETag"] == '"1"'
    assert got["doc_id"].startswith("OR")
    assert (got["status"], got["lines"][0]["base_qty"], got["lines"][0]["unit_cost"]) == (
        "posted",
        "20",
        "1.5",
    )
    # A retry with the same key books nothing more.
    again = move(store, OTHER_RECEIPTS, "FOUND", pill("2", uom="盒", lot="L1"), headers=key("k1"))
    assert ok(again, 201)["doc_id"] == got["doc_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    issued = ok(move(store, OTHER_ISSUES, "USE", pill("5", lot="L1")), 201)
    assert issued["doc_id"].startswith("OI")
    assert stock(store) == {("A1", "PILL", "L1"): "15"}
    assert ok(store.get(f"{OTHER_ISSUES}/{issued['doc_id']}"))["reason_code"] == "USE"
    # An issue is not a receipt: another route, another number series.
    refused(store.get(f"{OTHER_RECEIPTS}/{issued['doc_id']}"), 404, issued["doc_id"])
    listed = ok(store.get(OTHER_RECEIPTS, params={"site_id": "S01"}))["documents"]
    assert [each["doc_id"] for each in listed] == [got["doc_id"]]
    with store.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        events = connection.execute(
            select(
                central_events.c.kind,
                central_events.c.qty,
                central_events.c.doc_type,
                central_events.c.doc_id,
                central_events.c.doc_line,
            ).order_by(central_events.c.seq)
        ).all()
        actions = set(connection.execute(select(audit_log.c.action)).scalars())
    assert [tuple(row) for row in events] == [
        ("receipt", Decimal(20), "other_receipt", got["doc_id"], 1),
        ("issue", Decimal(-5), "other_issue", issued["doc_id"], 1),
    ]
    assert {"other_receipt.create", "other_issue.create"} <= actions


def test_reason_codes_locations_and_balances_are_checked(store: TestClient) -> None:
    refused(move(store, OTHER_RECEIPTS, "USE", pill("1")), 422, "not a reason for other_receipt")
    refused(move(store, OTHER_RECEIPTS, "NOPE", pill("1")), 422, "no active reason code")
    refused(move(store, OTHER_RECEIPTS, "FOUND", pill("1", "ZZ")), 422, "no active location")
    found_in(store, pill("3"))
    text = refused(move(store, OTHER_ISSUES, "USE", pill("4")), 409, "3 on hand", "4 wanted")
    assert "S01/A1" in text
    assert stock(store) == {("A1", "PILL", None): "3"}
    # Another site's user may not book here.
    outsider = as_user(store, "s2clerk", ["warehouse_clerk"], sites=["S02"])
    refused(move(store, OTHER_RECEIPTS, "FOUND", pill("1"), headers=outsider), 403, "S01")


def test_an_expired_lot_is_refused_on_an_issue_but_written_off(store: TestClient) -> None:
    yesterday = (now_utc() - timedelta(days=1)).date().isoformat()
    later = (now_utc() + timedelta(days=90)).date().isoformat()
    found_in(store, pill("10", lot="OLD", expiry=yesterday), pill("10", lot="NEW", expiry=later))
    refused(move(store, OTHER_ISSUES, "USE", pill("1", lot="OLD")), 409, "expired", "OLD")
    ok(move(store, OTHER_ISSUES, "USE", pill("1", lot="NEW")), 201)
    gone = ok(move(store, WRITE_OFFS, "EXP", pill("10", lot="OLD")), 201)
    assert (gone["status"], gone["lines"][0]["expiry"]) == ("posted", yesterday)
    assert stock(store) == {("A1", "PILL", "NEW"): "9"}


# --- write-offs ---------------------------------------------------------------------------


def test_a_small_write_off_is_booked_at_once_a_large_one_waits_for_someone_else(
    store: TestClient,
) -> None:
    found_in(store, pill("2000"))
    clerk = as_user(store, "clerk", ["warehouse_clerk"])
    small = ok(move(store, WRITE_OFFS, "DMG", pill("10"), headers=clerk), 201)
    assert small["status"] == "posted"
    assert "value" not in small  # the clerk holds no financial group
    assert "unit_cost" not in small["lines"][0]
    large = ok(move(store, WRITE_OFFS, "DMG", pill("700"), headers=clerk), 201)  # 1050 > 1000
    assert large["status"] == "pending"
    assert stock(store) == {("A1", "PILL", None): "1990"}
    url = f"{WRITE_OFFS}/{large['doc_id']}"
    refused(store.post(f"{url}/approve", json={}, headers=clerk), 403)
    manager = as_user(store, "manager", ["store_manager"])
    seen = ok(store.get(url, headers=manager))
    assert seen["value"] == "1050"
    refused(
        store.post(f"{url}/approve", json={}, headers={**manager, "If-Match": '"7"'}), 412, '"1"'
    )
    approved = store.post(
        f"{url}/approve",
        json={"reason": "crushed pallet"},
        headers={**manager, "If-Match": '"1"', **key("a1")},
    )
    got = ok(approved)
    assert (got["status"], got["decided_by"], got["version"]) == ("posted", "manager", 2)
    assert approved.headers["ETag"] == '"2"'
    assert stock(store) == {("A1", "PILL", None): "1290"}
    replay = store.post(
        f"{url}/approve", json={"reason": "crushed pallet"}, headers={**manager, **key("a1")}
    )
    assert ok(replay)["status"] == "posted"
    assert replay.headers["Idempotent-Replayed"] == "true"
    refused(store.post(f"{url}/reject", json={}, headers=manager), 409, "posted", "pending")
    assert stock(store) == {("A1", "PILL", None): "1290"}


def test_the_creator_may_not_approve_a_write_off_and_a_rejected_one_books_nothing(
    store: TestClient,
) -> None:
    found_in(store, pill("900"))
    manager = as_user(store, "manager", ["store_manager"])
    large = ok(move(store, WRITE_OFFS, "DMG", pill("800"), headers=manager), 201)
    url = f"{WRITE_OFFS}/{large['doc_id']}"
    refused(store.post(f"{url}/approve", json={}, headers=manager), 403, "segregation of duties")
    finance = as_user(store, "finance", ["finance"])
    ok(store.post(f"{url}/reject", json={"reason": "recount first"}, headers=finance))
    assert stock(store) == {("A1", "PILL", None): "900"}
    pending = ok(store.get(WRITE_OFFS, params={"status": "rejected"}))["documents"]
    assert [each["decision_note"] for each in pending] == ["recount first"]
