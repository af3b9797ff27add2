"""The count entry page on a phone (390 px) in a real browser (Debian's Chromium, central
under uvicorn), driven as a keyboard-wedge scanner drives it: the location field has the
focus, a scan is keys then Enter and moves on, Enter in the quantity saves, and the page
comes back ready for the next item at the same location. Blind: the expected quantity is
never on the page. Then the counter says counting is done, and a manager reviews and
approves the variance. Screenshots in zh-CN and English (``conftest.screenshots``).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from central_api.core.db import create_db_engine
from jxc.paths import ITEMS, OTHER_RECEIPTS, REASON_CODES, SITES, STOCK_COUNTS, TRANSFERS
from tests.central.conftest import user_token
from tests.patience import patience_timeout
from tests.web import test_console_browser as base
from tests.web.conftest import Central
from tests.web.test_console_browser import focused, no_sideways_scroll, shoot, switch_language
from tests.web.test_console_browser_documents import signed_in

pytestmark = pytest.mark.integration

problems = base.problems
BARCODE = "6901234567892"


def seed(central: Central) -> dict[str, str]:
    """Through the API: a store with two shelves, an item with a barcode, 24 on shelf A1
    and 5 on B1 (an other receipt), and a count session opened by a manager."""
    engine = create_db_engine(central.database_url)
    try:
        admin = user_token(engine, "seed-count-admin", ["admin"])
    finally:
        engine.dispose()
    with httpx.Client(base_url=central.url, timeout=patience_timeout(10)) as api:

        def call(method: str, path: str, **body: Any) -> Any:
            answer = api.request(
                method,
                path,
                json=body or None,
                headers={"Authorization": f"Bearer {admin}", "Idempotency-Key": str(uuid.uuid4())},
            )
            assert answer.status_code in {200, 201}, answer.text
            return answer.json()

        call("PUT", f"{SITES}/ST-CNT", kind="store", name="三号店", name_en="Store 3")
        for code in ("A1", "B1"):
            call("POST", f"{SITES}/ST-CNT/locations", code=code, level="zone", kind="storage")
        call("PUT", f"{REASON_CODES}/FOUND-C", name="盘盈", applies_to=["other_receipt"])
        call(
            "POST",
            ITEMS,
            item_code="GAUZE",
            name="医用纱布",
            name_en="Gauze",
            uom="包",
            barcodes=[{"barcode": BARCODE}],
        )
        call(
            "POST",
            OTHER_RECEIPTS,
            site_id="ST-CNT",
            reason_code="FOUND-C",
            lines=[
                {"item_code": "GAUZE", "qty": "24", "location": "A1"},
                {"item_code": "GAUZE", "qty": "5", "location": "B1"},
            ],
        )
        count = call("POST", STOCK_COUNTS, site_id="ST-CNT")
    return {"count": count["count_id"]}


def scan(page: Any, text: str) -> None:
    """What a keyboard wedge does: the characters, then Enter."""
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_count_on_a_phone_with_a_scanner_then_review(
    browser: Any, central: Central, screenshots: Path, problems: list[str]
) -> None:
    count_id = seed(central)["count"]
    with signed_in(browser, central, "phone", "clerk") as page:
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(f"{central.url}/console/count")
        page.get_by_role("link", name=re.compile(count_id)).click()
        page.wait_for_url(re.compile(r"/console/count/entry\?id=SC\d+$"))
        focused(page, "location")
        assert "24" not in page.locator("main").inner_text()  # blind
        no_sideways_scroll(page)
        shoot(page, screenshots, "count-entry", "phone")
        # shelf A1: location, the item's barcode, no lot (Enter), 23 counted (Enter saves)
        scan(page, "A1")
        focused(page, "item")
        scan(page, BARCODE)
        focused(page, "lot")
        page.keyboard.press("Enter")
        focused(page, "qty")
        scan(page, "23")
        page.locator("#count-saved").wait_for()
        assert "A1" in page.locator("#count-saved").inner_text()
        assert "23" in page.locator("#count-saved").inner_text()
        focused(page, "item")  # same shelf, next item
        assert page.locator("#location").input_value() == "A1"
        # an unknown barcode: said next to the field, which keeps the focus for a rescan
        scan(page, "0000000000017")
        page.keyboard.press("Enter")
        page.keyboard.type("1")
        page.keyboard.press("Enter")
        page.locator("#error-item").wait_for()
        focused(page, "item")
        no_sideways_scroll(page)
        shoot(page, screenshots, "count-entry-refused", "phone")
        # shelf B1
        page.locator("#location").fill("")
        page.locator("#location").focus()
        scan(page, "B1")
        page.locator("#item").fill("")
        scan(page, BARCODE)
        page.keyboard.press("Enter")
        scan(page, "5")
        page.wait_for_function(
            "document.getElementById('count-saved') &&"
            " document.getElementById('count-saved').textContent.includes('B1')"
        )
        assert "24" not in page.locator("main").inner_text()
        page.get_by_role("button", name="盘点完成").click()
        # A1 differs: back for a second count, still blind
        page.locator("li.recount").wait_for()
        no_sideways_scroll(page)
        shoot(page, screenshots, "count-recount", "phone")
        switch_language(page, "English")
        shoot(page, screenshots, "count-recount", "phone")
        switch_language(page, "简体中文")
        focused(page, "location")
        scan(page, "A1")
        scan(page, BARCODE)
        page.keyboard.press("Enter")
        scan(page, "23")
        page.locator("#count-saved").wait_for()
        page.get_by_role("button", name="盘点完成").click()
        page.locator("#count-closed").wait_for()
    with signed_in(browser, central, "phone", "boss") as boss:
        boss.goto(f"{central.url}/console/stock-counts/view?id={count_id}")
        assert boss.locator("#count-status").inner_text() == "待审核"
        assert boss.locator("#variance-1").inner_text() == "-1"
        no_sideways_scroll(boss)
        shoot(boss, screenshots, "count-review", "phone")
        boss.get_by_role("button", name="审核").click()
        boss.wait_for_function(
            "document.getElementById('count-status').textContent.trim() === '已记账'"
        )
        switch_language(boss, "English")
        shoot(boss, screenshots, "count-review", "phone")
        switch_language(boss, "简体中文")  # the choice is the user's: leave it as it was
    assert not problems, problems


def test_transfer_and_write_off_pages_fit_a_phone(
    browser: Any, central: Central, screenshots: Path, problems: list[str]
) -> None:
    """A transfer that arrived short (both quantities shown) and the write-off form, at
    390 px in both languages, with nothing scrolling sideways."""
    engine = create_db_engine(central.database_url)
    try:
        admin = user_token(engine, "seed-transfer-admin", ["admin"])
        manager = user_token(engine, "seed-transfer-mgr", ["store_manager"])
    finally:
        engine.dispose()
    with httpx.Client(base_url=central.url, timeout=patience_timeout(10)) as api:

        def call(method: str, path: str, token: str = admin, **body: Any) -> Any:
            answer = api.request(
                method,
                path,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
            )
            assert answer.status_code in {200, 201}, answer.text
            return answer.json()

        call("PUT", f"{SITES}/ST-TO", kind="store", name="四号店", name_en="Store 4")
        call("POST", f"{SITES}/ST-TO/locations", code="C1", level="zone", kind="storage")
        call("PUT", f"{SITES}/ST-FROM", kind="warehouse", name="中心仓", name_en="Central DC")
        call("POST", f"{SITES}/ST-FROM/locations", code="D1", level="zone", kind="storage")
        call("PUT", f"{REASON_CODES}/FOUND-T", name="期初", applies_to=["other_receipt"])
        call("PUT", f"{REASON_CODES}/DAMAGED", name="破损", applies_to=["write_off"])
        call("POST", ITEMS, item_code="SYRUP", name="止咳糖浆", name_en="Cough syrup", uom="瓶")
        call(
            "POST",
            OTHER_RECEIPTS,
            site_id="ST-FROM",
            reason_code="FOUND-T",
            lines=[{"item_code": "SYRUP", "qty": "40", "location": "D1", "lot": "B2026"}],
        )
        made = call(
            "POST",
            TRANSFERS,
            from_site="ST-FROM",
            to_site="ST-TO",
            lines=[{"item_code": "SYRUP", "qty": "12"}],
        )
        url = f"{TRANSFERS}/{made['transfer_id']}"
        call("POST", f"{url}/approve", token=manager)
        pick = {"line_no": 1, "lot": "B2026"}
        call("POST", f"{url}/ship", lines=[{**pick, "location": "D1", "qty": "12"}])
        call("POST", f"{url}/receive", lines=[{**pick, "location": "C1", "qty": "11"}])
    with signed_in(browser, central, "phone", "boss") as boss:
        boss.on("pageerror", lambda error: problems.append(str(error)))
        boss.goto(f"{central.url}/console/transfers/view?id={made['transfer_id']}")
        if boss.locator("html").get_attribute("lang") != "zh-CN":
            switch_language(boss, "简体中文")
        exceptions = boss.locator("#transfer-exceptions").inner_text()
        assert "短少" in exceptions
        assert "12" in exceptions
        assert "11" in exceptions
        for name, path in (
            ("transfer", f"/console/transfers/view?id={made['transfer_id']}"),
            ("transfers", "/console/transfers"),
            ("write-off-form", "/console/write-offs/new"),
        ):
            boss.goto(f"{central.url}{path}")
            no_sideways_scroll(boss)
            shoot(boss, screenshots, name, "phone")
            switch_language(boss, "English")
            no_sideways_scroll(boss)
            shoot(boss, screenshots, name, "phone")
            switch_language(boss, "简体中文")
    assert not problems, problems
