"""A user's console language through the API, on SQLite and PostgreSQL: read with
``/auth/me``, set by the user themselves (``PUT /auth/me/language``, no role action) and
by an admin (``PATCH /users/{name}``), audited, and refused naming ``language`` when it is
not one of the console's; plus ``POST /users`` with an ``Idempotency-Key``."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models.audit import audit_log
from tests.central.conftest import user_token
from tests.central.test_people_api import ME, USERS, add, bearer

MY_LANGUAGE = f"{ME}/language"


def test_a_user_chooses_their_own_language_and_it_is_audited(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    clerk = bearer(user_token(engine, "li", ["warehouse_clerk"]))
    assert client.get(ME, headers=clerk).json()["language"] is None
    chosen = client.put(MY_LANGUAGE, json={"language": "en"}, headers=clerk)
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["language"] == "en"
    assert client.get(ME, headers=clerk).json()["language"] == "en"
    assert client.get(f"{USERS}/li").json()["language"] == "en"
    back = client.put(MY_LANGUAGE, json={"language": None}, headers=clerk)
    assert back.json()["language"] is None
    for bad in ({"language": "fr"}, {"language": 3}, {}, {"language": "en", "x": 1}):
        refused = client.put(MY_LANGUAGE, json=bad, headers=clerk)
        assert refused.status_code == 422, bad
    assert client.get(ME, headers=clerk).json()["language"] is None
    with engine.connect() as connection:
        logged = connection.execute(
            select(audit_log.c.action, audit_log.c.actor_id, audit_log.c.after)
            .where(audit_log.c.action == "user.set_language")
            .order_by(audit_log.c.seq)
        ).all()
    assert [(row.actor_id, json.loads(row.after)) for row in logged] == [
        ("li", {"language": "en"}),
        ("li", {"language": None}),
    ]


def test_an_admin_sets_and_clears_a_users_language(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    token = bearer(user_token(engine, "wang", ["sales"]))
    set_ = client.patch(f"{USERS}/wang", json={"language": "zh-CN"})
    assert set_.status_code == 200, set_.text
    assert set_.json()["language"] == "zh-CN"
    assert client.get(ME, headers=token).json()["language"] == "zh-CN"
    kept = client.patch(f"{USERS}/wang", json={"display_name": "王"})
    assert kept.json()["language"] == "zh-CN"  # not given: unchanged
    cleared = client.patch(f"{USERS}/wang", json={"language": None})
    assert cleared.json()["language"] is None
    refused = client.patch(f"{USERS}/wang", json={"language": "klingon"})
    assert refused.status_code == 422
    assert "language" in refused.text
    site = client.put(MY_LANGUAGE, json={"language": "en"}, headers={"Authorization": ""})
    assert site.status_code == 401


def test_a_user_create_with_a_key_is_made_once(client: TestClient) -> None:
    key = {"Idempotency-Key": "user-create-1"}
    first = client.post(USERS, json={"username": "zhao", "password": "long enough"}, headers=key)
    again = client.post(USERS, json={"username": "zhao", "password": "long enough"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["username"] == "zhao"
    other = client.post(USERS, json={"username": "qian", "password": "long enough"}, headers=key)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert add(client, username="zhao").status_code == 409  # no key: the name is taken
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        made = connection.execute(
            select(audit_log.c.resource_id).where(audit_log.c.action == "user.create")
        ).scalars()
        assert list(made) == ["zhao"]
