"""The console's pages after a sales order, over HTTP in-process, on SQLite and PostgreSQL:
a clerk ships part of a confirmed order from the form (tracking number, lots FEFO) and
prints the delivery note; finance invoices the shipment (due date from the customer's
terms) and records two partial payments, then reads the ageing with its bar chart; a store
manager authorises a return, receives it into quarantine, restocks one line and scraps
another with a reason code; finance credits part of an invoice. Each page in zh-CN and
English, no money for a clerk, bad input refused with its reason, every write audited."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from central_api.models.valuation import valuation_entries
from jxc.paths import CUSTOMER_RETURNS, PARTNERS, PAYMENT_TERMS, REASON_CODES, SALES_INVOICES, SITES
from tests.central.conftest import add_test_user, site  # noqa: F401 (a fixture)
from tests.central.test_audit_api import add_role
from tests.central.test_purchasing import ok
from tests.central.test_sales import confirm, new_so
from tests.central.test_sales import shop as sales_shop  # noqa: F401 (a fixture)
from tests.central.test_shipping import TWO_LINES, ship
from tests.web.test_console_pages import browser, htmx
from tests.web.test_console_purchasing import HOSTILE
from tests.web.test_console_receiving import command_values, hidden

USERS = {
    "clerk1": (["warehouse_clerk"], None),
    "money1": (["finance"], None),
    "seller1": (["sales"], None),
    "mgr1": (["store_manager"], None),
    "s2mgr": (["store_manager"], ["S02"]),
    "nomoney1": (["invoice_reader"], None),
}


@pytest.fixture
def counter(sales_shop: TestClient) -> TestClient:  # noqa: F811 (the fixture imported above)
    add_role(
        sales_shop.app.state.engine,  # type: ignore[attr-defined]
        "invoice_reader",
        "sales_invoice.read sales_invoice.payment receivable.read shipment.read",
        financial=False,
    )
    for name, (roles, sites) in USERS.items():
        add_test_user(sales_shop.app.state.engine, name, roles, sites=sites)  # type: ignore[attr-defined]
    return sales_shop


def signed_in(counter: TestClient, name: str, lang: str = "zh-CN") -> TestClient:
    return browser(counter.app, name, lang=lang)  # type: ignore[arg-type]


def confirmed_order(counter: TestClient, **changes: Any) -> str:
    """PILL 2 盒 (20 片: L3 5 and L4 15 reserved) and TEA 5 kg, confirmed."""
    so_id: str = new_so(counter, lines=TWO_LINES, **changes)["so_id"]
    ok(confirm(counter, so_id))
    return so_id


def ship_from_the_form(client: TestClient, so_id: str, **rows: list[str]) -> Any:
    form = client.get(f"/console/shipments/new?so={so_id}").text
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "tracking_no": rows.pop("tracking_no", [""])[0],
        "note": "",
        "line_so_line": re.findall(r'name="line_so_line" value="(\d+)"', form),
        **{f"line_{name}": values for name, values in rows.items()},
    }
    return client.post(f"/console/shipments/new?so={so_id}", data=data, headers=htmx(client))


def shown(html: str, element: str) -> str:
    """The amount an element shows, without its currency sign (¥ or CN¥ by language)."""
    found = re.search(rf'id="{element}">[^<0-9]*([0-9.,]+)<', html)
    assert found is not None, element
    return found[1]


def actions_of(counter: TestClient, resource: str) -> list[str]:
    with counter.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return list(
            connection.execute(
                select(audit_log.c.action)
                .where(audit_log.c.resource_id == resource)
                .order_by(audit_log.c.seq)
            ).scalars()
        )


def test_ship_print_invoice_pay_and_age(counter: TestClient) -> None:
    ok(counter.put(f"{PAYMENT_TERMS}/N30", json={"name": "30 天", "days": 30}))
    ok(
        counter.post(
            PARTNERS,
            json={"code": "CUS-3", "is_customer": True, "name": "三号药房", "payment_terms": "N30"},
        ),
        201,
    )
    so_id = confirmed_order(counter, customer="CUS-3")
    clerk = signed_in(counter, "clerk1")
    picking = clerk.get(f"/console/pick-lists/view?id={so_id}").text
    assert "L3" in picking
    assert "A-02" in picking  # where L3 lies
    assert so_id in clerk.get("/console/pick-lists").text

    # a part of each line: 1 盒 of PILL (FEFO: L3's 5 片, then 5 of L4), 2 of the 5 kg of TEA
    rows = {"qty": ["1", "2"], "uom": ["盒", ""], "lot": ["", ""], "location": ["", ""]}
    made = ship_from_the_form(clerk, so_id, tracking_no=["SF123"], **rows)
    target = made.headers["HX-Redirect"]
    shipment_id = target.split("id=")[1]
    shipment = clerk.get(target).text
    assert 'id="tracking-no">SF123<' in shipment
    assert re.search(r"L3</td>.*?5 片", shipment, re.S)
    assert "¥" not in shipment
    assert "Invoice" not in shipment
    assert "开票" not in shipment

    note = clerk.get(f"/console/shipments/note?id={shipment_id}").text
    assert "送货单" in note
    assert "药片" in note
    assert "三号药房" in note
    english_note = signed_in(counter, "clerk1", "en").get(
        f"/console/shipments/note?id={shipment_id}"
    )
    assert "Delivery note" in english_note.text

    # the tracking number corrected from the shipment's page, with its version
    fixed = clerk.post(
        f"/console/shipments/tracking?id={shipment_id}",
        data={**command_values(shipment, "/console/shipments/tracking"), "tracking_no": "SF124"},
        headers=htmx(clerk),
    )
    assert fixed.status_code == 200, fixed.text
    assert 'id="tracking-no">SF124<' in clerk.get(target).text

    # finance invoices it: due in 30 days, 10 片 × 2 + 2 kg × 1, 13 % tax on the pills
    money = signed_in(counter, "money1", "en")
    order_page = money.get(f"/console/sales-orders/view?id={so_id}").text
    assert f"/console/shipments/view?id={shipment_id}" in order_page
    form = money.get(f"/console/sales-invoices/new?shipment={shipment_id}").text
    data = {"idempotency_key": hidden(form, "idempotency_key"), "invoice_date": "2026-01-10"}
    invoiced = money.post(
        f"/console/sales-invoices/new?shipment={shipment_id}", data=data, headers=htmx(money)
    )
    invoice_url = invoiced.headers["HX-Redirect"]
    invoice_id = invoice_url.split("id=")[1]
    again = money.post(
        f"/console/sales-invoices/new?shipment={shipment_id}", data=data, headers=htmx(money)
    )
    assert again.headers["HX-Redirect"] == invoice_url  # one invoice per opened form
    page = money.get(invoice_url).text
    assert "2026-02-09" in page  # due date: 30 days
    assert shown(page, "gross") == "24.60"
    assert invoice_id in money.get(f"/console/sales-orders/view?id={so_id}").text

    # two partial payments; a stale page and a bad amount are refused with their reasons
    paid = money.post(
        f"/console/sales-invoices/payment?id={invoice_id}",
        data={
            **command_values(page, "/console/sales-invoices/payment"),
            "amount": "10",
            "received_on": "2026-02-01",
            "method": "bank",
        },
        headers=htmx(money),
    )
    assert paid.status_code == 200, paid.text
    after = money.get(invoice_url).text
    assert shown(after, "outstanding") == "14.60"
    stale = money.post(  # another tab drawn before the first payment
        f"/console/sales-invoices/payment?id={invoice_id}",
        data={
            **command_values(page, "/console/sales-invoices/payment"),
            "idempotency_key": str(uuid.uuid4()),
            "amount": "1",
            "method": "bank",
        },
        headers=htmx(money),
    )
    assert stale.status_code == 412
    assert 'id="refusal"' in stale.text
    for amount, status in (("abc", 422), ("0.001", 422), ("99", 409)):
        bad = money.post(
            f"/console/sales-invoices/payment?id={invoice_id}",
            data={
                **command_values(after, "/console/sales-invoices/payment"),
                "amount": amount,
                "method": "bank",
            },
            headers=htmx(money),
        )
        assert bad.status_code == status, (amount, bad.text)
        assert 'id="refusal"' in bad.text
    done = money.post(
        f"/console/sales-invoices/payment?id={invoice_id}",
        data={
            **command_values(after, "/console/sales-invoices/payment"),
            "amount": "14.6",
            "received_on": "2026-04-20",
            "method": "cash",
        },
        headers=htmx(money),
    )
    assert done.status_code == 200, done.text
    final = money.get(invoice_url).text
    assert 'id="invoice-status">Paid<' in final
    assert "payment-form" not in final
    assert final.count("RP0") == 2

    # the ageing on 15 April: the 14.60 still owed then was 65 days past due
    ageing = money.get("/console/receivables-ageing?on=2026-04-15").text
    assert "<svg" in ageing
    assert 'data-bucket="61-90"' in ageing
    assert re.search(r"61–90 days past due</span>.*?>CN¥14.60<", ageing, re.S)
    assert money.get("/console/receivables-ageing?on=2026-13-01").status_code == 422
    assert invoice_id in money.get("/console/sales-invoices?status=paid&customer=CUS-3").text

    assert actions_of(counter, shipment_id) == ["shipment.create", "shipment.tracking"]
    assert actions_of(counter, invoice_id) == [
        "sales_invoice.create",
        "sales_invoice.payment",
        "sales_invoice.payment",
    ]


def test_a_bad_shipment_form_is_refused_next_to_its_row(counter: TestClient) -> None:
    so_id = confirmed_order(counter)
    clerk = signed_in(counter, "clerk1", "en")
    typo = ship_from_the_form(clerk, so_id, qty=["x", ""])
    assert typo.status_code == 422
    assert 'id="error-line-0-qty"' in typo.text
    too_much = ship_from_the_form(clerk, so_id, qty=["", "6"])
    assert too_much.status_code == 422
    assert 'id="error-line-1-qty"' in too_much.text
    assert "reserve first" in too_much.text
    nothing = ship_from_the_form(clerk, so_id, qty=["", ""])
    assert 'id="error-lines"' in nothing.text
    assert "SH0" not in clerk.get("/console/shipments").text
    draft = new_so(counter)["so_id"]
    assert 'id="not-shippable"' in clerk.get(f"/console/shipments/new?so={draft}").text


def test_a_return_authorised_received_restocked_and_scrapped(counter: TestClient) -> None:
    so_id = confirmed_order(counter)
    clerk = signed_in(counter, "clerk1")
    ok_shipped = ship_from_the_form(clerk, so_id, qty=["1", "5"], uom=["盒", ""])
    assert ok_shipped.status_code == 200, ok_shipped.text
    ok(
        counter.post(
            f"{SITES}/S01/locations", json={"code": "B-01", "level": "zone", "kind": "storage"}
        ),
        201,
    )
    ok(counter.put(f"{REASON_CODES}/DMG", json={"name": "破损", "applies_to": ["write_off"]}))

    manager = signed_in(counter, "mgr1", "en")
    form = manager.get(f"/console/customer-returns/new?so={so_id}").text
    assert "L3" in form  # the lots line 1 shipped are offered
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "reason": "damaged in transit",
        "line_so_line": ["1", "2"],
        "line_qty": ["3", "1"],
        "line_uom": ["", ""],
        "line_lot": ["L3", ""],
    }
    made = manager.post(
        f"/console/customer-returns/new?so={so_id}", data=data, headers=htmx(manager)
    )
    target = made.headers["HX-Redirect"]
    return_id = target.split("id=")[1]
    page = manager.get(target).text
    assert 'id="return-status">Authorised<' in page

    received = manager.post(
        f"/console/customer-returns/receive?id={return_id}",
        data=command_values(page, "/console/customer-returns/receive"),
        headers=htmx(manager),
    )
    assert received.status_code == 200, received.text
    page = manager.get(target).text
    assert 'id="return-status">Received<' in page

    # restock without a location is refused and says so; with one it moves the goods
    refused = manager.post(
        f"/console/customer-returns/restock?id={return_id}",
        data={**command_values(page, "/console/customer-returns/restock", 1), "location": ""},
        headers=htmx(manager),
    )
    assert refused.status_code == 422
    assert 'id="refusal"' in refused.text
    assert "location" in refused.text
    restocked = manager.post(
        f"/console/customer-returns/restock?id={return_id}",
        data={**command_values(page, "/console/customer-returns/restock", 1), "location": "B-01"},
        headers=htmx(manager),
    )
    assert restocked.status_code == 200, restocked.text
    page = manager.get(target).text
    assert 'id="disposition-1">Restocked<' in page
    scrapped = manager.post(
        f"/console/customer-returns/scrap?id={return_id}",
        data={**command_values(page, "/console/customer-returns/scrap", 2), "reason_code": "DMG"},
        headers=htmx(manager),
    )
    assert scrapped.status_code == 200, scrapped.text
    page = manager.get(target).text
    assert 'id="return-status">Closed<' in page
    assert 'id="disposition-2">Scrapped<' in page
    assert return_id in manager.get(f"/console/customer-returns?so={so_id}").text
    with counter.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        valued = set(
            connection.execute(
                select(valuation_entries.c.kind).where(valuation_entries.c.site_id == "S01")
            ).scalars()
        )
    assert {"return", "scrap"} <= valued  # the projections ran with the console's commands
    assert actions_of(counter, return_id) == [
        "customer_return.create",
        "customer_return.receive",
        "customer_return.restock",
        "customer_return.scrap",
    ]


def test_a_return_that_never_arrives_is_closed_short_from_its_page(counter: TestClient) -> None:
    """The return's page offers "Close short" while a line has nothing received; the
    reason is required (refused on the page), then the line closes with zero."""
    so_id = confirmed_order(counter)
    clerk = signed_in(counter, "clerk1")
    assert ship_from_the_form(clerk, so_id, qty=["1", "5"], uom=["盒", ""]).status_code == 200
    body = {"so_id": so_id, "reason": "破损", "lines": [{"so_line": 2, "qty": "1"}]}
    return_id = ok(counter.post(CUSTOMER_RETURNS, json=body), 201)["return_id"]

    manager = signed_in(counter, "mgr1", "en")
    target = f"/console/customer-returns/view?id={return_id}"
    page = manager.get(target).text
    assert 'data-verb="close-short"' in page
    command = command_values(page, "/console/customer-returns/close-short")
    refused = manager.post(
        f"/console/customer-returns/close-short?id={return_id}",
        data={**command, "reason": ""},
        headers=htmx(manager),
    )
    assert refused.status_code == 422
    assert 'id="refusal"' in refused.text
    assert "reason" in refused.text
    closed = manager.post(
        f"/console/customer-returns/close-short?id={return_id}",
        data={**command, "reason": "the customer kept it"},
        headers=htmx(manager),
    )
    assert closed.status_code == 200, closed.text
    page = manager.get(target).text
    assert 'id="return-status">Closed<' in page
    assert 'id="disposition-1">Closed short<' in page
    assert 'data-verb="close-short"' not in page
    zh = signed_in(counter, "mgr1").get(target).text
    assert 'id="disposition-1">已短收关闭<' in zh
    assert actions_of(counter, return_id) == [
        "customer_return.create",
        "customer_return.close_short",
    ]


def test_pages_in_both_languages_no_money_for_a_clerk_and_scope(counter: TestClient) -> None:
    so_id = confirmed_order(counter)
    clerk = signed_in(counter, "clerk1")
    made = ship_from_the_form(clerk, so_id, qty=["1", ""], uom=["盒", ""])
    shipment_id = made.headers["HX-Redirect"].split("id=")[1]
    headings = {
        "/console/pick-lists": ("拣货单", "Pick lists"),
        "/console/shipments": ("发货单", "Shipments"),
        "/console/customer-returns": ("销售退货", "Customer returns"),
        f"/console/shipments/view?id={shipment_id}": ("发货", "Shipment"),
        f"/console/pick-lists/view?id={so_id}": ("拣货单", "Pick list"),
    }
    for lang, index in (("zh-CN", 0), ("en", 1)):
        reader = signed_in(counter, "clerk1", lang)
        for path, words in headings.items():
            answer = reader.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert words[index] in answer.text, (lang, path)
            for figure in ("¥", "data-financial", "sales-invoices"):
                assert figure not in answer.text, (lang, path, figure)
        money = signed_in(counter, "money1", lang)
        for path in ("/console/sales-invoices", "/console/receivables-ageing"):
            assert money.get(path).status_code == 200, path
    for path in ("/console/sales-invoices", "/console/receivables-ageing"):
        assert clerk.get(path).status_code == 403
    # granted the invoice actions without the financial group: refused, and not in the menu
    granted = signed_in(counter, "nomoney1")
    for path in ("/console/sales-invoices", "/console/receivables-ageing"):
        assert granted.get(path).status_code == 403, path
    assert (
        granted.post(
            "/console/sales-invoices/payment?id=SI000001", data={}, headers=htmx(granted)
        ).status_code
        == 403
    )
    assert 'href="/console/receivables-ageing"' not in granted.get("/console/shipments").text
    assert 'href="/console/sales-invoices"' not in granted.get("/console/shipments").text
    menu = signed_in(counter, "money1").get("/console/shipments").text
    assert 'href="/console/sales-invoices"' in menu
    assert 'href="/console/receivables-ageing"' in menu
    # another site's manager: the shipment is a 404, a filter on S01 a 403
    other = signed_in(counter, "s2mgr")
    assert other.get(f"/console/shipments/view?id={shipment_id}").status_code == 404
    assert other.get("/console/shipments?site=S01").status_code == 403
    assert shipment_id not in other.get("/console/shipments").text


def test_no_hostile_value_makes_a_page_after_the_order_fail(counter: TestClient) -> None:
    add_test_user(counter.app.state.engine, "boss1", ["admin"])  # type: ignore[attr-defined]
    boss = signed_in(counter, "boss1")
    pages = {
        "/console/pick-lists": ("site", "after"),
        "/console/pick-lists/view": ("id",),
        "/console/shipments": ("so", "site", "after", "sscc"),
        "/console/shipments/view": ("id",),
        "/console/shipments/note": ("id",),
        "/console/shipments/new": ("so",),
        "/console/customer-returns": ("so", "site"),
        "/console/customer-returns/new": ("so",),
        "/console/sales-invoices": ("status", "customer", "site", "after"),
        "/console/sales-invoices/new": ("shipment",),
        "/console/receivables-ageing": ("on", "customer"),
    }
    failures = [
        f"GET {path}?{name}={value[:20]}: {answer.status_code}"
        for path, names in pages.items()
        for name in names
        for value in HOSTILE
        if (answer := boss.get(f"{path}?{name}={value}")).status_code >= 500
    ]
    so_id = confirmed_order(counter)
    for raw in ("\x00", "x" * 10_000, "1e400", "NaN", "-0", "\t"):
        for path in (
            f"/console/shipments/new?so={so_id}",
            f"/console/customer-returns/new?so={so_id}",
        ):
            data = {
                "tracking_no": raw,
                "reason": raw,
                "line_so_line": ["1", raw],
                "line_qty": [raw, raw],
                "line_uom": [raw, ""],
                "line_lot": [raw, ""],
                "line_location": [raw, ""],
            }
            answer = boss.post(path, data=data, headers=htmx(boss))
            if answer.status_code >= 500:
                failures.append(f"POST {path} {raw[:10]!r}: {answer.status_code}")
    assert not failures, failures


def test_a_credit_note_from_the_invoice_page(counter: TestClient) -> None:
    """Finance credits part of an invoice from its page, a price correction then a return;
    the page shows the notes and what is still owed; a form with no reason or too much is
    refused with the reason; a double submit is one note; a seller sees no form and may
    not post one, a role without the financial group gets no page."""
    so_id = confirmed_order(counter)
    shipped = ok(
        ship(counter, so_id, [{"so_line": 1, "qty": "1", "uom": "盒"}, {"so_line": 2, "qty": "5"}]),
        201,
    )
    invoice_id = ok(
        counter.post(
            SALES_INVOICES,
            json={"shipment_id": shipped["shipment_id"], "invoice_date": "2026-01-10"},
        ),
        201,
    )["invoice_id"]
    target = f"/console/sales-invoices/view?id={invoice_id}"
    credit_url = f"/console/sales-invoices/credit?id={invoice_id}"
    money = signed_in(counter, "money1", "en")
    page = money.get(target).text
    assert "credit-form" in page
    assert "No credit note." in page
    lines = re.findall(r'name="line_invoice_line" value="(\d+)"', page)
    assert lines == ["1", "2", "3"]  # PILL from two lots, then TEA
    form = {**command_values(page, "/console/sales-invoices/credit"), "line_invoice_line": lines}
    price = {
        **form,
        "kind": "price",
        "reason": "",
        "credit_date": "2026-01-15",
        "line_qty": ["", "", ""],
        "line_amount": ["", "", "1"],
    }
    why = money.post(credit_url, data=price, headers=htmx(money))
    assert why.status_code == 422
    assert 'id="refusal"' in why.text
    too_much = money.post(
        credit_url,
        data={**price, "reason": "discount", "line_amount": ["", "", "6"]},
        headers=htmx(money),
    )
    assert too_much.status_code == 409
    assert "left to credit" in too_much.text
    sent = {**price, "reason": "agreed discount"}
    first = money.post(credit_url, data=sent, headers=htmx(money))
    assert first.headers["HX-Redirect"] == target
    again = money.post(credit_url, data=sent, headers=htmx(money))  # a double click
    assert again.headers["HX-Redirect"] == target
    after = money.get(target).text
    assert after.count('id="credit-CN') == 1
    assert "agreed discount" in after
    assert shown(after, "credited") == "1.00"
    assert shown(after, "outstanding") == "26.60"
    back = money.post(
        credit_url,
        data={
            **command_values(after, "/console/sales-invoices/credit"),
            "line_invoice_line": lines,
            "kind": "return",
            "reason": "2 片 broken",
            "credit_date": "2026-01-16",
            "line_qty": ["2", "", ""],
            "line_amount": ["", "", ""],
        },
        headers=htmx(money),
    )
    assert back.status_code == 200, back.text
    final = money.get(target).text
    assert final.count('id="credit-CN') == 2
    assert shown(final, "outstanding") == "22.08"  # 26.60 - (4 + 0.52)
    zh = signed_in(counter, "money1").get(target).text
    assert "红字发票" in zh
    assert "客户退货：按开票价格冲减数量" in zh
    # a seller reads the invoice and its notes, issues none
    seller = signed_in(counter, "seller1", "en")
    seen = seller.get(target).text
    assert "agreed discount" in seen
    assert "credit-form" not in seen
    assert seller.post(credit_url, data=sent, headers=htmx(seller)).status_code == 403
    nomoney = signed_in(counter, "nomoney1", "en")
    assert nomoney.get(target).status_code == 403
    assert actions_of(counter, invoice_id) == [
        "sales_invoice.create",
        "sales_invoice.credit",
        "sales_invoice.credit",
    ]
    failures = []
    for raw in ("\x00", "x" * 10_000, "1e400", "NaN", "-0", "\t", "9" * 30):
        data = {
            "kind": raw,
            "reason": raw,
            "credit_date": raw,
            "return_id": raw,
            "version": raw,
            "line_invoice_line": ["1", raw],
            "line_qty": [raw, raw],
            "line_amount": [raw, raw],
        }
        for kind in (raw, "return", "price"):
            answer = money.post(credit_url, data={**data, "kind": kind}, headers=htmx(money))
            if answer.status_code >= 500:
                failures.append(f"{kind[:10]!r} {raw[:10]!r}: {answer.status_code}")
    assert not failures, failures
