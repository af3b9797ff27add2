"""The edge ledger's numbered migrations: old files upgrade with their events intact.

A version-1 file is built here from the first ledger's own SQL (as ``eff6108`` wrote it,
without ``user_version``), so the test does not depend on the migration code it checks.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.main import create_app
from central_api.services.auth import add_site
from edge_agent import migrations
from edge_agent.auth import SiteTokenAuth
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger, LedgerSchemaError, LedgerTooNewError
from edge_agent.migrations import LATEST, MIGRATIONS, Migration, SchemaError, migrate
from edge_agent.sync import Pusher
from jxc.contract import EventKind, LedgerEvent
from jxc.ids import uuid7
from jxc.paths import STOCK
from tests.patience import patience_timeout

VERSION_1_SQL = """
CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE "events" (
   "seq" INTEGER PRIMARY KEY,
   "event_id" TEXT NOT NULL,
   "occurred_at" TEXT NOT NULL,
   "kind" TEXT NOT NULL,
   "item" TEXT NOT NULL,
   "lot" TEXT,
   "location" TEXT NOT NULL,
   "qty" TEXT NOT NULL,
   "body" TEXT NOT NULL,
   "synced_at" TEXT
);
CREATE UNIQUE INDEX "idx_events_event_id" ON "events" ("event_id");
CREATE TABLE outbox (seq INTEGER PRIMARY KEY REFERENCES events(seq));
"""


def version_1_ledger(path: Path, qtys: list[Decimal], synced: int, site: str = "S01") -> list[str]:
    """A ledger file as the first jxc left it: ``qtys`` received, the first ``synced`` acked.

    Returns the events' stored bodies, in seq order.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(VERSION_1_SQL)
    conn.executemany(
        "INSERT INTO ledger_meta (key, value) VALUES (?, ?)",
        [("site_id", site), ("schema_version", "1")],
    )
    bodies = []
    for seq, qty in enumerate(qtys, start=1):
        event = LedgerEvent(
            event_id=uuid7(),
            site_id=site,
            seq=seq,
            occurred_at=datetime.now(UTC),
            kind=EventKind.RECEIPT,
            item="ITEM-1",
            lot="L1",
            location="DOCK-1",
            qty=qty,
            uom="EA",
        )
        body = event.model_dump_json()
        conn.execute(
            "INSERT INTO events (seq, event_id, occurred_at, kind, item, lot, location, qty,"
            " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                str(event.event_id),
                event.occurred_at.isoformat(),
                "receipt",
                "ITEM-1",
                "L1",
                "DOCK-1",
                format(qty, "f"),
                body,
            ),
        )
        conn.execute("INSERT INTO outbox (seq) VALUES (?)", (seq,))
        bodies.append(body)
    conn.execute(
        "UPDATE events SET synced_at = ? WHERE seq <= ?", (datetime.now(UTC).isoformat(), synced)
    )
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (synced,))
    conn.close()
    return bodies


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return migrations.version(conn)
    finally:
        conn.close()


def schema(path: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return {
            (name, " ".join(sql.split()))
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            )
        }
    finally:
        conn.close()


@pytest.fixture
def fresh_schema(tmp_path: Path) -> set[tuple[str, str]]:
    Ledger(tmp_path / "fresh.db", site_id="S01").close()
    return schema(tmp_path / "fresh.db")


quantities = st.lists(
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("99999"), places=3),
    min_size=0,
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(qtys=quantities, data=st.data())
def test_version_1_ledger_upgrades_with_its_events_intact(
    tmp_path_factory: pytest.TempPathFactory, qtys: list[Decimal], data: st.DataObject
) -> None:
    synced = data.draw(st.integers(min_value=0, max_value=len(qtys)), label="synced")
    path = tmp_path_factory.mktemp("v1") / "edge.db"
    bodies = version_1_ledger(path, qtys, synced)
    assert user_version(path) == 0  # the first ledgers never set it

    ledger = Ledger(path, site_id="S01")
    try:
        assert user_version(path) == LATEST
        assert [e.model_dump_json() for e in ledger.events()] == bodies
        with ledger.reading() as conn:
            meta = dict(conn.execute("SELECT key, value FROM ledger_meta").fetchall())
        assert meta == {"site_id": "S01"}  # the stale schema_version row is gone
        counts = ledger.counts()
        assert (counts.last_seq, counts.pending, counts.synced_through) == (
            len(qtys),
            len(qtys) - synced,
            synced,
        )
        waiting = ledger.pending_bodies(100)
        assert [p.body for p in waiting] == bodies[synced:]  # sent exactly as recorded
        # What later versions added works on the upgraded file.
        new = ledger.append(
            EventDraft(EventKind.RECEIPT, "ITEM-1", "DOCK-1", Decimal(1), "EA"),
            label_printer="printer-1",
        )
        assert new.seq == len(qtys) + 1
        assert [label.event.seq for label in ledger.pending_labels("printer-1")] == [new.seq]
        assert Catalog(ledger).cursor() == 0
        assert ledger.acquire_sender_lease("me", ttl_s=60)
        if waiting:
            ledger.apply_ack(waiting[0].event.seq, new.seq)
            assert ledger.counts().pending == 0
    finally:
        ledger.close()
    assert user_version(path) == LATEST
    Ledger(path, site_id="S01").close()  # opening an up-to-date file again changes nothing
    assert user_version(path) == LATEST


