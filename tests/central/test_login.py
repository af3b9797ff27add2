"""Signing in and out: tokens, cookie sessions with CSRF, and the brute-force brake.

These tests send their own credentials (a plain client, no suite auth).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from central_api.core.config import Settings
from central_api.errors import LoginRefusedError, LoginThrottledError
from central_api.services import people
from central_api.services.people import sign_in, update_user
from tests.central.conftest import TEST_PASSWORD, add_test_user, central_app, user_token

TOKEN = "/api/v1/auth/token"
SESSION = "/api/v1/auth/session"
ME = "/api/v1/auth/me"
LOGOUT = "/api/v1/auth/logout"


@pytest.fixture
def anonymous(database_url: str) -> Iterator[TestClient]:
    with central_app(Settings(database_url=database_url)) as app, TestClient(app) as client:
        yield client


def engine_of(client: TestClient) -> Engine:
    return client.app.state.engine  # type: ignore[attr-defined, no-any-return]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post(TOKEN, data={"username": username, "password": password})


class CountingHasher:
    """The real argon2 hasher, counting its verifications (the thing observed, not faked)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.verified = 0

    def verify(self, password: str, hashed: str) -> bool:
        self.verified += 1
        return bool(self.real.verify(password, hashed))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    hasher = CountingHasher(people._hasher)
    monkeypatch.setattr(people, "_hasher", hasher)
    return hasher


