"""Sales invoices from shipments with due dates from payment terms, partial payments,
credit notes for returns and price corrections, receivables ageing on given days, and the
credit check counting open receivables; money only for roles with the financial field
group. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from central_api.services.receivables import bucket
from jxc.paths import (
    CUSTOMER_RETURNS,
    PARTNERS,
    PAYMENT_TERMS,
    RECEIVABLES_AGEING,
    SALES_INVOICES,
)
from tests.central.test_purchasing import as_user, ok, refused
from tests.central.test_sales import confirm, new_so, shop
from tests.central.test_shipping import TWO_LINES, ship

__all__ = ["shop"]


@pytest.mark.parametrize(
    ("due", "on", "expected"),
    [
        (date(2026, 3, 1), date(2026, 2, 1), "current"),
        (date(2026, 3, 1), date(2026, 3, 1), "current"),
        (date(2026, 3, 1), date(2026, 3, 2), "1-30"),
        (date(2026, 3, 1), date(2026, 3, 31), "1-30"),
        (date(2026, 3, 1), date(2026, 4, 1), "31-60"),
        (date(2026, 3, 1), date(2026, 4, 30), "31-60"),
        (date(2026, 3, 1), date(2026, 5, 1), "61-90"),
        (date(2026, 3, 1), date(2026, 5, 30), "61-90"),
        (date(2026, 3, 1), date(2026, 5, 31), "over_90"),
    ],
)
def test_ageing_buckets_by_days_past_due(due: date, on: date, expected: str) -> None:
    assert bucket(due, on) == expected


def invoice(client: TestClient, shipment_id: str, on: str, **kw: Any) -> Any:
    return client.post(SALES_INVOICES, json={"shipment_id": shipment_id, "invoice_date": on}, **kw)


def pay(client: TestClient, invoice_id: str, amount: str, on: str, version: int) -> Any:
    return client.post(
        f"{SALES_INVOICES}/{invoice_id}/payments",
        json={"amount": amount, "received_on": on, "method": "bank"},
        headers={"If-Match": f'"{version}"'},
    )


def ageing(client: TestClient, on: str) -> dict[str, dict[str, str]]:
    answer = ok(client.get(RECEIVABLES_AGEING, params={"on": on}))
    return {
        each["customer"]: {**each["buckets"], "total": each["total"]}
        for each in answer["customers"]
    }


def test_invoices_payments_ageing_and_the_credit_check(shop: TestClient) -> None:
    ok(shop.put(f"{PAYMENT_TERMS}/N30", json={"name": "30 天", "days": 30}))
    ok(
        shop.post(
            PARTNERS,
            json={
                "code": "CUS-3",
                "is_customer": True,
                "name": "c3",
                "payment_terms": "N30",
                "credit_limit": "200",
            },
        ),
        201,
    )
    so = new_so(shop, customer="CUS-3", lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    first = ok(ship(shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}]), 201)
    second = ok(ship(shop, so["so_id"], [{"so_line": 2, "qty": "5"}]), 201)

    made = invoice(shop, first["shipment_id"], "2026-01-10", headers={"Idempotency-Key": "i-1"})
    a = ok(made, 201)
    # 10 片 of 2 盒 × 20 = 20 before tax, 13 % tax.
    assert (a["amount"], a["tax_amount"], a["gross_amount"], a["outstanding"]) == (
        "20",
        "2.6",
        "22.6",
        "22.6",
    )
    assert (a["due_date"], a["status"]) == ("2026-02-09", "open")
    again = invoice(shop, first["shipment_id"], "2026-01-10", headers={"Idempotency-Key": "i-1"})
    assert ok(again, 201)["invoice_id"] == a["invoice_id"]
    refused(invoice(shop, first["shipment_id"], "2026-01-11"), 409, a["invoice_id"])
    b = ok(invoice(shop, second["shipment_id"], "2026-03-01"), 201)
    assert (b["gross_amount"], b["due_date"]) == ("5", "2026-03-31")

    paid = ok(pay(shop, a["invoice_id"], "10", "2026-02-01", 1))
    assert (paid["paid_amount"], paid["outstanding"], paid["status"]) == ("10", "12.6", "open")
    refused(pay(shop, a["invoice_id"], "1", "2026-02-01", 1), 412)
    refused(pay(shop, a["invoice_id"], "20", "2026-02-02", 2), 409, "12.6")
    refused(pay(shop, a["invoice_id"], "0.001", "2026-02-02", 2), 422, "amount")

    assert ageing(shop, "2026-01-31") == {
        "CUS-3": {
            "current": "22.6",
            "1-30": "0",
            "31-60": "0",
            "61-90": "0",
            "over_90": "0",
            "total": "22.6",
        }
    }
    on_april = ageing(shop, "2026-04-15")["CUS-3"]
    assert (on_april["61-90"], on_april["1-30"], on_april["total"]) == ("12.6", "5", "17.6")
    on_june = ageing(shop, "2026-06-01")["CUS-3"]
    assert (on_june["over_90"], on_june["61-90"]) == ("12.6", "5")

    done = ok(pay(shop, a["invoice_id"], "12.6", "2026-04-20", 2))
    assert (done["status"], done["outstanding"], len(done["payments"])) == ("paid", "0", 2)
    assert ageing(shop, "2026-05-01")["CUS-3"]["31-60"] == "5"
    assert ageing(shop, "2026-04-15")["CUS-3"]["61-90"] == "12.6"

    # Exposure: B open (5) + line 1's unshipped half (22.6): 27.6; 175 more passes 200.
    big = new_so(
        shop, customer="CUS-3", lines=[{"item_code": "TEA", "qty": "175", "unit_price": "1"}]
    )
    refused(confirm(shop, big["so_id"]), 409, "credit limit", "27.6", "175")
    fits = new_so(
        shop, customer="CUS-3", lines=[{"item_code": "TEA", "qty": "172.4", "unit_price": "1"}]
    )
    ok(confirm(shop, fits["so_id"]))

    clerk = as_user(shop, "clerk", ["warehouse_clerk"], sites=["S01"])
    refused(shop.get(SALES_INVOICES, headers=clerk), 403)
    refused(shop.get(RECEIVABLES_AGEING, headers=clerk), 403)
    seller = as_user(shop, "seller", ["sales"])
    assert ok(shop.get(SALES_INVOICES, headers=seller))["sales_invoices"][0]["amount"] == "20"
    refused(invoice(shop, second["shipment_id"], "2026-03-01", headers=seller), 403)
    finance = as_user(shop, "fin", ["finance"], sites=["S02"])
    refused(shop.get(f"{SALES_INVOICES}/{a['invoice_id']}", headers=finance), 404)


def credit(
    client: TestClient, invoice_id: str, version: int, body: dict[str, Any], **headers: str
) -> Any:
    return client.post(
        f"{SALES_INVOICES}/{invoice_id}/credit-notes",
        json=body,
        headers={"If-Match": f'"{version}"', **headers},
    )


def test_credit_notes_for_a_return_and_a_price_correction(shop: TestClient) -> None:
    """A credit note takes money off one invoice: a received return's quantity at the
    invoiced price, then a price correction; what is owed, the ageing from the credit's
    date on and the credit check all fall by it; never more than a line or the invoice has
    left; audited, replayed by its key, finance only."""
    ok(shop.put(f"{PAYMENT_TERMS}/N30", json={"name": "30 天", "days": 30}))
    ok(
        shop.post(
            PARTNERS,
            json={"code": "CUS-4", "is_customer": True, "name": "c4", "payment_terms": "N30"},
        ),
        201,
    )
    so = new_so(shop, customer="CUS-4", lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    shipped = ok(
        ship(
            shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}, {"so_line": 2, "qty": "5"}]
        ),
        201,
    )
    inv = ok(invoice(shop, shipped["shipment_id"], "2026-01-10"), 201)
    iid = inv["invoice_id"]
    # 10 片 × 2 = 20 + 2.6 tax, shipped from two lots (invoice lines 1 and 2, 5 片 each);
    # line 3: 5 TEA × 1, no tax. 27.6 owed.
    assert [(x["item_code"], x["qty"]) for x in inv["lines"]] == [
        ("PILL", "5"),
        ("PILL", "5"),
        ("TEA", "5"),
    ]
    assert (inv["gross_amount"], inv["credited_amount"], inv["credit_notes"]) == ("27.6", "0", [])
    ra = ok(
        shop.post(
            CUSTOMER_RETURNS,
            json={"so_id": so["so_id"], "reason": "破损", "lines": [{"so_line": 1, "qty": "3"}]},
        ),
        201,
    )
    back = {"kind": "return", "reason": "3 片 broken", "credit_date": "2026-01-20"}
    body = {**back, "return_id": ra["return_id"], "lines": [{"invoice_line": 1, "qty": "3"}]}
    refused(credit(shop, iid, 1, body), 409, "not received")
    ok(shop.post(f"{CUSTOMER_RETURNS}/{ra['return_id']}/receive", headers={"If-Match": '"1"'}))
    too_many = {**body, "lines": [{"invoice_line": 1, "qty": "4"}]}
    refused(credit(shop, iid, 1, too_many), 409, "brought back 3")
    refused(credit(shop, iid, 1, {**body, "reason": " "}), 422, "reason")
    refused(credit(shop, iid, 1, {**body, "lines": [{"invoice_line": 9, "qty": "1"}]}), 422)
    refused(credit(shop, iid, 1, {**body, "credit_date": "2026-01-01"}), 422, "credit_date")
    refused(credit(shop, iid, 1, {**body, "lines": [{"invoice_line": 2, "amount": "1"}]}), 422)
    refused(credit(shop, iid, 7, body), 412)
    first = credit(shop, iid, 1, body, **{"Idempotency-Key": "cn-1"})
    after = ok(first, 201)
    again = ok(credit(shop, iid, 1, body, **{"Idempotency-Key": "cn-1"}), 201)
    assert again == after
    note = after["credit_notes"][0]
    assert note["credit_id"].startswith("CN")
    assert (note["kind"], note["return_id"], note["amount"], note["tax_amount"]) == (
        "return",
        ra["return_id"],
        "6",
        "0.78",
    )
    assert [(x["invoice_line"], x["qty"], x["amount"]) for x in note["lines"]] == [(1, "3", "6")]
    assert (after["credited_amount"], after["outstanding"], after["status"]) == (
        "6.78",
        "20.82",
        "open",
    )
    assert (after["version"], first.headers["ETag"]) == (2, '"2"')
    # the ageing: before the credit's date the whole invoice, from it on the rest
    assert ageing(shop, "2026-01-19")["CUS-4"]["total"] == "27.6"
    assert ageing(shop, "2026-01-20")["CUS-4"]["current"] == "20.82"
    assert ageing(shop, "2026-03-01")["CUS-4"]["1-30"] == "20.82"

    # a price correction: 1 yuan off TEA, no tax on that line; never beyond the line's 5
    price = {"kind": "price", "reason": "agreed discount", "credit_date": "2026-02-01"}
    refused(credit(shop, iid, 2, {**price, "lines": [{"invoice_line": 3, "amount": "5.01"}]}), 409)
    refused(credit(shop, iid, 2, {**price, "lines": [{"invoice_line": 3, "qty": "1"}]}), 422)
    cut = ok(credit(shop, iid, 2, {**price, "lines": [{"invoice_line": 3, "amount": "1"}]}), 201)
    assert (cut["credited_amount"], cut["outstanding"]) == ("7.78", "19.82")

    # a payment, then the rest credited: the last credit takes exactly what is left
    paid = ok(pay(shop, iid, "10", "2026-02-05", 3))
    assert paid["outstanding"] == "9.82"
    rest = {"kind": "return", "reason": "all back", "credit_date": "2026-02-10"}
    beyond = {**rest, "lines": [{"invoice_line": 2, "qty": "5"}]}  # 10 + 1.3 > 9.82
    refused(credit(shop, iid, 4, beyond), 409, "refund")
    last = ok(
        credit(
            shop,
            iid,
            4,
            {
                **price,
                "credit_date": "2026-02-10",
                "lines": [
                    # what is left of line 1 (4, its tax exactly the 0.52 left), part of
                    # line 2 (1.15 + 0.15 tax) and the rest of line 3 (4): 9.82
                    {"invoice_line": 1, "amount": "4"},
                    {"invoice_line": 2, "amount": "1.15"},
                    {"invoice_line": 3, "amount": "4"},
                ],
            },
        ),
        201,
    )
    assert (last["outstanding"], last["status"]) == ("0", "paid")
    assert "CUS-4" not in ageing(shop, "2026-02-10")
    assert ageing(shop, "2026-02-09")["CUS-4"]["total"] == "9.82"

    # rules: a seller reads the notes but may not credit; a clerk no money; another site 404
    seller = as_user(shop, "seller-cn", ["sales"])
    assert len(ok(shop.get(f"{SALES_INVOICES}/{iid}", headers=seller))["credit_notes"]) == 3
    refused(
        credit(shop, iid, 5, {**price, "lines": [{"invoice_line": 2, "amount": "1"}]}, **seller),
        403,
    )
    clerk = as_user(shop, "clerk-cn", ["warehouse_clerk"], sites=["S01"])
    refused(
        credit(shop, iid, 5, {**price, "lines": [{"invoice_line": 2, "amount": "1"}]}, **clerk), 403
    )
    money = as_user(shop, "fin-cn", ["finance"], sites=["S02"])
    refused(
        credit(shop, iid, 5, {**price, "lines": [{"invoice_line": 2, "amount": "1"}]}, **money), 404
    )
    with shop.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = connection.execute(
            select(audit_log.c.action).where(
                audit_log.c.resource_id == iid, audit_log.c.action == "sales_invoice.credit"
            )
        ).scalars()
        assert len(list(actions)) == 3


def test_a_full_credit_without_payment_settles_the_invoice_and_the_exposure(
    shop: TestClient,
) -> None:
    ok(
        shop.post(
            PARTNERS,
            json={"code": "CUS-5", "is_customer": True, "name": "c5", "credit_limit": "60"},
        ),
        201,
    )
    so = new_so(shop, customer="CUS-5", lines=TWO_LINES)
    ok(confirm(shop, so["so_id"]))
    shipped = ok(ship(shop, so["so_id"], [{"so_line": 1, "qty": "1", "uom": "盒"}]), 201)
    inv = ok(invoice(shop, shipped["shipment_id"], "2026-01-10"), 201)
    # exposure: 22.6 owed + line 1's other half (22.6) + line 2 (5) = 50.2; 10 more is 60.2
    big = new_so(
        shop, customer="CUS-5", lines=[{"item_code": "TEA", "qty": "10", "unit_price": "1"}]
    )
    refused(confirm(shop, big["so_id"]), 409, "credit limit", "50.2")
    whole = {
        "kind": "return",
        "reason": "wrong goods",
        "credit_date": "2026-01-11",
        "lines": [{"invoice_line": 1, "qty": "5"}, {"invoice_line": 2, "qty": "5"}],
    }
    done = ok(credit(shop, inv["invoice_id"], 1, whole), 201)
    assert (done["credited_amount"], done["outstanding"], done["status"]) == (
        "22.6",
        "0",
        "credited",
    )
    refused(pay(shop, inv["invoice_id"], "1", "2026-01-12", 2), 409)
    assert "CUS-5" not in ageing(shop, "2026-01-11")
    listed = ok(shop.get(SALES_INVOICES, params={"status": "credited"}))["sales_invoices"]
    assert [x["invoice_id"] for x in listed] == [inv["invoice_id"]]
    ok(confirm(shop, big["so_id"]))  # what was credited no longer counts against the limit
