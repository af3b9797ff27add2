"""Backups of central's database: SQLite's online backup API, or ``pg_dump`` for PostgreSQL.

Each backup is verified as soon as it is written, against row counts taken in the very
snapshot the backup was made from:

* SQLite: :mod:`jxc.backup` (one read transaction for the counts and the copy; the copy
  opened on its own, ``integrity_check``, every table's count compared).
* PostgreSQL: a ``REPEATABLE READ`` transaction exports its snapshot, every table is
  counted in it, and ``pg_dump --snapshot`` dumps exactly that snapshot (custom format).
  The archive is then read back by ``pg_restore`` to a SQL script, streamed, and the rows
  of each table's ``COPY`` block are counted: a truncated or unreadable archive, or one
  missing a table, fails here and not on the day it is needed. No scratch database is
  needed for that, so the check costs one read of the archive.

Restoring checks the file against its manifest the same way before anything is changed;
PostgreSQL restores in one transaction (``--single-transaction``), so a failed restore
leaves the database as it was. The caller rekeys afterwards (``docs/security.md``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import URL, make_url, text

from central_api.core.db import create_db_engine
from jxc.backup import (
    BackupError,
    BackupResult,
    backup_name,
    backup_sqlite,
    prune,
    read_manifest,
    restore_sqlite,
    write_manifest,
)

log = logging.getLogger("central_api.backup")

PREFIX = "central"
PG_SUFFIX = ".dump"
PG_TIMEOUT_S = 6 * 3600
"""pg_dump/pg_restore of a chain's database can take a while; never forever."""

_COPY_START = re.compile(r'^COPY (?:"?[\w]+"?\.)?"?(?P<table>[^" (]+)"? \(.*\) FROM stdin;$')


def sqlite_path(url: str | URL) -> Path:
    """The file a ``sqlite:///`` URL names (a memory database has none to back up)."""
    parsed = make_url(url)
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database has no file to back up")
    return Path(parsed.database)


def backup_database(url: str | URL, directory: Path, *, keep: int) -> BackupResult:
    """Back up central's database at ``url`` into ``directory``, verified; keep the newest
    ``keep`` backups."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return backup_sqlite(
            sqlite_path(parsed), directory, prefix=PREFIX, keep=keep, extra={"what": "central"}
        )
    if backend == "postgresql":
        return _backup_postgres(parsed, directory, keep=keep)
    raise BackupError(f"no backup for database kind {backend!r}")


def restore_database(url: str | URL, backup: Path) -> dict[str, int]:
    """Replace central's database at ``url`` with ``backup`` (central must be stopped).

    A SQLite backup restores only into SQLite, a ``pg_dump`` archive only into
    PostgreSQL; the manifest says which a file is. Returns the restored row counts.
    """
    parsed = make_url(url)
    manifest = read_manifest(backup)
    kind = manifest.get("kind")
    backend = parsed.get_backend_name()
    if backend == "sqlite" and kind == "sqlite":
        return restore_sqlite(backup, sqlite_path(parsed))
    if backend == "postgresql" and kind == "pg_dump":
        return _restore_postgres(parsed, backup, manifest)
    raise BackupError(f"{backup} is a {kind} backup; it cannot be restored into {backend}")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client of the server's major "
            "version (Debian: apt-get install postgresql-client)"
        )
    return found


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for the tools, and their environment with the password.

    The password travels in ``PGPASSWORD``, never on a command line anyone can list.
    """
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _postgres_counts(connection: Any) -> dict[str, int]:
    names = [
        row[0]
        for row in connection.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                " ORDER BY table_name"
            )
        )
    ]
    return {
        name: int(connection.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one())  # noqa: S608
        for name in names
    }


