"""The console's receiving pages over HTTP, on SQLite and PostgreSQL: a receipt entered
against a PO with QC per line, a quarantined line released and another rejected, the
cartons an edge put in quarantine decided from QC's work list, a PO's receiving log that
follows an edge's pushes, a purchase return, a supplier invoice held by its match and
decided by finance, a requisition made and cancelled; each page's rule, site scope, no
money for a role without the financial group, and the page's version and key on every
command."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from central_api.models.valuation import valuation_entries
from tests.central.conftest import SiteLedger, add_test_user
from tests.central.test_purchasing import (  # noqa: F401 (master is a fixture)
    approved_po,
    master,
    ok,
    push,
    receipt,
)
from tests.central.test_receiving import shop as receiving_shop  # noqa: F401 (a fixture)
from tests.web.test_console_pages import browser, htmx
from tests.web.test_console_purchasing import HOSTILE

USERS = {
    "buyer1": (["purchaser"], None),
    "clerk1": (["warehouse_clerk"], None),
    "money1": (["finance"], None),
    "money2": (["finance"], None),
    "sales1": (["sales"], None),
    "s2mgr": (["store_manager"], ["S02"]),
}


@pytest.fixture
def desk(receiving_shop: TestClient) -> TestClient:  # noqa: F811 (the fixture imported above)
    for name, (roles, sites) in USERS.items():
        add_test_user(receiving_shop.app.state.engine, name, roles, sites=sites)  # type: ignore[attr-defined]
    return receiving_shop


def signed_in(desk: TestClient, name: str, lang: str = "zh-CN") -> TestClient:
    return browser(desk.app, name, lang=lang)  # type: ignore[arg-type]


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, name
    return found[1]


def command_values(html: str, path: str, line: int | None = None) -> dict[str, str]:
    """The hidden fields of the command form posting to ``path`` (for ``line``)."""
    blocks = [block.split("</form>", 1)[0] for block in html.split(f"{path}?")[1:]]
    for block in blocks:
        values = dict(
            re.findall(r'name="(version|idempotency_key|line_no)" value="([^"]*)"', block)
        )
        if values and (line is None or values.get("line_no") == str(line)):
            return values
    raise AssertionError(f"no form for {path} {line}")


def receive_from_the_form(client: TestClient, po_id: str, **rows: list[str]) -> TestClient:
    form = client.get(f"/console/receipts/new?po={po_id}").text
    data = {"idempotency_key": hidden(form, "idempotency_key"), "note": "dock 2"}
    data |= {"line_po_line": re.findall(r'name="line_po_line" value="(\d+)"', form)}
    data |= {f"line_{name}": values for name, values in rows.items()}
    return client.post(f"/console/receipts/new?po={po_id}", data=data, headers=htmx(client))


def test_a_receipt_with_qc_per_line_then_release_and_reject(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]  # line 1: 2 箱 PILL (240 片); line 2: 10.5 kg TEA
    clerk = signed_in(desk, "clerk1")
    assert 'name="po"' in clerk.get("/console/receipts/new").text  # the PO comes first
    picked = clerk.get(f"/console/receipts/new?po={po_id}").text
    assert picked.count('name="line_qty"') == 2
    rows = {
        "qty": ["1", "4"],
        "uom": ["箱", ""],
        "qc": ["quarantine", "quarantine"],
        "location": ["", ""],
        "lot": ["L1", ""],
        "expiry": ["", ""],
    }
    made = receive_from_the_form(clerk, po_id, **rows)
    target = made.headers["HX-Redirect"]
    page = clerk.get(target).text
    receipt_id = target.split("id=")[1]
    assert page.count("待检") >= 2
    assert "120 片" in page
    # release line 1 into A1, reject line 2 with a reason: each with the page's version
    released = clerk.post(
        f"/console/receipts/release?id={receipt_id}",
        data={**command_values(page, "/console/receipts/release", 1), "location": "A1"},
        headers=htmx(clerk),
    )
    assert released.headers["HX-Redirect"] == target
    # the page drawn before the release is stale now: its reject is refused with 412
    stale = clerk.post(
        f"/console/receipts/reject?id={receipt_id}",
        data={**command_values(page, "/console/receipts/reject", 2), "reason": "wet"},
        headers=htmx(clerk),
    )
    assert stale.status_code == 412
    fresh = clerk.get(target).text
    rejected = clerk.post(
        f"/console/receipts/reject?id={receipt_id}",
        data={**command_values(fresh, "/console/receipts/reject", 2), "reason": "wet"},
        headers=htmx(clerk),
    )
    assert rejected.status_code == 200, rejected.text
    after = signed_in(desk, "clerk1", "en").get(target).text
    assert re.search(r'id="qc-1">Released<', after)
    assert re.search(r'id="qc-2">Rejected<', after)
    assert "wet" in after
    listed = clerk.get(f"/console/receipts?po={po_id}").text
    assert receipt_id in listed
    # the decisions moved the PO's progress, as the same commands through the API do
    lines = ok(desk.get(f"/api/v1/purchase-orders/{po_id}"))["lines"]
    progress = [
        (line["accepted_qty"], line["quarantined_qty"], line["returned_qty"]) for line in lines
    ]
    assert progress == [("120", "0", "0"), ("0", "0", "4")]
    with desk.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = connection.execute(
            select(audit_log.c.action).where(audit_log.c.resource_id == receipt_id)
        ).scalars()
        assert sorted(actions) == [
            "purchase_receipt.create",
            "purchase_receipt.reject",
            "purchase_receipt.release",
        ]
        # the rejected line's issue is valued: the page's command ran the projections
        valued = connection.execute(select(valuation_entries.c.kind)).scalars()
        assert "issue" in set(valued)


def test_the_same_receipt_form_sent_twice_books_once_and_a_bad_row_is_named(
    desk: TestClient,
) -> None:
    po_id = approved_po(desk)["po_id"]
    clerk = signed_in(desk, "clerk1", "en")
    bad = receive_from_the_form(clerk, po_id, qty=["x", ""], qc=["accepted", "accepted"])
    assert bad.status_code == 422
    assert 'id="error-line-0-qty"' in bad.text
    assert "GR0" not in clerk.get("/console/receipts").text
    form = clerk.get(f"/console/receipts/new?po={po_id}").text
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "line_po_line": ["1", "2"],
        "line_qty": ["", "2"],
        "line_qc": ["accepted", "accepted"],
        "line_location": ["", "DOCK"],
    }
    first = clerk.post(f"/console/receipts/new?po={po_id}", data=data, headers=htmx(clerk))
    again = clerk.post(f"/console/receipts/new?po={po_id}", data=data, headers=htmx(clerk))
    assert first.headers["HX-Redirect"] == again.headers["HX-Redirect"]
    assert clerk.get("/console/receipts").text.count("/console/receipts/view?id=") == 1


def test_a_return_from_the_form(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]
    ok(
        desk.post(
            "/api/v1/purchase-receipts",
            json={"po_id": po_id, "lines": [{"po_line": 2, "qty": "5", "location": "A1"}]},
            headers={"Idempotency-Key": "web-return-1"},
        ),
        201,
    )
    buyer = signed_in(desk, "buyer1", "en")
    form = buyer.get(f"/console/purchase-returns/new?po={po_id}").text
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "reason": "",
        "line_po_line": ["1", "2"],
        "line_qty": ["", "2"],
        "line_location": ["", "A1"],
    }
    refused = buyer.post(
        f"/console/purchase-returns/new?po={po_id}", data=data, headers=htmx(buyer)
    )
    assert refused.status_code == 422
    assert 'id="error-reason"' in refused.text
    made = buyer.post(
        f"/console/purchase-returns/new?po={po_id}",
        data={**data, "reason": "damaged in transit"},
        headers=htmx(buyer),
    )
    page = buyer.get(made.headers["HX-Redirect"]).text
    assert "damaged in transit" in page
    assert "2 kg" in page
    assert "damaged in transit" in buyer.get("/console/purchase-returns").text


def test_an_invoice_held_by_its_match_is_approved_by_finance(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]  # line 2: 10.5 kg TEA at 80
    ok(
        desk.post(
            "/api/v1/purchase-receipts",
            json={"po_id": po_id, "lines": [{"po_line": 2, "qty": "10.5", "location": "A1"}]},
            headers={"Idempotency-Key": "web-invoice-1"},
        ),
        201,
    )
    money = signed_in(desk, "money1", "en")
    form = money.get(f"/console/supplier-invoices/new?po={po_id}").text
    assert 'value="80"' in form  # the PO's price, to be corrected
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "invoice_no": "INV-77",
        "line_po_line": ["1", "2"],
        "line_qty": ["", "10.5"],
        "line_unit_price": ["150", "85"],
        "line_tax_rate": ["0.13", "0"],
        "line_amount": ["", ""],
    }
    made = money.post(f"/console/supplier-invoices/new?po={po_id}", data=data, headers=htmx(money))
    target = made.headers["HX-Redirect"]
    page = money.get(target).text
    assert 'id="invoice-status">Held<' in page
    assert "Price differs from the PO" in page
    assert "¥5.00" in page  # the price difference
    assert "¥85.00" in page
    approve = f"/console/supplier-invoices/approve?id={target.split('id=')[1]}"
    # who entered it may not accept its differences: the page says why
    mine = money.post(
        approve,
        data={**command_values(page, "/console/supplier-invoices/approve"), "reason": "agreed"},
        headers=htmx(money),
    )
    assert mine.status_code == 403
    assert "segregation of duties" in mine.text
    checker = signed_in(desk, "money2", "en")
    page = checker.get(target).text
    approved = checker.post(
        approve,
        data={**command_values(page, "/console/supplier-invoices/approve"), "reason": "agreed"},
        headers=htmx(checker),
    )
    assert approved.status_code == 200, approved.text
    after = money.get(target).text
    assert 'id="invoice-status">Approved<' in after
    assert 'data-verb="approve"' not in after
    # the purchaser reads invoices but may not decide them: no buttons, 403 on a post
    buyer = signed_in(desk, "buyer1")
    assert 'data-verb="dispute"' not in buyer.get(target).text
    assert (
        buyer.post(
            target.replace("/view?", "/dispute?"), data={"reason": "x"}, headers=htmx(buyer)
        ).status_code
        == 403
    )


def test_an_invoice_decision_needs_a_reason(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]
    money = signed_in(desk, "money1", "en")
    form = money.get(f"/console/supplier-invoices/new?po={po_id}").text
    made = money.post(
        f"/console/supplier-invoices/new?po={po_id}",
        data={
            "idempotency_key": hidden(form, "idempotency_key"),
            "invoice_no": "INV-78",
            "line_po_line": ["1"],
            "line_qty": ["2"],
            "line_unit_price": ["150"],
            "line_tax_rate": ["0.13"],
        },
        headers=htmx(money),
    )
    page = money.get(made.headers["HX-Redirect"]).text
    assert "More than was accepted" in page  # nothing received yet
    refused = money.post(
        made.headers["HX-Redirect"].replace("/view?", "/dispute?"),
        data=command_values(page, "/console/supplier-invoices/dispute"),
        headers=htmx(money),
    )
    assert refused.status_code == 422
    assert 'id="refusal"' in refused.text


def test_rules_scope_and_money_of_the_receiving_pages(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]
    sales = signed_in(desk, "sales1")
    for path in (
        "/console/receipts",
        f"/console/receipts/new?po={po_id}",
        "/console/purchase-returns",
        "/console/supplier-invoices",
    ):
        assert sales.get(path).status_code == 403, path
    clerk = signed_in(desk, "clerk1")
    assert clerk.get("/console/supplier-invoices").status_code == 403
    assert clerk.get(f"/console/supplier-invoices/new?po={po_id}").status_code == 403
    # the receipt form and page carry no price, whatever the PO says
    for html in (clerk.get(f"/console/receipts/new?po={po_id}").text,):
        # the price as a figure on its own, not digits inside the form's random key
        assert not re.search(r"(?<![\w-])150(?![\w-])", html)
        for figure in ("¥", "data-financial", "单价"):
            assert figure not in html, figure
    manager = signed_in(desk, "s2mgr")
    assert manager.get(f"/console/receipts/new?po={po_id}").status_code == 403  # no create
    assert manager.get("/console/receipts?site=S01").status_code == 403
    menu = clerk.get("/console/receipts").text
    assert 'href="/console/receipts"' in menu
    assert 'href="/console/supplier-invoices"' not in menu


def test_a_requisition_made_from_its_form_and_cancelled(desk: TestClient) -> None:
    buyer = signed_in(desk, "buyer1", "en")
    form = buyer.get("/console/requisitions/new").text
    data = {
        "idempotency_key": hidden(form, "idempotency_key"),
        "site_id": "S01",
        "note": "shelf empty",
        "line_item_code": ["PILL", ""],
        "line_qty": ["3", ""],
        "line_uom": ["盒", ""],
        "line_supplier": ["SUP-A", ""],
        "line_expected_date": ["", ""],
    }
    made = buyer.post("/console/requisitions/new", data=data, headers=htmx(buyer))
    again = buyer.post("/console/requisitions/new", data=data, headers=htmx(buyer))
    target = made.headers["HX-Redirect"]
    assert again.headers["HX-Redirect"] == target
    page = buyer.get(target).text
    assert "30 片" in page or "3 盒" in page
    assert 'data-verb="cancel"' in page
    cancelled = buyer.post(
        target.replace("/view?", "/cancel?"),
        data={**command_values(page, "/console/requisitions/cancel"), "reason": "found stock"},
        headers=htmx(buyer),
    )
    assert cancelled.status_code == 200, cancelled.text
    assert "Cancelled" in buyer.get(target).text
    bad = buyer.post(
        "/console/requisitions/new",
        data={**data, "idempotency_key": "", "site_id": "", "line_qty": ["x", ""]},
        headers=htmx(buyer),
    )
    assert bad.status_code == 422
    assert 'id="error-site_id"' in bad.text
    assert 'id="error-line-0-qty"' in bad.text


def test_no_hostile_value_makes_a_receiving_page_fail(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]
    money = signed_in(desk, "money1")
    buyer = signed_in(desk, "buyer1")
    failures = []
    pages = {
        "/console/receipts": ("po", "site", "after"),
        "/console/receipts/view": ("id",),
        "/console/receipts/new": ("po",),
        "/console/purchase-returns": ("po", "site", "after"),
        "/console/purchase-returns/view": ("id",),
        "/console/purchase-returns/new": ("po",),
        "/console/supplier-invoices": ("status", "po", "after"),
        "/console/supplier-invoices/view": ("id",),
        "/console/supplier-invoices/new": ("po",),
    }
    for path, names in pages.items():
        for name in names:
            for value in HOSTILE:
                answer = money.get(f"{path}?{name}={value}")
                if answer.status_code >= 500:
                    failures.append(f"GET {path}?{name}={value[:20]}: {answer.status_code}")
    for raw in ("\x00", "x" * 10_000, "1e400", "NaN", "-0", "\t"):
        for path, client in (
            (f"/console/receipts/new?po={po_id}", buyer),
            (f"/console/purchase-returns/new?po={po_id}", buyer),
            (f"/console/supplier-invoices/new?po={po_id}", money),
            ("/console/requisitions/new", buyer),
            ("/console/receipts/release?id=GR000001", buyer),
        ):
            data = {
                "line_po_line": ["1", raw],
                "line_qty": [raw, "1"],
                "line_qc": [raw, "accepted"],
                "line_location": raw,
                "line_unit_price": raw,
                "line_item_code": raw,
                "site_id": raw,
                "reason": raw,
                "line_no": raw,
                "invoice_no": raw,
                "version": raw,
            }
            answer = client.post(path, data=data, headers=htmx(client))
            if answer.status_code >= 500:
                failures.append(f"POST {path} {raw[:10]!r}: {answer.status_code}")
    assert not failures, failures


def carton_forms(html: str, event_id: str) -> dict[str, str]:
    """The idempotency key of the release and of the reject form of one carton, by verb."""
    found = re.findall(rf'name="idempotency_key" value="([^"]*-(release|reject)-{event_id})"', html)
    return {verb: key for key, verb in found}


def test_cartons_an_edge_quarantined_are_released_and_rejected_from_the_console(
    desk: TestClient,
) -> None:
    po_id = approved_po(desk)["po_id"]
    edge = SiteLedger("S01")
    short = receipt(
        edge, po_id, 1, "20", lot="L1", location="QC", ref="quarantine short_weight: 4.5 kg"
    )
    expired = receipt(edge, po_id, 1, "20", lot="L0", location="QC", ref="quarantine expired")
    fine = receipt(edge, po_id, 1, "20", lot="L2", location="DOCK")
    push(desk, edge, short, expired, fine)
    clerk = signed_in(desk, "clerk1", "en")
    listed = clerk.get("/console/edge-cartons").text
    assert "Cartons awaiting QC" in listed
    assert "quarantine short_weight: 4.5 kg" in listed
    assert f'id="carton-{short["event_id"]}"' in listed
    assert f'id="carton-{expired["event_id"]}"' in listed
    assert f'id="carton-{fine["event_id"]}"' not in listed  # booked to the dock: no QC
    assert '<option value="A1">' in listed
    assert '<option value="QC">' not in listed
    keys = carton_forms(listed, short["event_id"])
    release = f"/console/edge-cartons/release?id={short['event_id']}"
    # a release needs a reason: refused with the carton's page and nothing moved
    why = clerk.post(
        release,
        data={"idempotency_key": keys["release"], "location": "A1", "reason": ""},
        headers=htmx(clerk),
    )
    assert why.status_code == 422
    assert 'id="refusal"' in why.text
    data = {"idempotency_key": keys["release"], "location": "A1", "reason": "reweighed 5.0 kg"}
    done = clerk.post(release, data=data, headers=htmx(clerk))
    target = f"/console/edge-cartons/view?id={short['event_id']}"
    assert done.headers["HX-Redirect"] == target
    again = clerk.post(release, data=data, headers=htmx(clerk))  # a double click
    assert again.headers["HX-Redirect"] == target
    page = clerk.get(target).text
    assert re.search(r'id="carton-qc">Released<', page)
    assert "reweighed 5.0 kg" in page
    assert "clerk1" in page
    assert 'data-verb="release"' not in page
    # decided once: the reject form of the list drawn before is refused with the reason
    twice = clerk.post(
        f"/console/edge-cartons/reject?id={short['event_id']}",
        data={"idempotency_key": keys["reject"], "reason": "no"},
        headers=htmx(clerk),
    )
    assert twice.status_code == 409
    assert "released" in twice.text
    # the other one is rejected in Chinese, and the list is empty after
    zh = signed_in(desk, "clerk1")
    rejected = zh.post(
        f"/console/edge-cartons/reject?id={expired['event_id']}",
        data={
            "idempotency_key": carton_forms(
                zh.get("/console/edge-cartons").text, expired["event_id"]
            )["reject"],
            "reason": "过期",
        },
        headers=htmx(zh),
    )
    assert rejected.status_code == 200, rejected.text
    assert "No carton is waiting for QC." in clerk.get("/console/edge-cartons").text
    progress = next(
        line
        for line in ok(desk.get(f"/api/v1/purchase-orders/{po_id}"))["lines"]
        if line["line_no"] == 1
    )
    assert (progress["accepted_qty"], progress["quarantined_qty"], progress["returned_qty"]) == (
        "40",
        "0",
        "20",
    )
    with desk.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = set(
            connection.execute(
                select(audit_log.c.action, audit_log.c.resource_id, audit_log.c.actor_id).where(
                    audit_log.c.action.like("purchase_receipt.%")
                )
            ).all()
        )
    assert {(action, resource) for action, resource, _actor in actions} == {
        ("purchase_receipt.release", short["event_id"]),
        ("purchase_receipt.reject", expired["event_id"]),
    }


def test_edge_cartons_rules_and_scope(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]
    edge = SiteLedger("S01")
    held = receipt(edge, po_id, 1, "20", lot="L1", location="QC", ref="quarantine expired")
    push(desk, edge, held)
    view = f"/console/edge-cartons/view?id={held['event_id']}"
    sales = signed_in(desk, "sales1")
    assert sales.get("/console/edge-cartons").status_code == 403
    assert sales.get(view).status_code == 403
    # finance reads receipts, decides no QC: no buttons, and a post is refused
    money = signed_in(desk, "money1", "en")
    assert held["event_id"] in money.get("/console/edge-cartons").text
    assert 'data-verb="release"' not in money.get(view).text
    assert (
        money.post(
            f"/console/edge-cartons/reject?id={held['event_id']}",
            data={"reason": "x"},
            headers=htmx(money),
        ).status_code
        == 403
    )
    # another site's manager neither sees nor finds it, and may not filter on S01
    manager = signed_in(desk, "s2mgr", "en")
    assert held["event_id"] not in manager.get("/console/edge-cartons").text
    assert manager.get(view).status_code == 404
    assert manager.get("/console/edge-cartons?site=S01").status_code == 403
    assert manager.get(f"/console/po-receiving?id={po_id}").status_code == 404
    failures = []
    buyer = signed_in(desk, "buyer1")
    for value in HOSTILE:
        for path in (
            f"/console/edge-cartons?po={value}",
            f"/console/edge-cartons?site={value}",
            f"/console/edge-cartons/view?id={value}",
            f"/console/po-receiving?id={value}",
            f"/console/po-receiving/live?id={value}",
        ):
            if buyer.get(path).status_code >= 500:
                failures.append(path[:60])
        answer = buyer.post(
            f"/console/edge-cartons/release?id={held['event_id']}",
            data={"location": value, "reason": value, "idempotency_key": value},
            headers=htmx(buyer),
        )
        if answer.status_code >= 500:
            failures.append(f"release {value[:20]!r}")
    assert not failures, failures


def test_the_po_receiving_log_follows_an_edge_push_without_a_reload(desk: TestClient) -> None:
    po_id = approved_po(desk)["po_id"]
    clerk = signed_in(desk, "clerk1", "en")
    page = clerk.get(f"/console/po-receiving?id={po_id}").text
    # the page is a frame around the fragment it polls while the PO is receivable
    assert f'hx-get="/console/po-receiving/live?id={po_id}"' in page
    assert 'hx-trigger="every 5s"' in page
    assert "Nothing received against this PO yet." in page
    assert (
        f"/console/po-receiving?id={po_id}"
        in clerk.get(f"/console/purchase-orders/view?id={po_id}").text
    )
    edge = SiteLedger("S01")
    first = receipt(edge, po_id, 1, "20", lot="L7", location="DOCK")
    push(desk, edge, first)
    live = clerk.get(f"/console/po-receiving/live?id={po_id}").text
    assert live.startswith('<div id="po-receiving"')  # the fragment alone, no layout
    assert "<nav" not in live
    assert f'id="event-{first["event_id"]}"' in live
    assert "L7" in live
    assert 'id="receiving-count">Bookings: 1<' in live
    assert "receiving-pending" not in live
    held = receipt(edge, po_id, 1, "20", lot="L8", location="QC", ref="quarantine expired")
    push(desk, edge, held)
    live = clerk.get(f"/console/po-receiving/live?id={po_id}").text
    assert f'id="event-{held["event_id"]}"' in live
    assert re.search(r'id="receiving-pending"[^>]*>1 awaiting QC<', live)
    assert re.search(r'id="po-status">Partly received<', live)
    # a closed PO's log stops polling
    buyer = signed_in(desk, "buyer1", "en")
    ok(
        desk.post(
            f"/api/v1/purchase-orders/{po_id}/close",
            json={"reason": "short close"},
            headers={"Idempotency-Key": "web-close-live"},
        )
    )
    after = buyer.get(f"/console/po-receiving?id={po_id}").text
    assert "hx-trigger" not in after.split('id="po-receiving"', 1)[1].split(">", 1)[0]
