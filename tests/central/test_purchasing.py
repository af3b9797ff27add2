"""Purchasing at central: requisitions and purchase orders as state machines, their
permissions, segregation of duties, Idempotency-Key, If-Match, the PO progress projection
from real pushes, exceptions, and the PO lines in the change feed. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from central_api.core.db import write_transaction
from central_api.models import audit_log
from central_api.services import po_progress
from jxc.contract import DOCUMENT_FIELDS, LedgerEvent
from jxc.feed import PoLineData
from jxc.paths import (
    ITEMS,
    PARTNERS,
    PURCHASE_EXCEPTIONS,
    PURCHASE_ORDERS,
    REQUISITIONS,
    SITES,
    SYNC_CHANGES,
    SYNC_EVENTS,
)
from tests.central.conftest import SiteLedger, user_token


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: Any, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else response.json()["message"]
    for word in words:
        assert word in text, text
    return text


def as_user(
    client: TestClient, name: str, roles: list[str], sites: list[str] | None = None
) -> dict[str, str]:
    token = user_token(client.app.state.engine, name, roles, sites=sites)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def master(client: TestClient) -> TestClient:
    """Sites S01 and S02, suppliers SUP-A and SUP-B, a pill counted in 片 (盒 = 10, 箱 = 120)."""
    for site_id in ("S01", "S02"):
        ok(client.put(f"{SITES}/{site_id}", json={"kind": "store", "name": f"药店 {site_id}"}))
    for code in ("SUP-A", "SUP-B"):
        ok(client.post(PARTNERS, json={"code": code, "is_supplier": True, "name": code}), 201)
    ok(client.post(PARTNERS, json={"code": "CUS-1", "is_customer": True, "name": "c"}), 201)
    ok(
        client.post(
            ITEMS,
            json={
                "item_code": "PILL",
                "name": "药片",
                "uom": "片",
                "units": [{"uom": "盒", "factor": "10"}, {"uom": "箱", "factor": "12", "of": "盒"}],
                "purchase_price": "1.5",
            },
        ),
        201,
    )
    ok(client.post(ITEMS, json={"item_code": "TEA", "name": "茶", "uom": "kg"}), 201)
    return client


def po_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "supplier": "SUP-A",
        "site_id": "S01",
        "lines": [
            {
                "item_code": "PILL",
                "qty": "2",
                "uom": "箱",
                "unit_price": "150",
                "tax_rate": "0.13",
                "over_tolerance": "5",
            },
            {"item_code": "TEA", "qty": "10.5", "unit_price": "80"},
        ],
    }
    body.update(changes)
    return body


def new_po(
    client: TestClient, headers: dict[str, str] | None = None, **changes: Any
) -> dict[str, Any]:
    return ok(client.post(PURCHASE_ORDERS, json=po_body(**changes), headers=headers or {}), 201)


def approved_po(client: TestClient, **changes: Any) -> dict[str, Any]:
    """A PO made by the admin and approved by another purchaser."""
    po = new_po(client, **changes)
    buyer = as_user(client, "buyer-approver", ["purchaser"])
    return ok(client.post(f"{PURCHASE_ORDERS}/{po['po_id']}/approve", headers=buyer))


def push(client: TestClient, ledger: SiteLedger, *events: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post(SYNC_EVENTS, json=ledger.batch(list(events))))


def receipt(ledger: SiteLedger, po_id: str, line: int, qty: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"item": "PILL", "uom": "片"} | extra
    return ledger.event(
        "receipt", qty, doc_type="purchase_order", doc_id=po_id, doc_line=line, **fields
    )


# --- documents and their states ------------------------------------------------------------


def test_a_po_converts_its_units_and_hides_prices_from_a_clerk(master: TestClient) -> None:
    po = new_po(master)
    assert po["po_id"].startswith("PO")
    assert po["status"] == "draft"
    assert po["version"] == 1
    first, second = po["lines"]
    assert (first["qty"], first["uom"], first["base_qty"], first["base_uom"]) == (
        "2",
        "箱",
        "240",
        "片",
    )
    assert first["unit_price"] == "150"
    assert first["amount"] == "300"
    assert po["amount"] == "1140"
    assert second["base_qty"] == "10.5"

    clerk = as_user(master, "clerk", ["warehouse_clerk"])
    answer = master.get(f"{PURCHASE_ORDERS}/{po['po_id']}", headers=clerk)
    seen = ok(answer)
    assert answer.headers["ETag"] == '"1"'
    assert "amount" not in seen
    for line in seen["lines"]:
        assert {"unit_price", "tax_rate", "amount"}.isdisjoint(line)
    listed = ok(master.get(PURCHASE_ORDERS, headers=clerk))["purchase_orders"]
    assert "unit_price" not in listed[0]["lines"][0]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"supplier": "CUS-1"}, ["supplier", "not a supplier"]),
        ({"supplier": "NOPE"}, ["supplier", "does not exist"]),
        ({"site_id": "S09"}, ["site_id", "S09"]),
        ({"lines": [{"item_code": "PILL", "qty": "1", "uom": "瓶"}]}, ["lines[0].uom", "瓶"]),
        ({"lines": [{"item_code": "GHOST", "qty": "1"}]}, ["lines[0].item_code", "GHOST"]),
        ({"lines": [{"item_code": "PILL", "qty": "0"}]}, ["lines[0].qty"]),
        ({"lines": [{"item_code": "PILL", "qty": "1", "tax_rate": "13"}]}, ["tax_rate"]),
        (
            {"lines": [{"item_code": "PILL", "qty": "1", "over_tolerance": "-1"}]},
            ["over_tolerance"],
        ),
        (
            {"lines": [{"item_code": "PILL", "qty": "0.0000001", "uom": "箱"}]},
            ["lines[0].qty"],
        ),
    ],
)
def test_a_bad_po_is_refused_naming_the_field_and_nothing_is_kept(
    master: TestClient, change: dict[str, Any], words: list[str]
) -> None:
    refused(master.post(PURCHASE_ORDERS, json=po_body(**change)), 422, *words)
    assert ok(master.get(PURCHASE_ORDERS))["purchase_orders"] == []


def test_a_float_quantity_is_refused(master: TestClient) -> None:
    body = po_body(lines=[{"item_code": "PILL", "qty": 1.5}])
    refused(master.post(PURCHASE_ORDERS, json=body), 422, "qty")


def test_every_state_transition_and_its_refusals(master: TestClient) -> None:
    po = new_po(master)
    url = f"{PURCHASE_ORDERS}/{po['po_id']}"
    refused(master.post(f"{url}/send"), 409, "is draft", "send needs it to be approved")
    refused(master.post(f"{url}/close"), 409, "is draft", "close")
    buyer = as_user(master, "buyer2", ["purchaser"])
    approved = ok(master.post(f"{url}/approve", headers=buyer))
    assert (approved["status"], approved["approved_by"], approved["version"]) == (
        "approved",
        "buyer2",
        2,
    )
    refused(master.post(f"{url}/approve", headers=buyer), 409, "is approved")
    refused(master.put(url, json=po_body()), 409, "is approved", "draft")
    sent = ok(master.post(f"{url}/send"))
    assert sent["status"] == "sent"
    assert sent["sent_at"] is not None
    refused(master.post(f"{url}/close"), 409, "is sent")
    cancelled = ok(master.post(f"{url}/cancel", json={"reason": "供应商缺货"}))
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "供应商缺货")
    for verb in ("approve", "send", "cancel", "close"):
        refused(master.post(f"{url}/{verb}", headers=buyer), 409, "is cancelled")

    audit = ok(master.get("/api/v1/audit", params={"resource": "purchase_order"}))
    actions = [entry["action"] for entry in audit["entries"]]
    for action in ("create", "approve", "send", "cancel"):
        assert f"purchase_order.{action}" in actions


def test_the_creator_may_not_approve_their_own_po(master: TestClient) -> None:
    buyer = as_user(master, "buyer1", ["purchaser"])
    po = new_po(master, headers=buyer)
    text = refused(
        master.post(f"{PURCHASE_ORDERS}/{po['po_id']}/approve", headers=buyer),
        403,
        "segregation of duties",
    )
    assert "buyer1" in text
    other = as_user(master, "buyer2", ["purchaser"])
    assert (
        ok(master.post(f"{PURCHASE_ORDERS}/{po['po_id']}/approve", headers=other))["status"]
        == "approved"
    )


def test_segregation_of_duties_can_be_turned_off(master: TestClient) -> None:
    master.app.state.settings.purchase_order_sod = False  # type: ignore[attr-defined]
    po = new_po(master)
    assert ok(master.post(f"{PURCHASE_ORDERS}/{po['po_id']}/approve"))["status"] == "approved"


def test_a_stale_if_match_is_412_and_the_current_one_passes(master: TestClient) -> None:
    po = new_po(master)
    url = f"{PURCHASE_ORDERS}/{po['po_id']}"
    changed = master.put(url, json=po_body(note="改"), headers={"If-Match": '"1"'})
    assert ok(changed)["version"] == 2
    assert changed.headers["ETag"] == '"2"'
    text = refused(master.put(url, json=po_body(note="again"), headers={"If-Match": '"1"'}), 412)
    assert "changed since you read it" in text
    assert '"2"' in text
    buyer = as_user(master, "buyer2", ["purchaser"])
    refused(master.post(f"{url}/approve", headers={**buyer, "If-Match": '"1"'}), 412)
    assert ok(master.get(url))["status"] == "draft"
    assert ok(master.post(f"{url}/approve", headers={**buyer, "If-Match": '"2"'}))["version"] == 3


def test_a_retried_create_or_command_with_its_key_happens_once(master: TestClient) -> None:
    key = {"Idempotency-Key": "po-create-1"}
    first = master.post(PURCHASE_ORDERS, json=po_body(), headers=key)
    again = master.post(PURCHASE_ORDERS, json=po_body(), headers=key)
    assert ok(first, 201)["po_id"] == ok(again, 201)["po_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(ok(master.get(PURCHASE_ORDERS))["purchase_orders"]) == 1
    refused(master.post(PURCHASE_ORDERS, json=po_body(note="x"), headers=key), 422, "already used")

    buyer = as_user(master, "buyer2", ["purchaser"])
    url = f"{PURCHASE_ORDERS}/{first.json()['po_id']}/approve"
    command = {**buyer, "Idempotency-Key": "approve-1", "If-Match": '"1"'}
    approved = ok(master.post(url, headers=command))
    replay = master.post(url, headers=command)
    assert ok(replay) == approved
    assert replay.headers["Idempotent-Replayed"] == "true"
    with master.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        approvals = connection.execute(
            select(audit_log.c.seq).where(audit_log.c.action == "purchase_order.approve")
        ).all()
    assert len(approvals) == 1


def test_lists_filter_and_page(master: TestClient) -> None:
    made = [new_po(master)["po_id"] for _ in range(3)]
    made.append(new_po(master, supplier="SUP-B", site_id="S02")["po_id"])
    approved_po(master)
    page = ok(master.get(PURCHASE_ORDERS, params={"limit": 2}))
    assert [po["po_id"] for po in page["purchase_orders"]] == made[:2]
    rest = ok(master.get(PURCHASE_ORDERS, params={"limit": 10, "after": page["next_after"]}))
    assert len(rest["purchase_orders"]) == 3
    assert rest["next_after"] is None

    def ids(**params: str) -> list[str]:
        found = ok(master.get(PURCHASE_ORDERS, params=params))["purchase_orders"]
        return [po["po_id"] for po in found]

    assert ids(supplier="SUP-B") == [made[3]]
    assert ids(site_id="S02") == [made[3]]
    assert len(ids(status="approved")) == 1
    assert len(ids(status="draft")) == 4
    assert len(ids(created_from="2000-01-01T00:00:00Z", created_to="2999-01-01T00:00:00Z")) == 5
    assert ids(created_from="2999-01-01T00:00:00Z") == []
    refused(master.get(PURCHASE_ORDERS, params={"created_from": "2026-01-01T00:00"}), 422)


def test_a_store_manager_sees_nothing_of_another_sites_pos(master: TestClient) -> None:
    theirs = new_po(master, site_id="S02")
    mine = new_po(master, site_id="S01")
    manager = as_user(master, "manager-s1", ["store_manager"], sites=["S01"])
    listed = ok(master.get(PURCHASE_ORDERS, headers=manager))["purchase_orders"]
    assert [po["po_id"] for po in listed] == [mine["po_id"]]
    refused(master.get(f"{PURCHASE_ORDERS}/{theirs['po_id']}", headers=manager), 404)
    refused(master.get(PURCHASE_ORDERS, params={"site_id": "S02"}, headers=manager), 403)
    assert ok(master.get(f"{PURCHASE_ORDERS}/{mine['po_id']}", headers=manager))


@pytest.mark.parametrize(
    ("roles", "may"),
    [
        (["purchaser"], {"read", "create", "approve", "send", "cancel"}),
        (["store_manager"], {"read"}),
        (["warehouse_clerk"], {"read"}),
        (["finance"], {"read"}),
        (["auditor"], {"read"}),
        (["sales"], set()),
    ],
)
def test_permissions_per_role(master: TestClient, roles: list[str], may: set[str]) -> None:
    who = as_user(master, f"user-{roles[0]}", roles)
    po = new_po(master)
    url = f"{PURCHASE_ORDERS}/{po['po_id']}"
    assert (master.get(url, headers=who).status_code == 200) == ("read" in may)
    created = master.post(PURCHASE_ORDERS, json=po_body(), headers=who)
    assert (created.status_code == 201) == ("create" in may), created.text
    approved = master.post(f"{url}/approve", headers=who)
    assert (approved.status_code == 200) == ("approve" in may), approved.text
    sent = master.post(f"{url}/send", headers=who)
    assert (sent.status_code == 200) == ("send" in may), sent.text
    cancelled = master.post(f"{url}/cancel", headers=who)
    assert (cancelled.status_code == 200) == ("cancel" in may), cancelled.text
    for answer in (approved, sent, cancelled):
        if answer.status_code != 200:
            assert answer.status_code == 403


def test_a_role_without_prices_may_not_set_them(master: TestClient) -> None:
    ok(master.put("/api/v1/roles/buyer_nomoney", json={"actions": ["purchase_order.create"]}))
    who = as_user(master, "nomoney", ["buyer_nomoney"])
    refused(master.post(PURCHASE_ORDERS, json=po_body(), headers=who), 403, "unit_price")
    body = po_body(lines=[{"item_code": "PILL", "qty": "1"}])
    assert (
        "unit_price"
        not in ok(master.post(PURCHASE_ORDERS, json=body, headers=who), 201)["lines"][0]
    )


# --- requisitions --------------------------------------------------------------------------


def test_requisitions_are_approved_and_become_pos_grouped_by_supplier(master: TestClient) -> None:
    manager = as_user(master, "manager-s1", ["store_manager"], sites=["S01"])
    body = {
        "site_id": "S01",
        "lines": [
            {"item_code": "PILL", "qty": "3", "uom": "盒", "supplier": "SUP-A"},
            {"item_code": "TEA", "qty": "2", "supplier": "SUP-B"},
            {"item_code": "PILL", "qty": "1", "uom": "箱", "supplier": "SUP-A"},
        ],
    }
    req = ok(master.post(REQUISITIONS, json=body, headers=manager), 201)
    url = f"{REQUISITIONS}/{req['req_id']}"
    assert req["status"] == "draft"
    assert req["lines"][0]["base_qty"] == "30"
    refused(master.post(f"{url}/approve"), 409, "is draft", "submitted")
    refused(
        master.post(
            PURCHASE_ORDERS + "/from-requisitions", json={"requisition_ids": [req["req_id"]]}
        ),
        409,
        "is draft",
    )
    assert ok(master.post(f"{url}/submit", headers=manager))["status"] == "submitted"
    refused(master.post(f"{url}/approve", headers=manager), 403)  # a manager does not approve
    buyer = as_user(master, "buyer1", ["purchaser"])
    assert ok(master.post(f"{url}/approve", headers=buyer))["decided_by"] == "buyer1"

    pos = ok(
        master.post(
            PURCHASE_ORDERS + "/from-requisitions",
            json={"requisition_ids": [req["req_id"]]},
            headers={**buyer, "Idempotency-Key": "convert-1"},
        ),
        201,
    )
    by_supplier = {po["supplier"]: po for po in pos}
    assert set(by_supplier) == {"SUP-A", "SUP-B"}
    assert [line["base_qty"] for line in by_supplier["SUP-A"]["lines"]] == ["30", "120"]
    assert by_supplier["SUP-A"]["lines"][0]["unit_price"] == "1.5"
    assert by_supplier["SUP-A"]["lines"][1]["req_line"] == 3
    assert all(po["status"] == "draft" and po["site_id"] == "S01" for po in pos)
    again = master.post(
        PURCHASE_ORDERS + "/from-requisitions",
        json={"requisition_ids": [req["req_id"]]},
        headers={**buyer, "Idempotency-Key": "convert-1"},
    )
    assert sorted(po["po_id"] for po in ok(again, 201)) == sorted(po["po_id"] for po in pos)
    done = ok(master.get(url))
    assert done["status"] == "ordered"
    assert done["lines"][2]["po_id"] == by_supplier["SUP-A"]["po_id"]
    refused(
        master.post(
            PURCHASE_ORDERS + "/from-requisitions", json={"requisition_ids": [req["req_id"]]}
        ),
        409,
        "is ordered",
    )


def test_a_requisition_line_without_supplier_is_not_converted(master: TestClient) -> None:
    req = ok(
        master.post(
            REQUISITIONS, json={"site_id": "S01", "lines": [{"item_code": "PILL", "qty": "1"}]}
        ),
        201,
    )
    url = f"{REQUISITIONS}/{req['req_id']}"
    ok(master.post(f"{url}/submit"))
    refused(master.post(f"{url}/approve"), 403, "segregation of duties")
    rejected = ok(
        master.post(
            f"{url}/reject",
            json={"reason": "预算不足"},
            headers=as_user(master, "b", ["purchaser"]),
        )
    )
    assert (rejected["status"], rejected["reason"]) == ("rejected", "预算不足")


def test_a_requisition_without_supplier_refused_at_conversion(master: TestClient) -> None:
    req = ok(
        master.post(
            REQUISITIONS, json={"site_id": "S01", "lines": [{"item_code": "PILL", "qty": "1"}]}
        ),
        201,
    )
    url = f"{REQUISITIONS}/{req['req_id']}"
    ok(master.post(f"{url}/submit"))
    ok(master.post(f"{url}/approve", headers=as_user(master, "b", ["purchaser"])))
    refused(
        master.post(
            PURCHASE_ORDERS + "/from-requisitions", json={"requisition_ids": [req["req_id"]]}
        ),
        422,
        "no supplier",
    )
    assert ok(master.get(PURCHASE_ORDERS))["purchase_orders"] == []


# --- progress from real pushes -------------------------------------------------------------


def test_a_push_naming_one_line_still_weighs_the_others(master: TestClient) -> None:
    """po_progress reads only the lines a push names; a PO's status needs the others too
    (read as three integers a line when the named ones leave it open)."""
    po = approved_po(master)
    po_id = po["po_id"]
    ledger = SiteLedger("S01")
    push(master, ledger, receipt(ledger, po_id, 2, "10.5", item="TEA", uom="kg"))
    partly = ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))
    # Line 2 complete, line 1 (not named) has nothing: partly, not received.
    assert (partly["status"], [line["received_qty"] for line in partly["lines"]]) == (
        "partly_received",
        ["0", "10.5"],
    )
    push(master, ledger, receipt(ledger, po_id, 1, "240"))
    done = ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))
    # Line 1 complete, and line 2 (not named this time) was already: received.
    assert (done["status"], [line["received_qty"] for line in done["lines"]]) == (
        "received",
        ["240", "10.5"],
    )
    assert ok(master.get(PURCHASE_EXCEPTIONS))["exceptions"] == []


def test_receipts_move_the_po_to_partly_received_and_received(master: TestClient) -> None:
    po = approved_po(master)
    po_id = po["po_id"]
    ledger = SiteLedger("S01")
    # One in 箱 (converted), one other item's line, one event naming nothing.
    push(
        master,
        ledger,
        receipt(ledger, po_id, 1, "100"),
        ledger.event("receipt", "3", item="OTHER", uom="EA"),
        ledger.event("sale", "-1", item="OTHER", uom="EA"),
    )
    partly = ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))
    assert partly["status"] == "partly_received"
    assert partly["version"] == po["version"] + 1
    assert [line["received_qty"] for line in partly["lines"]] == ["100", "0"]
    assert partly["lines"][0]["open_qty"] == "140"
    push(
        master,
        ledger,
        receipt(ledger, po_id, 1, "140"),
        receipt(ledger, po_id, 2, "10.5", item="TEA", uom="kg"),
    )
    done = ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))
    assert done["status"] == "received"
    assert ok(master.get(PURCHASE_EXCEPTIONS))["exceptions"] == []
    refused(master.post(f"{PURCHASE_ORDERS}/{po_id}/cancel"), 409, "is received")
    closed = ok(master.post(f"{PURCHASE_ORDERS}/{po_id}/close"))
    assert closed["status"] == "closed"


def test_a_replayed_push_counts_once(master: TestClient) -> None:
    po_id = approved_po(master)["po_id"]
    ledger = SiteLedger("S01")
    batch = ledger.batch([receipt(ledger, po_id, 1, "50")])
    ok(master.post(SYNC_EVENTS, json=batch))
    again = ok(master.post(SYNC_EVENTS, json=batch))
    assert [result["status"] for result in again["results"]] == ["duplicate"]
    assert ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))["lines"][0]["received_qty"] == "50"


def test_a_receipt_in_a_pack_unit_is_converted(master: TestClient) -> None:
    po_id = approved_po(master)["po_id"]
    ledger = SiteLedger("S01")
    # The balance of PILL at this location is kept in 盒 then: a unit the item has.
    push(master, ledger, receipt(ledger, po_id, 1, "2", uom="盒", location="B-01"))
    assert ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))["lines"][0]["received_qty"] == "20"


def test_over_receipt_is_stored_and_raises_an_exception_to_resolve(master: TestClient) -> None:
    po_id = approved_po(master)["po_id"]  # line 1: 240 片 + 5 % = 252
    ledger = SiteLedger("S01")
    answer = push(master, ledger, receipt(ledger, po_id, 1, "250"), receipt(ledger, po_id, 1, "10"))
    assert [result["status"] for result in answer["results"]] == ["accepted", "accepted"]
    line = ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))["lines"][0]
    assert line["received_qty"] == "260"
    found = ok(master.get(PURCHASE_EXCEPTIONS, params={"status": "open"}))["exceptions"]
    assert [(e["kind"], e["po_id"], e["line_no"], e["qty"]) for e in found] == [
        ("over_receipt", po_id, 1, "8")
    ]
    assert "252" in found[0]["detail"]

    clerk = as_user(master, "clerk", ["warehouse_clerk"])
    refused(
        master.post(
            f"{PURCHASE_EXCEPTIONS}/{found[0]['exception_id']}/resolve",
            json={"resolution": "x"},
            headers=clerk,
        ),
        403,
    )
    resolved = ok(
        master.post(
            f"{PURCHASE_EXCEPTIONS}/{found[0]['exception_id']}/resolve",
            json={"resolution": "退回供应商 8 片"},
        )
    )
    assert resolved["status"] == "resolved"
    assert ok(master.get(PURCHASE_EXCEPTIONS, params={"status": "open"}))["exceptions"] == []
    refused(
        master.post(
            f"{PURCHASE_EXCEPTIONS}/{found[0]['exception_id']}/resolve", json={"resolution": "y"}
        ),
        409,
        "resolved already",
    )


def test_receipts_that_fit_no_line_are_stored_and_raise_exceptions(master: TestClient) -> None:
    po_id = approved_po(master)["po_id"]
    draft_id = new_po(master)["po_id"]
    s1, s2 = SiteLedger("S01"), SiteLedger("S02")
    push(
        master,
        s1,
        receipt(s1, po_id, 9, "1"),
        receipt(s1, "PO999999", 1, "1"),
        receipt(s1, po_id, 2, "1", item="PILL", location="C-01"),
        receipt(s1, po_id, 1, "1", uom="瓶", location="D-01"),
        receipt(s1, draft_id, 1, "1"),
    )
    push(master, s2, receipt(s2, po_id, 1, "5"))
    kinds = [e["kind"] for e in ok(master.get(PURCHASE_EXCEPTIONS))["exceptions"]]
    assert kinds == [
        "unknown_line",
        "unknown_line",
        "wrong_item",
        "unknown_unit",
        "po_not_open",
        "wrong_site",
    ]
    assert ok(master.get(f"{PURCHASE_ORDERS}/{po_id}"))["status"] == "approved"
    draft = ok(master.get(f"{PURCHASE_ORDERS}/{draft_id}"))
    assert (draft["status"], draft["lines"][0]["received_qty"]) == ("draft", "1")
    manager = as_user(master, "manager-s2", ["store_manager"], sites=["S02"])
    theirs = ok(master.get(PURCHASE_EXCEPTIONS, headers=manager))["exceptions"]
    assert [e["kind"] for e in theirs] == ["wrong_site"]


def test_a_po_with_receipts_cannot_be_cancelled_only_closed(master: TestClient) -> None:
    po_id = approved_po(master)["po_id"]
    ledger = SiteLedger("S01")
    push(master, ledger, receipt(ledger, po_id, 1, "1"))
    refused(master.post(f"{PURCHASE_ORDERS}/{po_id}/cancel"), 409, "is partly_received")
    sent = ok(master.post(f"{PURCHASE_ORDERS}/{po_id}/send"))
    assert (sent["status"], sent["sent_at"] is not None) == ("partly_received", True)
    assert ok(master.post(f"{PURCHASE_ORDERS}/{po_id}/close"))["status"] == "closed"


def test_a_rebuild_from_the_ledger_equals_the_incremental_progress(master: TestClient) -> None:
    first = approved_po(master)["po_id"]
    second = approved_po(master)["po_id"]
    ledger = SiteLedger("S01")
    push(master, ledger, receipt(ledger, first, 1, "240"), receipt(ledger, second, 1, "7"))
    push(master, ledger, receipt(ledger, first, 2, "10.5", item="TEA", uom="kg"))
    engine = master.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        incremental = po_progress.progress(connection)
        connection.rollback()
        with write_transaction(connection):
            po_progress.rebuild(connection)
        rebuilt = po_progress.progress(connection)
    assert rebuilt == incremental
    assert incremental["status"][first] == "received"
    assert incremental["status"][second] == "partly_received"


# --- the change feed ---------------------------------------------------------------------


def po_lines_in_feed(client: TestClient, site_id: str) -> dict[str, dict[str, Any] | None]:
    changes = ok(client.get(SYNC_CHANGES, params={"site_id": site_id, "cursor": 0}))["changes"]
    found: dict[str, dict[str, Any] | None] = {}
    for change in changes:
        if change["entity"] == "po_line":
            found[change["key"]] = change["data"]
    return found


def test_approved_lines_reach_their_site_and_go_when_cancelled(master: TestClient) -> None:
    draft = new_po(master)
    assert po_lines_in_feed(master, "S01") == {}
    po = approved_po(master)
    po_id = po["po_id"]
    lines = po_lines_in_feed(master, "S01")
    assert set(lines) == {f"{po_id} 1", f"{po_id} 2"}
    first = PoLineData.model_validate(lines[f"{po_id} 1"])
    assert (first.qty, first.uom, first.order_qty, first.order_uom) == (
        Decimal(240),
        "片",
        Decimal(2),
        "箱",
    )
    assert first.over_tolerance == Decimal(5)
    assert "unit_price" not in str(lines)
    assert po_lines_in_feed(master, "S02") == {}
    ok(master.post(f"{PURCHASE_ORDERS}/{po_id}/cancel"))
    assert po_lines_in_feed(master, "S01") == {f"{po_id} 1": None, f"{po_id} 2": None}
    ok(master.post(f"{PURCHASE_ORDERS}/{draft['po_id']}/cancel"))
    assert f"{draft['po_id']} 1" not in po_lines_in_feed(master, "S01")


def test_closing_a_po_tombstones_its_lines(master: TestClient) -> None:
    po_id = approved_po(master)["po_id"]
    ledger = SiteLedger("S01")
    push(master, ledger, receipt(ledger, po_id, 1, "5"))
    ok(master.post(f"{PURCHASE_ORDERS}/{po_id}/close", json={"reason": "short close"}))
    assert po_lines_in_feed(master, "S01") == {f"{po_id} 1": None, f"{po_id} 2": None}


# --- the event's document reference ----------------------------------------------------


def test_an_event_without_a_document_is_written_and_hashed_as_before() -> None:
    ledger = SiteLedger("S01")
    plain = LedgerEvent.model_validate(ledger.event("receipt", "1"))
    assert set(DOCUMENT_FIELDS).isdisjoint(json.loads(plain.model_dump_json()))
    canonical = json.dumps(plain.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert "doc_" not in canonical
    assert plain.content_digest() == hashlib.sha256(canonical.encode()).hexdigest()
    named = LedgerEvent.model_validate(receipt(ledger, "PO000001", 2, "1"))
    wire = json.loads(named.model_dump_json())
    assert (wire["doc_type"], wire["doc_id"], wire["doc_line"]) == ("purchase_order", "PO000001", 2)
    canonical = json.dumps(named.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert named.content_digest() == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "partial",
    [{"doc_type": "purchase_order"}, {"doc_id": "PO1", "doc_line": 1}, {"doc_line": 1}],
)
def test_a_partial_document_reference_is_refused(partial: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="all or none"):
        LedgerEvent.model_validate(SiteLedger("S01").event("receipt", "1", **partial))
