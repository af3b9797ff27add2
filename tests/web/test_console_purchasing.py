"""The console's purchasing pages over HTTP, on SQLite and PostgreSQL: each page's rule,
site scope (another site's document is a 404), no price for a role without the financial
group, commands through the service with the page's version and key, refusals shown."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from tests.central.conftest import SiteLedger, add_test_user
from tests.central.test_purchasing import (  # noqa: F401 (the fixture)
    approved_po,
    master,
    new_po,
    ok,
    push,
    receipt,
)
from tests.web.test_console_pages import browser, htmx

POS = "/console/purchase-orders"

CONSOLE_USERS = {
    "buyer1": (["purchaser"], None),
    "buyer2": (["purchaser"], None),
    "clerk1": (["warehouse_clerk"], None),
    "sales1": (["sales"], None),
    "s2mgr": (["store_manager"], ["S02"]),
}


@pytest.fixture
def shop(master: TestClient) -> TestClient:  # noqa: F811 (the fixture imported above)
    for name, (roles, sites) in CONSOLE_USERS.items():
        add_test_user(master.app.state.engine, name, roles, sites=sites)  # type: ignore[attr-defined]
    return master


def signed_in(shop: TestClient, name: str, lang: str = "zh-CN") -> TestClient:
    return browser(shop.app, name, lang=lang)  # type: ignore[arg-type]


def form_values(html: str, verb: str) -> dict[str, str]:
    """The hidden fields of a command button's form, as the page rendered them."""
    block = html.split(f"/purchase-orders/{verb}?", 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'name="(version|idempotency_key)" value="([^"]*)"', block))


def test_page_rules(shop: TestClient) -> None:
    po_id = new_po(shop)["po_id"]
    sales = signed_in(shop, "sales1")
    for path in (
        POS,
        f"{POS}/view?id={po_id}",
        "/console/requisitions",
        "/console/purchase-exceptions",
    ):
        assert sales.get(path).status_code == 403, path
    clerk = signed_in(shop, "clerk1")
    assert clerk.get(f"{POS}/view?id={po_id}").status_code == 200
    assert clerk.get(f"{POS}/new").status_code == 403
    for verb in ("approve", "send", "cancel", "close"):
        answer = clerk.post(f"{POS}/{verb}?id={po_id}", data={}, headers=htmx(clerk))
        assert answer.status_code == 403, verb
    assert (
        clerk.post(
            "/console/purchase-exceptions/resolve?id=1",
            data={"resolution": "x"},
            headers=htmx(clerk),
        ).status_code
        == 403
    )
    assert (
        clerk.post("/console/requisitions/convert", data={}, headers=htmx(clerk)).status_code == 403
    )


def test_another_sites_po_is_not_found_and_not_listed(shop: TestClient) -> None:
    ours = new_po(shop, site_id="S01")["po_id"]
    theirs = new_po(shop, site_id="S02")["po_id"]
    manager = signed_in(shop, "s2mgr")
    listed = manager.get(POS).text
    assert theirs in listed
    assert ours not in listed
    assert manager.get(f"{POS}/view?id={ours}").status_code == 404
    assert manager.get(f"{POS}/lines?id={ours}").status_code == 404
    assert manager.get(f"{POS}/print?id={ours}").status_code == 404
    assert manager.get(f"{POS}?site=S01").status_code == 403


def test_a_clerks_po_pages_have_no_price(shop: TestClient) -> None:
    po_id = approved_po(shop)["po_id"]  # prices 150 and 80, tax 0.13
    for lang in ("zh-CN", "en"):
        clerk = signed_in(shop, "clerk1", lang)
        for path in (
            POS,
            f"{POS}/view?id={po_id}",
            f"{POS}/lines?id={po_id}",
            f"{POS}/print?id={po_id}",
        ):
            html = clerk.get(path).text
            for number in ("150", "0.13", "840"):  # on their own, not inside a random key
                assert not re.search(rf"(?<![\w-]){re.escape(number)}(?![\w-])", html), (
                    path,
                    number,
                )
            for figure in ("¥", "data-financial", "单价", "Unit price"):
                assert figure not in html, (path, figure)
    buyer = signed_in(shop, "buyer1", "en").get(f"{POS}/view?id={po_id}").text
    assert "¥150" in buyer
    assert "data-financial" in buyer


