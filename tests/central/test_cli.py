"""``jxc central``: the command group loads cheaply and migrates a database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect
from typer.testing import CliRunner

from central_api.cli import app
from central_api.db import create_db_engine


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
