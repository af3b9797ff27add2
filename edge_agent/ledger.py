"""The site's local ledger: immutable movement events and the outbox of unsynced ones.

Invariants, kept by doing every change in one SQLite transaction:

* ``seq`` is gapless per site: it is taken as ``max(seq) + 1`` inside the same
  ``BEGIN IMMEDIATE`` transaction that inserts the event, so no other writer can interleave.
* Every event is in exactly one of three states: in the outbox (not yet settled with
  central), synced (central holds it), or a dead letter (central refused it; it waits for
  someone to fix the cause and requeue it). An event and its outbox row are written
  together; an ack moves outbox rows to synced or dead in one transaction, and a requeue
  moves dead letters back to the outbox in one transaction.
* An event's id and content are fixed when it is appended; a retry resends the stored JSON,
  it never rebuilds the event.

The database runs in WAL mode with ``synchronous=FULL`` so that a committed event survives
power loss, not only a process crash.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

import sqlite_utils

from edge_agent import migrations
from jxc.contract import DocumentType, EventKind, LedgerEvent
from jxc.ids import uuid7

log = logging.getLogger("edge_agent.ledger")

SCHEMA_VERSION = migrations.LATEST
"""The schema version this code writes; a ledger file records its own in ``user_version``."""
DEFAULT_FREE_DISK_RESERVE = 64 * 1024 * 1024
"""Below this much free space new events are refused, so the ledger can still commit the
syncs, acks and checkpoints that free space again, and never dies mid-write."""


@dataclass(frozen=True, slots=True)
class EventDraft:
    """What a station knows about a movement; the ledger adds id, seq, site and time."""

    kind: EventKind
    item: str
    location: str
    qty: Decimal
    uom: str
    lot: str | None = None
    expiry: date | None = None
    unit_cost: Decimal | None = None
    ref: str | None = None
    device_id: str | None = None
    actor: str | None = None
    doc_type: DocumentType | None = None
    doc_id: str | None = None
    doc_line: int | None = None


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """Where the ledger stands; shown on the status page and used by tests."""

    last_seq: int
    pending: int
    synced_through: int
    """Every seq up to here is settled with central: synced or a dead letter."""
    dead: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why central refused one event (its result's status and detail)."""

    status: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event central refused; it stays in the ledger, out of the outbox, until requeued."""

    seq: int
    event_id: str
    status: str
    detail: str | None
    refused_at: str


LabelState = Literal["pending", "printed", "delivered", "failed"]
"""``delivered``: the printer holds the label and will print it by itself (it is paused or
out of paper), so it is never sent again; ``failed``: the label cannot be printed at all
(its data does not fit the label), which a person must look at."""


@dataclass(frozen=True, slots=True)
class OwedLabel:
    """A label the ledger owes: its event, how often printing it was tried, and which copy
    it is (0 for the first; each reprint is the next, printed under its own job id)."""

    event: LedgerEvent
    attempts: int
    copy: int = 0

    @property
    def job_id(self) -> str:
        """The printer job's id: the event's id, and the copy number for a reprint."""
        return str(self.event.event_id) + (f".{self.copy}" if self.copy else "")


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One row of the label queue, as ``jxc edge labels list`` shows it."""

    seq: int
    printer_id: str
    state: str
    attempts: int
    copy: int
    detail: str | None
    updated_at: str


class LedgerError(Exception):
    """The ledger cannot take the event; the message is meant for the station's screen."""


class LedgerSchemaError(LedgerError):
    """The ledger file could not be upgraded; it stays at the last version it reached."""


class LedgerTooNewError(LedgerSchemaError):
    """The ledger file was written by a newer jxc; it is refused and left untouched."""


class DiskSpaceError(LedgerError):
    """The disk has no room for the event: it was not recorded.

    Whatever produced it (a scan) must be repeated once space is freed; the ledger itself
    is intact, and every event recorded before is kept.
    """


class DiskReserveError(DiskSpaceError):
    """Free disk space is below the reserve: the event was refused before anything was written."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox entry as it will travel: the event and its exact JSON body."""

    event: LedgerEvent
    body: str