def test_a_po_made_by_one_purchaser_is_approved_by_another(shop: TestClient) -> None:
    buyer1 = signed_in(shop, "buyer1")
    form = buyer1.get(f"{POS}/new").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form)
    assert key is not None
    data = {
        "idempotency_key": key[1],
        "version": "",
        "supplier": "SUP-A",
        "site_id": "S01",
        "note": "weekly",
        "line_item_code": ["PILL", "", ""],
        "line_qty": ["2", "", ""],
        "line_uom": ["箱", "", ""],
        "line_unit_price": ["150", "", ""],
        "line_tax_rate": ["0.13", "", ""],
        "line_expected_date": ["2026-12-20", "", ""],
        "line_over_tolerance": ["5", "", ""],
        "line_under_tolerance": ["", "", ""],
    }
    made = buyer1.post(f"{POS}/new", data=data, headers=htmx(buyer1))
    target = made.headers["HX-Redirect"]
    again = buyer1.post(f"{POS}/new", data=data, headers=htmx(buyer1))
    assert again.headers["HX-Redirect"] == target  # one PO per opened form
    po_id = target.split("id=")[1]
    page = buyer1.get(target).text
    assert "2026-12-20" in page  # the expected date is kept (and audited: an ISO date)
    assert "240" in page
    assert "¥150" in page
    assert 'data-verb="approve"' in page
    # the creator may not approve: the page says why, with 403
    refused = buyer1.post(
        f"{POS}/approve?id={po_id}", data=form_values(page, "approve"), headers=htmx(buyer1)
    )
    assert refused.status_code == 403
    assert 'id="refusal"' in refused.text
    assert "segregation of duties" in refused.text
    buyer2 = signed_in(shop, "buyer2", "en")
    page2 = buyer2.get(target).text
    done = buyer2.post(
        f"{POS}/approve?id={po_id}", data=form_values(page2, "approve"), headers=htmx(buyer2)
    )
    assert done.status_code == 200
    assert done.headers["HX-Redirect"] == target
    after = buyer2.get(target).text
    assert 'data-verb="send"' in after
    assert 'data-verb="approve"' not in after
    # the stale page (version 1) cannot cancel what was approved meanwhile: 412
    stale = buyer2.post(
        f"{POS}/cancel?id={po_id}", data=form_values(page2, "cancel"), headers=htmx(buyer2)
    )
    assert stale.status_code == 412
    assert "changed since you read it" in stale.text
    with shop.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        logged = connection.execute(
            select(audit_log.c.action, audit_log.c.actor_id)
            .where(audit_log.c.resource_id == po_id)
            .order_by(audit_log.c.seq)
        ).all()
    assert [row.action for row in logged] == ["purchase_order.create", "purchase_order.approve"]


def test_a_bad_po_form_names_its_fields_and_saves_nothing(shop: TestClient) -> None:
    buyer = signed_in(shop, "buyer1", "en")
    answer = buyer.post(
        f"{POS}/new",
        data={
            "supplier": "",
            "site_id": "S01",
            "line_item_code": ["PILL", "TEA"],
            "line_qty": ["x", "1"],
        },
        headers=htmx(buyer),
    )
    assert answer.status_code == 422
    assert 'id="error-supplier"' in answer.text
    assert 'id="error-line-0-qty"' in answer.text
    assert "PO0" not in buyer.get(POS).text


def test_received_quantities_reach_the_polled_lines(shop: TestClient) -> None:
    po_id = approved_po(shop)["po_id"]
    clerk = signed_in(shop, "clerk1")
    lines = clerk.get(f"{POS}/lines?id={po_id}").text
    assert 'hx-trigger="every 5s"' in lines
    ledger = SiteLedger("S01")
    push(shop, ledger, receipt(ledger, po_id, 1, "100"))
    lines = clerk.get(f"{POS}/lines?id={po_id}").text
    assert re.search(r'class="num received">100 片', lines)
    assert "140 片" in lines  # open


