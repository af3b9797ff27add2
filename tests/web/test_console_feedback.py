"""The console's feedback channel over HTTP, on SQLite and PostgreSQL: the button on every
page, a clerk's note with a picture (one note for a double tap, a refused picture next to
its field), the admin's inbox, tags, resolution and monthly summary, and who may do what."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.core.config import Settings
from central_api.core.principal import CSRF_COOKIE
from central_api.models import audit_log, feedback
from tests.web.conftest import TEST_PASSWORD, add_test_user, central_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    with central_app(Settings(database_url=database_url)) as made:
        add_test_user(made.state.engine, "boss", ["admin"])
        add_test_user(made.state.engine, "clerk", ["warehouse_clerk"], sites=["S01"])
        yield made


def browser(app: FastAPI, username: str, lang: str = "zh-CN") -> TestClient:
    client = TestClient(app, follow_redirects=False, headers={"Accept-Language": lang})
    answer = client.post(
        "/console/login",
        data={"username": username, "password": TEST_PASSWORD, "next": "/console/items"},
    )
    assert answer.status_code == 303, answer.text
    return client


def htmx(client: TestClient) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": client.cookies[CSRF_COOKIE]}


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, name
    return unescape(found[1])


def test_a_clerk_sends_a_note_with_a_picture_from_the_button(app: FastAPI) -> None:
    clerk = browser(app, "clerk")
    page = clerk.get("/console/items?q=apple")
    button = re.search(r'id="feedback-button" href="([^"]+)"', page.text)
    assert button is not None
    assert "反馈" in page.text
    form = clerk.get(unescape(button[1]))
    assert form.status_code == 200
    assert hidden(form.text, "page") == "/console/items?q=apple"
    data = {
        "page": hidden(form.text, "page"),
        "idempotency_key": hidden(form.text, "idempotency_key"),
        "note": "搜索不到苹果",
    }
    files = {"screenshot": ("screen.png", PNG, "image/png")}
    sent = clerk.post("/console/feedback/new", data=data, files=files, headers=htmx(clerk))
    assert sent.status_code == 200, sent.text
    target = urlsplit(sent.headers["HX-Redirect"])
    assert parse_qs(target.query)["page"] == ["/console/items?q=apple"]
    feedback_id = parse_qs(target.query)["sent"][0]
    # a double tap (a new multipart boundary, the same key): still one note
    again = clerk.post("/console/feedback/new", data=data, files=files, headers=htmx(clerk))
    assert parse_qs(urlsplit(again.headers["HX-Redirect"]).query)["sent"] == [feedback_id]
    thanks = clerk.get(sent.headers["HX-Redirect"])
    assert feedback_id in thanks.text
    assert 'href="/console/items?q=apple" id="feedback-back"' in thanks.text
    with app.state.engine.connect() as connection:
        rows = connection.execute(
            select(
                feedback.c.feedback_id,
                feedback.c.page,
                feedback.c.roles,
                feedback.c.site_id,
                feedback.c.screenshot,
                feedback.c.language,
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (feedback_id, "/console/items", "warehouse_clerk", "S01", PNG, "zh-CN")
    ]
    assert clerk.get("/console/feedback").status_code == 403
    assert clerk.get(f"/console/feedback/screenshot?id={feedback_id}").status_code == 403


def test_a_refused_picture_is_said_next_to_its_field_and_nothing_is_stored(app: FastAPI) -> None:
    for lang, words in (("zh-CN", "图片必须是 PNG、JPEG 或 WebP 文件。"), ("en", "must be a PNG")):
        clerk = browser(app, "clerk", lang=lang)
        form = clerk.get("/console/feedback/new?page=/console/items").text
        answer = clerk.post(
            "/console/feedback/new",
            data={
                "page": "/console/items",
                "note": "typed text stays",
                "idempotency_key": hidden(form, "idempotency_key"),
            },
            files={"screenshot": ("evil.png", b"<svg onload=alert(1)>", "image/png")},
            headers=htmx(clerk),
        )
        assert answer.status_code == 422
        assert words in answer.text
        assert 'id="error-screenshot"' in answer.text
        assert "typed text stays" in answer.text
        empty = clerk.post(
            "/console/feedback/new",
            data={"page": "/console/items", "note": "  "},
            headers=htmx(clerk),
        )
        assert empty.status_code == 422
        assert 'id="error-note"' in empty.text
    with app.state.engine.connect() as connection:
        assert connection.execute(select(feedback.c.feedback_id)).all() == []


def test_the_admin_tags_resolves_and_exports_the_month(app: FastAPI) -> None:
    clerk = browser(app, "clerk")
    form = clerk.get("/console/feedback/new?page=/console/receipts").text
    clerk.post(
        "/console/feedback/new",
        data={
            "page": "/console/receipts",
            "note": "slow",
            "idempotency_key": hidden(form, "idempotency_key"),
        },
        headers=htmx(clerk),
    )
    boss = browser(app, "boss", lang="en")
    inbox = boss.get("/console/feedback")
    assert inbox.status_code == 200
    found = re.search(r'id="feedback-(FB\d+)"', inbox.text)
    assert found is not None
    feedback_id = found[1]
    assert "slow" in inbox.text
    assert "warehouse_clerk" in inbox.text
    tagged = boss.post(
        f"/console/feedback/tag?id={feedback_id}",
        data={"tags": "speed bug", "version": "1", "idempotency_key": "k-tag-1-0000000000000000"},
        headers=htmx(boss),
    )
    assert tagged.status_code == 200, tagged.text
    stale = boss.post(
        f"/console/feedback/resolve?id={feedback_id}",
        data={"resolution": "faster now", "version": "1"},
        headers=htmx(boss),
    )
    assert stale.status_code == 412
    resolved = boss.post(
        f"/console/feedback/resolve?id={feedback_id}",
        data={"resolution": "faster now", "version": "2", "status": "open"},
        headers=htmx(boss),
    )
    assert resolved.headers["HX-Redirect"] == "/console/feedback?status=open"
    assert "No notes here." in boss.get("/console/feedback").text
    done = boss.get("/console/feedback?status=resolved&tag=speed").text
    assert "faster now · boss" in done
    with app.state.engine.connect() as connection:
        month = connection.execute(select(feedback.c.created_at)).scalar_one().strftime("%Y-%m")
    summary = boss.get(f"/console/feedback/summary?month={month}")
    assert summary.status_code == 200
    cells = re.findall(r'<td data-label="[^"]*"(?: class="num")?>([^<]*)</td>', summary.text)
    assert cells[:5] == ["All notes", "—", "1", "0", "1"]
    as_csv = boss.get(f"/console/feedback/summary?month={month}&format=csv")
    table = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert table[0] == ["Grouped by", "Page or tag", "Notes", "Open", "Resolved"]
    assert ["tag", "speed", "1", "0", "1"] in table
    xlsx = boss.get(f"/console/feedback/summary?month={month}&format=xlsx")
    assert xlsx.content[:2] == b"PK"
    with app.state.engine.connect() as connection:
        actions = (
            connection.execute(
                select(audit_log.c.action).where(
                    audit_log.c.action.in_(
                        ["feedback.create", "feedback.tag", "feedback.resolve", "report.read"]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(set(actions)) == [
        "feedback.create",
        "feedback.resolve",
        "feedback.tag",
        "report.read",
    ]


def test_odd_filters_and_pages_are_never_a_server_error(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    for path in (
        "/console/feedback?month=9999-12&tag=%00&status=x",
        "/console/feedback?month=0000-00",
        "/console/feedback/summary?month=9999-12",
        "/console/feedback/summary?month=abc",
        "/console/feedback/new?page=%00%0a//evil.example",
        "/console/feedback/screenshot?id=FB1",
    ):
        assert boss.get(path).status_code < 500, path
    answer = boss.post(
        "/console/feedback/new",
        data={"page": "/console/\x00", "note": "x"},
        headers=htmx(boss),
    )
    assert answer.status_code == 422
    assert 'id="error-page"' in answer.text
    assert 'href="//evil' not in boss.get("/console/feedback/new?page=//evil.example").text


@pytest.mark.parametrize(
    "page", ["//evil.example/x", "/console//evil.example", "/api/v1/items", "/console/\\evil"]
)
def test_a_note_names_only_a_page_of_this_console(app: FastAPI, page: str) -> None:
    clerk = browser(app, "clerk", lang="en")
    answer = clerk.post(
        "/console/feedback/new", data={"page": page, "note": "x"}, headers=htmx(clerk)
    )
    assert answer.status_code == 422
    assert 'id="error-page"' in answer.text
