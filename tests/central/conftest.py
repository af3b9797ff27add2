"""Fixtures for the central service: every database test runs on SQLite and PostgreSQL.

PostgreSQL: one fresh database ``jxc_test_<random>`` per test session, migrated once and
dropped at the end; each test starts from empty tables (TRUNCATE, a few milliseconds)
rather than a new database (hundreds). SQLite: the schema is migrated once into a
template file, and each test gets its own copy of it.

If PostgreSQL cannot be reached the PostgreSQL half is skipped with a loud reason, except
under ``CI=true``, where it fails: CI must never go green by skipping the chain database.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import URL, Engine, insert, make_url, select

from central_api.core.config import Settings
from central_api.core.db import create_db_engine, upgrade_database
from central_api.main import attach_database, create_app
from central_api.models.people import sessions, user_roles, user_sites, users
from central_api.services.auth import TokenSigner, add_site
from central_api.services.people import USER_TOKEN_PREFIX, digest, hash_password
from jxc import uuid7
from jxc.contract import SITE_ID_PATTERN
from jxc.paths import API_ROOT, SYNC_TOKEN

POSTGRES_ADMIN_URL = os.environ.get(
    "JXC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""An existing database to connect to while creating and dropping the test database."""

CENTRAL_TABLES = (
    "stock_snapshot_runs",
    "stock_snapshots",
    "shop_channels",
    "period_close_values",
    "period_closes",
    "feedback",
    "alerts",
    "site_devices",
    "site_status",
    "expiry_alert_days",
    "item_site_supply",
    "retail_sales",
    "webhook_deliveries",
    "webhook_subscriptions",
    "stock_count_entries",
    "stock_count_lines",
    "stock_counts",
    "transfer_exceptions",
    "transfer_lots",
    "transfer_lines",
    "transfer_orders",
    "stock_document_lines",
    "stock_documents",
    "valuation_pending",
    "valuation_layers",
    "valuation_entries",
    "valuation_state",
    "edge_qc_decisions",
    "credit_note_lines",
    "credit_notes",
    "customer_payments",
    "sales_invoice_lines",
    "sales_invoices",
    "customer_return_lines",
    "customer_returns",
    "shipment_lines",
    "shipments",
    "supplier_invoice_lines",
    "supplier_invoices",
    "purchase_return_lines",
    "purchase_returns",
    "purchase_receipt_lines",
    "purchase_receipts",
    "central_events",
    "central_stream_state",
    "opening_stock",
    "sales_reservations",
    "sales_order_lines",
    "sales_orders",
    "price_list_lines",
    "price_lists",
    "purchase_exceptions",
    "purchase_order_lines",
    "purchase_orders",
    "requisition_lines",
    "requisitions",
    "audit_log",
    "idempotency_keys",
    "reference_entries",
    "locations",
    "sites",
    "partners",
    "item_site_levels",
    "item_units",
    "code_sequences",
    "login_failures",
    "sessions",
    "user_sites",
    "user_roles",
    "users",
    "roles",
    "site_credentials",
    "refused_events",
    "ledger_events",
    "stock_balances",
    "site_sync_state",
    "change_feed",
    "item_barcodes",
    "items",
    "categories",
)
"""Emptied before each PostgreSQL test; ``feed_counter`` keeps its one row, reset to 0,
``audit_head`` its row, reset to the genesis, and ``auth_signing_key`` its key; ``roles``
is refilled with the seven defaults as the migrations left them."""

_MIGRATION_0006 = Path(__file__).parents[2] / "central_api/migrations/versions/0006_people.py"


def default_roles() -> list[dict[str, Any]]:
    """The roles migration 0006 seeds, as rows (read from the migration itself).

    Later migrations add grants to them; :func:`migrated_roles` has the result."""
    spec = importlib.util.spec_from_file_location("jxc_migration_0006", _MIGRATION_0006)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [
        {"name": name, "description": text, "actions": actions, "financial": financial}
        for name, text, actions, financial in module.DEFAULT_ROLES
    ]


TEST_PASSWORD = "correct horse battery"


@functools.cache
def _test_password_hash() -> str:
    return hash_password(TEST_PASSWORD)


