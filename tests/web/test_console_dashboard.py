"""The console's dashboard over HTTP, on SQLite and PostgreSQL, on the three-site chain of
``tests/central/test_reports.py``: the home page sends a stock reader to it; finance sees
each site's value (worked out by hand there: S01 136.50, S02 80, S03 30) and the 30-day
trend; a clerk sees the same cards without a financial figure; a manager scoped to S02
sees S02 alone; the fragment the page polls shows a movement pushed after the page was
drawn. The trend's day-end figures are checked by hand for a fixed "today"."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from central_api.web.dashboard import value_trend
from jxc.paths import PURCHASE_EXCEPTIONS, SITES
from tests.central.conftest import SiteLedger, add_test_user
from tests.central.test_purchasing import approved_po, master, ok, push, receipt  # noqa: F401
from tests.central.test_reports import chain  # noqa: F401 (a fixture)
from tests.web.test_console_pages import browser

ROOT = "/console/dashboard"


def card(html: str, site: str) -> str:
    """The text of one site's card."""
    start = html.index(f'id="site-{site}"')
    return html[start : html.index("</section>", start)]


def test_the_dashboard_for_finance_a_clerk_and_a_scoped_manager(
    chain: TestClient,  # noqa: F811 (the fixture imported above)
) -> None:
    """One chain for every reader: building it is most of the test's cost."""
    engine = chain.app.state.engine  # type: ignore[attr-defined]
    add_test_user(engine, "fin", ["finance"])
    add_test_user(engine, "clerk", ["warehouse_clerk"])
    add_test_user(engine, "s2mgr", ["store_manager"], sites=["S02"])

    fin = browser(chain.app, "fin", lang="en")  # type: ignore[arg-type]
    home = fin.get("/console/")
    assert home.status_code == 303
    assert home.headers["location"] == ROOT
    page = fin.get(ROOT)
    assert page.status_code == 200
    html = page.text
    assert "¥136.50" in card(html, "S01")
    assert "¥80.00" in card(html, "S02")
    assert "¥30.00" in card(html, "S03")
    assert "¥246.50" in html  # the total of the user's sites
    assert "<polyline" in card(html, "S03")
    assert "2 shipments" in card(html, "S01")  # the chain's two shipments, made today
    for kind in ("below_safety", "expiry", "negative_stock", "exceptions"):
        assert f'href="/console/alerts?kind={kind}"' in html
    sellers = html[html.index('id="dash-sellers"') :]
    sellers = sellers[: sellers.index("</section>")]
    assert sellers.index("PILL: 10 片") < sellers.index("TEA: 5 kg")  # in base units
    assert 'hx-trigger="every 30s"' in html

    clerk = browser(chain.app, "clerk")  # type: ignore[arg-type]
    seen = clerk.get(ROOT).text
    assert "今日" in card(seen, "S01")
    for money in ("¥", "data-financial", "<polyline", "库存金额"):
        assert money not in seen
    assert "¥" not in clerk.get(f"{ROOT}/live").text

    manager = browser(chain.app, "s2mgr", lang="en")  # type: ignore[arg-type]
    scoped = manager.get(ROOT).text
    assert 'id="site-S02"' in scoped
    assert "S01" not in scoped
    assert "S03" not in scoped

    # The fragment the page polls: the body alone, and it shows what arrived since.
    ok(chain.put(f"{SITES}/S04", json={"kind": "store", "name": "店 S04"}))
    s04 = SiteLedger("S04")
    push(
        chain, s04, s04.event("receipt", "2", item="TEA", uom="kg", location="A-01", unit_cost="7")
    )
    live = fin.get(f"{ROOT}/live")
    assert live.status_code == 200
    assert live.text.lstrip().startswith('<div id="dashboard" hx-get="/console/dashboard/live"')
    assert "<html" not in live.text
    assert "¥14.00" in card(live.text, "S04")

    inbox = fin.get("/console/alerts", params={"kind": "exceptions"})
    assert inbox.status_code == 200
    assert 'id="alerts-kind"' in inbox.text
    trend_by_hand(engine)


def trend_by_hand(engine: Engine) -> None:
    """The trend's day-end values for a fixed "today", worked out by hand."""
    with engine.connect() as connection:
        _now, trends = value_trend(connection, None, date(2026, 11, 30))
        scoped, _ = value_trend(connection, frozenset({"S02"}), date(2026, 11, 30))
    assert set(scoped) == {"S02"}
    s01, s02, s03 = trends["S01"], trends["S02"], trends["S03"]
    assert len(s01) == 30  # end of 11-01 .. end of 11-30
    # S01: TEA 10 at 8, then 10 at 11, sale 4 at the average 9.5; PILL L1 2 盒 at 5, L2 30 片 at 1
    assert s01[:5] == [Decimal(90), Decimal(200), Decimal(162), Decimal(162), Decimal(192)]
    assert s01[-1] == Decimal(192)
    # S02: TEA 5 at 12 before the window, PILL 10 片 at 2 on 11-15
    assert s02[0] == Decimal(60)
    assert s02[13] == Decimal(60)
    assert s02[14] == Decimal(80)
    # S03: 6 at 10 on 11-10, all issued 11-20, 3 at 10 on 11-25
    assert s03[8] == 0
    assert s03[9] == Decimal(60)
    assert s03[19] == 0
    assert s03[24] == Decimal(30)


def test_an_exception_is_counted_until_it_is_resolved_at_its_own_route(
    master: TestClient,  # noqa: F811 (the fixture imported above)
) -> None:
    """An over-receipt is an exception waiting on the dashboard; resolved on the receiving
    exceptions' own route (not from the inbox), it is no longer counted."""
    po_id = approved_po(master)["po_id"]  # line 1: 240 片 + 5 % = 252
    ledger = SiteLedger("S01")
    push(master, ledger, receipt(ledger, po_id, 1, "260"))
    add_test_user(master.app.state.engine, "fin", ["finance"])  # type: ignore[attr-defined]
    fin = browser(master.app, "fin", lang="en")  # type: ignore[arg-type]

    def waiting() -> str:
        html = fin.get(f"{ROOT}/live").text
        tile = html[html.index('id="tile-exceptions"') :]
        return tile[tile.index("<strong>") + 8 : tile.index("</strong>")]

    assert waiting() == "1"
    exception = ok(master.get(PURCHASE_EXCEPTIONS, params={"status": "open"}))["exceptions"][0]
    ok(
        master.post(
            f"{PURCHASE_EXCEPTIONS}/{exception['exception_id']}/resolve",
            json={"resolution": "退回 8 片"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    )
    assert waiting() == "0"
