"""The feedback channel in a real browser at 390 px (a phone): a clerk presses the
button on the item list, writes a note and attaches a screenshot the browser took of the
page; the admin finds it in the inbox, tags and resolves it, and opens the month's
summary. Screenshots of each step are saved (``conftest.screenshots``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.patience import patience_timeout
from tests.web.conftest import Central
from tests.web.test_console_browser import WIDTHS, no_sideways_scroll, shoot, signed_in_as

pytestmark = pytest.mark.integration

PHONE = "phone"


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A fresh zh-CN context at 390 px, failing the test on a script error."""
    context = browser.new_context(
        viewport={"width": WIDTHS[PHONE], "height": 900},
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"},
    )
    context.set_default_timeout(patience_timeout(5) * 1000)
    problems: list[str] = []
    opened = context.new_page()
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert not problems, f"the page had script errors: {problems}"


def test_a_clerk_sends_feedback_and_the_admin_resolves_it_on_a_phone(
    phone: Any, browser: Any, central: Central, screenshots: Path
) -> None:
    signed_in_as(phone, central, "clerk")
    picture = phone.screenshot()  # what the clerk saw: the browser's own capture
    phone.locator("#feedback-button").click()
    phone.wait_for_url(re.compile(r"/console/feedback/new\?page=%2Fconsole%2Fitems$"))
    phone.locator("#note").fill("扫描枪扫了条码没有反应，请帮忙看看。")
    phone.locator("#screenshot").set_input_files(
        files=[{"name": "screen.png", "mimeType": "image/png", "buffer": picture}]
    )
    no_sideways_scroll(phone)
    shoot(phone, screenshots, "feedback-form", PHONE)
    with phone.expect_navigation():
        phone.get_by_role("button", name="发送").click()
    sent = phone.locator("#feedback-sent")
    assert re.search(r"FB\d{6}", sent.inner_text())
    feedback_id = re.findall(r"FB\d{6}", sent.inner_text())[0]
    shoot(phone, screenshots, "feedback-sent", PHONE)
    with phone.expect_navigation():
        phone.locator("#feedback-back").click()
    assert phone.url.endswith("/console/items")

    admin_context = browser.new_context(
        viewport={"width": WIDTHS[PHONE], "height": 900},
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    admin_context.set_default_timeout(patience_timeout(5) * 1000)
    try:
        admin = admin_context.new_page()
        signed_in_as(admin, central, "boss")
        admin.goto(f"{central.url}/console/feedback")
        row = admin.locator(f"#feedback-{feedback_id}")
        assert "扫描枪" in row.inner_text()
        assert "warehouse_clerk" in row.inner_text()
        shot = admin.request.get(f"{central.url}/console/feedback/screenshot?id={feedback_id}")
        assert shot.body() == picture
        row.locator(f"#tags-{feedback_id}").fill("bug scan")
        with admin.expect_navigation():
            row.get_by_role("button", name="标签").click()
        row = admin.locator(f"#feedback-{feedback_id}")
        assert admin.locator(f"#tags-{feedback_id}").input_value() == "bug scan"
        no_sideways_scroll(admin)
        shoot(admin, screenshots, "feedback-inbox", PHONE)
        row.locator(f"#resolution-{feedback_id}").fill("已更新扫描枪驱动")
        with admin.expect_navigation():
            row.get_by_role("button", name="处理").click()
        assert admin.locator(f"#feedback-{feedback_id}").count() == 0  # no longer open
        admin.goto(f"{central.url}/console/feedback?status=resolved")
        assert "已更新扫描枪驱动" in admin.locator(f"#feedback-{feedback_id}").inner_text()
        with admin.expect_navigation():
            admin.locator("#feedback-summary").click()
        summary = admin.locator("#summary").inner_text()
        assert "bug" in summary
        assert "/console/items" in summary
        no_sideways_scroll(admin)
        shoot(admin, screenshots, "feedback-summary", PHONE)
    finally:
        admin_context.close()
