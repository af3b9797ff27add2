"""``jxc central``: the command group loads cheaply and migrates a database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect
from typer.testing import CliRunner

from central_api.cli import app
from central_api.core.db import create_db_engine


def test_importing_the_command_group_stays_light() -> None:
    """The root ``jxc`` command imports every group at start, even for ``--help``."""
    heavy = ("fastapi", "sqlalchemy", "uvicorn", "alembic", "psycopg")
    probe = (
        f"import sys, central_api.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'central.db'}"

    result = CliRunner().invoke(app, ["migrate", "--database-url", url])

    assert result.exit_code == 0, result.output
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            assert "ledger_events" in inspect(connection).get_table_names()
    finally:
        engine.dispose()


def test_help_lists_serve_and_migrate() -> None:
    result = CliRunner().invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "serve" in result.output
    assert "migrate" in result.output


def test_site_credentials_from_the_command_line(tmp_path: Path) -> None:
    """add writes a private secret file, a second add is refused, rotate and revoke work."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    runner = CliRunner()
    secret_file = tmp_path / "site" / "S01.secret"

    added = runner.invoke(
        app, ["site", "add", "S01", "--database-url", url, "--secret-file", str(secret_file)]
    )
    assert added.exit_code == 0, added.output
    first = secret_file.read_text().strip()
    assert len(first) >= 43
    assert secret_file.stat().st_mode & 0o777 == 0o600

    again = runner.invoke(app, ["site", "add", "S01", "--database-url", url])
    assert again.exit_code == 1
    assert "already has a credential; use `jxc central site rotate S01`" in again.output

    rotated = runner.invoke(app, ["site", "rotate", "S01", "--database-url", url])
    assert rotated.exit_code == 0, rotated.output
    assert rotated.stdout.splitlines()[0] not in {first, ""}

    revoked = runner.invoke(app, ["site", "revoke", "S01", "--database-url", url])
    assert revoked.exit_code == 0, revoked.output
    unknown = runner.invoke(app, ["site", "revoke", "S09", "--database-url", url])
    assert unknown.exit_code == 1
    assert "site S09 has no credential" in unknown.output

    listed = runner.invoke(app, ["site", "list", "--json", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["site_id"], row["revoked"], row["generation"]) == ("S01", True, 3)
    assert first not in listed.output
