"""Central's backups: verified when made, refused when damaged, and a restored central takes
the edges' replays (every event exactly once), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import make_url, text

from central_api.core.config import Settings
from central_api.core.db import create_db_engine
from central_api.main import attach_database
from central_api.services.backup import (
    backup_database,
    restore_database,
    scheduled_backup,
    start_backup_scheduler,
)
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc.backup import BackupError, read_manifest
from jxc.contract import EventKind
from jxc.paths import STOCK, SYNC_ACK
from tests.central.conftest import fresh_postgres_database
from tests.patience import wait_for


def receipt(qty: str) -> EventDraft:
    return EventDraft(
        kind=EventKind.RECEIPT,
        item="ITEM-1",
        lot="L1",
        location="DOCK-1",
        qty=Decimal(qty),
        uom="EA",
    )


def on_hand(client: TestClient) -> Decimal:
    rows = client.get(STOCK, params={"site_id": "S01"}).json()
    return sum((Decimal(row["qty"]) for row in rows), Decimal(0))


@contextmanager
def empty_target(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Somewhere new and empty of the same kind: the wiped machine a backup goes back to."""
    if make_url(database_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'central.db'}"
        return
    with fresh_postgres_database("jxc_restore") as url:
        yield url.render_as_string(hide_password=False)


def point_app_at(app: FastAPI, url: str) -> None:
    app.state.engine.dispose()
    attach_database(app, Settings(database_url=url))


def test_restored_central_takes_the_edges_replay_exactly_once(
    client: TestClient, database_url: str, tmp_path: Path
) -> None:
    """Backup with pushes in flight, more pushes after it, wipe, restore: the edge finds
    central behind its acks, replays from there, and every event counts once."""
    ledger = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        pusher = Pusher(ledger, client, batch_size=7)
        for _ in range(12):
            ledger.append(receipt("1.5"))
        pusher.run()
        # Another site pushes while the backup is taken: the copy is one snapshot anyway.
        other = Ledger(tmp_path / "other.db", site_id="S02")
        other_pusher = Pusher(other, client, batch_size=1)
        for _ in range(5):
            other.append(receipt("1"))
        in_flight = threading.Thread(target=other_pusher.run)
        in_flight.start()
        made = backup_database(database_url, tmp_path / "backups", keep=2)
        in_flight.join()
        other.close()
        assert made.counts["ledger_events"] >= 12
        for _ in range(8):  # reach central after the backup: lost with it
            ledger.append(receipt("2"))
        pusher.run()
        assert ledger.counts().synced_through == 20

        with empty_target(database_url, tmp_path) as target:
            counts = restore_database(target, made.path)
            assert counts == made.counts
            point_app_at(client.app, target)  # type: ignore[arg-type]
            try:
                acked = client.get(SYNC_ACK, params={"site_id": "S01"}).json()
                assert acked["acked_through_seq"] == 12, "central is back where the backup was"
                ledger.append(receipt("0.25"))
                pusher.backoff.succeeded()
                pusher.run()
                counts_after = ledger.counts()
                assert (counts_after.pending, counts_after.synced_through) == (0, 21)
                assert pusher.state.rewinds == 1
                acked = client.get(SYNC_ACK, params={"site_id": "S01"}).json()
                assert acked["acked_through_seq"] == 21
                assert on_hand(client) == Decimal("1.5") * 12 + Decimal(2) * 8 + Decimal("0.25")
            finally:
                point_app_at(client.app, database_url)  # type: ignore[arg-type]
    finally:
        ledger.close()


def test_backup_is_verified_pruned_and_refused_when_damaged(
    database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "backups"
    made = [backup_database(database_url, directory, keep=2) for _ in range(3)]
    kept = sorted(path.name for path in directory.iterdir())
    assert kept == sorted(
        name for result in made[1:] for name in (result.path.name, result.manifest.name)
    )
    assert made[2].removed == [made[0].path]
    assert read_manifest(made[2].path)["counts"]["roles"] > 0

    damaged = made[2].path
    if damaged.suffix == ".db":
        with sqlite3.connect(damaged) as conn:
            conn.execute("DELETE FROM roles")
        conn.close()
        expected = "row counts differ"
    else:
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
        expected = "pg_restore cannot read it"
    with empty_target(database_url, tmp_path) as target:
        # A sound one restores with the audit chain's head and the schema revision.
        restore_database(target, made[1].path)
        assert heads(target) == heads(database_url)
        with pytest.raises(BackupError, match=expected):
            restore_database(target, damaged)


def heads(url: str) -> tuple[object, ...]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return (
                connection.execute(text("SELECT seq, hash FROM audit_head")).one(),
                connection.execute(text("SELECT version_num FROM alembic_version")).all(),
            )
    finally:
        engine.dispose()


def test_backup_of_the_wrong_kind_is_refused(database_url: str, tmp_path: Path) -> None:
    made = backup_database(database_url, tmp_path / "backups", keep=1)
    other = (
        "postgresql+psycopg://postgres@127.0.0.1:5432/nowhere"
        if made.path.suffix == ".db"
        else f"sqlite:///{tmp_path / 'x.db'}"
    )
    with pytest.raises(BackupError, match="cannot be restored into"):
        restore_database(other, made.path)


def test_scheduled_backup_runs_once_per_interval_across_processes(
    database_url: str, tmp_path: Path
) -> None:
    """The scheduler makes verified backups by itself; a second process (or replica) on the
    same directory skips a run another has just made."""
    import fcntl  # noqa: PLC0415

    directory = tmp_path / "scheduled"
    scheduler = start_backup_scheduler(database_url, directory, keep=3, interval_h=0.0003)
    try:
        assert wait_for(lambda: list(directory.glob("central-*Z.*[bp]")), 30), "a backup"
        made = sorted(directory.glob("central-*Z.*[bp]"))
    finally:
        scheduler.shutdown(wait=True)
    assert read_manifest(made[0])["counts"]["roles"] > 0
    assert not scheduled_backup(database_url, directory, keep=3, interval_s=3600), "just made"
    with (directory / ".backup.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert not scheduled_backup(database_url, directory, keep=3, interval_s=0), "busy"
    assert scheduled_backup(database_url, directory, keep=3, interval_s=0)


def test_cli_backup_then_restore_rekeys(tmp_path: Path) -> None:
    """``jxc central backup`` then ``restore --yes`` into a new file: same data, new key."""
    from typer.testing import CliRunner  # noqa: PLC0415

    from central_api.cli import app as central_cli  # noqa: PLC0415
    from central_api.core.db import create_db_engine, upgrade_database  # noqa: PLC0415

    source = f"sqlite:///{tmp_path / 'central.db'}"
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    runner = CliRunner()
    made = runner.invoke(
        central_cli,
        ["backup", "--dir", str(tmp_path / "b"), "--keep", "1", "--database-url", source],
    )
    assert made.exit_code == 1
    assert "no such database file" in made.output
    upgrade_database(source)
    made = runner.invoke(
        central_cli,
        ["backup", "--dir", str(tmp_path / "b"), "--keep", "1", "--database-url", source],
    )
    assert made.exit_code == 0, made.output
    path = json.loads(made.stdout)["path"]
    restored = runner.invoke(central_cli, ["restore", path, "--database-url", target, "--yes"])
    assert restored.exit_code == 0, restored.output
    keys = []
    for url in (source, target):
        engine = create_db_engine(url)
        with engine.connect() as connection:
            keys.append(connection.execute(text("SELECT * FROM auth_signing_key")).all())
        engine.dispose()
    assert keys[0] != keys[1], "the restored central signs with a new key"
