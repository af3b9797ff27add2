"""The feedback channel's API on SQLite and PostgreSQL: a clerk sends a note with a
screenshot, an admin of every site reads, tags, resolves and sums it up; an admin of
another site sees nothing of it; bad input is a 4xx that says what is wrong."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from central_api.models import audit_log, roles
from central_api.services import feedback as service
from jxc.paths import FEEDBACK
from tests.central.conftest import user_token

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
"""Enough of a PNG for central, which checks a picture by its first bytes only."""


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def send(client: TestClient, token: str, **body: Any) -> Any:
    note = {"page": "/console/receipts/new?po=PO000001", "note": "扫码后没有反应\nsecond line"}
    return client.post(FEEDBACK, json={**note, **body}, headers=bearer(token, **key()))


def engine_of(client: TestClient) -> Engine:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    return engine


def test_a_clerk_sends_a_note_and_an_admin_tags_resolves_and_counts_it(
    client: TestClient,
) -> None:
    engine = engine_of(client)
    clerk = user_token(engine, "clerk", ["warehouse_clerk"], sites=["S01"])
    admin = user_token(engine, "boss", ["admin"])
    headers = bearer(clerk, **key())
    body = {
        "page": "/console/receipts/new?po=PO000001",
        "note": "扫码后没有反应\nsecond line",
        "screenshot_base64": base64.b64encode(PNG).decode(),
    }
    sent = client.post(FEEDBACK, json=body, headers=headers)
    assert sent.status_code == 201, sent.text
    note = sent.json()
    assert note["page"] == "/console/receipts/new"  # the query (search words, ids) dropped
    assert note["sender"] == "clerk"
    assert note["roles"] == ["warehouse_clerk"]
    assert note["site_id"] == "S01"
    assert note["has_screenshot"] is True
    assert note["status"] == "open"
    again = client.post(FEEDBACK, json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["feedback_id"] == note["feedback_id"]

    # The clerk may send, not read the inbox.
    assert client.get(FEEDBACK, headers=bearer(clerk)).status_code == 403
    listed = client.get(FEEDBACK, headers=bearer(admin)).json()
    assert [e["feedback_id"] for e in listed["entries"]] == [note["feedback_id"]]
    path = f"{FEEDBACK}/{note['feedback_id']}"
    picture = client.get(f"{path}/screenshot", headers=bearer(admin))
    assert picture.status_code == 200
    assert picture.content == PNG
    assert picture.headers["content-type"] == "image/png"
    assert picture.headers["x-content-type-options"] == "nosniff"

    tagged = client.post(
        f"{path}/tags",
        json={"tags": ["bug", "Training scan"]},
        headers=bearer(admin, **key(), **{"If-Match": '"1"'}),
    )
    assert tagged.status_code == 200, tagged.text
    assert tagged.json()["tags"] == ["bug", "scan", "training"]
    stale = client.post(
        f"{path}/resolve",
        json={"resolution": "fixed"},
        headers=bearer(admin, **key(), **{"If-Match": '"1"'}),
    )
    assert stale.status_code == 412
    resolved = client.post(
        f"{path}/resolve",
        json={"resolution": "scanner driver fixed in 0.9"},
        headers=bearer(admin, **key(), **{"If-Match": '"2"'}),
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_by"] == "boss"
    twice = client.post(
        f"{path}/resolve", json={"resolution": "again"}, headers=bearer(admin, **key())
    )
    assert twice.status_code == 409
    assert "resolved already" in twice.json()["detail"]
    assert [
        e["feedback_id"]
        for e in client.get(FEEDBACK, params={"tag": "bug"}, headers=bearer(admin)).json()[
            "entries"
        ]
    ] == [note["feedback_id"]]
    assert (
        client.get(FEEDBACK, params={"status": "open"}, headers=bearer(admin)).json()["entries"]
        == []
    )

    month = note["created_at"][:7]
    summary = client.get(f"{FEEDBACK}/summary", params={"month": month}, headers=bearer(admin))
    assert summary.status_code == 200
    rows = {
        (r["kind"], r["key"]): (r["total"], r["open"], r["resolved"])
        for r in summary.json()["rows"]
    }
    assert rows == {
        ("all", ""): (1, 0, 1),
        ("page", "/console/receipts/new"): (1, 0, 1),
        ("tag", "bug"): (1, 0, 1),
        ("tag", "scan"): (1, 0, 1),
        ("tag", "training"): (1, 0, 1),
    }
    as_csv = client.get(
        f"{FEEDBACK}/summary",
        params={"month": month, "format": "csv"},
        headers=bearer(admin, **{"Accept-Language": "en"}),
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert table[0] == ["Grouped by", "Page or tag", "Notes", "Open", "Resolved"]
    assert ["page", "/console/receipts/new", "1", "0", "1"] in table
    as_xlsx = client.get(
        f"{FEEDBACK}/summary", params={"month": month, "format": "xlsx"}, headers=bearer(admin)
    )
    from openpyxl import load_workbook  # noqa: PLC0415

    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    assert sheet is not None
    assert [c.value for c in sheet[1]] == ["统计维度", "页面或标签", "条数", "未处理", "已处理"]

    with engine.connect() as connection:
        actions = connection.execute(
            select(audit_log.c.action, audit_log.c.resource_id).where(
                audit_log.c.resource == "feedback"
            )
        ).all()
    assert sorted(actions) == [
        ("feedback.create", note["feedback_id"]),
        ("feedback.resolve", note["feedback_id"]),
        ("feedback.tag", note["feedback_id"]),
    ]


def test_an_admin_of_other_sites_sees_none_of_a_sites_notes(client: TestClient) -> None:
    engine = engine_of(client)
    clerk = user_token(engine, "clerk1", ["warehouse_clerk"], sites=["S01"])
    elsewhere = user_token(engine, "admin2", ["admin"], sites=["S02"])
    made = send(client, clerk).json()
    assert client.get(FEEDBACK, headers=bearer(elsewhere)).json()["entries"] == []
    hidden = client.get(f"{FEEDBACK}/{made['feedback_id']}", headers=bearer(elsewhere))
    assert hidden.status_code == 404
    summary = client.get(
        f"{FEEDBACK}/summary", params={"month": made["created_at"][:7]}, headers=bearer(elsewhere)
    ).json()
    assert summary["rows"] == [{"kind": "all", "key": "", "total": 0, "open": 0, "resolved": 0}]


def test_a_screenshot_that_may_show_amounts_is_withheld_from_a_reader_without_them(
    client: TestClient,
) -> None:
    engine = engine_of(client)
    with engine.begin() as connection:
        connection.execute(
            insert(roles).values(
                name="helpdesk",
                description="reads feedback",
                actions="feedback.manage",
                financial=False,
                changed_at=datetime.now(UTC),
            )
        )
    buyer = user_token(engine, "buyer", ["purchaser"])
    helpdesk = user_token(engine, "helper", ["helpdesk"])
    made = send(client, buyer, screenshot_base64=base64.b64encode(PNG).decode()).json()
    assert made["site_id"] is None  # a buyer of every site
    refused = client.get(f"{FEEDBACK}/{made['feedback_id']}/screenshot", headers=bearer(helpdesk))
    assert refused.status_code == 403
    assert "may show amounts" in refused.json()["detail"]
    assert (
        client.get(f"{FEEDBACK}/{made['feedback_id']}", headers=bearer(helpdesk)).status_code == 200
    )


def test_bad_input_is_a_4xx_that_says_what_is_wrong(client: TestClient) -> None:
    engine = engine_of(client)
    clerk = user_token(engine, "clerk", ["warehouse_clerk"])
    admin = user_token(engine, "boss", ["admin"])
    cases = [
        ({"screenshot_base64": base64.b64encode(b"GIF89a....").decode()}, 422, "PNG, JPEG or WebP"),
        ({"screenshot_base64": "not base64!"}, 422, "not base64"),
        ({"page": "https://example.com/x"}, 422, "page:"),
        ({"note": "   "}, 422, "note:"),
    ]
    for body, status, words in cases:
        answer = send(client, clerk, **body)
        assert answer.status_code == status, (body, answer.text)
        assert words in str(answer.json()), (body, answer.json())
    big = PNG + b"\x00" * service.MAX_SCREENSHOT_BYTES
    too_big = send(client, clerk, screenshot_base64=base64.b64encode(big).decode())
    assert too_big.status_code in (413, 422), too_big.text  # 422: over the field's own bound
    assert client.get(FEEDBACK, headers=bearer(admin)).json()["entries"] == []
    assert (
        client.get(
            f"{FEEDBACK}/summary", params={"month": "2026-13"}, headers=bearer(admin)
        ).status_code
        == 422
    )
    assert client.get(f"{FEEDBACK}/FB999999", headers=bearer(admin)).status_code == 404
    made = send(client, clerk).json()
    bad_tag = client.post(
        f"{FEEDBACK}/{made['feedback_id']}/tags",
        json={"tags": ["<b>"]},
        headers=bearer(admin, **key()),
    )
    assert bad_tag.status_code == 422
    assert "is not a tag" in bad_tag.json()["detail"]
    anonymous = client.post(
        FEEDBACK, json={"page": "/console", "note": "x"}, headers={"Authorization": "Bearer x"}
    )
    assert anonymous.status_code == 401


def test_a_screenshot_is_told_by_its_bytes() -> None:
    assert service.image_type(PNG) == "image/png"
    assert service.image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert service.image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert service.month_range("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert service.tag_words(["Bug, bug idea"]) == ["bug", "idea"]
