"""The user guide: the same chapters in both languages, a strict build (no broken link, no
missing screenshot), central serving it, the help link of every console page, and the
station chapters at the edge's status page."""

from __future__ import annotations

import http.client
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central_api.api.permissions import api_routes
from central_api.core.config import Settings
from central_api.web.guide import CHAPTERS, chapter_for, help_url
from edge_agent.status_page import StatusServer
from jxc import guide
from tests.web.conftest import GUIDE_SOURCES, TEST_PASSWORD, add_test_user, central_app

ROLES = ("purchaser", "sales", "warehouse-clerk", "store-manager", "finance", "admin", "technician")
TASKS = (
    "receive",
    "count",
    "pick",
    "transfer",
    "return",
    "counter",
    "exceptions",
    "month-close",
    "commission",
    "offline-recovery",
)
INDEX_PAGES = {"/console", "/console/", "/console/login", "/console/lang", "/console/me"}
"""Console pages with no chapter of their own: their help opens the guide's index."""


def chapters(language_dir: str) -> set[str]:
    root = GUIDE_SOURCES / language_dir
    return {str(path.relative_to(root).with_suffix("")) for path in root.rglob("*.md")}


def test_every_chapter_is_in_both_languages() -> None:
    english, chinese = chapters("en"), chapters("zh")
    assert english == chinese
    expected = {f"roles/{r}" for r in ROLES} | {f"tasks/{t}" for t in TASKS}
    assert expected | {"index", "walkthrough", "faq"} <= english


def test_both_languages_build_strictly_with_every_chapter(built_guide: Path) -> None:
    for tag in guide.SOURCE_DIRS:
        for chapter in chapters(guide.SOURCE_DIRS[tag]):
            assert (built_guide / tag / f"{chapter}.html").is_file(), (tag, chapter)
        # searchable in the browser, and nothing fetched from elsewhere (no CDN, no web font)
        assert (built_guide / tag / "search" / "search_index.json").is_file()
        index = (built_guide / tag / "index.html").read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", index.split("<body")[0])


@pytest.fixture
def database(tmp_path: Path, sqlite_template: Path) -> Path:
    copy = tmp_path / "central.db"
    shutil.copyfile(sqlite_template, copy)
    return copy


@pytest.fixture
def app(database: Path, built_guide: Path) -> Iterator[FastAPI]:
    settings = Settings(database_url=f"sqlite:///{database}", guide_dir=built_guide)
    with central_app(settings) as made:
        add_test_user(made.state.engine, "clerk", ["warehouse_clerk"])
        yield made


def test_every_console_page_opens_a_chapter_that_exists(app: FastAPI) -> None:
    pages = {
        route.path_format
        for route in api_routes(app)
        if "GET" in route.methods and route.path_format.startswith("/console")
    }
    assert len(pages) > 50
    for page in sorted(pages):
        chapter = chapter_for(page)
        if chapter == guide.INDEX:
            assert page in INDEX_PAGES, f"{page} has no chapter: add it to CHAPTERS"
        for tag in guide.SOURCE_DIRS:
            assert guide.chapter_source(tag, chapter).is_file(), (page, tag, chapter)
    for prefix in CHAPTERS:
        assert any(p == prefix or p.startswith(f"{prefix}/") for p in pages), prefix
    assert chapter_for("/console/receipts/new?po=PO000001") == "tasks/receive"
    assert chapter_for("/console/reports/retail-takings") == "tasks/counter"
    assert chapter_for("/console/reports/expiry") == "roles/store-manager"


def test_a_page_links_its_chapter_in_the_readers_language(app: FastAPI) -> None:
    client = TestClient(app, follow_redirects=False, headers={"Accept-Language": "en"})
    signed = client.post(
        "/console/login",
        data={"username": "clerk", "password": TEST_PASSWORD, "next": "/console/receipts"},
    )
    assert signed.status_code == 303, signed.text
    page = client.get("/console/receipts")
    assert page.status_code == 200
    link = re.search(r'<a class="help" href="([^"]+)"[^>]*>([^<]+)</a>', page.text)
    assert link is not None
    assert link.groups() == ("/guide/en/tasks/receive.html", "Help")
    assert help_url("/console/receipts", "en") == link.group(1)
    chinese = TestClient(app, headers={"Accept-Language": "zh-CN"}).get("/console/login")
    assert 'href="/guide/zh-CN/index.html"' in chinese.text
    assert ">帮助</a>" in chinese.text
    chapter = client.get(link.group(1))
    assert chapter.status_code == 200
    assert chapter.headers["content-type"].startswith("text/html")
    assert "<h1" in chapter.text


def test_central_serves_the_guide_and_nothing_beside_it(app: FastAPI) -> None:
    client = TestClient(app, follow_redirects=False, headers={"Accept-Language": "zh-CN,zh"})
    home = client.get("/guide")
    assert home.status_code == 307
    assert home.headers["location"] == "/guide/zh-CN/index.html"
    assert client.get("/guide/zh-CN/").status_code == 200
    shot = client.get("/guide/en/screenshots/login-zh-CN-390.png")
    assert shot.status_code == 200
    assert shot.headers["content-type"] == "image/png"
    assert client.get("/guide/en/no-such-chapter.html").status_code == 404
    assert client.get("/guide/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
    assert client.get("/guide/en/../../../pyproject.toml").status_code == 404


def test_a_central_without_a_built_guide_says_how_to_build_it(
    tmp_path: Path, database: Path
) -> None:
    settings = Settings(database_url=f"sqlite:///{database}", guide_dir=tmp_path / "none")
    with central_app(settings) as made:
        answer = TestClient(made).get("/guide/en/index.html")
    assert answer.status_code == 404
    assert "make docs" in answer.text


@pytest.fixture
def edge_status() -> Iterator[StatusServer]:
    server = StatusServer("127.0.0.1", 0, lambda: {"status": "ok"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fetch(server: StatusServer, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.getheader("content-type") or "", answer.read()
    finally:
        connection.close()


def test_the_edge_serves_the_station_chapters_without_central(
    edge_status: StatusServer,
) -> None:
    for tag, folder in guide.SOURCE_DIRS.items():
        for chapter in guide.STATION_CHAPTERS:
            status, kind, body = fetch(edge_status, guide.chapter_url(tag, chapter))
            assert status == 200, (tag, chapter)
            assert kind.startswith("text/html")
            source = (GUIDE_SOURCES / folder / f"{chapter}.md").read_text(encoding="utf-8")
            title = source.splitlines()[0].lstrip("# ").strip()
            assert "<h1" in body.decode()
            assert title in body.decode()
            assert '.md"' not in body.decode()  # links between chapters point at pages
            for shot in re.findall(r'src="\.\./screenshots/([^"]+)"', body.decode()):
                got = fetch(edge_status, f"/guide/{tag}/screenshots/{shot}")
                assert got[:2] == (200, "image/png"), shot
    status, _, body = fetch(edge_status, "/guide/en/index.html")
    assert status == 200
    assert b"tasks/receive.html" in body
    assert fetch(edge_status, "/guide/en/roles/admin.html")[0] == 404
    assert fetch(edge_status, "/guide/en/screenshots/..%2Fguide%2Fhooks.py")[0] == 404
    assert fetch(edge_status, "/healthz")[0] == 200
