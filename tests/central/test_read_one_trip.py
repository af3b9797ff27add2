"""A user's read in one trip: the principal's lookup, its access rule and the route's query.

Routes marked ``principal_in_trip`` (the stock read, the item reads) look the caller up
on the connection of their own query, in their one worker-thread trip, with one
statement (session, user, roles and sites). What must not change is shown here on SQLite
and PostgreSQL: a logout, a disabled user, a missing action and a site outside the
caller's scope are refused at the very next request, and a route that forgot to do its
work in the trip answers nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from central_api.api.errors import install_error_handlers
from central_api.api.permissions import Requires
from central_api.core import driver
from central_api.core.config import Settings
from central_api.core.principal import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    PrincipalScope,
    principal_in_trip,
)
from central_api.services.people import update_user
from tests.central.conftest import TEST_PASSWORD, add_test_user, central_app, user_token

STOCK = "/api/v1/stock"
ITEMS = "/api/v1/items"
LOGOUT = "/api/v1/auth/logout"
CONSOLE_ITEMS = "/console/items"


@pytest.fixture
def anonymous(database_url: str) -> Iterator[TestClient]:
    with central_app(Settings(database_url=database_url)) as app, TestClient(app) as client:
        yield client


def engine_of(client: TestClient) -> Engine:
    return client.app.state.engine  # type: ignore[attr-defined, no-any-return]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Seen:
    """Statements sent to the database and trips through the thread pool, as they happen."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.trips = 0