@contextmanager
def _snapshot(url: URL) -> Iterator[tuple[str, dict[str, int], str]]:
    """An exported snapshot id, the row counts in it and the server version, held open."""
    engine = create_db_engine(url)
    try:
        with engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        ) as connection:
            snapshot = str(connection.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            counts = _postgres_counts(connection)
            version = str(connection.execute(text("SHOW server_version")).scalar_one())
            yield snapshot, counts, version
            connection.rollback()
    finally:
        engine.dispose()


def _backup_postgres(url: URL, directory: Path, *, keep: int) -> BackupResult:
    if keep < 1:
        raise BackupError(f"keep must be at least 1, not {keep}")
    pg_dump = _tool("pg_dump")
    _tool("pg_restore")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / backup_name(PREFIX, PG_SUFFIX)
    partial = final.with_name(f".{final.name}.partial")
    conninfo, env = _libpq(url)
    with _snapshot(url) as (snapshot, counts, version):
        done = subprocess.run(
            [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={partial}", conninfo],
            env=env,
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[:1000]}")
    try:
        verify_pg_archive(partial, counts)
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    # The manifest goes first: whoever sees the finished name must find it beside it.
    manifest = write_manifest(
        final,
        {
            "kind": "pg_dump",
            "what": "central",
            "source": url.render_as_string(hide_password=True),
            "server_version": version,
            "made_at": datetime.now(UTC).isoformat(),
            "size": partial.stat().st_size,
            "counts": counts,
        },
    )
    partial.replace(final)
    removed = prune(directory, prefix=PREFIX, suffix=PG_SUFFIX, keep=keep)
    return BackupResult(path=final, manifest=manifest, counts=counts, removed=removed)


def verify_pg_archive(path: Path, expected: Mapping[str, int] | None = None) -> dict[str, int]:
    """Read a ``pg_dump`` archive back in full and count each table's rows in it.

    ``pg_restore -f -`` renders the archive as a script without a database; every row of a
    table's data is one line of its ``COPY`` block (newlines inside values are escaped).
    """
    pg_restore = _tool("pg_restore")
    counts: dict[str, int] = {}
    with subprocess.Popen(
        [pg_restore, "--file=-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    ) as process:
        assert process.stdout is not None
        table: str | None = None
        for line in process.stdout:
            if table is None:
                if line.startswith("COPY ") and (found := _COPY_START.match(line.rstrip("\n"))):
                    table = found["table"]
                    counts[table] = 0
            elif line == "\\.\n":
                table = None
            else:
                counts[table] += 1
        errors = process.stderr.read() if process.stderr is not None else ""
        returncode = process.wait(timeout=PG_TIMEOUT_S)
    if returncode != 0:
        raise BackupError(f"{path}: pg_restore cannot read it: {errors.strip()[:1000]}")
    if expected is not None:
        # A table with no rows may have no COPY block worth a line; compare what must hold.
        wanted = {name: count for name, count in expected.items() if count or name in counts}
        found_counts = {name: counts.get(name, 0) for name in wanted}
        if wanted != found_counts or set(counts) - set(expected):
            differ = sorted(
                name
                for name in set(wanted) | set(counts)
                if wanted.get(name, 0) != counts.get(name, 0)
            )
            details = ", ".join(
                f"{name}: {expected.get(name)} != {counts.get(name)}" for name in differ[:10]
            )
            raise BackupError(f"{path}: row counts differ from the snapshot: {details}")
    return counts


def _restore_postgres(url: URL, backup: Path, manifest: Mapping[str, Any]) -> dict[str, int]:
    expected = manifest.get("counts")
    verify_pg_archive(backup, expected)
    pg_restore = _tool("pg_restore")
    conninfo, env = _libpq(url)
    done = subprocess.run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={conninfo}",
            str(backup),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=PG_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(
            f"pg_restore failed; the database is as it was: {done.stderr.strip()[:1000]}"
        )
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            found = _postgres_counts(connection)
    finally:
        engine.dispose()
    if expected is not None:
        differ = sorted(n for n in expected if expected[n] != found.get(n))
        if differ:
            raise BackupError(f"restored database differs from the backup in: {', '.join(differ)}")
    return found


def scheduled_backup(url: str | URL, directory: Path, *, keep: int, interval_s: float) -> bool:
    """One run of the scheduled backup; False if another process did it (or does it now).

    Every process of central (workers, replicas sharing the directory) schedules it; a
    lock file lets one of them work at a time, and a backup younger than half the
    interval means another process has just made it.
    """
    import fcntl  # noqa: PLC0415 - POSIX only, like the services that schedule this
    import time  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".backup.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        newest = max(
            (
                path.stat().st_mtime
                for path in directory.glob(f"{PREFIX}-*Z.*")
                if path.suffix in (".db", PG_SUFFIX)
            ),
            default=0.0,
        )
        if time.time() - newest < interval_s / 2:
            return False
        result = backup_database(url, directory, keep=keep)
    log.info("scheduled backup made", extra={"event": "backup_made", **result.as_dict()})
    LAST_BACKUP.update(at=time.time(), path=str(result.path))
    return True


LAST_BACKUP: dict[str, Any] = {}
"""When this process last made a scheduled backup (for /metrics)."""


def start_backup_scheduler(url: str, directory: Path, *, keep: int, interval_h: float) -> Any:
    """A started APScheduler running :func:`scheduled_backup` every ``interval_h`` hours."""
    from apscheduler.schedulers.background import BackgroundScheduler  # noqa: PLC0415

    interval_s = interval_h * 3600
    scheduler = BackgroundScheduler(timezone="UTC")

    def run() -> None:
        try:
            scheduled_backup(url, directory, keep=keep, interval_s=interval_s)
        except Exception:  # a failed backup is logged loudly; the next run tries again
            log.exception("scheduled backup failed", extra={"event": "backup_failed"})
            LAST_BACKUP["failures"] = int(LAST_BACKUP.get("failures", 0)) + 1

    scheduler.add_job(
        run,
        "interval",
        seconds=interval_s,
        id="backup",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(interval_s / 2)),
    )
    scheduler.start()
    return scheduler
