"""The console's inventory pages over HTTP, on SQLite and PostgreSQL: write-offs entered by a
clerk who sees no money and approved by someone else above the threshold; a stock count
from the phone entry page (blind) through its second count to an approved adjustment; a
transfer through draft, approval, shipping and a short arrival shown with both quantities
and resolved as lost; bad input refused on the page with its reason, in zh-CN and English.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from central_api.services.documents import now_utc
from jxc.paths import ITEMS, STOCK_COUNTS, TRANSFERS
from tests.central.conftest import add_test_user
from tests.central.test_inventory import found_in, pill, stock
from tests.central.test_inventory import store as inventory_store  # noqa: F401 (a fixture)
from tests.central.test_purchasing import master, ok  # noqa: F401 (a fixture)
from tests.web.test_console_pages import browser, htmx
from tests.web.test_console_receiving import command_values, hidden

USERS = {
    "clerk1": (["warehouse_clerk"], ["S01"]),
    "clerk2": (["warehouse_clerk"], ["S02"]),
    "mgr": (["store_manager"], None),
    "mgr2": (["store_manager"], None),
    "money": (["finance"], None),
}


@pytest.fixture
def desk(inventory_store: TestClient) -> TestClient:  # noqa: F811 (the fixture imported above)
    """test_inventory's store (S01 and S02 with A1 and B1, PILL at 1.5 a 片, TEA without a
    cost, reason codes), and the people of this module."""
    for name, (roles, sites) in USERS.items():
        add_test_user(inventory_store.app.state.engine, name, roles, sites=sites)  # type: ignore[attr-defined]
    return inventory_store


def signed_in(desk: TestClient, name: str, lang: str = "zh-CN") -> TestClient:
    return browser(desk.app, name, lang=lang)  # type: ignore[arg-type]


def post_form(client: TestClient, path: str, form_path: str, **data: Any) -> Any:
    """Open the form at ``form_path``, then post ``data`` with its key, as htmx does."""
    page = client.get(form_path).text
    return client.post(
        path,
        data={"idempotency_key": hidden(page, "idempotency_key"), **data},
        headers=htmx(client),
    )


def blind(html: str) -> str:
    """The page without its keys (random text that could hold any digits)."""
    return re.sub(r'value="[0-9a-f-]{36}[^"]*"', "", html)


def audited(desk: TestClient, resource_id: str) -> list[str]:
    with desk.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return sorted(
            connection.execute(
                select(audit_log.c.action).where(audit_log.c.resource_id == resource_id)
            ).scalars()
        )


def new_transfer(manager: TestClient) -> tuple[str, str]:
    """A draft S01 → S02 of one box of PILL made on the form: its page and its id."""
    made = post_form(
        manager,
        "/console/transfers/new",
        "/console/transfers/new",
        from_site="S01",
        to_site="S02",
        line_item_code="PILL",
        line_qty="1",
        line_uom="盒",
    )
    view = made.headers["HX-Redirect"]
    return view, view.split("id=")[1]


def test_write_offs_a_clerk_sees_no_money_and_approval_is_someone_elses(desk: TestClient) -> None:
    found_in(desk, pill("30", lot="L1"), {"item_code": "TEA", "qty": "4", "location": "A1"})
    clerk = signed_in(desk, "clerk1")
    form = clerk.get("/console/write-offs/new").text
    assert 'value="DMG"' in form
    assert 'value="FOUND"' not in form  # only the reasons meant for a write-off
    # 5 片 at 1.5: under the threshold, booked at once
    made = post_form(
        clerk,
        "/console/write-offs/new",
        "/console/write-offs/new",
        site_id="S01",
        reason_code="DMG",
        line_item_code=["PILL", ""],
        line_qty=["5", ""],
        line_location=["A1", ""],
        line_lot=["L1", ""],
    )
    target = made.headers["HX-Redirect"]
    page = clerk.get(target).text
    assert "已记账" in page
    for figure in ("¥", "7.5", "成本"):
        assert figure not in page
    assert "¥7.50" in signed_in(desk, "money").get(target).text
    assert stock(desk)[("A1", "PILL", "L1")] == "25"
    # TEA has no cost, so its value is unknown: it waits for someone else's approval
    waiting = post_form(
        clerk,
        "/console/write-offs/new",
        "/console/write-offs/new",
        site_id="S01",
        reason_code="EXP",
        line_item_code="TEA",
        line_qty="4",
        line_location="A1",
    )
    pending = waiting.headers["HX-Redirect"]
    doc_id = pending.split("id=")[1]
    mine = clerk.get(pending).text
    assert "待审批" in mine
    assert 'data-verb="approve"' not in mine  # a clerk does not approve
    assert (
        clerk.post(f"/console/write-offs/approve?id={doc_id}", headers=htmx(clerk)).status_code
        == 403
    )
    manager = signed_in(desk, "mgr", "en")
    shown = manager.get(pending).text
    assert "Waiting for approval" in shown
    approved = manager.post(
        f"/console/write-offs/approve?id={doc_id}",
        data=command_values(shown, "/console/write-offs/approve"),
        headers=htmx(manager),
    )
    assert approved.headers["HX-Redirect"] == pending
    assert re.search(r'id="doc-status">Posted<', manager.get(pending).text)
    assert ("A1", "TEA", None) not in stock(desk)
    assert audited(desk, doc_id) == ["write_off.approve", "write_off.create"]
    listed = manager.get("/console/write-offs?status=posted&site=S01").text
    assert doc_id in listed
    assert "¥" not in clerk.get("/console/write-offs").text


def test_a_count_from_the_phone_page_to_an_approved_adjustment(desk: TestClient) -> None:
    ok(
        desk.post(
            ITEMS,
            json={
                "item_code": "GAUZE",
                "name": "纱布",
                "uom": "包",
                "barcodes": [{"barcode": "6901234567892"}],
            },
        ),
        201,
    )
    found_in(
        desk,
        pill("137"),
        pill("6", "B1"),
        {"item_code": "GAUZE", "qty": "3", "location": "A1", "lot": "L9"},
    )
    manager = signed_in(desk, "mgr")
    opened = post_form(
        manager, "/console/stock-counts/new", "/console/stock-counts/new", site_id="S01"
    )
    review = opened.headers["HX-Redirect"]
    count_id = review.split("id=")[1]
    assert count_id.startswith("SC")
    clerk = signed_in(desk, "clerk1")
    assert count_id in clerk.get("/console/count").text
    assert clerk.get(review).status_code == 403  # the reviewer's page shows what is expected
    entry = f"/console/count/entry?id={count_id}"
    page = clerk.get(entry).text
    assert "autofocus" in page.split('id="location"')[1].split(">")[0]
    assert "137" not in blind(page)  # blind: the expected quantity is not on the page

    def count(location: str, item: str, qty: str) -> Any:
        return post_form(clerk, entry, entry, location=location, item=item, lot="", qty=qty)

    bad = count("A1", "PILL", "many")
    assert bad.status_code == 422
    assert 'id="error-qty"' in bad.text
    unknown = count("A1", "NOPE", "1")
    assert unknown.status_code == 422
    assert "没有商品使用此条码或编码：NOPE" in unknown.text
    saved = count("A1", "PILL", "130")
    after = clerk.get(saved.headers["HX-Redirect"]).text
    assert 'id="count-saved"' in after
    assert 'value="A1"' in after  # the location is kept for the next item
    assert "autofocus" in after.split('id="item"')[1].split(">")[0]
    # submitting with B1 not counted is refused, naming it
    early = clerk.post(
        f"/console/count/submit?id={count_id}",
        data=command_values(after, "/console/count/submit"),
        headers=htmx(clerk),
    )
    assert early.status_code == 409
    assert "B1 PILL" in early.text
    count("B1", "PILL", "6")
    # a GS1-128 box label: the item by its GTIN, the lot from AI 10, one scan
    gs1 = clerk.get(count("A1", "(01)06901234567892(10)L9", "3").headers["HX-Redirect"]).text
    assert re.search(r'id="count-saved">.*GAUZE · L9', gs1, re.DOTALL)
    page = clerk.get(entry).text
    done = clerk.post(
        f"/console/count/submit?id={count_id}",
        data=command_values(page, "/console/count/submit"),
        headers=htmx(clerk),
    )
    assert done.status_code == 200, done.text
    # A1 differs: back for a second count, still blind
    again = clerk.get(entry).text
    assert "需复盘" in again
    assert "137" not in blind(again)
    count("A1", "PILL", "131")
    page = clerk.get(entry).text
    clerk.post(
        f"/console/count/submit?id={count_id}",
        data=command_values(page, "/console/count/submit"),
        headers=htmx(clerk),
    )
    reviewed = signed_in(desk, "mgr", "en").get(review).text
    assert re.search(r'id="count-status">Under review<', reviewed)
    assert re.search(r'id="variance-2"[^>]*>-6<', reviewed)
    assert "first count 130" in reviewed
    approve = manager.post(
        f"/console/stock-counts/approve?id={count_id}",
        data=command_values(manager.get(review).text, "/console/stock-counts/approve"),
        headers=htmx(manager),
    )
    assert approve.headers["HX-Redirect"] == review
    assert ok(desk.get(f"{STOCK_COUNTS}/{count_id}"))["status"] == "posted"
    assert stock(desk)[("A1", "PILL", None)] == "131"
    # 2 lines of 3 were right (PILL at B1, GAUZE); by value at the snapshot's cost (PILL
    # 1.5 a 片, GAUZE received without a cost): 9 of 131 × 1.5 + 9 = 205.5, 4.38%
    sessions = manager.get("/console/stock-counts").text
    assert "66.67%" in sessions
    assert "金额加权准确率" in sessions
    assert "4.38%" in sessions
    assert "stock_count.approve" in audited(desk, count_id)


def test_a_transfer_through_its_states_with_a_short_arrival(desk: TestClient) -> None:
    later = (now_utc() + timedelta(days=200)).date().isoformat()
    found_in(desk, pill("30", lot="L1", expiry=later))
    manager = signed_in(desk, "mgr")
    view, transfer_id = new_transfer(manager)
    page = manager.get(view).text
    assert "草稿" in page
    # its maker may not approve it: the page says why, and nothing changes
    own = manager.post(
        f"/console/transfers/approve?id={transfer_id}",
        data=command_values(page, "/console/transfers/approve"),
        headers=htmx(manager),
    )
    assert own.status_code == 403
    assert 'id="refusal"' in own.text
    other = signed_in(desk, "mgr2")
    other.post(
        f"/console/transfers/approve?id={transfer_id}",
        data=command_values(other.get(view).text, "/console/transfers/approve"),
        headers=htmx(other),
    )
    # the receiving site's clerk gets no ship form; the sending site's does
    assert 'data-verb="ship"' not in signed_in(desk, "clerk2").get(view).text
    clerk1 = signed_in(desk, "clerk1")
    ship_page = clerk1.get(view).text
    assert 'data-verb="ship"' in ship_page
    rows = {
        "version": command_values(ship_page, "/console/transfers/ship")["version"],
        "idempotency_key": command_values(ship_page, "/console/transfers/ship")["idempotency_key"],
        "line_line_no": ["1", "1"],
        "line_label": ["", ""],
        "line_location": ["A1", ""],
        "line_lot": ["L1", ""],
    }
    bad = clerk1.post(
        f"/console/transfers/ship?id={transfer_id}",
        data={**rows, "line_qty": ["ten", ""]},
        headers=htmx(clerk1),
    )
    assert bad.status_code == 422
    assert 'id="error-line-0-qty"' in bad.text
    shipped = clerk1.post(
        f"/console/transfers/ship?id={transfer_id}",
        data={**rows, "line_qty": ["10", ""]},
        headers=htmx(clerk1),
    )
    assert shipped.headers["HX-Redirect"] == view
    listed = clerk1.get("/console/transfers?status=shipped").text
    assert re.search(rf'data-in-transit="{transfer_id}">PILL 10 片<', listed)
    # 8 arrive: a short difference with both quantities, 2 still in transit
    clerk2 = signed_in(desk, "clerk2", "en")
    receive_page = clerk2.get(view).text
    assert 'value="10"' in receive_page  # the lot in transit, filled in
    clerk2.post(
        f"/console/transfers/receive?id={transfer_id}",
        data={
            **command_values(receive_page, "/console/transfers/receive"),
            "line_line_no": ["1", "1"],
            "line_label": ["", ""],
            "line_location": ["B1", ""],
            "line_lot": ["L1", ""],
            "line_qty": ["8", ""],
        },
        headers=htmx(clerk2),
    )
    arrived = clerk2.get(view).text
    assert re.search(r'id="transfer-status">Received<', arrived)
    assert "Short" in arrived
    assert re.search(r'-shipped">10<', arrived)
    assert re.search(r'-received">8<', arrived)
    assert re.search(r'id="in-transit-1"[^>]*>2 片<', arrived)
    exception_id = re.findall(r"/console/transfers/resolve\?id=(\d+)", manager.get(view).text)[0]
    no_reason = manager.post(
        f"/console/transfers/resolve?id={exception_id}", data={}, headers=htmx(manager)
    )
    assert no_reason.status_code == 422
    manager.post(
        f"/console/transfers/resolve?id={exception_id}",
        data={"resolution": "broken in the van", "lost": "on"},
        headers=htmx(manager),
    )
    closed = manager.get(view).text
    assert re.search(r'id="in-transit-1"[^>]*>0 片<', closed)
    assert "broken in the van" in closed
    assert ok(desk.get(f"{TRANSFERS}/{transfer_id}"))["lines"][0]["in_transit"] == "0"
    assert stock(desk, "S02") == {("B1", "PILL", "L1"): "8"}
    assert audited(desk, transfer_id) == [
        "transfer.approve",
        "transfer.create",
        "transfer.receive",
        "transfer.ship",
    ]


def test_a_draft_transfer_is_edited_on_its_page_and_not_once_approved(desk: TestClient) -> None:
    """The draft's page offers *Edit* to a user of the sending site who may make
    transfers; the form comes filled in with the version it was read at. A bad row is
    named next to it, a page made stale by someone else's edit is refused (412) with
    nothing changed, and once approved the edit is refused (409) and no longer offered."""
    manager = signed_in(desk, "mgr")
    view, transfer_id = new_transfer(manager)
    edit = f"/console/transfers/edit?id={transfer_id}"
    assert 'id="edit-transfer"' in manager.get(view).text
    assert 'id="edit-transfer"' not in signed_in(desk, "clerk2").get(view).text
    form = manager.get(edit).text
    assert "编辑调拨单" in form
    assert hidden(form, "version") == "1"
    assert 'value="PILL"' in form
    assert 'value="盒"' in form
    filled = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "version": "1",
        "from_site": "S01",
        "to_site": "S02",
        "note": "再加三片",
        "line_item_code": ["PILL", "PILL", ""],
        "line_qty": ["2", "3", ""],
        "line_uom": ["盒", "", ""],
    }
    bad = manager.post(edit, data={**filled, "line_qty": ["2", "three", ""]}, headers=htmx(manager))
    assert bad.status_code == 422
    assert 'id="error-line-1-qty"' in bad.text
    # someone else saves first: this page is stale
    other = signed_in(desk, "mgr2", "en")
    other_form = other.get(edit).text
    assert "Edit transfer" in other_form
    saved = other.post(
        edit,
        data={
            **filled,
            "idempotency_key": hidden(other_form, "idempotency_key"),
            "note": "first",
            "line_item_code": ["PILL"],
            "line_qty": ["1"],
            "line_uom": [""],
        },
        headers=htmx(other),
    )
    assert saved.headers["HX-Redirect"] == view
    stale = manager.post(edit, data=filled, headers=htmx(manager))
    assert stale.status_code == 412
    assert 'id="error-form"' in stale.text
    assert ok(desk.get(f"{TRANSFERS}/{transfer_id}"))["note"] == "first"
    fresh = manager.get(edit).text
    done = manager.post(
        edit,
        data={**filled, "version": "2", "idempotency_key": hidden(fresh, "idempotency_key")},
        headers=htmx(manager),
    )
    assert done.headers["HX-Redirect"] == view
    page = manager.get(view).text
    assert "再加三片" in page
    got = ok(desk.get(f"{TRANSFERS}/{transfer_id}"))
    assert [(ln["qty"], ln["uom"], ln["base_qty"]) for ln in got["lines"]] == [
        ("2", "盒", "20"),
        ("3", "片", "3"),
    ]
    # approved: no Edit button, and the form is refused
    other.post(
        f"/console/transfers/approve?id={transfer_id}",
        data=command_values(other.get(view).text, "/console/transfers/approve"),
        headers=htmx(other),
    )
    approved = manager.get(view).text
    assert 'id="edit-transfer"' not in approved
    late = manager.post(
        edit, data={**filled, "version": "4", "idempotency_key": "k-late"}, headers=htmx(manager)
    )
    assert late.status_code == 409
    assert 'id="error-form"' in late.text
    assert "draft" in late.text
    assert audited(desk, transfer_id) == [
        "transfer.approve",
        "transfer.create",
        "transfer.update",
        "transfer.update",
    ]


def test_bad_input_is_refused_on_the_page_in_the_users_language(desk: TestClient) -> None:
    found_in(desk, pill("3"))
    for lang, words in (("zh-CN", ("其他出库", "3 on hand")), ("en", ("Other issues", "wanted"))):
        clerk = signed_in(desk, "clerk1", lang)
        assert words[0] in clerk.get("/console/other-issues").text
        short = post_form(
            clerk,
            "/console/other-issues/new",
            "/console/other-issues/new",
            site_id="S01",
            reason_code="USE",
            line_item_code="PILL",
            line_qty="4",
            line_location="A1",
        )
        assert short.status_code == 422
        assert 'id="error-form"' in short.text
        assert words[1] in short.text
    # a reason not meant for receipts, a row without a location: each named where it is
    wrong = post_form(
        clerk,
        "/console/other-receipts/new",
        "/console/other-receipts/new",
        site_id="S01",
        reason_code="USE",
        line_item_code=["PILL", "PILL"],
        line_qty=["1", "1"],
        line_location=["A1", ""],
    )
    assert wrong.status_code == 422
    assert 'id="error-line-1-location"' in wrong.text
    refused_reason = post_form(
        clerk,
        "/console/other-receipts/new",
        "/console/other-receipts/new",
        site_id="S01",
        reason_code="USE",
        line_item_code="PILL",
        line_qty="1",
        line_location="A1",
    )
    assert 'id="error-reason_code"' in refused_reason.text
    # only the receipt the fixture made through the API
    assert clerk.get("/console/other-receipts").text.count("/other-receipts/view?id=") == 1
    # every list and form opens in both languages, each in its own
    pages = ["/console/other-receipts", "/console/other-issues", "/console/write-offs"]
    pages += [f"{path}/new" for path in pages]
    pages += ["/console/transfers", "/console/transfers/new", "/console/stock-counts"]
    pages += ["/console/stock-counts/new"]  # (counting is a clerk's: /console/count)
    for lang, title in (("zh-CN", "新建调拨单"), ("en", "New transfer")):
        manager = signed_in(desk, "mgr", lang)
        for path in pages:
            shown = manager.get(path)
            assert shown.status_code == 200, path
            assert f'<html lang="{lang}">' in shown.text
        assert title in manager.get("/console/transfers/new").text
    # another site is not the clerk's: refused, not listed
    assert clerk.get("/console/other-issues?site=S02").status_code == 403
    assert stock(desk) == {("A1", "PILL", None): "3"}