def test_a_token_signs_in_and_me_says_who(anonymous: TestClient) -> None:
    add_test_user(engine_of(anonymous), "mia", ["sales"], sites=["S01"])
    response = login(anonymous, "mia", TEST_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = anonymous.get(ME, headers=bearer(body["access_token"])).json()
    assert me == {
        "username": "mia",
        "roles": ["sales"],
        "actions": [
            "customer_return.create",
            "customer_return.read",
            "items.read",
            "locations.read",
            "partners.read",
            "pick_list.read",
            "price_list.read",
            "price_list.write",
            "receivable.read",
            "reference.read",
            "sales_invoice.read",
            "sales_order.cancel",
            "sales_order.close",
            "sales_order.confirm",
            "sales_order.create",
            "sales_order.read",
            "shipment.create",
            "shipment.read",
            "stock.read",
        ],
        "financial": True,
        "sites": ["S01"],
        "language": None,
    }


def test_wrong_password_and_unknown_user_get_the_same_401(anonymous: TestClient) -> None:
    add_test_user(engine_of(anonymous), "mia", ["sales"])
    wrong = login(anonymous, "mia", "not the password")
    unknown = login(anonymous, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "wrong user name or password"


def test_the_sixth_wrong_password_in_a_minute_is_refused_unhashed(
    anonymous: TestClient, counting: CountingHasher
) -> None:
    add_test_user(engine_of(anonymous), "mia", ["sales"])
    for _ in range(5):
        assert login(anonymous, "mia", "guess-guess").status_code == 401
    assert counting.verified == 5
    sixth = login(anonymous, "mia", TEST_PASSWORD)  # even the right one
    assert sixth.status_code == 429
    assert "too many failed sign-ins for user 'mia'" in sixth.json()["detail"]
    assert sixth.headers["retry-after"] == "60"
    assert counting.verified == 5, "the throttled attempt must not reach the hash"


def test_failures_from_one_address_are_throttled_across_user_names(
    anonymous: TestClient, counting: CountingHasher
) -> None:
    for index in range(5):
        assert login(anonymous, f"user{index}", "guess-guess").status_code == 401
    refused = login(anonymous, "user9", "guess-guess")
    assert refused.status_code == 429
    assert "address" in refused.json()["detail"]
    assert counting.verified == 5


def test_the_brake_lets_go_after_the_minute(engine: Engine) -> None:
    add_test_user(engine, "mia", ["sales"])
    start = datetime.now(UTC)
    with engine.connect() as connection:
        for _ in range(5):
            with pytest.raises(LoginRefusedError):
                sign_in(
                    connection,
                    username="mia",
                    password="guess-guess",
                    address="10.0.0.1",
                    kind="bearer",
                    ttl_s=60,
                    now=start,
                )
        with pytest.raises(LoginThrottledError):
            sign_in(
                connection,
                username="mia",
                password=TEST_PASSWORD,
                address="10.0.0.2",
                kind="bearer",
                ttl_s=60,
                now=start + timedelta(seconds=30),
            )
        issued = sign_in(
            connection,
            username="mia",
            password=TEST_PASSWORD,
            address="10.0.0.2",
            kind="bearer",
            ttl_s=60,
            now=start + timedelta(seconds=61),
        )
    assert issued.identity.username == "mia"


def test_a_disabled_user_cannot_sign_in_and_their_token_dies(anonymous: TestClient) -> None:
    engine = engine_of(anonymous)
    token = user_token(engine, "mia", ["sales"])
    assert anonymous.get(ME, headers=bearer(token)).status_code == 200
    with engine.connect() as connection:
        update_user(connection, "mia", disabled=True)
    refused = anonymous.get("/api/v1/items", headers=bearer(token))
    assert refused.status_code == 401
    assert "disabled" in refused.json()["detail"]
    again = login(anonymous, "mia", TEST_PASSWORD)
    assert again.status_code == 401
    assert again.json()["detail"] == "user 'mia' is disabled; an admin can enable them again"


def test_an_expired_token_is_401_with_a_message(anonymous: TestClient) -> None:
    token = user_token(engine_of(anonymous), "mia", ["sales"], ttl_s=-1)
    refused = anonymous.get(ME, headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the session has expired; sign in again"
    assert refused.headers["www-authenticate"] == "Bearer"


def test_a_made_up_user_token_is_401(anonymous: TestClient) -> None:
    refused = anonymous.get(ME, headers=bearer("jxcu_made-up"))
    assert refused.status_code == 401
    assert "unknown or was logged out" in refused.json()["detail"]


def test_logout_ends_the_token(anonymous: TestClient) -> None:
    token = user_token(engine_of(anonymous), "mia", ["sales"])
    assert anonymous.post(LOGOUT, headers=bearer(token)).status_code == 204
    assert anonymous.get(ME, headers=bearer(token)).status_code == 401


def test_a_cookie_session_needs_its_csrf_token_on_unsafe_methods(anonymous: TestClient) -> None:
    add_test_user(engine_of(anonymous), "mia", ["admin"])
    opened = anonymous.post(SESSION, data={"username": "mia", "password": TEST_PASSWORD})
    assert opened.status_code == 200, opened.text
    cookies = opened.headers.get_list("set-cookie")
    session_cookie = next(value for value in cookies if value.startswith("jxc_session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    csrf = opened.json()["csrf_token"]
    assert opened.json()["user"]["username"] == "mia"
    # Safe methods ride on the cookie alone.
    assert anonymous.get(ME).status_code == 200
    item = {"name": "Rice", "uom": "kg"}
    missing = anonymous.put("/api/v1/items/RICE", json=item)
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"]
    wrong = anonymous.put("/api/v1/items/RICE", json=item, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    right = anonymous.put("/api/v1/items/RICE", json=item, headers={"X-CSRF-Token": csrf})
    assert right.status_code == 200, right.text
    assert anonymous.post(LOGOUT, headers={"X-CSRF-Token": csrf}).status_code == 204
    assert anonymous.get(ME).status_code == 401


def test_a_cookie_is_not_a_bearer_token(anonymous: TestClient) -> None:
    add_test_user(engine_of(anonymous), "mia", ["admin"])
    opened = anonymous.post(SESSION, data={"username": "mia", "password": TEST_PASSWORD})
    cookie = opened.cookies["jxc_session"]
    anonymous.cookies.clear()
    # The session's own value as a bearer token skips CSRF, so it must not work.
    assert anonymous.get(ME, headers=bearer(cookie)).status_code == 401


def test_an_incomplete_form_is_422_naming_the_field(anonymous: TestClient) -> None:
    refused = anonymous.post(TOKEN, data={"username": "mia"})
    assert refused.status_code == 422
    assert "password" in refused.json()["message"]


def test_a_bearer_that_is_no_token_at_all_is_401_saying_so(anonymous: TestClient) -> None:
    refused = anonymous.get("/api/v1/items", headers=bearer("hello"))
    assert refused.status_code == 401
    assert "neither a user's" in refused.json()["detail"]


def test_the_unknown_user_hash_costs_what_a_real_one_does() -> None:
    """Logging in as nobody verifies against a fixed hash: it must carry the hasher's
    current parameters, or an unknown name would answer faster than a known one."""
    from central_api.services import people  # noqa: PLC0415

    assert not people._hasher.current_hasher.check_needs_rehash(people._DUMMY_HASH)
