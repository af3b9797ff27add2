"""The console's sales pages over HTTP, on SQLite and PostgreSQL: a sales order drafted
from the form, confirmed with the page's version and key (lots reserved first-expiry-first,
the rest backordered), closed; price lists edited; available to promise looked up; each
page's rule, site scope and no price for a role without the financial group."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from central_api.services import ecommerce
from central_api.services.audit import system_context
from tests.central.conftest import add_test_user, site  # noqa: F401 (a fixture)
from tests.central.test_purchasing import ok
from tests.central.test_sales import new_so
from tests.central.test_sales import shop as sales_shop  # noqa: F401 (a fixture)
from tests.web.test_console_pages import browser, htmx
from tests.web.test_console_purchasing import HOSTILE
from tests.web.test_console_receiving import command_values, hidden

SOS = "/console/sales-orders"

USERS = {
    "seller1": (["sales"], None),
    "clerk1": (["warehouse_clerk"], None),
    "buyer1": (["purchaser"], None),
    "s2mgr": (["store_manager"], ["S02"]),
}


@pytest.fixture
def counter(sales_shop: TestClient) -> TestClient:  # noqa: F811 (the fixture imported above)
    for name, (roles, sites) in USERS.items():
        add_test_user(sales_shop.app.state.engine, name, roles, sites=sites)  # type: ignore[attr-defined]
    return sales_shop


def signed_in(counter: TestClient, name: str, lang: str = "zh-CN") -> TestClient:
    return browser(counter.app, name, lang=lang)  # type: ignore[arg-type]


def test_an_order_drafted_confirmed_with_reserved_lots_and_backorder(counter: TestClient) -> None:
    seller = signed_in(counter, "seller1", "en")
    form = seller.get(f"{SOS}/new").text
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "version": "",
        "customer": "CUS-1",
        "site_id": "S01",
        "note": "urgent",
        "min_remaining_days": "",
        "line_item_code": ["PILL", "", ""],
        "line_qty": ["3", "", ""],
        "line_uom": ["盒", "", ""],
        "line_unit_price": ["20", "", ""],
        "line_tax_rate": ["0.13", "", ""],
        "line_requested_date": ["", "", ""],
    }
    made = seller.post(f"{SOS}/new", data=data, headers=htmx(seller))
    target = made.headers["HX-Redirect"]
    again = seller.post(f"{SOS}/new", data=data, headers=htmx(seller))
    assert again.headers["HX-Redirect"] == target  # one order per opened form
    so_id = target.split("id=")[1]
    page = seller.get(target).text
    assert "¥20.00" in page
    assert "13%" in page
    assert 'data-verb="confirm"' in page
    confirmed = seller.post(
        f"{SOS}/confirm?id={so_id}",
        data=command_values(page, f"{SOS}/confirm"),
        headers=htmx(seller),
    )
    assert confirmed.status_code == 200, confirmed.text
    after = seller.get(target).text
    assert 'id="so-status">Confirmed<' in after
    # 30 片 wanted: L3 (5, earliest acceptable) and L4 (20) reserved, 5 backordered
    assert re.search(r"L3</span> · \S+ · 5 片", after)
    assert re.search(r"L4</span> · \S+ · 20 片", after)
    assert 'class="num bad">5 片' in after
    assert 'data-verb="close"' in after
    # the page drawn before the confirm is stale: its cancel is refused with 412
    stale = seller.post(
        f"{SOS}/cancel?id={so_id}",
        data={**command_values(page, f"{SOS}/cancel"), "reason": "x"},
        headers=htmx(seller),
    )
    assert stale.status_code == 412
    closed = seller.post(
        f"{SOS}/close?id={so_id}",
        data={**command_values(after, f"{SOS}/close"), "reason": "customer took what we had"},
        headers=htmx(seller),
    )
    assert closed.status_code == 200, closed.text
    assert "Closed" in seller.get(target).text
    with counter.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = connection.execute(
            select(audit_log.c.action)
            .where(audit_log.c.resource_id == so_id)
            .order_by(audit_log.c.seq)
        ).scalars()
        assert list(actions) == [
            "sales_order.create",
            "sales_order.confirm",
            "sales_order.close",
        ]
    listed = seller.get(f"{SOS}?status=closed&customer=CUS-1").text
    assert so_id in listed
    assert so_id not in seller.get(f"{SOS}?status=draft").text


def test_a_bad_order_form_names_its_fields(counter: TestClient) -> None:
    seller = signed_in(counter, "seller1")
    answer = seller.post(
        f"{SOS}/new",
        data={
            "customer": "",
            "site_id": "S01",
            "min_remaining_days": "-1",
            "line_item_code": ["PILL", "TEA"],
            "line_qty": ["x", "1"],
        },
        headers=htmx(seller),
    )
    assert answer.status_code == 422
    for key in ("customer", "min_remaining_days", "line-0-qty"):
        assert f'id="error-{key}"' in answer.text, key
    assert "SO0" not in seller.get(SOS).text


def test_a_clerk_reads_orders_without_any_price(counter: TestClient) -> None:
    so_id = new_so(counter)["so_id"]
    for lang in ("zh-CN", "en"):
        clerk = signed_in(counter, "clerk1", lang)
        for path in (SOS, f"{SOS}/view?id={so_id}"):
            html = clerk.get(path).text
            for figure in ("20.00", "13%", "¥", "data-financial", "单价", "Unit price"):
                assert figure not in html, (path, figure)
        assert clerk.get(f"{SOS}/new").status_code == 403
        assert clerk.get("/console/price-lists").status_code == 403
        for verb in ("confirm", "cancel", "close"):
            assert (
                clerk.post(f"{SOS}/{verb}?id={so_id}", data={}, headers=htmx(clerk)).status_code
                == 403
            )


def test_scope_rules_and_menu(counter: TestClient) -> None:
    so_id = new_so(counter)["so_id"]
    manager = signed_in(counter, "s2mgr")
    assert manager.get(f"{SOS}/view?id={so_id}").status_code == 404
    assert so_id not in manager.get(SOS).text
    assert manager.get(f"{SOS}?site=S01").status_code == 403
    assert manager.get("/console/availability?site=S01&item=PILL").status_code == 403
    buyer = signed_in(counter, "buyer1")
    assert buyer.get(SOS).status_code == 403
    seller_menu = signed_in(counter, "seller1").get(SOS).text
    for path in ("/console/sales-orders", "/console/price-lists", "/console/availability"):
        assert f'href="{path}"' in seller_menu, path
    assert 'href="/console/sales-orders"' not in buyer.get("/console/purchase-orders").text


def test_a_price_list_made_and_edited_then_used_by_an_order(counter: TestClient) -> None:
    seller = signed_in(counter, "seller1", "en")
    form = seller.get("/console/price-lists/edit").text
    assert 'name="code"' in form
    data = {
        "version": "",
        "code": "RETAIL",
        "name": "零售价",
        "line_item_code": ["PILL", "TEA", ""],
        "line_uom": ["盒", "", ""],
        "line_price": ["18.5", "x", ""],
        "line_valid_from": ["", "", ""],
        "line_valid_to": ["", "", ""],
    }
    bad = seller.post("/console/price-lists/edit", data=data, headers=htmx(seller))
    assert bad.status_code == 422
    assert 'id="error-line-1-price"' in bad.text
    data["line_price"] = ["18.5", "12", ""]
    made = seller.post("/console/price-lists/edit", data=data, headers=htmx(seller))
    target = made.headers["HX-Redirect"]
    page = seller.get(target).text
    assert "¥18.50" in page
    assert "¥12.00" in page
    # a second "new" list with the code is refused next to the code
    taken = seller.post("/console/price-lists/edit", data=data, headers=htmx(seller))
    assert 'id="error-code"' in taken.text
    # the edit form drops TEA's line (emptied), keeps PILL's with a new price
    edit = seller.get("/console/price-lists/edit?code=RETAIL").text
    version = hidden(edit, "version")
    saved = seller.post(
        "/console/price-lists/edit?code=RETAIL",
        data={
            "version": version,
            "name": "零售价",
            "line_item_code": ["PILL", ""],
            "line_uom": ["盒", ""],
            "line_price": ["19", ""],
        },
        headers=htmx(seller),
    )
    assert saved.headers["HX-Redirect"] == target
    after = seller.get(target).text
    assert "¥19.00" in after
    assert "TEA" not in after
    # the opened (now stale) form is refused, nothing changed
    stale = seller.post(
        "/console/price-lists/edit?code=RETAIL",
        data={"version": version, "name": "x", "line_item_code": "PILL", "line_price": "1"},
        headers=htmx(seller),
    )
    assert stale.status_code == 422
    assert 'id="error-form"' in stale.text
    assert "¥19.00" in seller.get(target).text
    # a clerk may neither read nor edit it
    clerk = signed_in(counter, "clerk1")
    assert clerk.get(target).status_code == 403
    assert (
        clerk.post("/console/price-lists/edit?code=RETAIL", headers=htmx(clerk)).status_code == 403
    )


def test_available_to_promise_lot_by_lot(counter: TestClient) -> None:
    ok(
        counter.post(f"/api/v1/sales-orders/{new_so(counter)['so_id']}/confirm"),
    )  # 30 片 reserved: L3 5, L4 20, L1..L2 never
    seller = signed_in(counter, "seller1", "en")
    page = seller.get("/console/availability?site=S01&item=PILL").text
    assert 'id="atp-available">' in page
    found = re.search(r'id="atp-available">([^<]*)<', page)
    assert found is not None
    on_hand = re.search(r"On hand, sellable</dt><dd class=\"num\">([^<]*)<", page)
    assert on_hand is not None
    assert "L4" in page
    assert "L5" not in page or "50" in page  # L5 is in quarantine: not sellable
    unknown = seller.get("/console/availability?site=S01&item=NOPE").text
    assert "No item has this code." in unknown
    assert seller.get("/console/availability").status_code == 200


def test_no_hostile_value_makes_a_sales_page_fail(counter: TestClient) -> None:
    so_id = new_so(counter)["so_id"]
    seller = signed_in(counter, "seller1")
    failures = []
    pages = {
        SOS: ("status", "customer", "site", "after"),
        f"{SOS}/view": ("id",),
        f"{SOS}/edit": ("id",),
        "/console/price-lists": ("after",),
        "/console/price-lists/view": ("code",),
        "/console/price-lists/edit": ("code",),
        "/console/availability": ("site", "item"),
    }
    for path, names in pages.items():
        for name in names:
            for value in HOSTILE:
                answer = seller.get(f"{path}?{name}={value}")
                if answer.status_code >= 500:
                    failures.append(f"GET {path}?{name}={value[:20]}: {answer.status_code}")
    for raw in ("\x00", "x" * 10_000, "1e400", "NaN", "-0", "\t"):
        for path in (f"{SOS}/new", f"{SOS}/edit?id={so_id}", "/console/price-lists/edit"):
            data = {
                "customer": raw,
                "site_id": raw,
                "code": raw,
                "name": raw,
                "min_remaining_days": raw,
                "line_item_code": raw,
                "line_qty": raw,
                "line_price": raw,
                "line_unit_price": raw,
                "line_valid_from": raw,
                "version": raw,
            }
            answer = seller.post(path, data=data, headers=htmx(seller))
            if answer.status_code >= 500:
                failures.append(f"POST {path} {raw[:10]!r}: {answer.status_code}")
    assert not failures, failures


def test_orders_from_an_online_shop_show_their_channel_and_filter_by_it(
    counter: TestClient,
) -> None:
    engine = counter.app.state.engine  # type: ignore[attr-defined]
    line = [ecommerce.ShopLine(item_code="TEA", qty=Decimal(1), unit_price=Decimal(88))]
    made: dict[str, str] = {}
    with engine.connect() as connection:
        for channel, external_id in (("tmall", "TM-0001"), ("jd", "JD-<b>7</b>")):
            order = ecommerce.ShopOrder(
                channel=channel,
                external_id=external_id,
                customer="CUS-1",
                site_id="S01",
                lines=line,
            )
            imported = ecommerce.import_order(
                connection, order, actor="bot", visible=None, audit=system_context("shop")
            )
            made[channel] = imported.order.so_id
    at_central = new_so(counter)["so_id"]
    seller = signed_in(counter, "seller1")
    listed = seller.get(SOS).text
    assert all(so_id in listed for so_id in (*made.values(), at_central))
    assert "网店" in listed
    assert "TM-0001" in listed
    assert "JD-&lt;b&gt;7&lt;/b&gt;" in listed, "the shop's id is escaped"
    tmall_only = seller.get(SOS, params={"channel": "tmall"}).text
    assert made["tmall"] in tmall_only
    assert made["jd"] not in tmall_only
    assert at_central not in tmall_only
    assert 'value="tmall"' in tmall_only, "the filter keeps what was asked"
    page = seller.get(f"{SOS}/view", params={"id": made["tmall"]}).text
    channel = page.split('id="so-channel"', 1)[1].split("</dd>", 1)[0]
    assert "tmall" in channel
    assert "TM-0001" in channel
    assert 'id="so-channel"' not in seller.get(f"{SOS}/view", params={"id": at_central}).text
    # the API lists and filters the same way
    api = ok(counter.get("/api/v1/sales-orders", params={"channel": "jd"}))["sales_orders"]
    assert [(so["so_id"], so["channel"], so["external_id"]) for so in api] == [
        (made["jd"], "jd", "JD-<b>7</b>")
    ]
    ordinary = ok(counter.get(f"/api/v1/sales-orders/{at_central}"))
    assert (ordinary["channel"], ordinary["external_id"]) == (None, None)