def test_requisitions_are_approved_and_converted_in_the_console(shop: TestClient) -> None:
    body = {
        "site_id": "S01",
        "lines": [{"item_code": "PILL", "qty": "3", "uom": "盒", "supplier": "SUP-A"}],
    }
    made = shop.post("/api/v1/requisitions", json=body, headers={"Idempotency-Key": "req-web-1"})
    req_id = ok(made, 201)["req_id"]
    ok(shop.post(f"/api/v1/requisitions/{req_id}/submit"))
    buyer = signed_in(shop, "buyer1")
    page = buyer.get(f"/console/requisitions/view?id={req_id}").text
    block = page.split("/requisitions/approve?", 1)[1].split("</form>", 1)[0]
    values = dict(re.findall(r'name="(version|idempotency_key)" value="([^"]*)"', block))
    assert (
        buyer.post(
            f"/console/requisitions/approve?id={req_id}", data=values, headers=htmx(buyer)
        ).status_code
        == 200
    )
    listed = buyer.get("/console/requisitions?status=approved").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', listed)
    assert key is not None
    assert f'value="{req_id}"' in listed
    converted = buyer.post(
        "/console/requisitions/convert",
        data={"idempotency_key": key[1], "req": req_id},
        headers=htmx(buyer),
    )
    po_page = buyer.get(converted.headers["HX-Redirect"]).text
    assert "30 片" in po_page
    assert "ordered" in ok(shop.get(f"/api/v1/requisitions/{req_id}"))["status"]


def test_an_exception_is_resolved_from_its_list(shop: TestClient) -> None:
    po_id = approved_po(shop)["po_id"]
    ledger = SiteLedger("S01")
    push(shop, ledger, receipt(ledger, po_id, 1, "300"))
    buyer = signed_in(shop, "buyer1", "en")
    listed = buyer.get("/console/purchase-exceptions").text
    assert "Over-receipt" in listed
    number = re.search(r"purchase-exceptions/resolve\?id=(\d+)", listed)
    assert number is not None
    answer = buyer.post(
        f"/console/purchase-exceptions/resolve?id={number[1]}",
        data={
            "resolution": "kept, supplier credited",
            "idempotency_key": "0d9a2b84-6a6b-4a55-9d52-2f0b1a000001",
        },
        headers=htmx(buyer),
    )
    assert answer.status_code == 200
    assert (
        "kept, supplier credited" in buyer.get("/console/purchase-exceptions?status=resolved").text
    )


HOSTILE = ["%00", "%ED%A0%80", "%FF%FE", "%09%0A%1D", "x" * 10_000, "%25_%5C", "%C2%A0"]


def test_no_hostile_value_makes_a_purchasing_page_fail(shop: TestClient) -> None:
    po_id = new_po(shop)["po_id"]
    buyer = signed_in(shop, "buyer1")
    failures = []
    pages = {
        POS: ("status", "supplier", "site", "from", "to", "after"),
        f"{POS}/view": ("id",),
        f"{POS}/lines": ("id",),
        f"{POS}/print": ("id",),
        f"{POS}/edit": ("id",),
        "/console/requisitions": ("status", "site", "after"),
        "/console/requisitions/view": ("id",),
        "/console/purchase-exceptions": ("status",),
    }
    for path, names in pages.items():
        for name in names:
            for value in HOSTILE:
                answer = buyer.get(f"{path}?{name}={value}")
                if answer.status_code >= 500:
                    failures.append(f"GET {path}?{name}={value[:20]}: {answer.status_code}")
    for value in HOSTILE:
        for verb in ("approve", "cancel"):
            answer = buyer.post(f"{POS}/{verb}?id={value}", headers=htmx(buyer))
            if answer.status_code >= 500:
                failures.append(f"POST {verb} {value[:20]}: {answer.status_code}")
    base = {"supplier": "SUP-A", "site_id": "S01", "line_item_code": "PILL", "line_qty": "1"}
    fields = ("supplier", "site_id", "note", "line_item_code", "line_qty", "line_uom")
    fields += ("line_unit_price", "line_tax_rate", "line_expected_date", "line_over_tolerance")
    fields += ("version", "idempotency_key")
    for field in fields:
        for raw in ("\x00", "\udcff", "\t\n\x1d", "x" * 10_000, "1e400", "NaN", "-0"):
            for path in (f"{POS}/new", f"{POS}/edit?id={po_id}"):
                answer = buyer.post(
                    path,
                    content=urlencode(
                        {**base, field: raw}, encoding="utf-8", errors="surrogatepass"
                    ),
                    headers={**htmx(buyer), "Content-Type": "application/x-www-form-urlencoded"},
                )
                if answer.status_code >= 500:
                    failures.append(f"POST {path} {field}={raw[:10]!r}: {answer.status_code}")
    assert not failures, failures
