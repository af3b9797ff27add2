"""Issue 13's last console pages in a real browser (Debian's Chromium, uvicorn), at 1280 and
390 px: a location edited from its tree, a category delete refused while items use it, the
language chosen on the user's own page (kept for the user, not the browser), and an
opening-stock file imported from the transfer page. Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from central_api.core.db import create_db_engine
from central_api.services.audit import system_context
from central_api.services.categories import put_category
from central_api.services.items import upsert_item
from central_api.services.sites import put_location, put_site
from jxc.feed import ItemData, LocationData
from tests.web.conftest import Central
from tests.web.test_console_browser import (  # noqa: F401 (fixtures)
    no_sideways_scroll,
    page,
    problems,
    shoot,
    sign_in,
    signed_in_as,
    switch_language,
    width,
)

pytestmark = pytest.mark.integration


def _seed(central: Central, suffix: str) -> str:
    """A site with a zone and an aisle, a category holding an item: what the pages edit."""
    site = f"WHM-{suffix.upper()}"  # WH-{width} is test_console_browser's
    engine = create_db_engine(central.database_url)
    audit = system_context("test")
    try:
        with engine.connect() as connection:
            put_site(
                connection,
                site_id=site,
                kind="warehouse",
                name="华东总仓",
                name_en="East China DC",
                active=True,
                audit=audit,
            )
            for code, parent, level in (("A", None, "zone"), ("A-01", "A", "aisle")):
                put_location(
                    connection,
                    site_id=site,
                    data=LocationData(code=code, parent=parent, level=level, kind="storage"),
                    audit=audit,
                )
            put_category(
                connection,
                code=f"CAT-{suffix}",
                parent=None,
                name="饮料",
                name_en="Drinks",
                code_prefix=None,
                code_digits=6,
                code_pattern=None,
                audit=audit,
            )
            upsert_item(
                connection=connection,
                item=ItemData(
                    item_code=f"JUICE-{suffix}", name="果汁", uom="瓶", category=f"CAT-{suffix}"
                ),
                barcodes=[],
                audit=audit,
            )
    finally:
        engine.dispose()
    return site


def test_location_edit_category_delete_language_and_opening_stock(
    page: Any,  # noqa: F811
    central: Central,
    width: str,  # noqa: F811
    screenshots: Path,
    tmp_path: Path,
) -> None:
    site = _seed(central, width)
    signed_in_as(page, central, "boss")

    # a location edited from its tree: the code is fixed, the rest is the form's
    page.goto(f"{central.url}/console/sites/view?site={site}")
    page.get_by_role("link", name="编辑 A-01").click()
    page.wait_for_url(re.compile(r"/console/sites/locations/edit\?"))
    assert page.get_by_label("编码").count() == 0
    page.get_by_label("类型", exact=True).select_option("quarantine")
    page.get_by_label("名称", exact=True).fill("待检通道")
    no_sideways_scroll(page)
    shoot(page, screenshots, "location-edit", width)
    page.get_by_role("button", name="保存").click()
    page.wait_for_url(re.compile(r"/console/sites/view\?site="))
    assert "待检通道" in page.get_by_role("list", name="库位").inner_text()

    # a category that items use: the delete is refused, and the form says why
    page.goto(f"{central.url}/console/categories/edit?code=CAT-{width}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="删除分类").click()
    refusal = page.locator("#error-form")
    refusal.wait_for()
    assert "仍有商品属于此分类" in refusal.inner_text()
    no_sideways_scroll(page)
    shoot(page, screenshots, "category-delete-refused", width)

    # the user's own language: chosen on their page, kept for them on the next sign-in
    page.goto(f"{central.url}/console/me")
    page.get_by_label("界面语言").select_option("en")
    with page.expect_navigation():
        page.get_by_role("button", name="保存").click()
    assert page.locator("html").get_attribute("lang") == "en"
    no_sideways_scroll(page)
    shoot(page, screenshots, "me", width)
    page.context.clear_cookies()  # another device: no cookie, a zh-CN browser
    sign_in(page, central, "boss")
    assert page.locator("html").get_attribute("lang") == "en"
    switch_language(page, "简体中文")  # the header's switch stores the choice too
    assert page.locator("html").get_attribute("lang") == "zh-CN"

    # opening stock from the transfer page, with its counts
    page.goto(f"{central.url}/console/transfer")
    page.get_by_label("文件内容").select_option(label="期初库存")
    opening = tmp_path / "opening.csv"
    opening.write_text(
        f"site_id,location,item_code,qty,unit_cost\n{site},A-01,JUICE-{width},24,3.5\n",
        encoding="utf-8",
    )
    page.get_by_label("文件（CSV 或 XLSX）").set_input_files(str(opening))
    page.get_by_role("button", name="导入").click()
    done = page.locator("[data-import-done]")
    done.wait_for()
    assert "新增 1" in done.inner_text()
    no_sideways_scroll(page)
    shoot(page, screenshots, "opening-stock", width)
