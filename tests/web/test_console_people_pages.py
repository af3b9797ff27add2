"""The console's user forms over HTTP, on SQLite and PostgreSQL: an admin adds a user with
roles and a site scope, changes and disables them (audited by the service); nobody else
may; the lock-out rules and bad fields are shown next to their fields."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, select

from central_api.core.config import Settings
from central_api.errors import UnknownUserError
from central_api.main import create_app
from central_api.models.audit import audit_log
from central_api.services.people import get_user
from tests.web.conftest import add_test_user
from tests.web.test_console_pages import USERS, browser, errors_in, htmx


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    made = create_app(Settings(database_url=database_url))
    for username, roles in USERS.items():
        add_test_user(made.state.engine, username, roles)
    yield made
    made.state.engine.dispose()


def test_an_admin_adds_changes_and_disables_a_user(app: FastAPI) -> None:
    boss = browser(app, "boss")
    assert boss.get("/console/users/new").status_code == 200
    made = boss.post(
        "/console/users/new",
        data={
            "username": "wang.li",
            "display_name": "王丽",
            "password": "a-long-password",
            "roles": ["warehouse_clerk", "store_manager"],
            "sites": "S01， S02",
        },
        headers=htmx(boss),
    )
    assert made.headers["HX-Redirect"] == "/console/users"
    with app.state.engine.connect() as connection:
        user = get_user(connection, "wang.li")
    assert sorted(user.roles) == ["store_manager", "warehouse_clerk"]
    assert user.sites == ["S01", "S02"]
    page = boss.get("/console/users/edit?name=wang.li").text
    assert 'value="S01, S02"' in page
    changed = boss.post(
        "/console/users/edit?name=wang.li",
        data={"display_name": "王丽", "roles": ["warehouse_clerk"], "sites": "", "disabled": "on"},
        headers=htmx(boss),
    )
    assert changed.status_code == 200
    with app.state.engine.connect() as connection:
        user = get_user(connection, "wang.li")
        logged = connection.execute(
            select(audit_log.c.action).where(audit_log.c.resource_id == "wang.li")
        ).scalars()
        actions = list(logged)
    assert user.disabled
    assert user.sites is None
    assert user.roles == ["warehouse_clerk"]
    assert actions == ["user.create", "user.update"]
    # a taken name is said next to it, in the user's language
    again = boss.post(
        "/console/users/new",
        data={"username": "wang.li", "password": "a-long-password", "roles": ["sales"]},
        headers=htmx(boss),
    )
    assert again.status_code == 422
    assert "username" in errors_in(again.text)


def test_bad_fields_and_lock_out_are_refused_with_nothing_saved(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    bad = boss.post(
        "/console/users/new",
        data={"username": "no spaces", "password": "short", "roles": ["no_such_role"]},
        headers=htmx(boss),
    )
    assert bad.status_code == 422
    errors = errors_in(bad.text)
    assert {"username", "password"} <= set(errors)
    unknown = boss.post(
        "/console/users/new",
        data={"username": "ok.name", "password": "a-long-password", "roles": ["no_such_role"]},
        headers=htmx(boss),
    )
    assert unknown.status_code == 422
    assert "no_such_role" in errors_in(unknown.text)["roles"]
    self_disable = boss.post(
        "/console/users/edit?name=boss",
        data={"display_name": "boss", "roles": ["admin"], "disabled": "on"},
        headers=htmx(boss),
    )
    assert self_disable.status_code == 422
    assert 'id="error-form"' in self_disable.text
    with app.state.engine.connect() as connection:
        assert not get_user(connection, "boss").disabled
        assert [u for u in ("ok.name", "no spaces") if _exists(connection, u)] == []


def _exists(connection: Connection, username: str) -> bool:
    try:
        get_user(connection, username)
    except UnknownUserError:
        return False
    return True


def test_only_an_admin_may_open_or_post_the_user_forms(app: FastAPI) -> None:
    buyer = browser(app, "buyer")
    assert buyer.get("/console/users/new").status_code == 403
    assert buyer.get("/console/users/edit?name=boss").status_code == 403
    posted = buyer.post(
        "/console/users/new",
        data={"username": "sneaky", "password": "a-long-password", "roles": ["admin"]},
        headers=htmx(buyer),
    )
    assert posted.status_code == 403
    assert browser(app, "boss").get("/console/users/edit?name=nobody").status_code == 404
