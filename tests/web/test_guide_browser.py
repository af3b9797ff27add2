"""The user guide in a real browser at a phone's width (390 px): the console's help link
opens the page's chapter in the console's language, and the guide's search finds chapters
in zh-CN and English. A central of the module's own serves the guide built once for the
session (``conftest.built_guide``); screenshots go where the other browser tests put theirs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.patience import patience_timeout
from tests.web import test_console_browser as base
from tests.web.conftest import Central, serve_central
from tests.web.test_console_browser import no_sideways_scroll, sign_in, switch_language

pytestmark = pytest.mark.integration

problems = base.problems


@pytest.fixture(scope="module")
def central(built_guide: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    """A central of this module's own that serves the built guide: the shared one
    (``conftest.central``) is started without it, since building the guide costs every
    worker that runs a browser test some 14 s otherwise."""
    folder = tmp_path_factory.mktemp("guide-central")
    with serve_central(folder, JXC_CENTRAL_GUIDE_DIR=str(built_guide)) as served:
        yield served


def open_help(page: Any) -> Any:
    """Follow the page's help link, which opens the guide in a new tab."""
    with page.context.expect_page() as opened:
        page.locator("#help-link").click()
    guide = opened.value
    guide.wait_for_load_state()
    return guide


def search(guide: Any, words: str, chapter: str) -> None:
    """Open the guide's search (the magnifier at phone width), type, and wait until a
    result links ``chapter``.

    The search box reacts to key presses; Playwright types Chinese as inserted text with
    no key event (as an input method's candidate is committed), so a key (End) follows,
    as a person's next key would.
    """
    guide.locator('label.md-header__button[for="__search"]').click()
    guide.keyboard.type(words)
    guide.keyboard.press("End")
    guide.locator(f'.md-search-result__item a[href*="{chapter}"]').first.wait_for()
    settled(guide)


def settled(guide: Any) -> None:
    """Wait until the search overlay's transitions have ended, so a screenshot shows the
    results and not a frame of the fade."""
    guide.wait_for_function("document.getAnimations().every(a => a.playState !== 'running')")


def test_help_opens_the_pages_chapter_and_the_guide_searches_on_a_phone(
    browser: Any, central: Central, screenshots: Path, problems: list[str]
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 900},
        locale="zh-CN",
        reduced_motion="reduce",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    context.set_default_timeout(patience_timeout(5) * 1000)
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        sign_in(page, central, "clerk")
        page.goto(f"{central.url}/console/receipts")

        guide = open_help(page)
        guide.on("pageerror", lambda error: problems.append(str(error)))
        assert guide.url == f"{central.url}/guide/zh-CN/tasks/receive.html"
        assert guide.locator("html").get_attribute("lang") == "zh"
        assert guide.locator("article h1").inner_text().rstrip("¶ \n") == "月台收货"
        no_sideways_scroll(guide)
        search(guide, "盘点", "tasks/count.html")
        guide.screenshot(path=str(screenshots / "guide-search-zh-CN-390.png"))
        guide.close()

        switch_language(page, "English")
        guide = open_help(page)
        assert guide.url == f"{central.url}/guide/en/tasks/receive.html"
        assert re.search("Receive a delivery", guide.locator("article h1").inner_text())
        no_sideways_scroll(guide)
        guide.screenshot(path=str(screenshots / "guide-chapter-en-390.png"), full_page=True)
        search(guide, "quarantine", "tasks/exceptions.html")
        guide.screenshot(path=str(screenshots / "guide-search-en-390.png"))
    finally:
        context.close()
    assert not problems, problems
