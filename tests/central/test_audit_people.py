"""People and sites in the audit log: user and role changes, sign-ins (good and failed),
logouts, and site credentials from the command line. Both databases."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from central_api.cli import app
from central_api.models import audit_log
from central_api.services.audit import verify_chain
from jxc.paths import API_ROOT, AUDIT
from tests.central.test_audit_api import CLIENT_ADDRESS, api, bearer

__all__ = ["api"]  # the fixture, imported for its name

PASSWORD = "a long enough password"


def audit_of(api: TestClient, engine: Engine, **params: Any) -> list[dict[str, Any]]:
    response = api.get(AUDIT, headers=bearer(engine, "alice", ["auditor"]), params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def sign_in(api: TestClient, username: str, password: str) -> Any:
    return api.post(f"{API_ROOT}/auth/token", data={"username": username, "password": password})


def test_user_and_role_changes_and_sign_ins_are_recorded(api: TestClient, engine: Engine) -> None:
    admin = bearer(engine, "root", ["admin"])

    created = api.post(
        f"{API_ROOT}/users",
        json={"username": "bob", "password": PASSWORD, "roles": ["warehouse_clerk"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert sign_in(api, "bob", PASSWORD).status_code == 200
    assert sign_in(api, "bob", "a wrong password!").status_code == 401
    token = sign_in(api, "bob", PASSWORD).json()["access_token"]
    assert (
        api.post(
            f"{API_ROOT}/auth/logout", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 204
    )
    disabled = api.patch(f"{API_ROOT}/users/bob", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert sign_in(api, "bob", PASSWORD).status_code in {401, 403}
    role = api.put(
        f"{API_ROOT}/roles/inspector",
        json={"description": "reads the log", "actions": ["audit.read"]},
        headers=admin,
    )
    assert role.status_code == 200, role.text
    assert api.delete(f"{API_ROOT}/roles/inspector", headers=admin).status_code == 204

    found = [
        (entry["action"], entry["actor_kind"], entry["actor_id"], entry["resource_id"])
        for entry in audit_of(api, engine)
    ]
    assert found == [
        ("user.create", "user", "root", "bob"),
        ("auth.login", "user", "bob", "bob"),
        ("auth.login_failed", "anonymous", None, "bob"),
        ("auth.login", "user", "bob", "bob"),
        ("auth.logout", "user", "bob", "bob"),
        ("user.update", "user", "root", "bob"),
        ("auth.login_failed", "anonymous", None, "bob"),
        ("role.create", "user", "root", "inspector"),
        ("role.delete", "user", "root", "inspector"),
    ]
    by_action = {entry["action"]: entry for entry in audit_of(api, engine)}
    assert by_action["user.create"]["after"]["roles"] == ["warehouse_clerk"]
    update = by_action["user.update"]
    assert (update["before"]["disabled"], update["after"]["disabled"]) == (False, True)
    failed = audit_of(api, engine, action="auth.login_failed")
    assert [entry["after"]["reason"] for entry in failed] == [
        "wrong user name or password",
        "disabled",
    ]
    assert all(entry["source"] == CLIENT_ADDRESS for entry in failed)
    assert by_action["role.delete"]["before"]["actions"] == ["audit.read"]
    with engine.connect() as connection:
        stored = " ".join(
            f"{row.before} {row.after}" for row in connection.execute(select(audit_log))
        )
        assert PASSWORD not in stored
        assert "wrong password" not in stored
        assert "argon2" not in stored
        assert verify_chain(connection).intact


def test_site_credentials_from_the_command_line_are_recorded(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    for command in (["site", "add", "S09"], ["site", "rotate", "S09"], ["site", "revoke", "S09"]):
        result = runner.invoke(app, [*command, "--database-url", url])
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["site", "rotate", "S10", "--database-url", url]).exit_code == 1

    with engine.connect() as connection:
        rows = connection.execute(select(audit_log).order_by(audit_log.c.seq)).all()
    assert [(row.action, row.site_id, row.actor_kind) for row in rows] == [
        ("site.add", "S09", "system"),
        ("site.rotate", "S09", "system"),
        ("site.revoke", "S09", "system"),
    ]
    assert all(row.actor_id.startswith("cli:") for row in rows)
