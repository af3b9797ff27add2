"""Site credentials: a site syncs only with its own token, and only its own data.

These tests send their own ``Authorization`` headers (or none), which the suite's
``EverySiteAuth`` leaves alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from central_api.core.config import Settings
from central_api.errors import InvalidSiteIdError
from central_api.main import create_app
from central_api.models import auth_signing_key, ledger_events
from central_api.services import auth
from central_api.services.auth import add_site, revoke_site, rotate_site
from jxc.paths import SYNC_EVENTS, SYNC_TOKEN
from tests.central.conftest import SiteLedger, central_app

TOKEN = SYNC_TOKEN
PUSH = SYNC_EVENTS


@pytest.fixture
def anonymous(database_url: str) -> Iterator[TestClient]:
    """A client with no auth of its own: every header is the test's."""
    with central_app(Settings(database_url=database_url)) as app, TestClient(app) as test_client:
        yield test_client


def secret_for(client: TestClient, site_id: str) -> str:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return add_site(connection, site_id)


def token(client: TestClient, site_id: str, secret: str) -> str:
    response = client.post(TOKEN, json={"site_id": site_id, "secret": secret})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["site_id"] == site_id
    assert body["expires_in"] == 900
    return str(body["access_token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def held(client: TestClient) -> int:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(select(func.count()).select_from(ledger_events)).scalar_one())


SYNC_READS = [
    ("/api/v1/sync/ack", {}),
    ("/api/v1/sync/refused", {}),
    ("/api/v1/sync/changes", {"cursor": 0}),
]


def test_every_sync_endpoint_needs_a_token(anonymous: TestClient, site: SiteLedger) -> None:
    response = anonymous.post(PUSH, json=site.batch(site.receipts(2)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "POST /api/v1/sync/token" in response.json()["detail"]
    for path, params in SYNC_READS:
        answer = anonymous.get(path, params={"site_id": "S01", **params})
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
    assert held(anonymous) == 0


def test_a_site_pushes_and_reads_with_its_token(anonymous: TestClient, site: SiteLedger) -> None:
    headers = bearer(token(anonymous, "S01", secret_for(anonymous, "S01")))
    pushed = anonymous.post(PUSH, json=site.batch(site.receipts(3)), headers=headers)
    assert pushed.status_code == 200
    assert pushed.json()["acked_through_seq"] == 3
    for path, params in SYNC_READS:
        answer = anonymous.get(path, params={"site_id": "S01", **params}, headers=headers)
        assert answer.status_code == 200, (path, answer.text)


def test_a_site_cannot_act_for_another(
    anonymous: TestClient, site: SiteLedger, other_site: SiteLedger
) -> None:
    s01 = bearer(token(anonymous, "S01", secret_for(anonymous, "S01")))
    secret_for(anonymous, "S02")
    refused = anonymous.post(PUSH, json=other_site.batch(other_site.receipts(1)), headers=s01)
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("the token is for site S01, which may not act for site S02")
    assert held(anonymous) == 0
    for path, params in SYNC_READS:
        answer = anonymous.get(path, params={"site_id": "S02", **params}, headers=s01)
        assert answer.status_code == 403, path
        assert "may not act for site S02" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("site_id", "secret"),
    [("S01", "W" * 43), ("S99", "W" * 43)],
    ids=["wrong-secret", "unknown-site"],
)
def test_a_wrong_secret_gets_no_token(anonymous: TestClient, site_id: str, secret: str) -> None:
    secret_for(anonymous, "S01")
    response = anonymous.post(TOKEN, json={"site_id": site_id, "secret": secret})
    assert response.status_code == 401
    assert f"site {site_id}: credential refused" in response.json()["detail"]


def test_a_malformed_token_request_names_the_field(anonymous: TestClient) -> None:
    response = anonymous.post(TOKEN, json={"site_id": "S01", "secret": "short"})
    assert response.status_code == 422
    assert response.json()["message"].startswith("body.secret:")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t.replace(":S01:", ":S02:"),
        lambda t: "Zm9vYmFy",
        lambda t: t.replace("jxc1:", "jxc2:"),
    ],
    ids=["bad-signature", "other-site-same-signature", "not-a-token", "unknown-format"],
)
def test_a_forged_token_is_refused(anonymous: TestClient, site: SiteLedger, mangle: Any) -> None:
    good = token(anonymous, "S01", secret_for(anonymous, "S01"))
    secret_for(anonymous, "S02")
    response = anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=bearer(mangle(good)))
    assert response.status_code == 401
    assert "bearer token" in response.json()["detail"]
    assert held(anonymous) == 0