def add_test_user(
    engine: Engine,
    username: str,
    roles: list[str],
    *,
    sites: list[str] | None = None,
    disabled: bool = False,
) -> None:
    """A user with :data:`TEST_PASSWORD`, written directly: argon2 once per test session."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        user_id = connection.execute(
            insert(users)
            .values(
                username=username,
                display_name=username,
                password_hash=_test_password_hash(),
                disabled=disabled,
                created_at=now,
                changed_at=now,
            )
            .returning(users.c.user_id)
        ).scalar_one()
        for role in roles:
            connection.execute(insert(user_roles).values(user_id=user_id, role=role))
        for site_id in sites or ():
            connection.execute(insert(user_sites).values(user_id=user_id, site_id=site_id))


def user_token(
    engine: Engine,
    username: str,
    roles: list[str] | None = None,
    *,
    sites: list[str] | None = None,
    ttl_s: int = 900,
) -> str:
    """A bearer token for ``username`` (made with ``roles`` if it does not exist yet).

    The session row is written directly, as sign-in would, to spare an argon2 run.
    """
    return user_tokens(engine, username, roles, sites=sites, ttl_s=ttl_s)[0]


def user_tokens(
    engine: Engine,
    username: str,
    roles: list[str] | None = None,
    *,
    count: int = 1,
    sites: list[str] | None = None,
    ttl_s: int = 900,
) -> list[str]:
    """``count`` bearer tokens (sessions) for ``username``, written in one transaction.

    A walk that wants a token never used before for each request (it may sign out) takes
    them from here: one commit for all of them instead of two transactions a request.
    """
    with engine.connect() as connection:
        exists = connection.execute(
            select(users.c.user_id).where(users.c.username == username)
        ).scalar_one_or_none()
    if exists is None:
        add_test_user(engine, username, roles or [], sites=sites)
    tokens = [USER_TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(count)]
    now = datetime.now(UTC)
    with engine.begin() as connection:
        user_id = connection.execute(
            select(users.c.user_id).where(users.c.username == username)
        ).scalar_one()
        connection.execute(
            insert(sessions),
            [
                {
                    "token_sha256": digest(token),
                    "user_id": user_id,
                    "kind": "bearer",
                    "csrf_sha256": None,
                    "created_at": now,
                    "expires_at": now + timedelta(seconds=ttl_s),
                }
                for token in tokens
            ],
        )
    return tokens


def problem(status: int, detail: str) -> dict[str, Any]:
    """The RFC 9457 body central answers a refusal with (``central_api.api.errors``)."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("central-template") / "central.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_session() -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """(SQLAlchemy URL of a fresh migrated database, an autocommit psycopg connection to it)."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = (
            f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable ({str(exc).strip()}); "
            "the PostgreSQL half of tests/central did NOT run"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(f"!!! SKIPPED: {reason}. Start PostgreSQL or set JXC_TEST_POSTGRES_URL.")

    admin.close()
    with fresh_postgres_database("jxc_test") as url:
        upgrade_database(url)
        plain_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain_url, autocommit=True) as cleaner:
            _MIGRATED_ROLES[:] = _read_roles(cleaner)
            yield url.render_as_string(hide_password=False), cleaner


_MIGRATED_ROLES: list[dict[str, Any]] = []
"""The roles as a freshly migrated database holds them (every migration's grants)."""


def _read_roles(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, description, actions, financial FROM roles")
        return [
            {"name": name, "description": text, "actions": actions, "financial": financial}
            for name, text, actions, financial in cursor.fetchall()
        ]


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[URL]:
    """An empty database ``<prefix>_<random>`` on the test server, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated central database of each kind."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "central.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url, cleaner = request.getfixturevalue("postgres_session")
    cleaner.execute(
        sql.SQL("TRUNCATE {} CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(table) for table in CENTRAL_TABLES)
        )
    )
    cleaner.execute("UPDATE feed_counter SET version = 0")
    cleaner.execute("UPDATE audit_head SET seq = 0, hash = repeat('0', 64)")
    with cleaner.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO roles (name, description, actions, financial, changed_at) "
            "VALUES (%(name)s, %(description)s, %(actions)s, %(financial)s, now())",
            _MIGRATED_ROLES,
        )
    return str(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    assert engine.pool.checkedout() == 0, "a test leaked a database connection"  # type: ignore[attr-defined]
    engine.dispose()


class EverySiteAuth(httpx.Auth):
    """Signs each sync request as the site it names, giving that site a credential first.

    Most central tests are about what ingest or the feed does, not about who may call
    them; this lets them speak for any site the way that site's own edge would (a real
    secret, a real token from the app's signer). A request that already carries an
    ``Authorization`` header is left alone, so auth tests can send what they like.
    ``tests/central/test_site_auth.py`` tests the checks themselves.

    Every other ``/api/v1`` request goes as user ``admin`` (made on first use), for the
    same reason; ``tests/central/test_permissions.py`` tests who may do what.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.tokens: dict[str, str] = {}
        self.admin_token: str | None = None
        self._lock = threading.Lock()  # concurrent-push tests share one client

    def token_for(self, site_id: str) -> str:
        with self._lock:
            return self._token_for(site_id)

    def _token_for(self, site_id: str) -> str:
        if site_id not in self.tokens:
            signer: TokenSigner = self.app.state.token_signer
            with self.app.state.engine.connect() as connection:
                secret = add_site(connection, site_id)
                self.tokens[site_id] = signer.issue(connection, site_id, secret)
        return self.tokens[site_id]

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        path = request.url.path
        if (
            path.startswith(f"{API_ROOT}/sync/")
            and path != SYNC_TOKEN
            and "authorization" not in request.headers
        ):
            request.headers["Authorization"] = f"Bearer {self.token_for(_named_site(request))}"
        elif (
            path.startswith(f"{API_ROOT}/")
            and not path.startswith(f"{API_ROOT}/sync/")
            and "authorization" not in request.headers
            and "jxc_session" not in request.headers.get("cookie", "")
        ):
            with self._lock:
                if self.admin_token is None:
                    self.admin_token = user_token(self.app.state.engine, "admin", ["admin"])
            request.headers["Authorization"] = f"Bearer {self.admin_token}"
        yield request


def _named_site(request: httpx.Request) -> str:
    """The site a request is about: its ``site_id`` parameter or body field, else S01.

    A site id the contract refuses gets S01's token, so the request reaches the route and
    its 422 (the token is checked first, so without one the answer would be a 401).
    """
    site = request.url.params.get("site_id")
    if site is None:
        found = re.search(rb'"site_id"\s*:\s*"([^"]{1,64})"', request.content)
        site = found.group(1).decode() if found else None
    return site if site is not None and re.fullmatch(SITE_ID_PATTERN, site) else "S01"


class _SharedApp:
    """One central app per test process, lent to one test at a time, on that test's database.

    ``create_app`` costs 0.25-0.6 s, nearly all of it FastAPI building every route's
    dependencies for the new app; over some 1,700 tests that was the largest block of the
    suite's time (docs/performance.md, "One app per worker"). A test needs a fresh
    database, not fresh routes: everything the app keeps per database (engine and SQLite
    write gate, push group, token signer and its cached key, projections, settings) is
    made by :func:`~central_api.main.attach_database`, which is called again for each
    loan; anything else a test put into ``app.state`` is removed first.

    A second app wanted while the first is lent (a test with two), or one whose settings
    differ beyond the database (they shape the middleware), is built fresh as before; so is
    every app under ``JXC_TEST_APP_PER_TEST=1``, to tell whether a failure comes from the
    sharing (and to measure what it saves).
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self._shape: dict[str, Any] = {}
        self._state_keys: set[str] = set()
        self._lent = False
        self.built = 0

    @contextmanager
    def lend(self, settings: Settings) -> Iterator[FastAPI]:
        shape = settings.model_dump(exclude={"database_url"})
        if (
            self._lent
            or (self.app is not None and shape != self._shape)
            or os.environ.get("JXC_TEST_APP_PER_TEST") == "1"
        ):
            self.built += 1
            fresh = create_app(settings)
            try:
                yield fresh
            finally:
                fresh.state.engine.dispose()
            return
        if self.app is None:
            self.built += 1
            self.app, self._shape = create_app(settings), shape
            self._state_keys = set(self.app.state._state)
        else:
            state = self.app.state._state
            for key in set(state) - self._state_keys:
                del state[key]
            attach_database(self.app, settings)
        self._lent = True
        try:
            yield self.app
        finally:
            self._lent = False
            self.app.state.engine.dispose()


_SHARED_APP = _SharedApp()


@contextmanager
def central_app(settings: Settings) -> Iterator[FastAPI]:
    """The central app on ``settings`` for the length of the block: this process's shared
    app, pointed at ``settings.database_url``, when it is free (see :class:`_SharedApp`).

    The engine is disposed at the end of the block. Use it instead of ``create_app`` in
    a fixture that wants an app on the test's database with the usual settings.
    """
    with _SHARED_APP.lend(settings) as app:
        yield app


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    """The central app on the test's database, inside its lifespan, signing as it goes.

    The app is this process's shared one (:func:`central_app`): a test may use and change
    its data and ``app.state`` freely, but must not add routes or middleware to it; a test
    that needs another app builds its own with ``create_app``.
    """
    with (
        central_app(Settings(database_url=database_url)) as app,
        TestClient(app) as test_client,
    ):
        test_client.auth = EverySiteAuth(app)
        yield test_client
        leaked = app.state.engine.pool.checkedout()
        assert leaked == 0, "a request leaked a database connection"


class SiteLedger:
    """Writes a site's ledger the way an edge does: gapless seq, UUIDv7 ids, wire dicts.

    Events are plain JSON-ready dicts so a test can break one (a float qty, a missing
    field) exactly as a faulty edge would send it.
    """

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self.seq = 0

    def event(
        self,
        kind: str = "receipt",
        qty: str = "1",
        *,
        item: str = "ITEM-1",
        location: str = "A-01",
        lot: str | None = None,
        uom: str = "pcs",
        **extra: Any,
    ) -> dict[str, Any]:
        self.seq += 1
        return {
            "event_id": str(uuid7()),
            "site_id": self.site_id,
            "seq": self.seq,
            "occurred_at": datetime.now(UTC).isoformat(),
            "kind": kind,
            "item": item,
            "lot": lot,
            "location": location,
            "qty": qty,
            "uom": uom,
            **extra,
        }

    def receipts(self, count: int, qty: str = "1", **fields: Any) -> list[dict[str, Any]]:
        return [self.event("receipt", qty, **fields) for _ in range(count)]

    def batch(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"contract_version": 1, "site_id": self.site_id, "events": events}


@pytest.fixture
def ledger_for() -> type[SiteLedger]:
    """The factory itself, for tests that need many sites (``ledger_for("S07")``)."""
    return SiteLedger


@pytest.fixture
def site() -> SiteLedger:
    return SiteLedger("S01")


@pytest.fixture
def other_site() -> SiteLedger:
    return SiteLedger("S02")
