"""``/users`` and ``/roles`` as an admin uses them, and every bad input a 4xx with a message."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.central.conftest import TEST_PASSWORD, user_token

USERS = "/api/v1/users"
ROLES = "/api/v1/roles"
ME = "/api/v1/auth/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add(client: TestClient, **body: Any) -> Any:
    return client.post(USERS, json={"password": "long enough", **body})


def test_an_admin_adds_a_user_who_can_then_sign_in(client: TestClient) -> None:
    created = add(client, username="li", roles=["warehouse_clerk"], sites=["S01"])
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["warehouse_clerk"]
    assert created.json()["sites"] == ["S01"]
    signed = client.post(
        "/api/v1/auth/token",
        data={"username": "li", "password": "long enough"},
        headers={"Authorization": ""},
    )
    assert signed.status_code == 200, signed.text
    assert [user["username"] for user in client.get(USERS).json()] == ["admin", "li"]
    assert client.get(f"{USERS}/li").json()["display_name"] == "li"


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"username": "li", "roles": ["cashier"]}, 422, "no such role: cashier"),
        ({"username": "li", "password": "short"}, 422, "password"),
        ({"username": "-bad-", "roles": []}, 422, "username"),
        ({"username": "li", "roles": [], "colour": "red"}, 422, "colour"),
    ],
)
def test_bad_users_are_refused_with_a_message(
    client: TestClient, body: dict[str, Any], status: int, phrase: str
) -> None:
    refused = add(client, **body)
    assert refused.status_code == status, refused.text
    problem = refused.json()
    assert phrase in (problem.get("message") or problem["detail"])


def test_a_duplicate_user_name_is_409(client: TestClient) -> None:
    assert add(client, username="li").status_code == 201
    again = add(client, username="LI")
    assert again.status_code == 409
    assert again.json()["detail"] == "user 'LI' already exists; choose another name"


def test_unknown_user_is_404(client: TestClient) -> None:
    missing = client.patch(f"{USERS}/ghost", json={"disabled": True})
    assert missing.status_code == 404
    assert missing.json()["detail"] == "user 'ghost' does not exist"


def test_a_role_change_applies_at_the_next_request(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    token = user_token(engine, "li", ["warehouse_clerk"])
    assert client.get(ME, headers=bearer(token)).json()["financial"] is False
    changed = client.patch(f"{USERS}/li", json={"roles": ["finance"], "sites": ["S02"]})
    assert changed.status_code == 200, changed.text
    me = client.get(ME, headers=bearer(token)).json()
    assert me["roles"] == ["finance"]
    assert me["financial"] is True
    assert me["sites"] == ["S02"]
    assert client.patch(f"{USERS}/li", json={"sites": None}).json()["sites"] is None


def test_a_new_password_ends_the_old_sessions(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    token = user_token(engine, "li", ["sales"])
    assert client.patch(f"{USERS}/li", json={"password": "a new one!"}).status_code == 200
    assert client.get(ME, headers=bearer(token)).status_code == 401
    old = client.post(
        "/api/v1/auth/token",
        data={"username": "li", "password": TEST_PASSWORD},
        headers={"Authorization": ""},
    )
    assert old.status_code == 401


def test_an_admin_cannot_lock_everyone_out(client: TestClient) -> None:
    client.get(USERS)  # makes the suite's admin
    itself = client.patch(f"{USERS}/admin", json={"disabled": True})
    assert itself.status_code == 409
    assert "yourself" in itself.json()["detail"]
    demoted = client.patch(f"{USERS}/admin", json={"roles": ["auditor"]})
    assert demoted.status_code == 409
    stripped = client.put(f"{ROLES}/admin", json={"actions": ["items.read"]})
    assert stripped.status_code == 409
    assert "keep at least one admin" in stripped.json()["detail"]
    assert client.get(ME).json()["roles"] == ["admin"]


def test_roles_are_data_an_admin_edits(client: TestClient) -> None:
    listed = {role["name"]: role for role in client.get(ROLES).json()}
    assert set(listed) == {
        "admin",
        "purchaser",
        "sales",
        "warehouse_clerk",
        "store_manager",
        "finance",
        "auditor",
    }
    assert listed["warehouse_clerk"]["financial"] is False
    made = client.put(
        f"{ROLES}/counter", json={"actions": ["stock.read"], "description": "counts stock"}
    )
    assert made.status_code == 200, made.text
    assert made.json()["actions"] == ["stock.read"]
    assert add(client, username="li", roles=["counter"]).status_code == 201
    in_use = client.delete(f"{ROLES}/counter")
    assert in_use.status_code == 409
    assert "held by 1 user" in in_use.json()["detail"]
    client.patch(f"{USERS}/li", json={"roles": []})
    assert client.delete(f"{ROLES}/counter").status_code == 204
    assert client.delete(f"{ROLES}/counter").status_code == 404
    actions = {action["name"] for action in client.get(f"{ROLES}/actions").json()}
    assert {"items.read", "items.write", "stock.read", "users.manage"} <= actions


def test_an_unknown_action_is_422(client: TestClient) -> None:
    refused = client.put(f"{ROLES}/counter", json={"actions": ["stock.steal"]})
    assert refused.status_code == 422
    assert refused.json()["detail"] == "no such action: stock.steal"


def test_a_clerk_may_not_manage_people(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    token = user_token(engine, "li", ["warehouse_clerk"])
    refused = client.get(USERS, headers=bearer(token))
    assert refused.status_code == 403
    assert "may not 'users.manage'" in refused.json()["detail"]
