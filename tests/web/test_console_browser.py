"""The console in a real browser: Debian's Chromium against central served by uvicorn.

Each flow runs at desktop width (1280 px) and at a phone's (390 px), and is done with the
keyboard only where a floor worker would (sign in, scan into the search box): typing,
Tab and Enter, no clicks. Screenshots of the main pages in zh-CN and English at both
widths are saved as it goes (see ``conftest.screenshots``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from central_api.core.db import create_db_engine
from central_api.core.principal import CSRF_COOKIE, SESSION_COOKIE
from central_api.services.audit import system_context
from central_api.services.barcodes import gs1_check_digit
from central_api.services.items import upsert_item
from central_api.services.partners import PartnerFields, save_partner
from central_api.services.sites import put_site
from jxc.feed import BarcodeData, ItemData
from tests.patience import patience_timeout
from tests.web.conftest import TEST_PASSWORD, Central

pytestmark = pytest.mark.integration

WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture(params=list(WIDTHS), ids=list(WIDTHS))
def width(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def problems() -> list[str]:
    """Script errors and failed requests of the page; a test that fails a request on
    purpose clears what it caused."""
    return []


@pytest.fixture
def page(browser: Any, width: str, problems: list[str]) -> Iterator[Any]:
    """A fresh browser context (no cookies) at ``width``, preferring zh-CN like most users."""
    context = browser.new_context(
        viewport={"width": WIDTHS[width], "height": 900},
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"},
    )
    context.set_default_timeout(patience_timeout(5) * 1000)
    opened = context.new_page()
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on(
        "requestfailed",
        lambda request: (
            None
            if "ERR_ABORTED" in str(request.failure)  # a navigation that replaced a request
            else problems.append(f"{request.url}: {request.failure}")
        ),
    )
    yield opened
    context.close()
    assert not problems, f"the page had script errors or failed requests: {problems}"


def focused(page: Any, element_id: str) -> None:
    """Wait until ``element_id`` has the focus: the browser applies ``autofocus`` at its next
    rendering step, which on a busy machine can come after the load event."""
    page.wait_for_function(
        f"document.activeElement && document.activeElement.id === {element_id!r}"
    )


def sign_in(page: Any, central: Central, username: str) -> None:
    """Sign in with the keyboard alone: the user name field has the focus on arrival, and
    the item list's search box after it."""
    page.goto(f"{central.url}/console/items")
    assert "/console/login" in page.url
    focused(page, "username")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(TEST_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^http://[^/?]+/console/items$"))
    focused(page, "q")


_SESSIONS: dict[tuple[str, str], list[Any]] = {}
"""The session and CSRF cookies of each user's first keyboard sign-in, by central and user."""


def signed_in_as(page: Any, central: Central, username: str) -> None:
    """Be where :func:`sign_in` leaves the page (the item list, its search box focused) as
    ``username``, for the tests that only need to be signed in.

    The first time for a user and central this is :func:`sign_in` itself; after it, the
    context is given that sign-in's session cookies. A sign-in costs the server an argon2
    check (~0.2 s of CPU) and the browser two page loads, some 0.5 s of CPU in all, and the
    keyboard sign-in is what this module's own tests prove each time.
    """
    key = (central.url, username)
    cookies = _SESSIONS.get(key)
    if cookies is None:
        sign_in(page, central, username)
        _SESSIONS[key] = [
            cookie
            for cookie in page.context.cookies()
            if cookie["name"] in (SESSION_COOKIE, CSRF_COOKIE)
        ]
        return
    page.context.add_cookies(cookies)
    page.goto(f"{central.url}/console/items")
    assert re.search(r"^http://[^/?]+/console/items$", page.url), page.url
    focused(page, "q")


def switch_language(page: Any, label: str) -> None:
    """Use the switch in the header, and wait for the page it leads back to (the same URL,
    so waiting for the URL alone would not wait at all)."""
    with page.expect_navigation():
        # a link before sign-in; a button after, which stores the choice for the user
        page.locator("[data-lang]", has_text=label).click()


def shoot(page: Any, folder: Path, name: str, width: str) -> None:
    lang = page.locator("html").get_attribute("lang")
    page.screenshot(path=str(folder / f"{name}-{lang}-{WIDTHS[width]}.png"), full_page=True)


def no_sideways_scroll(page: Any) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"


def test_create_an_item_with_two_barcodes_then_find_it_by_a_scan(
    page: Any, central: Central, width: str, screenshots: Path
) -> None:
    code = f"WEB-{width.upper()}"
    body = f"690{len(width):03d}000000"
    barcodes = [f"{body}{gs1_check_digit(body)}", f"SCAN-{width}-2"]  # an EAN-13 is checked
    page.goto(f"{central.url}/console/login")
    shoot(page, screenshots, "login", width)
    sign_in(page, central, "boss")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", level=1).inner_text() == "商品"

    # The form: code, name, English name by typing and Tab; a base unit and a carton of
    # 12; each barcode ends with Enter, as a scanner sends it, which moves to a new row
    # instead of submitting; the second barcode is the carton's.
    page.get_by_role("link", name="新建商品").first.click()
    page.wait_for_url(re.compile(r"/console/items/new$"))
    focused(page, "item_code")
    page.keyboard.type(code)
    page.keyboard.press("Tab")
    page.keyboard.type("测试商品 苹果汁")
    page.keyboard.press("Tab")
    page.keyboard.type("Apple juice")
    page.get_by_label("基本单位", exact=True).focus()
    page.keyboard.type("瓶")
    page.get_by_role("button", name="添加单位").click()
    focused(page, "unit_uom-0")
    page.keyboard.type("箱")
    page.keyboard.press("Tab")
    page.keyboard.type("12")
    page.get_by_label("条码 1", exact=True).focus()
    page.keyboard.type(barcodes[0])
    page.keyboard.press("Enter")
    focused(page, "barcode-1")
    page.keyboard.type(barcodes[1])
    page.keyboard.press("Tab")
    page.keyboard.type("箱")
    page.get_by_label("管理批次", exact=True).focus()
    page.keyboard.press("Space")
    page.get_by_label("保质期（天）", exact=True).fill("365")
    shoot(page, screenshots, "item-form", width)
    page.get_by_role("button", name="创建商品").click()
    page.wait_for_url(re.compile(r"/console/items/view\?code="))
    assert page.get_by_role("heading", level=1).inner_text().startswith(code)
    for barcode in barcodes:
        assert page.get_by_text(barcode, exact=True).is_visible()
    assert page.get_by_text("12 瓶").first.is_visible()
    assert page.get_by_text("管理批次").is_visible()
    no_sideways_scroll(page)
    shoot(page, screenshots, "item", width)
    switch_language(page, "English")
    assert page.get_by_role("heading", level=1).inner_text() == f"{code} Apple juice"
    switch_language(page, "简体中文")

    # A scan into the search box: the barcode and Enter, and the item opens.
    page.goto(f"{central.url}/console/items")
    focused(page, "q")
    shoot(page, screenshots, "items", width)
    page.keyboard.type(barcodes[1])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/items/view\?code=" + re.escape(code) + "$"))
    assert page.get_by_text(barcodes[0], exact=True).is_visible()

    # The list's search finds it by part of its name, too.
    page.goto(f"{central.url}/console/items")
    focused(page, "q")
    page.keyboard.type("苹果汁")
    page.keyboard.press("Enter")
    expect_link = page.locator("#item-results").get_by_role("link", name=code)
    expect_link.wait_for()
    no_sideways_scroll(page)


def test_switch_to_english_and_back(
    page: Any, central: Central, width: str, screenshots: Path
) -> None:
    sign_in(page, central, "boss")
    switch_language(page, "English")
    assert re.search(r"/console/items$", page.url)
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Items"
    assert page.get_by_label("Search by code, name or barcode — or scan").is_visible()
    shoot(page, screenshots, "items", width)
    # The choice holds on every page after it, until switched back.
    page.goto(f"{central.url}/console/items/new")
    assert page.get_by_role("heading", level=1).inner_text() == "New item"
    shoot(page, screenshots, "item-form", width)
    page.goto(f"{central.url}/console/users")
    assert page.get_by_role("columnheader", name="Roles").count() == 1 or width == "phone"
    no_sideways_scroll(page)
    shoot(page, screenshots, "users", width)
    switch_language(page, "简体中文")
    assert re.search(r"/console/users$", page.url)
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", level=1).inner_text() == "用户"
    shoot(page, screenshots, "users", width)


def test_a_form_error_sits_next_to_its_field_and_nothing_is_saved(
    page: Any, central: Central, width: str
) -> None:
    sign_in(page, central, "boss")
    page.goto(f"{central.url}/console/items/new")
    page.get_by_label("编码", exact=True).fill(f"BAD-{width}")
    page.get_by_label("基本单位", exact=True).fill("pcs")
    page.get_by_label("条码 1", exact=True).fill("has space")
    page.get_by_role("button", name="创建商品").click()
    name_error = page.locator("#error-name")
    name_error.wait_for()
    assert name_error.inner_text() == "此项必填。"
    assert page.locator("#error-barcodes-0-barcode").inner_text().startswith("只能包含")
    # The keyboard is taken to the first field in error; what was typed is still there.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'name'")
    assert page.get_by_label("条码 1", exact=True).input_value() == "has space"
    page.goto(f"{central.url}/console/items/view?code=BAD-{width}")
    assert page.get_by_role("heading", level=1).inner_text() == "没有此页面或记录。"


def test_a_clerks_item_page_shows_no_price(
    page: Any, central: Central, width: str, screenshots: Path
) -> None:
    engine = create_db_engine(central.database_url)
    try:
        with engine.connect() as connection:
            upsert_item(
                connection=connection,
                item=ItemData(item_code="PRICED-1", name="Priced item", uom="pcs"),
                barcodes=[BarcodeData(barcode="PRICED-BC", item_code="PRICED-1", qty_per=1)],
                audit=system_context("test"),
                cost=Decimal("3.215"),
                price=Decimal("4.99"),
                purchase_price=Decimal("2.875"),
            )
    finally:
        engine.dispose()
    sign_in(page, central, "clerk")
    # The clerk's menu offers no form to write items, and the page refuses it too.
    assert page.get_by_role("link", name="新建商品").count() == 0
    page.keyboard.type("PRICED-BC")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/items/view\?code=PRICED-1$"))
    html = page.content()
    for figure in (
        "3.215",
        "4.99",
        "2.875",
        "¥",
        "CN¥",
        "标准成本",
        "标价",
        "采购价",
        "data-financial",
    ):
        assert figure not in html, f"a clerk's item page shows {figure!r}"
    shoot(page, screenshots, "item-clerk", width)
    switch_language(page, "English")
    assert page.locator("html").get_attribute("lang") == "en"
    html = page.content()
    for figure in ("3.215", "4.99", "2.875", "¥", "Standard cost", "List price", "Purchase price"):
        assert figure not in html, f"a clerk's item page shows {figure!r}"
    # The switch stored English for the clerk (the central is shared): back.
    switch_language(page, "简体中文")
    response = page.goto(f"{central.url}/console/items/new")
    assert response is not None
    assert response.status == 403
    # A buyer (purchaser: sees prices) does see them, so the check above is not vacuous.
    page.context.clear_cookies()
    sign_in(page, central, "buyer")
    page.goto(f"{central.url}/console/items/view?code=PRICED-1")
    assert "3.215" in page.content()
    assert "4.99" in page.content()


def test_focus_is_visible(page: Any, central: Central, width: str) -> None:
    page.goto(f"{central.url}/console/login")
    focused(page, "username")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "the focused control shows no outline"


def test_a_scan_that_ends_with_tab_opens_the_item(page: Any, central: Central, width: str) -> None:
    """Some wedges end a scan with Tab: a burst of keys faster than typing, then Tab."""
    engine = create_db_engine(central.database_url)
    try:
        with engine.connect() as connection:
            upsert_item(
                connection=connection,
                item=ItemData(item_code="TAB-1", name="Tab item", uom="pcs"),
                barcodes=[BarcodeData(barcode="4006381333931", item_code="TAB-1", qty_per=1)],
                audit=system_context("test"),
            )
    finally:
        engine.dispose()
    sign_in(page, central, "clerk")
    # A scanner's keys come < 50 ms apart; Playwright's on a loaded machine may not, so the
    # field is told to allow 300 ms (as one would for a slow scanner), and the person below
    # types with pauses well beyond it.
    page.locator("#q").evaluate("field => { field.dataset.scanGap = '300'; }")
    page.keyboard.type("4006381333931")
    page.keyboard.press("Tab")
    page.wait_for_url(re.compile(r"/console/items/view\?code=TAB-1$"))
    # A scan that finds nothing: red, said, and the field ready for the next scan.
    page.goto(f"{central.url}/console/items")
    focused(page, "q")
    page.keyboard.type("0000000000000")
    page.keyboard.press("Enter")
    miss = page.get_by_role("alert").filter(has_text="0000000000000")
    miss.wait_for()
    assert "没有与" in miss.inner_text()
    focused(page, "q")
    # Selected, not merely a caret at the end (which the field has before the page's
    # afterSettle handler selects it): typing before that would land mid-text.
    page.wait_for_function(
        "document.activeElement.selectionStart === 0 && document.activeElement.selectionEnd === 13"
    )
    page.keyboard.type("4006381333931")  # replaces the selected text
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/items/view\?code=TAB-1$"))
    # A person who types slowly and presses Tab moves the focus as usual.
    page.goto(f"{central.url}/console/items")
    focused(page, "q")
    page.locator("#q").evaluate("field => { field.dataset.scanGap = '300'; }")
    page.keyboard.type("TAB", delay=1000)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") != "q"
    assert re.search(r"/console/items$", page.url)


def test_a_lost_connection_says_so_and_keeps_what_was_typed(
    page: Any, central: Central, width: str, problems: list[str]
) -> None:
    sign_in(page, central, "boss")
    page.goto(f"{central.url}/console/items/new")
    page.get_by_label("编码", exact=True).fill(f"OFF-{width}")
    page.get_by_label("名称", exact=True).fill("断网")
    page.get_by_label("基本单位", exact=True).fill("pcs")
    page.context.set_offline(True)
    page.get_by_role("button", name="创建商品").click()
    banner = page.locator("#net-error")
    banner.wait_for(state="visible")
    assert "连接已断开" in banner.inner_text()
    assert page.get_by_label("名称", exact=True).input_value() == "断网"
    problems.clear()  # the failed request was the point
    # Back online, the same form is sent again, and saved.
    page.context.set_offline(False)
    page.get_by_role("button", name="创建商品").click()
    page.wait_for_url(re.compile(r"/console/items/view\?code=OFF-"))
    assert page.get_by_role("heading", level=1).inner_text() == f"OFF-{width} 断网"


def test_partners_sites_and_an_import_in_the_browser(
    page: Any, central: Central, width: str, screenshots: Path, tmp_path: Path
) -> None:
    """A partner made with the form, a location tree grown from its "+" links, and an
    import refused with every error listed, then accepted with its counts."""
    engine = create_db_engine(central.database_url)
    site = f"WH-{width.upper()}"
    try:
        with engine.connect() as connection:
            put_site(
                connection,
                site_id=site,
                kind="warehouse",
                name="华东总仓",
                name_en="East China DC",
                active=True,
                audit=system_context("test"),
            )
    finally:
        engine.dispose()
    sign_in(page, central, "boss")

    page.goto(f"{central.url}/console/partners/new")
    focused(page, "code")
    page.keyboard.type(f"SUP-{width}")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # supplier: already ticked, so this unticks it...
    page.keyboard.press("Space")  # ...and ticks it again, all by keyboard
    page.get_by_label("名称", exact=True).fill("上海饮料有限公司")
    page.get_by_label("英文名称", exact=True).fill("Shanghai Drinks Ltd")
    page.get_by_label("交货周期（天） — 供应商", exact=True).fill("soon")
    page.get_by_role("button", name="创建往来单位").click()
    error = page.locator("#error-lead_time_days")
    error.wait_for()
    assert error.inner_text() == "请输入整数，例如 30。"
    page.get_by_label("交货周期（天） — 供应商", exact=True).fill("3")
    no_sideways_scroll(page)
    shoot(page, screenshots, "partner-form", width)
    page.get_by_role("button", name="创建往来单位").click()
    page.wait_for_url(re.compile(r"/console/partners/view\?code=SUP-"))
    assert "上海饮料有限公司" in page.get_by_role("heading", level=1).inner_text()
    page.goto(f"{central.url}/console/partners")
    no_sideways_scroll(page)
    shoot(page, screenshots, "partners", width)

    page.goto(f"{central.url}/console/sites/view?site={site}")
    for code in ("A", "A-01", "A-01-01"):
        page.get_by_role("link", name=re.compile(r"^(新建库位|在 .* 下添加库位)$")).last.click()
        page.wait_for_url(re.compile(r"/console/sites/locations/new"))
        focused(page, "code")
        page.keyboard.type(code)
        if code == "A-01-01":
            page.get_by_label("类型", exact=True).select_option("quarantine")
        page.get_by_role("button", name="创建库位").click()
        page.wait_for_url(re.compile(r"/console/sites/view\?site="))
    tree = page.get_by_role("list", name="库位")
    assert tree.locator("li li li").inner_text().startswith("A-01-01")
    assert "待检" in tree.inner_text()
    no_sideways_scroll(page)
    shoot(page, screenshots, "site", width)

    page.goto(f"{central.url}/console/transfer")
    bad = tmp_path / "items.csv"
    bad.write_text("item_code,name,uom,units\nIMP-1,好,,\nIMP-2,好,EA,盒=0\n", encoding="utf-8")
    page.get_by_label("文件（CSV 或 XLSX）").set_input_files(str(bad))
    page.get_by_role("button", name="导入").click()
    refused = page.locator("[data-import-errors]")
    refused.wait_for()
    assert page.locator("#import-progress").is_hidden()
    rows = refused.locator("tbody tr")
    assert rows.count() == 2
    if width == "desktop":
        headings = refused.locator("thead th").all_inner_texts()
        assert headings == ["行", "列", "原因"]
    assert "uom" in rows.nth(0).inner_text()
    no_sideways_scroll(page)
    shoot(page, screenshots, "import-refused", width)
    good = tmp_path / "good.csv"
    good.write_text(f"item_code,name,uom\nIMP-{width},好,EA\n", encoding="utf-8")
    page.get_by_label("文件（CSV 或 XLSX）").set_input_files(str(good))
    page.get_by_role("button", name="导入").click()
    done = page.locator("[data-import-done]")
    done.wait_for()
    assert "新增 1" in done.inner_text()


def test_a_clerks_site_and_transfer_pages_show_no_money(
    page: Any, central: Central, width: str
) -> None:
    sign_in(page, central, "clerk")
    for path in ("/console/sites", "/console/transfer"):
        page.goto(f"{central.url}{path}")
        html = page.content()
        for figure in ("¥", "CN¥", "data-financial", "信用额度", "成本"):
            assert figure not in html, f"{path} shows {figure!r} to a clerk"
    response = page.goto(f"{central.url}/console/partners")
    assert response is not None
    assert response.status == 403


def test_a_po_made_by_one_purchaser_is_approved_by_another_and_a_clerk_sees_no_price(
    page: Any, browser: Any, central: Central, width: str, screenshots: Path
) -> None:
    """A purchaser fills in a draft PO (supplier, site, a line with its price); a second
    purchaser approves it from its page; a warehouse clerk's view of it has no price."""
    site, supplier, item = f"PO-{width.upper()}", f"SUPPO-{width}", f"POI-{width.upper()}"
    engine = create_db_engine(central.database_url)
    try:
        with engine.connect() as connection:
            put_site(
                connection,
                site_id=site,
                kind="store",
                name="药店一号",
                name_en="Pharmacy 1",
                active=True,
                audit=system_context("test"),
            )
            save_partner(
                connection,
                code=supplier,
                values=PartnerFields(is_supplier=True, is_customer=False, name="华康医药"),
                audit=system_context("test"),
            )
            upsert_item(
                connection=connection,
                item=ItemData(item_code=item, name="维生素C片", uom="盒"),
                barcodes=[],
                audit=system_context("test"),
            )
    finally:
        engine.dispose()

    sign_in(page, central, "buyer")
    page.goto(f"{central.url}/console/purchase-orders/new")
    page.get_by_label("供应商", exact=True).select_option(supplier)
    page.get_by_label("站点", exact=True).select_option(site)
    page.locator("#line-0-item_code").fill(item)
    page.locator("#line-0-qty").fill("24")
    page.locator("#line-0-unit_price").fill("12.5")
    page.locator("#line-0-tax_rate").fill("0.13")
    page.get_by_role("button", name="保存草稿").click()
    page.wait_for_url(re.compile(r"/console/purchase-orders/view\?id=PO\d+$"))
    po_url = page.url
    assert page.locator("#po-status").inner_text() == "草稿"
    assert "¥300" in page.locator("#po-lines").inner_text()
    assert page.get_by_role("button", name="审核").count() == 1  # shown; refused on post

    approver = browser.new_context(viewport={"width": WIDTHS[width], "height": 900}, locale="zh-CN")
    try:
        second = approver.new_page()
        sign_in(second, central, "buyer2")
        second.goto(po_url)
        second.get_by_role("button", name="审核").click()
        second.wait_for_function(
            "document.getElementById('po-status').textContent.trim() === '已审核'"
        )
        assert second.get_by_role("button", name="发送给供应商").count() == 1
        no_sideways_scroll(second)
        shoot(second, screenshots, "po", width)
        second.goto(f"{central.url}/console/purchase-orders")
        assert second.get_by_role("link", name=po_url.rsplit("=", 1)[1]).count() == 1
        no_sideways_scroll(second)
        shoot(second, screenshots, "purchase-orders", width)
    finally:
        approver.close()

    clerk_context = browser.new_context(
        viewport={"width": WIDTHS[width], "height": 900}, locale="zh-CN"
    )
    try:
        clerk = clerk_context.new_page()
        sign_in(clerk, central, "clerk")
        clerk.goto(po_url)
        html = clerk.content()
        for figure in ("¥", "12.5", "单价", "金额", "data-financial"):
            assert figure not in html, figure
        assert clerk.get_by_role("button", name="审核").count() == 0
        shoot(clerk, screenshots, "po-clerk", width)
    finally:
        clerk_context.close()