@pytest.fixture
def central(tmp_path: Path) -> Iterator[TestClient]:
    """The real central app with site S01 registered."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    app = create_app(Settings(database_url=url))
    with TestClient(app) as client:
        with app.state.engine.connect() as connection:
            client.auth = SiteTokenAuth("S01", add_site(connection, "S01"))
        yield client


def test_version_1_events_not_yet_pushed_reach_central(central: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    version_1_ledger(path, [Decimal("1.5"), Decimal("2.25"), Decimal("3")], synced=0)
    ledger = Ledger(path, site_id="S01")
    try:
        Pusher(ledger, central, batch_size=2).run()
        assert ledger.counts().pending == 0
        rows = central.get(STOCK, params={"site_id": "S01"}).json()
        assert [(row["lot"], Decimal(row["qty"])) for row in rows] == [("L1", Decimal("6.75"))]
    finally:
        ledger.close()


@pytest.mark.parametrize("start", range(LATEST + 1))
def test_every_version_upgrades_to_the_schema_of_a_fresh_ledger(
    tmp_path: Path, start: int, fresh_schema: set[tuple[str, str]]
) -> None:
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=start) == start
    conn.close()
    Ledger(path, site_id="S01").close()
    assert user_version(path) == LATEST
    assert schema(path) == fresh_schema


def test_unnumbered_file_of_the_last_probing_code_is_adopted(
    tmp_path: Path, fresh_schema: set[tuple[str, str]]
) -> None:
    """The agent before migrations: every ledger table, no catalog yet, user_version 0."""
    path = tmp_path / "edge.db"
    version_1_ledger(path, [Decimal(2)], synced=0)
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[1:5]:
        migration.apply(conn)
    assert migrations.version(conn) == 0
    conn.close()
    ledger = Ledger(path, site_id="S01")
    try:
        assert ledger.counts().pending == 1
    finally:
        ledger.close()
    assert schema(path) == fresh_schema


def test_a_ledger_from_a_newer_jxc_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    Ledger(path, site_id="S01").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.close()
    before = schema(path)
    with pytest.raises(LedgerTooNewError, match=rf"version {LATEST + 1}.*newer jxc"):
        Ledger(path, site_id="S01")
    assert user_version(path) == LATEST + 1
    assert schema(path) == before


def failing(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE half_done (x)")
    conn.execute("INSERT INTO half_done VALUES (1)")
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("at", [2, 4, LATEST + 1])
def test_a_failing_migration_leaves_the_previous_version_usable(
    tmp_path: Path, at: int, fresh_schema: set[tuple[str, str]]
) -> None:
    path = tmp_path / "edge.db"
    bodies = version_1_ledger(path, [Decimal(1), Decimal(2)], synced=1)
    broken = (*MIGRATIONS[: at - 1], Migration(at, "a step that fails halfway", failing))
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(SchemaError, match=rf"migration {at} .*stays at schema version {at - 1}"):
        migrate(conn, migrations=broken)
    assert migrations.version(conn) == at - 1
    assert "half_done" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    ledger = Ledger(path, site_id="S01")  # today's code carries on from there
    try:
        assert [e.model_dump_json() for e in ledger.events()] == bodies
        assert [p.body for p in ledger.pending_bodies(10)] == bodies[1:]
    finally:
        ledger.close()
    assert schema(path) == fresh_schema


def test_a_process_killed_inside_a_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    """A real crash (the process exits without unwinding) in the middle of migration 3."""
    path = tmp_path / "edge.db"
    bodies = version_1_ledger(path, [Decimal(5)], synced=0)
    script = textwrap.dedent(
        f"""
        import os, sqlite3
        from edge_agent.migrations import MIGRATIONS, Migration, migrate

        def die(conn):
            conn.execute("CREATE TABLE half_done (x)")
            os._exit(9)

        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        migrate(conn, migrations=(*MIGRATIONS[:2], Migration(3, "dies", die)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=patience_timeout(60))
    assert done.returncode == 9
    assert user_version(path) == 2
    ledger = Ledger(path, site_id="S01")
    try:
        assert [e.model_dump_json() for e in ledger.events()] == bodies
        assert ledger.integrity_ok()
    finally:
        ledger.close()
    assert user_version(path) == LATEST


def test_a_file_that_is_not_a_ledger_is_refused_unchanged(tmp_path: Path) -> None:
    """A site file whose [ledger] path points at some other database (central's, say)."""
    path = tmp_path / "central.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (item_code TEXT PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = schema(path)
    with pytest.raises(LedgerSchemaError, match=r"central\.db holds tables \(items\) but is not"):
        Ledger(path, site_id="S01")
    assert schema(path) == before
    assert user_version(path) == 0


def test_migrations_are_numbered_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    with pytest.raises(SchemaError, match="without gaps"):
        migrate(sqlite3.connect(":memory:"), migrations=(MIGRATIONS[0], MIGRATIONS[2]))