@pytest.fixture
def seen(anonymous: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    found = Seen()
    real = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        found.trips += 1
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        found.statements.append(sql)

    # Statements at the driver (central_api.core.driver) pass no SQLAlchemy event.
    real_execute = driver._execute

    def at_driver(connection: Any, sql: str, parameters: Any, **kwargs: Any) -> Any:
        found.statements.append(sql)
        return real_execute(connection, sql, parameters, **kwargs)

    monkeypatch.setattr(driver, "_execute", at_driver)
    engine = engine_of(anonymous)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", statement)


def reads_the_session(sql: str) -> bool:
    return "sessions" in sql.lower()


@pytest.mark.parametrize(
    "path", [f"{STOCK}?site_id=S01&item=ITEM-1", f"{ITEMS}?limit=5", f"{ITEMS}/NO-SUCH"]
)
def test_a_users_read_takes_one_trip_and_one_lookup_statement(
    anonymous: TestClient, seen: Seen, path: str
) -> None:
    token = user_token(engine_of(anonymous), "ana", ["warehouse_clerk"])
    seen.statements.clear()
    seen.trips = 0
    answer = anonymous.get(path, headers=bearer(token))
    assert answer.status_code in (200, 404), answer.text
    assert seen.trips == 1
    assert len([sql for sql in seen.statements if reads_the_session(sql)]) == 1


def test_logout_and_disabling_count_at_the_next_read(anonymous: TestClient) -> None:
    engine = engine_of(anonymous)
    token = user_token(engine, "ben", ["warehouse_clerk"])
    assert anonymous.get(STOCK, headers=bearer(token)).status_code == 200
    assert anonymous.post(LOGOUT, headers=bearer(token)).status_code == 204
    gone = anonymous.get(STOCK, headers=bearer(token))
    assert gone.status_code == 401
    assert "logged out" in gone.json()["detail"]

    other = user_token(engine, "cai", ["warehouse_clerk"])
    assert anonymous.get(f"{ITEMS}?limit=1", headers=bearer(other)).status_code == 200
    with engine.connect() as connection:
        update_user(connection, "cai", disabled=True)
    refused = anonymous.get(f"{ITEMS}?limit=1", headers=bearer(other))
    assert refused.status_code == 401
    assert "disabled" in refused.json()["detail"]


def test_the_rule_and_the_site_scope_are_checked_in_the_trip(anonymous: TestClient) -> None:
    engine = engine_of(anonymous)
    # No role granting stock.read: refused before any balance is read.
    nobody = user_token(engine, "eve", [])
    refused = anonymous.get(f"{STOCK}?site_id=S01", headers=bearer(nobody))
    assert refused.status_code == 403
    assert "stock.read" in refused.json()["detail"]
    # A user limited to S01 may not ask for S02, and sees only S01 otherwise.
    scoped = user_token(engine, "fay", ["warehouse_clerk"], sites=["S01"])
    assert anonymous.get(f"{STOCK}?site_id=S01", headers=bearer(scoped)).status_code == 200
    outside = anonymous.get(f"{STOCK}?site_id=S02", headers=bearer(scoped))
    assert outside.status_code == 403
    assert "S02" in outside.json()["detail"]
    # Anonymous: refused without a lookup or a trip.
    assert anonymous.get(STOCK).status_code == 401


def test_a_made_up_token_is_refused_in_the_trip(anonymous: TestClient) -> None:
    refused = anonymous.get(f"{ITEMS}/X", headers=bearer("jxcu_made-up"))
    assert refused.status_code == 401
    assert "unknown or was logged out" in refused.json()["detail"]


def signed_in(client: TestClient, username: str) -> TestClient:
    """A browser-like client of the same app, signed in to the console by cookie."""
    browser = TestClient(client.app, follow_redirects=False)
    answer = browser.post(
        "/console/login",
        data={"username": username, "password": TEST_PASSWORD, "next": CONSOLE_ITEMS},
    )
    assert answer.status_code == 303, answer.text
    return browser


def sent_to_sign_in(answer: Any) -> bool:
    return answer.status_code == 303 and answer.headers["location"].startswith("/console/login")


def test_the_console_item_list_takes_one_trip_and_refuses_at_once(
    anonymous: TestClient, seen: Seen
) -> None:
    """The console's item list (a cookie session) is marked too: one trip, one lookup,
    and a logout, a disabled user or a role without ``items.read`` refused at once."""
    engine = engine_of(anonymous)
    add_test_user(engine, "gus", ["warehouse_clerk"])
    add_test_user(engine, "hal", ["warehouse_clerk"])
    add_test_user(engine, "ida", [])
    gus, hal, ida = (signed_in(anonymous, name) for name in ("gus", "hal", "ida"))
    seen.statements.clear()
    seen.trips = 0
    page = gus.get(CONSOLE_ITEMS)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert seen.trips == 1
    assert len([sql for sql in seen.statements if reads_the_session(sql)]) == 1
    # A role without items.read: the refusal page, not the list.
    refused = ida.get(CONSOLE_ITEMS)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    # A disabled user and a logged-out session: back to sign-in at the next page.
    with engine.connect() as connection:
        update_user(connection, "gus", disabled=True)
    assert sent_to_sign_in(gus.get(CONSOLE_ITEMS))
    cookie = hal.cookies[SESSION_COOKIE]
    out = hal.post(
        "/console/logout",
        headers={"HX-Request": "true", "X-CSRF-Token": hal.cookies[CSRF_COOKIE]},
    )
    assert out.status_code < 400, out.text
    stale = TestClient(anonymous.app, follow_redirects=False)
    stale.cookies.set(SESSION_COOKIE, cookie)
    assert sent_to_sign_in(stale.get(CONSOLE_ITEMS))
    # Anonymous: sent to sign in without a lookup.
    assert sent_to_sign_in(TestClient(anonymous.app, follow_redirects=False).get(CONSOLE_ITEMS))


def test_a_marked_route_that_skips_its_trip_answers_nothing() -> None:
    """The guard behind the deferral: the rule left for the trip was never checked, so the
    answer (200, with data) is replaced by a 500."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(PrincipalScope)

    @app.get("/secret", dependencies=[Requires("items.read")])
    @principal_in_trip
    async def secret(request: Request) -> dict[str, str]:
        return {"secret": "cost 12.50"}

    with TestClient(app) as client:
        answer = client.get("/secret", headers=bearer("jxcu_anything"))
        assert answer.status_code == 500
        assert "secret" not in answer.text
        assert "did not check its access rule" in answer.json()["detail"]
        # Anonymous: the rule needs no lookup, so it is checked at once (401, not 500).
        assert client.get("/secret").status_code == 401
