"""Backups of a site's ledger, and putting one back.

The ledger is the only copy of a movement until central holds it, so a backup is taken of
the whole file, outbox included: restored, the ledger stands exactly where it stood when
the backup was made. Events that were pending then are pending again and are sent (once:
central dedupes by event id); events synced then stay synced and are not sent again. The
backup is read through its own connection while the agent keeps writing (see
:mod:`jxc.backup`: copy and counts come from one snapshot).

What a backup cannot hold is what happened after it. Events recorded after the backup and
already at central are kept by central; the restored ledger would hand out their seqs
again, which central refuses as conflicts. :func:`restore_ledger` is therefore given
central's watermark when the caller can reach central, and refuses to restore below it
unless forced.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from edge_agent.config import SiteConfig
from edge_agent.ledger import Ledger, holder_is_gone
from jxc.backup import BackupError, BackupResult, backup_sqlite, read_manifest, restore_sqlite

log = logging.getLogger("edge_agent.backup")


def backup_dir(site: SiteConfig) -> Path:
    """Where the site's backups go (the site file's ``[backup] dir``, resolved at load)."""
    return site.backup.dir or site.ledger.path.parent / "backups"


def backup_ledger(
    site: SiteConfig, *, directory: Path | None = None, keep: int | None = None
) -> BackupResult:
    """Back the site's ledger up, verified, keeping the newest ``keep`` (the site file's)."""
    prefix = f"ledger-{site.site.id}"
    source = site.ledger.path
    if not source.is_file():  # connecting would create an empty file there
        raise BackupError(f"{source}: no such ledger file")
    conn = sqlite3.connect(source)
    try:  # what the manifest says about the ledger
        meta = dict(conn.execute("SELECT key, value FROM ledger_meta").fetchall())
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: not a ledger: {exc}") from None
    finally:
        conn.close()
    if meta.get("site_id") != site.site.id:
        raise BackupError(
            f"{source} is the ledger of site {meta.get('site_id')!r}, not {site.site.id!r}"
        )
    result = backup_sqlite(
        source,
        directory or backup_dir(site),
        prefix=prefix,
        keep=keep or site.backup.keep,
        extra={"site_id": site.site.id, "schema_version": version, "what": "edge ledger"},
    )
    log.info(
        "ledger backed up",
        extra={"event": "backup_made", "site": site.site.id, **result.as_dict()},
    )
    return result


def last_seq_of(counts_source: Path) -> int:
    """The highest seq in a ledger file (0 if it has no events)."""
    conn = sqlite3.connect(counts_source)
    try:
        (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    finally:
        conn.close()
    return int(last)


def restore_ledger(
    site: SiteConfig, backup: Path, *, central_holds_through: int | None = None, force: bool = False
) -> dict[str, int]:
    """Replace the site's ledger with ``backup``; returns the restored ledger's counts.

    Refused when the backup is another site's, when an agent still runs on the ledger
    (it holds a live sender lease), and, unless ``force``, when central holds events past
    the backup's last seq (``central_holds_through``): those seqs would be handed out again.
    """
    manifest = read_manifest(backup)
    if manifest.get("site_id") != site.site.id:
        raise BackupError(
            f"{backup} is a backup of site {manifest.get('site_id')!r}, not {site.site.id!r}"
        )
    target = site.ledger.path
    if target.exists():
        _refuse_running_agent(target)
    restored_last = last_seq_of(backup)
    if central_holds_through is not None and central_holds_through > restored_last and not force:
        raise BackupError(
            f"central holds this site's events through seq {central_holds_through}, the backup "
            f"ends at seq {restored_last}: events {restored_last + 1}..{central_holds_through} "
            "exist only at central, and new events would reuse their seqs (central would "
            "refuse them as conflicts). Restore a newer backup, or pass --force and expect "
            "those seqs to come back as dead letters"
        )
    counts = restore_sqlite(backup, target)
    for leftover in (
        target.with_name(target.name + "-wal"),
        target.with_name(target.name + "-shm"),
    ):
        # restore_sqlite wrote through SQLite and checkpointed: nothing of these is needed.
        if leftover.exists() and leftover.stat().st_size == 0:
            leftover.unlink(missing_ok=True)
    # Open it as the agent will: runs the migrations a backup of an older jxc lacks and
    # checks the site id; and drop the lease of the agent that ran when it was taken.
    ledger = Ledger(target, site_id=site.site.id)
    try:
        with ledger.transaction() as conn:
            conn.execute("DELETE FROM sender_lease")
    finally:
        ledger.close()
    log.warning(
        "ledger restored from backup",
        extra={"event": "backup_restored", "site": site.site.id, "backup": str(backup)},
    )
    return counts


def _refuse_running_agent(target: Path) -> None:
    conn = sqlite3.connect(target)
    try:
        row = conn.execute("SELECT holder, expires_at FROM sender_lease").fetchone()
    except sqlite3.OperationalError:
        row = None  # a ledger older than the lease, or not a ledger: nothing runs on it
    finally:
        conn.close()
    if row is not None and float(row[1]) > time.time() and not holder_is_gone(str(row[0])):
        raise BackupError(
            f"an edge agent ({row[0]}) still runs on {target}: stop it before restoring"
        )
