"""``/healthz`` and the 503 a client gets, instead of a 500, when the database is gone."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api.core.config import Settings
from central_api.core.db import SchemaNotCurrentError
from central_api.main import create_app
from jxc import __version__
from jxc.contract import CONTRACT_VERSION
from jxc.paths import HEALTH, STOCK, SYNC_EVENTS


def test_healthz_reports_versions_and_database(client: TestClient, database_url: str) -> None:
    response = client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": database_url.split(":", 1)[0].split("+", 1)[0],
        "version": __version__,
        "contract_version": CONTRACT_VERSION,
    }


def test_app_metadata(client: TestClient) -> None:
    assert client.app.title == "jxc central"  # type: ignore[attr-defined]
    assert client.app.version == __version__  # type: ignore[attr-defined]


@pytest.fixture
def unreachable_client() -> Iterator[TestClient]:
    """Central pointed at a PostgreSQL port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere"
    with TestClient(create_app(Settings(database_url=url))) as client:
        yield client


def test_healthz_is_503_when_the_database_is_unreachable(
    unreachable_client: TestClient,
) -> None:
    response = unreachable_client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "postgresql"
    assert body["message"].startswith("database unreachable:")


def test_push_is_503_not_500_when_the_database_is_unreachable(
    unreachable_client: TestClient, site: Any
) -> None:
    # A token that may be valid: checking it needs the database, so the answer is a 503
    # (with no token at all it is a 401, which needs no database to say).
    token = "jxc1:S01:1:9999999999:c2lnbmF0dXJl"
    response = unreachable_client.post(
        SYNC_EVENTS,
        json=site.batch(site.receipts(1)),
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"].startswith("database unavailable, retry later:")


def test_a_push_without_a_token_is_401_even_with_the_database_down(
    unreachable_client: TestClient, site: Any
) -> None:
    response = unreachable_client.post(SYNC_EVENTS, json=site.batch(site.receipts(1)))
    assert response.status_code == 401


def test_stock_is_503_when_the_database_is_unreachable(unreachable_client: TestClient) -> None:
    # As for a push: a credential that may be valid needs the database to be checked (503);
    # none at all is a 401, which needs no database to say.
    token = "jxc1:S01:1:9999999999:c2lnbmF0dXJl"
    answer = unreachable_client.get(STOCK, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 503
    assert unreachable_client.get(STOCK).status_code == 401


def test_app_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}"))

    with pytest.raises(SchemaNotCurrentError, match="run `jxc central migrate"), TestClient(app):
        pass