_DEAD_LETTERS = (
    "SELECT d.seq, e.event_id, d.status, d.detail, d.refused_at"
    " FROM dead_letters d JOIN events e ON e.seq = d.seq"
)
"""Columns of :class:`DeadLetter`, in its field order."""


_issued_holders: set[str] = set()
"""Lease holders this process made; see :func:`holder_is_gone`."""


def default_lease_holder() -> str:
    """Who holds the sender lease: readable in ``jxc edge status``, unique per process.

    ``host:pid:random``: host and pid let a successor on the same machine tell that the
    holder is gone (:func:`holder_is_gone`), the random part tells apart two holders of
    one process (and a process that got a dead one's pid).
    """
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid7().hex[-8:]}"
    _issued_holders.add(holder)
    return holder


def holder_is_gone(holder: str) -> bool:
    """Whether the process that took the lease as ``holder`` provably no longer runs.

    Only a holder on this host can be checked: its pid names no process (or names this
    process, which did not issue that holder, as when a container restarts as pid 1).
    Any doubt (another host, a live pid, a pid of another user's process, a holder not
    in the ``host:pid:random`` form) is not proof, and the lease is waited out. This
    assumes a host name stands for one pid namespace: two containers given the same
    host name on one ledger would look dead to each other.
    """
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not (pid_text.isascii() and pid_text.isdigit()):
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return holder not in _issued_holders
    try:
        os.kill(pid, 0)  # signal 0 only asks; pid 0 is our own process group, alive
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # EPERM: it runs, as someone else; or not a pid at all
        pass
    return False


