"""The URL paths of the wire contract (``jxc.paths``) are the ones central serves and the
edge calls: defined once, so the two sides cannot drift apart."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from edge_agent import auth as edge_auth
from edge_agent import catalog as edge_catalog
from edge_agent import sync as edge_sync
from jxc import paths

CONTRACT_PATHS = {
    name: value
    for name, value in vars(paths).items()
    if name.isupper() and isinstance(value, str) and value not in (paths.API_ROOT, paths.CONSOLE)
}
"""The API's paths; the console's pages are HTML for people, outside the OpenAPI document."""


def test_central_serves_every_path_of_the_contract(client: TestClient) -> None:
    served = set(client.get("/openapi.json").json()["paths"])

    assert set(CONTRACT_PATHS.values()) <= served
    probes = {paths.HEALTH, paths.READY, paths.METRICS}
    assert all(path in probes or path.startswith(f"{paths.API_ROOT}/") for path in served)


def test_central_serves_the_console_at_its_path(client: TestClient) -> None:
    answer = client.get(f"{paths.CONSOLE}/", follow_redirects=False)
    assert answer.status_code in (200, 303, 307)
    assert answer.headers.get("location", f"{paths.CONSOLE}/").startswith(paths.CONSOLE)


def test_the_edge_calls_the_contracts_paths() -> None:
    assert edge_sync.PUSH_PATH == paths.SYNC_EVENTS
    assert edge_auth.TOKEN_PATH == paths.SYNC_TOKEN
    assert edge_catalog.CHANGES_PATH == paths.SYNC_CHANGES


def test_a_path_outside_the_api_root_is_not_made_relative_to_it() -> None:
    assert paths.below_api_root(paths.SYNC_EVENTS) == "/sync/events"
    with pytest.raises(ValueError, match="not below /api/v1"):
        paths.below_api_root(paths.HEALTH)
