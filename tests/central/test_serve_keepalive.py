"""Central keeps idle connections open longer than an edge's client keeps them.

``bench/chain.py --seconds`` found one or two pulls in 6,000 failing with a reset
connection: uvicorn closed idle connections after 5 s, exactly when httpx (the edge's
client) still reused them. See ``central_api.cli.KEEP_ALIVE_S``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from central_api import cli
from central_api.core import gc_tuning
from central_api.core.config import Settings


def _edge_keepalive_expiry_s() -> float:
    """What the edge's client (``edge_agent.transport.central_client``: httpx's default
    limits) keeps an idle connection for."""
    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None
    return expiry


def _options_given_to_uvicorn(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """What ``jxc central serve`` hands ``uvicorn.run``, caught instead of serving."""
    given: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: given.update(options))
    # What serving changes in this process (the workers' environment, the collector's
    # thresholds) is put back after the test.
    monkeypatch.setenv("JXC_CENTRAL_DATABASE_URL", "unset")
    monkeypatch.setenv("JXC_LOG_LEVEL", "WARNING")
    monkeypatch.setattr(gc_tuning, "tune_for_serving", lambda **_: None)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'central.db'}", workers=workers)
    cli._run(settings, lambda: None)
    return given


@pytest.mark.parametrize("workers", [1, 2])
def test_central_closes_idle_connections_after_the_edge_does(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _options_given_to_uvicorn(workers, tmp_path, monkeypatch)
    assert given["timeout_keep_alive"] > 2 * _edge_keepalive_expiry_s()


@pytest.mark.parametrize("workers", [1, 2])
def test_central_serves_with_the_compiled_http_parser_and_event_loop(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named, not left to uvicorn's "auto": a missing package would stop the start instead
    of serving with the pure-Python parser at a quarter more CPU per request."""
    given = _options_given_to_uvicorn(workers, tmp_path, monkeypatch)
    assert (given["http"], given["loop"]) == ("httptools", "uvloop")
    config = uvicorn.Config(app=None, http=given["http"], loop=given["loop"])  # type: ignore[arg-type]
    config.load()  # imports what they name; fails if a package is missing
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    make_loop = config.get_loop_factory()
    assert make_loop is not None
    loop = make_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
