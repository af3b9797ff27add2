"""An edge's ledger backed up while it records, wiped, restored: the outbox stands where it
stood, nothing is sent twice and nothing is lost (against the real central app)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.services.auth import add_site
from edge_agent.auth import SiteTokenAuth
from edge_agent.backup import backup_ledger, restore_ledger
from edge_agent.cli import app as edge_cli
from edge_agent.config import SiteConfig, load_site_config
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc import backup as module
from jxc.backup import BackupError
from jxc.contract import EventKind
from jxc.paths import STOCK, SYNC_EVENTS
from tests.central.conftest import central_app


def receipt(qty: str) -> EventDraft:
    return EventDraft(
        kind=EventKind.RECEIPT,
        item="ITEM-1",
        lot="L1",
        location="DOCK-1",
        qty=Decimal(qty),
        uom="EA",
    )


@pytest.fixture
def central(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    with central_app(Settings(database_url=url)) as app, TestClient(app) as client:
        with app.state.engine.connect() as connection:
            client.auth = SiteTokenAuth("S01", add_site(connection, "S01"))
        yield client


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    path = tmp_path / "site" / "S01.toml"
    path.parent.mkdir()
    path.write_text(
        '[site]\nid = "S01"\n[ledger]\npath = "ledger.db"\n[backup]\nkeep = 2\n', encoding="utf-8"
    )
    return load_site_config(path)


def wipe(ledger_path: Path) -> None:
    for name in (ledger_path.name, ledger_path.name + "-wal", ledger_path.name + "-shm"):
        (ledger_path.parent / name).unlink(missing_ok=True)


def test_restore_keeps_the_outbox_position(central: TestClient, site: SiteConfig) -> None:
    ledger = Ledger(site.ledger.path, site_id="S01")
    sent: list[int] = []
    request_ids: list[str] = []

    def count_sent(request: httpx.Request) -> None:
        if request.url.path == SYNC_EVENTS:
            sent.extend(event["seq"] for event in json.loads(request.content)["events"])
            request_ids.append(request.headers["X-Request-ID"])

    def echoed(response: httpx.Response) -> None:
        if response.request.url.path == SYNC_EVENTS:
            assert response.headers["X-Request-ID"] == response.request.headers["X-Request-ID"]

    central.event_hooks["request"].append(count_sent)
    central.event_hooks["response"].append(echoed)
    pusher = Pusher(ledger, central, batch_size=5, max_batches_per_run=2)
    for _ in range(15):
        ledger.append(receipt("1"))
    pusher.run()  # 10 of 15 reach central
    assert ledger.counts().synced_through == 10
    assert len(set(request_ids)) == 2, "one id per push, each its own"
    assert pusher.state.last_request_id == request_ids[-1]

    stop = threading.Event()

    def keep_recording() -> None:  # the dock goes on scanning while the backup runs
        while not stop.is_set():
            ledger.append(receipt("0.5"))
            time.sleep(0.001)

    writer = threading.Thread(target=keep_recording)
    writer.start()
    try:
        made = [backup_ledger(site) for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    backup = made[-1]
    assert made[-1].removed == [made[0].path], "keep = 2"
    recorded = backup.counts["events"]
    assert recorded >= 15
    assert backup.counts["outbox"] == recorded - 10

    ledger.close()
    wipe(site.ledger.path)
    restore_ledger(site, backup.path, central_holds_through=10)

    restored = Ledger(site.ledger.path, site_id="S01")
    try:
        counts = restored.counts()
        assert (counts.last_seq, counts.synced_through, counts.pending) == (
            recorded,
            10,
            recorded - 10,
        )
        assert restored.sender_lease() is None
        sent.clear()
        Pusher(restored, central, batch_size=500).run()
        assert sent == list(range(11, recorded + 1)), "each pending event once, none synced"
        assert restored.counts().pending == 0
        rows = central.get(STOCK, params={"site_id": "S01"}).json()
        expected = sum((event.qty for event in restored.events()), Decimal(0))
        assert sum(Decimal(row["qty"]) for row in rows) == expected
    finally:
        restored.close()


def test_restore_refusals(site: SiteConfig, tmp_path: Path) -> None:
    ledger = Ledger(site.ledger.path, site_id="S01")
    for _ in range(3):
        ledger.append(receipt("1"))
    backup = backup_ledger(site).path
    try:
        assert ledger.acquire_sender_lease("elsewhere:1:abc", ttl_s=60)
        with pytest.raises(BackupError, match="still runs"):
            restore_ledger(site, backup)
        ledger.release_sender_lease("elsewhere:1:abc")
        with pytest.raises(BackupError, match=r"events 4\.\.9 exist only at central"):
            restore_ledger(site, backup, central_holds_through=9)
    finally:
        ledger.close()
    other = site.model_copy(deep=True)
    other.site.id = "S02"
    with pytest.raises(BackupError, match="backup of site 'S01', not 'S02'"):
        restore_ledger(other, backup)
    backup.with_name(backup.name + ".json").unlink()
    with pytest.raises(BackupError, match="not a verified jxc backup"):
        restore_ledger(site, backup)


def test_cli_backup_and_offline_restore(site: SiteConfig, tmp_path: Path) -> None:
    config = tmp_path / "site" / "S01.toml"
    runner = CliRunner()
    missing = runner.invoke(edge_cli, ["backup", "-c", str(config), "--dir", str(tmp_path / "x")])
    assert missing.exit_code == 1
    assert "no such ledger file" in missing.output
    assert not site.ledger.path.exists(), "a backup never creates the ledger"
    ledger = Ledger(site.ledger.path, site_id="S01")
    ledger.append(receipt("1"))
    ledger.close()
    made = runner.invoke(edge_cli, ["backup", "-c", str(config)])
    assert made.exit_code == 0, made.output
    path = Path(json.loads(made.stdout)["path"])
    assert path.parent == tmp_path / "site" / "backups"
    wipe(site.ledger.path)
    restored = runner.invoke(edge_cli, ["restore", "-c", str(config), str(path), "--offline"])
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout)["counts"]["events"] == 1


def test_a_finished_backup_name_never_appears_without_its_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler or a reader lists ``ledger-*.db``: at the moment the finished name appears,
    its manifest must already be beside it (CI once read the file between the two steps)."""
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    seen: list[bool] = []
    rename = Path.replace

    def watched(self: Path, target: Path) -> Path:
        if Path(target).suffix == ".db":
            seen.append(Path(target).with_name(Path(target).name + ".json").is_file())
        return rename(self, target)

    monkeypatch.setattr(Path, "replace", watched)
    made = module.backup_sqlite(source, tmp_path / "out", prefix="ledger-S01", keep=2)
    assert seen == [True]
    assert module.read_manifest(made.path)["counts"] == {"t": 1}
    assert module.read_manifest(made.path)["size"] == made.path.stat().st_size


def test_a_manifest_whose_backup_never_arrived_is_pruned_later(tmp_path: Path) -> None:
    """A crash between the manifest and the rename leaves a manifest alone; the next
    backup's pruning removes it, never the manifest of a backup still being made."""
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (x)")
    out = tmp_path / "out"
    out.mkdir()
    orphan = out / "ledger-S01-20200101T000000000000Z.db.json"
    orphan.write_text("{}")
    later = out / "ledger-S01-29990101T000000000000Z.db.json"  # newer than any finished one
    later.write_text("{}")

    made = module.backup_sqlite(source, out, prefix="ledger-S01", keep=2)

    assert not orphan.exists()
    assert later.exists()
    assert module.read_manifest(made.path)["counts"] == {"t": 0}