class Ledger:
    """One site's ledger file, with a single writer connection shared by the agent's threads."""

    def __init__(
        self, path: Path, *, site_id: str, free_disk_reserve: int = DEFAULT_FREE_DISK_RESERVE
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.site_id = site_id
        self.free_disk_reserve = free_disk_reserve
        self.last_write_at = time.monotonic()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()
        self._labels_queued = threading.Condition()
        self._label_generation = 0
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "busy_timeout=5000",
            "foreign_keys=ON",
            "journal_size_limit=67108864",
        ):
            conn.execute(f"PRAGMA {pragma}")
        self._create_schema()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The shared connection for a read, under the lock that serialises its users."""
        with self._lock:
            yield self.conn

    @property
    def conn(self) -> sqlite3.Connection:
        return self._db.conn

    def _create_schema(self) -> None:
        """Run the migrations this file lacks (:mod:`edge_agent.migrations`), then check
        that the file is this site's ledger (or make it so, when new)."""
        try:
            with self._lock:
                migrations.migrate(self.conn, name=str(self.path))
        except migrations.SchemaTooNewError as exc:
            raise LedgerTooNewError(str(exc)) from exc
        except migrations.SchemaError as exc:
            raise LedgerSchemaError(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise DiskSpaceError(
                    f"the ledger's disk is full ({exc}): the ledger cannot be upgraded; it "
                    "stays as it was, free space on the agent's disk and start again"
                ) from exc
            raise
        with self.transaction():
            row = self.conn.execute(
                "SELECT value FROM ledger_meta WHERE key = 'site_id'"
            ).fetchone()
            if row is None:
                self.conn.execute(
                    "INSERT INTO ledger_meta (key, value) VALUES ('site_id', ?)", (self.site_id,)
                )
            elif row[0] != self.site_id:
                raise LedgerError(
                    f"{self.path} is the ledger of site {row[0]!r}, not {self.site_id!r}"
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` so the write lock is taken up front, never upgraded midway."""
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                    raise DiskSpaceError(
                        f"the ledger's disk is full ({exc}); nothing of this change was "
                        "written, everything recorded before is kept"
                    ) from exc
                raise
            self.last_write_at = time.monotonic()

    def append(
        self,
        draft: EventDraft,
        *,
        occurred_at: datetime | None = None,
        label_printer: str | None = None,
    ) -> LedgerEvent:
        """Record one movement and queue it for central, atomically.

        With ``label_printer``, the label the movement needs is queued in the same
        transaction (see :meth:`pending_labels`).
        """
        return self.append_once(
            draft, occurred_at=occurred_at, label_printer=label_printer, carton=None
        )[0]

    def append_once(
        self,
        draft: EventDraft,
        *,
        carton: str | None,
        occurred_at: datetime | None = None,
        label_printer: str | None = None,
    ) -> tuple[LedgerEvent, bool]:
        """Like :meth:`append`, but a ``carton`` (an SSCC or serial) is booked at most once.

        Returns the event and whether it is new. The carton's record is written in the
        same transaction as its event, so a crash at any instant leaves either both or
        neither: a rescan after restart finds the first booking and books nothing more
        (and queues no second label).
        """
        self._check_free_disk()
        with self.transaction() as conn:
            if carton is not None:
                found = conn.execute(
                    "SELECT e.body FROM received_cartons c JOIN events e ON e.seq = c.seq"
                    " WHERE c.carton = ?",
                    (carton,),
                ).fetchone()
                if found is not None:
                    return LedgerEvent.model_validate_json(found[0]), False
            event = self.append_in(conn, draft, occurred_at=occurred_at)
            if carton is not None:
                conn.execute(
                    "INSERT INTO received_cartons (carton, seq) VALUES (?, ?)", (carton, event.seq)
                )
            if label_printer is not None:
                conn.execute(
                    "INSERT INTO label_queue (seq, printer_id, state, updated_at)"
                    " VALUES (?, ?, 'pending', ?)",
                    (event.seq, label_printer, datetime.now(UTC).isoformat()),
                )
        if label_printer is not None:
            self._labels_changed()
        return event, True

    def append_in(
        self, conn: sqlite3.Connection, draft: EventDraft, *, occurred_at: datetime | None = None
    ) -> LedgerEvent:
        """Record one movement and queue it for central inside the caller's
        :meth:`transaction` (``conn``), so a station can book several events together with
        rows of its own (a pack and its SSCC serial) all or nothing. The caller checks the
        disk first (:meth:`check_free_disk`)."""
        if not conn.in_transaction:
            raise LedgerError("append_in needs the caller's ledger transaction")
        (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        event = LedgerEvent(
            event_id=uuid7(),
            site_id=self.site_id,
            seq=last + 1,
            occurred_at=occurred_at or datetime.now(UTC),
            kind=draft.kind,
            item=draft.item,
            lot=draft.lot,
            expiry=draft.expiry,
            location=draft.location,
            qty=draft.qty,
            uom=draft.uom,
            unit_cost=draft.unit_cost,
            ref=draft.ref,
            device_id=draft.device_id,
            actor=draft.actor,
            doc_type=draft.doc_type,
            doc_id=draft.doc_id,
            doc_line=draft.doc_line,
        )
        conn.execute(
            "INSERT INTO events (seq, event_id, occurred_at, kind, item, lot, location, qty,"
            " body, doc_id, doc_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.seq,
                str(event.event_id),
                event.occurred_at.isoformat(),
                event.kind.value,
                event.item,
                event.lot,
                event.location,
                format(event.qty, "f"),
                event.model_dump_json(),
                event.doc_id,
                event.doc_line,
            ),
        )
        conn.execute("INSERT INTO outbox (seq) VALUES (?)", (event.seq,))
        return event

    @property
    def label_generation(self) -> int:
        """Moves each time this process queues a label (see :meth:`wait_for_labels`)."""
        with self._labels_queued:
            return self._label_generation

    def wait_for_labels(self, seen: int, timeout: float) -> int:
        """Wait until a label is queued after ``seen`` (a :attr:`label_generation`), or
        ``timeout``; returns the generation now.

        A label is what the operator waits for at the dock: the spooler is woken the
        moment the booking commits instead of finding it at its next poll (a quarter of a
        second later). Labels owed by another process (``jxc edge labels --reprint``)
        are still found by that poll.
        """
        with self._labels_queued:
            self._labels_queued.wait_for(lambda: self._label_generation != seen, timeout)
            return self._label_generation

    def notify_labels(self) -> None:
        """Wake the spoolers: a station owes a label it queued in its own transaction."""
        self._labels_changed()

    def _labels_changed(self) -> None:
        with self._labels_queued:
            self._label_generation += 1
            self._labels_queued.notify_all()

    def carton_event(self, carton: str) -> LedgerEvent | None:
        """The event that booked ``carton`` (an SSCC or serial), if one did."""
        with self._lock:
            found = self.conn.execute(
                "SELECT e.body FROM received_cartons c JOIN events e ON e.seq = c.seq"
                " WHERE c.carton = ?",
                (carton,),
            ).fetchone()
        return None if found is None else LedgerEvent.model_validate_json(found[0])

    def pending_labels(self, printer_id: str, limit: int = 100) -> list[OwedLabel]:
        """Labels still owed on ``printer_id``, oldest first, with their attempts so far."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT e.body, q.attempts, q.copy FROM label_queue q"
                " JOIN events e ON e.seq = q.seq"
                " WHERE q.printer_id = ? AND q.state = 'pending' ORDER BY q.seq LIMIT ?",
                (printer_id, limit),
            ).fetchall()
        return [OwedLabel(LedgerEvent.model_validate_json(b), n, c) for b, n, c in rows]

    def labels(self, state: LabelState | None = None, limit: int = 1000) -> list[LabelRecord]:
        """The label queue, oldest first, optionally of one state (for ``jxc edge labels``)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT seq, printer_id, state, attempts, copy, detail, updated_at"
                " FROM label_queue WHERE ? IS NULL OR state = ? ORDER BY seq LIMIT ?",
                (state, state, limit),
            ).fetchall()
        return [LabelRecord(*row) for row in rows]

    def reprint_labels(self, seqs: Sequence[int]) -> list[int]:
        """Owe the labels of ``seqs`` once more, as a new copy (a new job id for the printer).

        For a label that came out damaged, never came out (``failed``, or lost by the
        printer after it was ``delivered``), or is needed twice: the printer's journal
        would answer the old job id without printing, so each reprint is a new copy.
        """
        with self.transaction() as conn:
            done = [
                seq
                for seq in seqs
                if conn.execute(
                    "UPDATE label_queue SET state = 'pending', copy = copy + 1, attempts = 0,"
                    " detail = 'reprint requested', updated_at = ? WHERE seq = ?",
                    (datetime.now(UTC).isoformat(), seq),
                ).rowcount
            ]
        if done:
            self._labels_changed()
        return done

    def settle_label(self, seq: int, state: LabelState, detail: str | None = None) -> None:
        """Record what became of an event's label (``pending`` again to retry it)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE label_queue SET state = ?, detail = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE seq = ?",
                (state, detail, datetime.now(UTC).isoformat(), seq),
            )

    def label_counts(self, printer_id: str) -> dict[str, int]:
        """The printer's labels by state (pending, printed, delivered, failed)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT state, COUNT(*) FROM label_queue WHERE printer_id = ? GROUP BY state",
                (printer_id,),
            ).fetchall()
        return {str(state): int(count) for state, count in rows}

    def check_free_disk(self) -> None:
        """Refuse a new event (:class:`DiskReserveError`) when the disk is below the reserve."""
        self._check_free_disk()

    def _check_free_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.free_disk_reserve:
            raise DiskReserveError(
                f"disk almost full: {free // 1_048_576} MiB free, the ledger keeps "
                f"{self.free_disk_reserve // 1_048_576} MiB in reserve; this event was NOT "
                "recorded: free space on the agent's disk, then record it again (scan again)"
            )

    def pending(self, limit: int, *, max_bytes: int | None = None) -> list[LedgerEvent]:
        """The oldest unsynced events, in seq order, exactly as they were recorded."""
        return [p.event for p in self.pending_bodies(limit, max_bytes=max_bytes)]

    def pending_bodies(
        self, limit: int, *, max_bytes: int | None = None, contiguous: bool = True
    ) -> list[PendingEvent]:
        """Like :meth:`pending`, with each event's JSON; at most ``max_bytes`` of it in total.

        The first event is always included, however large, so one big event cannot stall
        the outbox. A batch must be a contiguous run of seqs, and a requeued dead letter
        sits below the rest of the outbox, so the run stops at the first gap unless
        ``contiguous`` is False (for listing).
        """
        with self._lock:
            rows = self.conn.execute(
                "SELECT o.seq, e.body FROM outbox o JOIN events e ON e.seq = o.seq"
                " ORDER BY o.seq LIMIT ?",
                (limit,),
            ).fetchall()
        taken: list[PendingEvent] = []
        size = 0
        for seq, body in rows:
            size += len(body) + 1
            if taken and max_bytes is not None and size > max_bytes:
                break
            if contiguous and taken and seq != taken[-1].event.seq + 1:
                break
            taken.append(PendingEvent(LedgerEvent.model_validate_json(body), body))
        return taken

    def acquire_sender_lease(self, holder: str, *, ttl_s: float) -> bool:
        """Take or renew the right to push; False while another live process holds it.

        Two agents on one ledger would both be correct (central dedupes) but would send
        everything twice; the lease keeps exactly one sender, and lets another take over
        ``ttl_s`` after the holder dies, or at once when the holder provably died
        (:func:`holder_is_gone`: an agent restarted on the same machine does not wait for
        its own predecessor). Holding it also marks the agent as seen (:meth:`agent_seen_at`).
        """
        now = time.time()
        taken_from: tuple[str, float] | None = None
        with self.transaction() as conn:
            row = conn.execute("SELECT holder, expires_at FROM sender_lease").fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                if not holder_is_gone(row[0]):
                    return False
                taken_from = (str(row[0]), float(row[1]))
            conn.execute(
                "INSERT INTO sender_lease (id, holder, expires_at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,"
                " expires_at = excluded.expires_at",
                (holder, now + ttl_s),
            )
            self._mark_agent_seen(conn)
        if taken_from is not None:
            log.warning(
                "sender lease taken over from an agent that is gone",
                extra={
                    "event": "lease_taken_over",
                    "previous_holder": taken_from[0],
                    "holder": holder,
                    "lease_left_s": round(taken_from[1] - now, 1),
                },
            )
        return True

    def release_sender_lease(self, holder: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM sender_lease WHERE holder = ?", (holder,))
            self._mark_agent_seen(conn)

    @staticmethod
    def _mark_agent_seen(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('agent_seen_at', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (datetime.now(UTC).isoformat(),),
        )

    def agent_seen_at(self) -> datetime | None:
        """When an agent last held (or gave up) the sender lease of this ledger.

        A sending agent renews the lease at every push run, so this is when the last one
        was last known alive; an agent starting reads it to say how long nobody read the
        scanners.
        """
        with self._lock:
            row = self.conn.execute(
                "SELECT value FROM ledger_meta WHERE key = 'agent_seen_at'"
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def sender_lease(self) -> tuple[str, float] | None:
        """The current holder and when its lease ends (epoch seconds), if any."""
        with self._lock:
            row = self.conn.execute("SELECT holder, expires_at FROM sender_lease").fetchone()
        return (str(row[0]), float(row[1])) if row else None

    def checkpoint_if_idle(self, idle_s: float) -> bool:
        """Fold the WAL back into the database when no one has written for ``idle_s``.

        Auto-checkpoints keep the WAL from growing while busy; a truncating checkpoint
        in a quiet moment gives its disk space back (bounded by journal_size_limit).
        """
        if time.monotonic() - self.last_write_at < idle_s:
            return False
        with self._lock:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)

    def event(self, seq: int) -> tuple[LedgerEvent, str | None] | None:
        """One event and when it was synced (None while pending)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT body, synced_at FROM events WHERE seq = ?", (seq,)
            ).fetchone()
        return (LedgerEvent.model_validate_json(row[0]), row[1]) if row else None

    def apply_ack(
        self,
        first_seq: int,
        last_seq: int,
        *,
        refused: Mapping[int, Refusal] | None = None,
        at: datetime | None = None,
    ) -> int:
        """Central settled the sent events ``first_seq..last_seq``: take them out of the outbox.

        Those in ``refused`` become dead letters, the rest are synced (a requeued event now
        accepted leaves the dead letters). The caller passes only seqs it sent and central
        answered for. Returns how many events this marked synced (0 for a repeated ack).
        """
        refused = refused or {}
        if any(not first_seq <= seq <= last_seq for seq in refused):
            raise ValueError(f"refused seqs must lie within {first_seq}..{last_seq}")
        stamp = (at or datetime.now(UTC)).isoformat()
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM dead_letters WHERE seq BETWEEN ? AND ?", (first_seq, last_seq)
            )
            conn.executemany(
                "INSERT INTO dead_letters (seq, status, detail, refused_at) VALUES (?, ?, ?, ?)",
                [(seq, why.status, why.detail, stamp) for seq, why in sorted(refused.items())],
            )
            marked = conn.execute(
                "UPDATE events SET synced_at = ? WHERE seq BETWEEN ? AND ? AND synced_at IS NULL"
                " AND seq NOT IN (SELECT seq FROM dead_letters WHERE seq BETWEEN ? AND ?)",
                (stamp, first_seq, last_seq, first_seq, last_seq),
            ).rowcount
            conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first_seq, last_seq))
        return int(marked)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Events central refused, oldest first."""
        with self._lock:
            rows = self.conn.execute(
                _DEAD_LETTERS + " ORDER BY d.seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def dead_letter(self, seq: int) -> DeadLetter | None:
        """The dead letter at ``seq``, if that event is one."""
        with self._lock:
            row = self.conn.execute(
                _DEAD_LETTERS + " WHERE d.seq = ?",
                (seq,),
            ).fetchone()
        return DeadLetter(*row) if row else None

    def requeue(self, seqs: Sequence[int] | None = None) -> list[int]:
        """Put dead letters (these, or all of them) back in the outbox to be sent again.

        The event goes again exactly as it was recorded (same id, same content): requeue
        after the cause was fixed at central. Seqs that are not dead letters are ignored;
        returns the seqs requeued.
        """
        with self.transaction() as conn:
            if seqs is None:
                chosen = [row[0] for row in conn.execute("SELECT seq FROM dead_letters")]
            else:
                marks = ",".join("?" * len(seqs))
                chosen = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT seq FROM dead_letters WHERE seq IN ({marks})",  # noqa: S608
                        list(seqs),
                    )
                ]
            conn.executemany("INSERT INTO outbox (seq) VALUES (?)", [(seq,) for seq in chosen])
            conn.executemany("DELETE FROM dead_letters WHERE seq = ?", [(seq,) for seq in chosen])
        return sorted(chosen)

    def rewind(self, central_holds_through: int) -> list[int]:
        """Put every settled event after ``central_holds_through`` back in the outbox.

        For a central restored from a backup older than this ledger's last ack: central
        then holds the site's events only up to that seq, and refuses the next push as a
        gap. Synced events and dead letters above it are queued again, unchanged (same id,
        same body), so they are replayed from the right place; central keeps what it
        already holds as duplicates and refuses again what it refused before. Returns the
        seqs queued again.
        """
        with self.transaction() as conn:
            chosen = [
                row[0]
                for row in conn.execute(
                    "SELECT seq FROM events WHERE seq > ?"
                    " AND seq NOT IN (SELECT seq FROM outbox) ORDER BY seq",
                    (central_holds_through,),
                )
            ]
            conn.executemany("INSERT INTO outbox (seq) VALUES (?)", [(seq,) for seq in chosen])
            conn.execute("DELETE FROM dead_letters WHERE seq > ?", (central_holds_through,))
            conn.execute(
                "UPDATE events SET synced_at = NULL WHERE seq > ?", (central_holds_through,)
            )
        if chosen:
            log.warning(
                "central holds less of this ledger than it had acknowledged (restored from a "
                "backup?): events queued again",
                extra={
                    "event": "outbox_rewound",
                    "site": self.site_id,
                    "central_holds_through": central_holds_through,
                    "requeued": len(chosen),
                },
            )
        return chosen

    def counts(self) -> LedgerCounts:
        with self._lock:
            (last_seq,) = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            (pending, first_pending) = self.conn.execute(
                "SELECT COUNT(*), MIN(seq) FROM outbox"
            ).fetchone()
            (dead,) = self.conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        synced_through = (first_pending - 1) if first_pending is not None else last_seq
        return LedgerCounts(
            last_seq=last_seq, pending=pending, synced_through=synced_through, dead=dead
        )

    def events(self) -> list[LedgerEvent]:
        """Every event in seq order (for tests, reports and the status page; not hot)."""
        with self._lock:
            rows = self.conn.execute("SELECT body FROM events ORDER BY seq").fetchall()
        return [LedgerEvent.model_validate_json(body) for (body,) in rows]

    def integrity_ok(self) -> bool:
        with self._lock:
            (result,) = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(result == "ok")

    def close(self) -> None:
        with self._lock:
            self.conn.close()
