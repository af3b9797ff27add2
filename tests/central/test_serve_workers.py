"""``jxc central serve --workers N``: PostgreSQL only, start-up work done once.

Several processes on one port, each only building the app; the migrations and the first
admin are done by the command before any of them starts. On SQLite the command refuses,
naming why (one writer at a time).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import URL
from typer.testing import CliRunner

from central_api.cli import app, workers_refusal
from jxc.paths import HEALTH, SYNC_EVENTS, SYNC_TOKEN
from tests.central.conftest import SiteLedger, fresh_postgres_database
from tests.patience import patience_timeout


def test_sqlite_refuses_more_than_one_worker_before_touching_the_database(tmp_path: Path) -> None:
    database = tmp_path / "central.db"
    result = CliRunner().invoke(
        app, ["serve", "--workers", "2", "--database-url", f"sqlite:///{database}"]
    )
    assert result.exit_code == 2
    assert "PostgreSQL" in result.output
    assert "one writer" in result.output
    assert not database.exists()


def test_one_worker_is_fine_on_either_database() -> None:
    assert workers_refusal("sqlite:///var/central.db", 1) is None
    assert workers_refusal("postgresql+psycopg://u@h/db", 4) is None
    assert workers_refusal("sqlite:///var/central.db", 2) is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
def test_two_workers_on_postgresql_migrate_once_and_both_serve(
    tmp_path: Path, postgres_session: Any
) -> None:
    """``postgres_session`` only for its check that the server is there (else skipped)."""
    with fresh_postgres_database("jxc_test_workers") as url:
        _serve_two_workers(tmp_path, url)


def _serve_two_workers(tmp_path: Path, url: URL) -> None:
    port = _free_port()
    log_path = tmp_path / "central.log"
    jxc = str(Path(sys.executable).with_name("jxc"))
    env = {
        **os.environ,
        "JXC_CENTRAL_DATABASE_URL": url.render_as_string(hide_password=False),
        "JXC_CENTRAL_ADMIN_PASSWORD": "workers test password",
    }
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [jxc, "central", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + patience_timeout(30)
            while "Started server process" not in log_path.read_text() or (
                log_path.read_text().count("Application startup complete") < 2
            ):
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            assert httpx.get(f"{base}{HEALTH}", timeout=10).status_code == 200
            _push_through(base, url.render_as_string(hide_password=False))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(patience_timeout(30))
    lines = log_path.read_text().splitlines()

    def said(message: str) -> int:
        return sum(f'"msg": "{message}' in line for line in lines)

    assert said("Started server process") == 2, lines  # two workers served
    assert said("database schema is current") == 1, lines  # migrated once, by the command
    assert said("first admin created") == 1, lines
    # One access line per request, central's own (with the request's id, site and user):
    # uvicorn's would be a second line saying less.
    assert said("request") >= 5, lines  # the health check and the four pushes
    assert not any('"logger": "uvicorn.access"' in line for line in lines), lines


def _push_through(base: str, url: str) -> None:
    from central_api.core.db import create_db_engine  # noqa: PLC0415
    from central_api.services.auth import add_site  # noqa: PLC0415

    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            secret = add_site(connection, "S01")
    finally:
        engine.dispose()
    site = SiteLedger("S01")
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.post(SYNC_TOKEN, json={"site_id": "S01", "secret": secret}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        for _ in range(4):  # new connections each time: the kernel spreads them over workers
            answer = httpx.post(
                f"{base}{SYNC_EVENTS}",
                json=site.batch(site.receipts(2)),
                headers=headers,
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        assert answer.json()["acked_through_seq"] == 8
