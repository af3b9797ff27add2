"""Engines for SQLite and PostgreSQL from one URL, and the schema upgrade.

The same code runs on both databases; only what each needs to be safe differs:

* SQLite runs in WAL mode with ``synchronous=FULL`` (an acked push survives power loss),
  waits up to five seconds for a lock instead of failing, and enforces foreign keys.
  pysqlite's own transaction handling is switched off (the recipe in SQLAlchemy's SQLite
  dialect documentation) so that we emit ``BEGIN`` ourselves: a write transaction starts
  with ``BEGIN IMMEDIATE`` and takes the write lock up front. A deferred transaction that
  reads and then writes can be refused with "database is locked" no matter how long it
  waits, because another writer committed after its snapshot; taking the lock first
  makes concurrent pushes queue instead.
* PostgreSQL goes through psycopg 3; a pooled connection is pinged on checkout when in
  doubt (its socket has something to read, or it sat idle over a second), so a restarted
  server costs one reconnect rather than a failed request.

**Writers wait in line, and not for ever** (``docs/performance.md``, "Waiting for the
write lock"). SQLite has one write lock per database, and a connection that finds it
taken sleeps in SQLite's busy handler and polls again (after 1, 2, 5, 10, ... up to 100
ms): with eight pushes at once, one of them could poll for half a second while others
that came later got the lock. So on SQLite this process's writers first queue on a
:class:`WriteGate` (first come, first served; the lock handed straight to the next in
line), and only the one at the head of the line runs ``BEGIN IMMEDIATE``, which then
waits only for another *process* (a ``jxc central`` command). PostgreSQL queues lock
waiters itself. Either way a server's writes wait at most ``write_wait_s``
(``JXC_CENTRAL_WRITE_WAIT_S``): past it the write is not started and the request is
answered 503 with ``Retry-After`` (:class:`~central_api.errors.WriteBusyError`, or
PostgreSQL's ``lock_timeout``), well before a client's own timeout. Commands run on
central's host (migrations, ``site add``) make engines without the bound and wait as
long as it takes.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import stat
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.pool import ConnectionPoolEntry

from central_api.errors import WriteBusyError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("central_api.core.db")

WRITE_INTENT = "jxc_write_intent"
"""Connection execution option read by the SQLite ``begin`` hook; see write_transaction."""

_NO_BEGIN = "jxc_no_begin"
"""Connection execution option read by the SQLite ``begin`` hook: send no ``BEGIN``, so
each statement is its own transaction (see :func:`checking_credentials`)."""

_SQLITE_PRAGMAS = (
    # busy_timeout first: switching to WAL itself needs a lock another process may hold.
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
"""``central_api/migrations``: the Alembic scripts, shipped as package data."""

_MIGRATION_LOCK_KEY = 0x6A78_6300_0001
"""pg_advisory_xact_lock key, so central processes started together migrate one by one."""


def create_db_engine(
    url: str | URL,
    *,
    write_wait_s: float | None = None,
    busy_retry_after_s: int = 1,
    **engine_options: Any,
) -> Engine:
    """Make the engine for ``url``: ``sqlite:///path`` or ``postgresql+psycopg://...``.

    ``write_wait_s`` bounds how long a write waits for the write lock (SQLite) or any
    row lock (PostgreSQL) before it is refused as busy, to be retried after
    ``busy_retry_after_s``; None (commands, tests) waits as long as it takes.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _ensure_sqlite_directory(parsed)
        if parsed.database in (None, "", ":memory:"):
            # A memory database has no queue pool (one connection per thread): no
            # queue to wait in, nothing to overflow.
            for queue_option in ("pool_timeout", "max_overflow"):
                engine_options.pop(queue_option, None)
        engine = create_engine(parsed, **engine_options)
        _install_sqlite_hooks(engine)
        _GATES[engine] = WriteGate(wait_s=write_wait_s, retry_after_s=busy_retry_after_s)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # Bare postgresql:// would pick psycopg2, which the project does not ship.
            parsed = parsed.set(drivername="postgresql+psycopg")
        server_options = "-c timezone=UTC"
        if write_wait_s is not None:
            # lock_timeout: a statement waiting longer than this for a lock fails with
            # 55P03, answered as busy (central_api.api.errors). Set per connection, so it
            # costs no round trip per transaction.
            server_options += f" -c lock_timeout={max(1, round(write_wait_s * 1000))}"
        options: dict[str, Any] = {
            # Times come back in UTC whatever the server's default zone: converted to
            # another zone, an instant near year 1 or 9999 falls outside Python's dates.
            "connect_args": {"connect_timeout": 5, "options": server_options},
            # Ingest waits on the site row, then must see what the push it waited for
            # committed; under REPEATABLE READ (a possible server default) it would not.
            "isolation_level": "READ COMMITTED",
        }
        options.update(engine_options)
        # Pinged on checkout when in doubt (_install_postgresql_ping), unless the caller
        # asks for SQLAlchemy's ping on every checkout.
        engine = create_engine(parsed, **options)
        if not options.get("pool_pre_ping"):
            _install_postgresql_ping(engine)
        return engine
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite:///path/to/file.db "
        "or postgresql+psycopg://user@host/dbname"
    )


