"""Sales invoices from shipments with due dates from payment terms, partial payments,
receivables ageing on given days, and the credit check counting open receivables; money
only for roles with the financial field group. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api.services.receivables import bucket
from jxc.paths import PARTNERS, PAYMENT_TERMS, RECEIVABLES_AGEING, SALES_INVOICES
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
