"""The console's period close and lot recall pages over HTTP, on SQLite and PostgreSQL:
finance closes the next month with the page's button (a double click closes it once), an
out-of-order close comes back as the page with its reason, the admin reopens with a reason;
values only for the financial group; the recall page traces a lot in both languages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import period_closes
from jxc.paths import PERIODS
from tests.central.conftest import SiteLedger, add_test_user
from tests.central.test_purchasing import master, ok, push  # noqa: F401 (the fixture)
from tests.web.test_console_pages import browser, htmx


def hidden(html: str, marker: str) -> dict[str, str]:
    block = html.split(marker, 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', block))


def statuses(client: TestClient) -> list[tuple[str, str]]:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return [
            (row.period, row.status)
            for row in connection.execute(select(period_closes).order_by(period_closes.c.period))
        ]


def test_finance_closes_the_next_month_and_the_admin_reopens_it(
    master: TestClient,  # noqa: F811
) -> None:
    engine = master.app.state.engine  # type: ignore[attr-defined]
    add_test_user(engine, "books", ["finance"])
    add_test_user(engine, "boss", ["admin"])
    add_test_user(engine, "clerk", ["warehouse_clerk"])
    ledger = SiteLedger("S01")
    push(
        master,
        ledger,
        ledger.event(
            "receipt",
            "4",
            item="PILL",
            uom="片",
            unit_cost="2.5",
            occurred_at="2026-10-03T08:00:00+00:00",
        ),
    )
    ok(master.post(f"{PERIODS}/2026-10/close", headers={"Idempotency-Key": "first"}))

    books = browser(master.app, "books")  # type: ignore[arg-type]
    page = books.get("/console/periods")
    assert page.status_code == 200, page.text
    assert "已结账至 2026-10" in page.text
    assert "¥10.00" in page.text  # S01's stock at the end of October: 4 × 2.5
    fields = hidden(page.text, "/periods/close")
    assert fields["period"] == "2026-11"
    made = books.post("/console/periods/close", data=fields, headers=htmx(books))
    again = books.post("/console/periods/close", data=fields, headers=htmx(books))
    assert made.headers["HX-Redirect"] == again.headers["HX-Redirect"] == "/console/periods"
    assert statuses(master) == [("2026-10", "closed"), ("2026-11", "closed")]
    assert "reopen-form" not in books.get("/console/periods").text  # finance may not reopen

    refused = books.post(
        "/console/periods/close",
        data={"period": "2026-09", "idempotency_key": "late"},
        headers=htmx(books),
    )
    assert refused.status_code == 409
    assert "2026-12" in refused.text
    assert 'id="refusal"' in refused.text

    boss = browser(master.app, "boss", lang="en")  # type: ignore[arg-type]
    page = boss.get("/console/periods")
    assert "Closed through 2026-11" in page.text
    fields = hidden(page.text, "/periods/reopen")
    assert (fields["period"], fields["version"]) == ("2026-11", "1")
    boss.post(
        "/console/periods/reopen",
        data={**fields, "reason": "a late delivery note"},
        headers=htmx(boss),
    )
    assert statuses(master) == [("2026-10", "closed"), ("2026-11", "reopened")]
    assert "a late delivery note" in boss.get("/console/periods").text

    clerk = browser(master.app, "clerk")  # type: ignore[arg-type]
    assert clerk.get("/console/periods").status_code == 403
    assert clerk.post("/console/periods/close", data=fields).status_code == 403


def test_the_recall_page_traces_a_lot(master: TestClient) -> None:  # noqa: F811
    add_test_user(master.app.state.engine, "clerk", ["warehouse_clerk"])  # type: ignore[attr-defined]
    ledger = SiteLedger("S01")
    lot = {"lot": "L-9", "expiry": "2027-01-31"}
    push(
        master,
        ledger,
        ledger.event("receipt", "12", item="PILL", uom="片", **lot),
        ledger.event(
            "sale",
            "-2",
            item="PILL",
            uom="片",
            doc_type="retail_receipt",
            doc_id="R-1",
            doc_line=1,
            **lot,
        ),
    )
    clerk = browser(master.app, "clerk")  # type: ignore[arg-type]
    empty = clerk.get("/console/recall")
    assert empty.status_code == 200
    assert "批次召回" in empty.text
    page = clerk.get("/console/recall?item=PILL&lot=L-9")
    assert page.status_code == 200, page.text
    assert "仍在库：10" in page.text
    assert "柜台销售" in page.text
    assert "R-1" in page.text
    assert "有效期至 2027-01-31" in page.text
    english = browser(master.app, "clerk", lang="en")  # type: ignore[arg-type]
    text = english.get("/console/recall?item=PILL&lot=L-9").text
    assert "Still held: 10" in text
    assert "Counter sale" in text
    assert "¥" not in text