def test_an_expired_token_is_refused(
    anonymous: TestClient, site: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = bearer(token(anonymous, "S01", secret_for(anonymous, "S01")))
    later = time.time() + 901
    monkeypatch.setattr(auth.time, "time", lambda: later)
    response = anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_rotation_voids_old_tokens_and_the_old_secret(
    anonymous: TestClient, site: SiteLedger
) -> None:
    old_secret = secret_for(anonymous, "S01")
    old = bearer(token(anonymous, "S01", old_secret))
    with anonymous.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        new_secret = rotate_site(connection, "S01")
    response = anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=old)
    assert response.status_code == 401
    assert "rotated" in response.json()["detail"]
    assert anonymous.post(TOKEN, json={"site_id": "S01", "secret": old_secret}).status_code == 401
    site.seq = 0
    new = bearer(token(anonymous, "S01", new_secret))
    assert anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=new).status_code == 200


def test_revocation_refuses_at_the_next_request(anonymous: TestClient, site: SiteLedger) -> None:
    secret = secret_for(anonymous, "S01")
    headers = bearer(token(anonymous, "S01", secret))
    assert (
        anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=headers).status_code == 200
    )
    with anonymous.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        revoke_site(connection, "S01")
    response = anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert anonymous.post(TOKEN, json={"site_id": "S01", "secret": secret}).status_code == 401
    assert held(anonymous) == 1


def test_every_central_on_the_database_accepts_every_others_tokens(
    database_url: str, site: SiteLedger
) -> None:
    """Central is stateless behind a load balancer: the signing key is in the database."""
    with (
        TestClient(create_app(Settings(database_url=database_url))) as first,
        TestClient(create_app(Settings(database_url=database_url))) as second,
    ):
        headers = bearer(token(first, "S01", secret_for(first, "S01")))
        response = second.post(PUSH, json=site.batch(site.receipts(2)), headers=headers)
        assert response.status_code == 200
        assert response.json()["acked_through_seq"] == 2


def test_a_non_ascii_token_is_a_401_not_a_500(anonymous: TestClient, site: SiteLedger) -> None:
    good = token(anonymous, "S01", secret_for(anonymous, "S01"))
    forged = good[:-1] + "é"
    response = anonymous.post(
        PUSH,
        json=site.batch(site.receipts(1)),
        headers={"Authorization": f"Bearer {forged}".encode()},  # type: ignore[dict-item]
    )
    assert response.status_code == 401


def test_a_replaced_signing_key_voids_old_tokens(
    anonymous: TestClient, site: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secret_for(anonymous, "S01")
    old = bearer(token(anonymous, "S01", secret))
    engine = anonymous.app.state.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(update(auth_signing_key).values(key_hex="ab" * 32))
    later = time.monotonic() + auth.KEY_CACHE_S + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    response = anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=old)
    assert response.status_code == 401
    site.seq = 0
    fresh = bearer(token(anonymous, "S01", secret))
    assert anonymous.post(PUSH, json=site.batch(site.receipts(1)), headers=fresh).status_code == 200


def test_a_site_id_the_contract_refuses_gets_no_credential(anonymous: TestClient) -> None:
    with (
        anonymous.app.state.engine.connect() as connection,  # type: ignore[attr-defined]
        pytest.raises(InvalidSiteIdError, match="is not a site id"),
    ):
        add_site(connection, "S:01")
