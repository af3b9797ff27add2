"""Backups of SQLite databases (an edge's ledger, a single-site central), shared by both.

A backup is taken with SQLite's online backup API from a connection that first opens a
read transaction and counts every table's rows in it: the copy and the counts come from
the same snapshot, so the copy can be checked against them exactly even while the agent or
central goes on writing (WAL lets the writer continue; it never waits for the backup).

Every backup is verified right after it is written, before older ones are pruned: the
copy is opened on its own, ``PRAGMA integrity_check`` must say ``ok``, and every table
must hold the row count the snapshot had. The counts go into a manifest beside the copy
(``<name>.json``), so a restore checks the file it is handed against what was verified
when it was made, and refuses a copy that was truncated or altered since.

Standard library only: the edge imports this, and so does central; neither needs more.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".json"


class BackupError(Exception):
    """A backup could not be made, or a file is not a backup that can be restored."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """One verified backup: the file, its manifest and what was checked in it."""

    path: Path
    manifest: Path
    counts: dict[str, int]
    removed: list[Path]
    """Older backups pruned by retention after this one was verified."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "manifest": str(self.manifest),
            "counts": self.counts,
            "removed": [str(path) for path in self.removed],
        }


def backup_name(prefix: str, suffix: str, at: datetime | None = None) -> str:
    """``<prefix>-20261204T182500123456Z<suffix>``: names sort in the order they were made."""
    stamp = (at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}-{stamp}{suffix}"


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table (SQLite's own tables left out), read in the connection's transaction."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    return {
        name: int(conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0])  # noqa: S608
        for name in names
    }


def backup_sqlite(
    source: Path,
    directory: Path,
    *,
    prefix: str,
    keep: int,
    extra: Mapping[str, Any] | None = None,
) -> BackupResult:
    """Copy the database at ``source`` into ``directory``, verify it, then prune to ``keep``.

    The copy is written under a temporary name and renamed only once verified, so a
    backup directory never holds a file that looks finished but is not. ``extra`` goes
    into the manifest (the site id, the schema version).
    """
    if keep < 1:
        raise BackupError(f"keep must be at least 1, not {keep}")
    if not source.is_file():
        raise BackupError(f"{source}: no such database file")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / backup_name(prefix, ".db")
    partial = final.with_name(f".{final.name}.partial")
    # Only read through this connection: it never migrates or writes the source. (Not a
    # read-only URI: such a connection cannot open a WAL database whose -shm is missing.)
    src = sqlite3.connect(source, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        src.execute("BEGIN")  # one read snapshot for the counts and the copy
        counts = table_counts(src)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            # The copy is one self-contained file, with no -wal beside it to lose.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"{source}: backup failed: {exc}") from exc
    finally:
        src.close()
    try:
        verify_sqlite(partial, counts)
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    _fsync(partial)
    # The manifest goes first: whoever sees the finished name must find it beside it.
    manifest = write_manifest(
        final,
        {
            "kind": "sqlite",
            "source": str(source),
            "made_at": datetime.now(UTC).isoformat(),
            "size": partial.stat().st_size,
            "counts": counts,
            **(extra or {}),
        },
    )
    partial.replace(final)
    removed = prune(directory, prefix=prefix, suffix=".db", keep=keep)
    return BackupResult(path=final, manifest=manifest, counts=counts, removed=removed)


def verify_sqlite(path: Path, expected: Mapping[str, int] | None = None) -> dict[str, int]:
    """Open ``path`` (for reading only), check its integrity and (if given) every table's row count.

    Returns the counts found. Raises :class:`BackupError` saying what is wrong.
    """
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    try:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA query_only=ON")  # checks only: nothing of it may change
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from exc
    try:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        if result != "ok":
            raise BackupError(f"{path}: integrity check failed: {result}")
        found = table_counts(conn)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a readable SQLite database: {exc}") from exc
    finally:
        conn.close()
    if expected is not None and dict(expected) != found:
        differ = sorted(
            name for name in set(expected) | set(found) if expected.get(name) != found.get(name)
        )
        details = ", ".join(f"{n}: {expected.get(n)} != {found.get(n)}" for n in differ[:10])
        raise BackupError(f"{path}: row counts differ from the snapshot: {details}")
    return found


def restore_sqlite(backup: Path, target: Path) -> dict[str, int]:
    """Replace the database at ``target`` with the verified content of ``backup``.

    Written through SQLite's backup API into ``target`` itself, not by copying files: a
    WAL left beside the old file would otherwise be replayed over the restored one. The
    process that uses ``target`` must be stopped first (the caller checks what it can).
    """
    counts = verify_sqlite(backup, read_manifest(backup).get("counts"))
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        dst.execute("PRAGMA busy_timeout=5000")
        src.backup(dst)
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise BackupError(f"{target}: restore from {backup} failed: {exc}") from exc
    finally:
        dst.close()
        src.close()
    verify_sqlite(target, counts)
    return counts


def write_manifest(backup: Path, content: Mapping[str, Any]) -> Path:
    """Write ``<backup>.json`` (atomically: a temporary file renamed into place)."""
    manifest = backup.with_name(backup.name + MANIFEST_SUFFIX)
    temporary = manifest.with_name(f".{manifest.name}.partial")
    temporary.write_text(json.dumps(content, indent=2, sort_keys=True), encoding="utf-8")
    _fsync(temporary)
    temporary.replace(manifest)
    return manifest


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest beside ``backup``; a backup without one is refused (it was not verified)."""
    manifest = backup.with_name(backup.name + MANIFEST_SUFFIX)
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{backup}: no manifest {manifest.name} beside it: not a verified jxc backup"
        ) from None
    except json.JSONDecodeError as exc:
        raise BackupError(f"{manifest}: not valid JSON: {exc}") from None
    if not isinstance(content, dict):
        raise BackupError(f"{manifest}: not a backup manifest")
    return content


def prune(directory: Path, *, prefix: str, suffix: str, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest backups named ``<prefix>-...<suffix>``, with their
    manifests. Only names this module makes are touched, never a file someone put there."""
    made = sorted(
        path
        for path in directory.glob(f"{prefix}-*{suffix}")
        if path.name[len(prefix) + 1 :].removesuffix(suffix).endswith("Z")
    )
    removed = made[:-keep] if keep > 0 else made
    for path in removed:
        path.unlink(missing_ok=True)
        path.with_name(path.name + MANIFEST_SUFFIX).unlink(missing_ok=True)
    # A manifest is written just before its backup takes its finished name: one whose
    # backup never arrived (a crash in between) and is older than the newest backup is
    # left over, not a backup in the making.
    newest = made[-1].name if made else None
    for manifest in directory.glob(f"{prefix}-*{suffix}{MANIFEST_SUFFIX}"):
        backup = manifest.with_name(manifest.name.removesuffix(MANIFEST_SUFFIX))
        if newest is not None and backup.name < newest and not backup.exists():
            manifest.unlink(missing_ok=True)
    return removed


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