def _ensure_sqlite_directory(url: URL) -> None:
    """Make the database's directory, and the file itself readable by its owner only.

    The file holds the token signing key and every ledger: created 0600 here, before
    SQLite would create it 0644 (its default, less the umask); SQLite then gives its
    ``-wal`` and ``-shm`` files the database file's own mode. An existing file readable
    by others is left as the operator made it, with a warning.
    """
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "the database file can be read by other users: it holds the token "
                "signing key; chmod 600 it (and run `jxc central rekey` if a copy may have "
                "been taken)",
                extra={"path": str(path), "mode": oct(stat.S_IMODE(mode))},
            )


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # None hands transaction control to the "begin" hook below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get(WRITE_INTENT, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get(_NO_BEGIN, False):
            connection.exec_driver_sql("BEGIN")


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection back in the pool longer than this is pinged before use."""

_RETURNED_AT = "jxc_returned_at"
"""``ConnectionPoolEntry.info`` key: when the connection was last given back to the pool."""


def _install_postgresql_ping(engine: Engine) -> None:
    """Ping a pooled connection on checkout when in doubt, not every time.

    SQLAlchemy's ``pool_pre_ping`` sends a query (a round trip, and an autocommit switch
    on and off) on every checkout, so that a restarted server costs a reconnect rather
    than a failed request: two of a one-event push's round trips (the credential check's
    connection and the push's). A server that ends a connection (a restart, a crash,
    ``pg_terminate_backend``) sends its error and closes the socket, so a connection it
    has ended has something to read; one that is healthy and idle has nothing. So a
    connection is pinged as before when it has anything to read, when it has been back
    in the pool for more than :data:`PING_AFTER_IDLE_S` (a server host that went away
    without a word, or a dropped network path, shows nothing on the socket, but neither
    comes back within a second of the connection's last use), or when libpq no longer
    calls it good; else one ``poll`` of its socket, no round trip, stands for the ping.
    A failed ping replaces the connection and invalidates the pool, as ``pool_pre_ping``
    does (``docs/performance.md``, "A push's round trips on PostgreSQL").
    """
    from sqlalchemy import exc  # noqa: PLC0415

    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        returned_at = record.info.pop(_RETURNED_AT, None)
        if returned_at is None:
            return  # just connected (or never given back): nothing to doubt
        if time.monotonic() - returned_at <= PING_AFTER_IDLE_S and _quiet(dbapi_connection):
            return
        if not dialect._do_ping_w_event(dbapi_connection):
            raise exc.InvalidatePoolError()  # replaced, as a failed pre-ping does


def _quiet(dbapi_connection: Any) -> bool:
    """True if libpq calls the connection good and its socket has nothing to read."""
    import psycopg  # noqa: PLC0415 - PostgreSQL's driver, needed only on PostgreSQL

    pgconn = dbapi_connection.pgconn
    if pgconn.status != psycopg.pq.ConnStatus.OK:
        return False
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.OperationalError):
        return False


class WriteGate:
    """This process's writers to one SQLite database, let in one at a time, in arrival order.

    A ticket line rather than a plain lock: ``threading.Lock`` promises no order, and a
    thread that just released it can take it again before a waiter wakes. Here a writer
    that finds the gate taken joins the back of the line with an event of its own, and
    :meth:`release` hands the gate straight to the front of the line, so nobody overtakes.
    A writer that is not let in within ``wait_s`` leaves the line and gets
    :class:`~central_api.errors.WriteBusyError`.

    Waiting is on a ``threading.Event`` (the thread sleeps in the kernel until it is its
    turn): no polling, and no event loop is held, since writes run in worker threads.

    A thread that already holds the gate and opens a second write transaction (on
    another connection) is not made to wait for itself: it goes straight to SQLite, whose
    lock then refuses it after the busy timeout, as it would without the gate.
    """

    def __init__(self, *, wait_s: float | None = None, retry_after_s: int = 1) -> None:
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._mutex = threading.Lock()
        self._held = False
        self._owner: int | None = None
        self._line: deque[threading.Event] = deque()

    @property
    def waiting(self) -> int:
        """How many writers are in line now (not counting the one inside)."""
        return len(self._line)

    def acquire(self) -> bool:
        """Wait for this writer's turn; WriteBusyError if it does not come within wait_s.

        False if the calling thread holds the gate already (then it must not release).
        """
        me = threading.get_ident()
        with self._mutex:
            if not self._held:
                self._held, self._owner = True, me
                return True
            if self._owner == me:
                return False
            turn = threading.Event()
            self._line.append(turn)
            ahead = len(self._line)
        started = time.monotonic()
        if not turn.wait(self.wait_s):
            with self._mutex:
                if not turn.is_set():  # else handed the gate just as the wait ran out
                    self._line.remove(turn)
                    raise WriteBusyError(
                        waited_s=time.monotonic() - started,
                        retry_after_s=self.retry_after_s,
                        queued=ahead,
                    )
        self._owner = me
        return True

    def release(self) -> None:
        with self._mutex:
            self._owner = None
            if self._line:
                self._line.popleft().set()  # still held: it passes to the next in line
            else:
                self._held = False


_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
"""The write gate of each SQLite engine; PostgreSQL engines have none."""


def write_gate(engine: Engine) -> WriteGate | None:
    """The engine's :class:`WriteGate` (SQLite), or None (PostgreSQL queues lock waiters)."""
    return _GATES.get(engine)


_AFTER_COMMIT = "jxc_after_commit"
"""``connection.info`` key: the work :func:`after_commit` queued for the transaction."""

_DRAINING = "jxc_after_commit_draining"
"""``connection.info`` key: the queue the outermost :func:`write_transaction` is running."""

MAX_AFTER_COMMIT = 1000
"""Turns of queued work one commit runs at most: a chain of work that queues more (a
transfer's cost carried site to site, a cycle of transfers dated against the flow of
time) stops there. Work must be recorded durably first (see :func:`after_commit`), so
what is left is left for later, not lost."""

AfterCommit = Callable[[Connection], None]


def after_commit(connection: Connection, key: Hashable, work: AfterCommit) -> None:
    """Run ``work(connection)`` once the current :func:`write_transaction` has committed,
    outside it (no transaction open, no lock held, the write gate released); dropped if
    the transaction rolls back. Work queued twice under one ``key`` runs once (the first).

    For what must not be done while this transaction holds its locks: valuation
    re-values another site's stock only in a transaction of its own that holds no other
    site, so two sites cascading into each other never wait for each other
    (``docs/valuation.md``, "Transfers"). The work must tolerate a rollback before it ran
    (it runs only after a commit, but a savepoint of the transaction may have rolled
    back what queued it) and a crash before it ran: whatever it settles must be
    recorded durably in the transaction first.
    """
    connection.info.setdefault(_AFTER_COMMIT, {}).setdefault(key, work)


@contextmanager
def write_transaction(connection: Connection) -> Iterator[Connection]:
    """Run a transaction that will write, committing on success.

    On SQLite it waits its turn at the engine's :class:`WriteGate`, then starts with
    ``BEGIN IMMEDIATE`` (see the module docstring); on PostgreSQL it is an ordinary
    transaction and callers lock the rows they need. ``connection`` must not be inside a
    transaction already. After the commit (and the gate's release) it runs the work
    queued with :func:`after_commit`, in the order queued, and the work that work queues,
    up to :data:`MAX_AFTER_COMMIT` turns.
    """
    gate = _GATES.get(connection.engine)
    entered = gate is not None and gate.acquire()
    connection.info.pop(_AFTER_COMMIT, None)
    try:
        connection.execution_options(**{WRITE_INTENT: True})
        try:
            with connection.begin():
                yield connection
        finally:
            connection.execution_options(**{WRITE_INTENT: False})
    except BaseException:
        connection.info.pop(_AFTER_COMMIT, None)
        raise
    finally:
        if entered:
            gate.release()  # type: ignore[union-attr]  # entered implies a gate
    queued: dict[Hashable, AfterCommit] = connection.info.pop(_AFTER_COMMIT, {})
    if not queued:
        return
    draining: dict[Hashable, AfterCommit] | None = connection.info.get(_DRAINING)
    if draining is not None:
        # This transaction was itself queued work: the loop running it runs these too,
        # so a chain of work (a transfer's cost carried site to site) is a loop, not a
        # recursion as deep as the chain.
        for key, work in queued.items():
            draining.setdefault(key, work)
        return
    connection.info[_DRAINING] = queued
    try:
        for _turn in range(MAX_AFTER_COMMIT):
            if not queued:
                return
            key = next(iter(queued))
            queued.pop(key)(connection)
        log.warning(
            "after-commit work stopped after %d turns, %d left: %s",
            MAX_AFTER_COMMIT,
            len(queued),
            sorted(map(str, queued))[:10],
        )
    finally:
        connection.info.pop(_DRAINING, None)


@contextmanager
def checking_credentials(engine: Engine) -> Iterator[Connection]:
    """A pooled connection for the few reads that check a request's credential.

    On PostgreSQL it reads in autocommit mode: the check's ``BEGIN`` and ``COMMIT`` were
    two of its three round trips to the server, and its reads need no snapshot in
    common (the signing key is cached anyway; each row read is current when read). The
    mode is a client-side switch, undone when the connection goes back to the pool.
    On SQLite the ``begin`` hook sends no ``BEGIN`` for it (the driver is in autocommit
    mode already, see ``_install_sqlite_hooks``), so each read is its own transaction and
    the ``COMMIT`` finds none to end: two trips through SQLAlchemy and the driver fewer.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            connection.execution_options(**{_NO_BEGIN: True})
        yield connection


def upgrade_database(url: str | URL, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision``, all in one transaction.

    Safe to call at every start and from several processes at once: SQLite serialises
    them with its write lock, PostgreSQL with an advisory lock, and a schema already at
    ``revision`` is left untouched.
    """
    plugins_log = logging.getLogger("alembic.runtime.plugins")
    if plugins_log.level == logging.NOTSET:
        # It announces each built-in plugin at INFO on every start: noise in a service log.
        plugins_log.setLevel(logging.WARNING)
    from alembic import command  # noqa: PLC0415 - alembic is needed only here

    engine = create_db_engine(url)
    try:
        with engine.connect() as connection, write_transaction(connection):
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log.info(
        "database schema is current",
        extra={"database": make_url(url).render_as_string(hide_password=True)},
    )


def alembic_config() -> Config:
    """Alembic's configuration, built in code so no ``alembic.ini`` has to ship."""
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@functools.cache
def _shipped_heads() -> tuple[str, ...]:
    """The newest revisions of the migrations shipped with this code, read once.

    Reading them means parsing every migration script (some 15 ms); the scripts do not
    change under a running process, and the test suite starts an app for each test.
    """
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def schema_ahead(engine: Engine) -> list[str]:
    """The database's revisions this code does not know: written by a newer central.

    Empty when the schema is this code's, older, or missing. ``/readyz`` keeps an older
    central in service on a newer schema during a rolling upgrade.
    """
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415
    from alembic.util import CommandError  # noqa: PLC0415

    with engine.connect() as connection:
        found = MigrationContext.configure(connection).get_current_heads()
    if not found or set(found) == set(_shipped_heads()):
        return []
    scripts = _script_directory()
    unknown = []
    for revision in found:
        try:
            known = scripts.get_revision(revision) is not None
        except CommandError:
            known = False
        if not known:
            unknown.append(revision)
    return sorted(unknown) if len(unknown) == len(found) else []


@functools.cache
def _script_directory() -> Any:
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return ScriptDirectory.from_config(alembic_config())


class SchemaNotCurrentError(RuntimeError):
    """The database is reachable but its schema is not the one this code was written for."""


def check_schema_current(engine: Engine) -> None:
    """Raise SchemaNotCurrentError unless the database is at the newest migration.

    Without this a service started on an empty or older database would answer every
    request with "no such table" as if the database were merely down.
    """
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    expected = set(_shipped_heads())
    with engine.connect() as connection:
        found = set(MigrationContext.configure(connection).get_current_heads())
    if found != expected:
        where = engine.url.render_as_string(hide_password=True)
        raise SchemaNotCurrentError(
            f"database {where} is at schema revision {', '.join(sorted(found)) or 'none'}, "
            f"this central needs {', '.join(sorted(expected))}: "
            f"run `jxc central migrate --database-url {where}` "
            "(`jxc central serve` does it at start)"
        )
