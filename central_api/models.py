"""The central tables, as SQLAlchemy Core, and the exact-decimal column type.

Core rather than the ORM: ingest is set-oriented (look up a batch's ids in one query,
insert with executemany, upsert balances per key), and rows never live long enough in
Python to need identity tracking. The Alembic migrations in ``central_api/migrations``
create exactly this schema; a test compares the two.
"""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation
from functools import partial
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from jxc.contract import DECIMAL_PLACES

NO_LOT = ""
"""How "no lot" is stored in a balance key: NULL is never equal to NULL, so a key column
holding NULL would let the same untracked stock appear twice on either database."""

_BIGINT_LIMIT = 2**63
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])
"""Wide enough for any BIGINT in micro-units; traps turn silent rounding into an error."""


def to_micro_units(value: Decimal | int) -> int:
    """Scale an exact amount to the integer the database stores, refusing any loss.

    The wire contract already limits amounts to six places; this check is the last line,
    for values that reach the table from anywhere else.
    """
    # Runs for every amount ingested, so the common case (a plain Decimal) skips the copy.
    if type(value) is Decimal:
        amount = value
    elif isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(
            f"an amount must be a Decimal or an int, not {type(value).__name__}: "
            "floats cannot be stored exactly"
        )
    else:
        amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{amount} is not a finite amount")
    try:
        scaled = amount.scaleb(DECIMAL_PLACES, context=_EXACT)
    except Inexact:
        raise ValueError(f"{amount} has more digits than the database can hold") from None
    try:
        micro = int(_EXACT.to_integral_exact(scaled))  # Inexact: a fraction is left
    except Inexact:
        raise ValueError(f"{amount} has more than {DECIMAL_PLACES} decimal places") from None
    if not -_BIGINT_LIMIT <= micro < _BIGINT_LIMIT:
        raise ValueError(f"{amount} is too large to store")
    return micro


_SCALE = Decimal(10) ** DECIMAL_PLACES
_SCALED = partial(_EXACT.multiply, _SCALE)


def to_micro_units_many(values: list[Decimal]) -> list[int]:
    """:func:`to_micro_units` of every value, in one go: ingest converts every amount
    of a batch, and this costs about half as much.

    The same checks, made by the exact context's traps and one range test over the
    whole list instead of a Python call per value: the product is exact or ``Inexact``
    is raised, a fraction left over raises it again, and a NaN or an infinity cannot
    become an int. If anything is amiss, the values go through :func:`to_micro_units`
    one by one, which raises its own error for the value at fault.
    """
    if set(map(type, values)) <= _AMOUNT_TYPES:
        try:
            micro = list(map(int, map(_EXACT.to_integral_exact, map(_SCALED, values))))
        except (ArithmeticError, ValueError):  # Inexact, InvalidOperation, Overflow, NaN
            pass
        else:
            if not micro or (min(micro) >= -_BIGINT_LIMIT and max(micro) < _BIGINT_LIMIT):
                return micro
    return [to_micro_units(value) for value in values]


_AMOUNT_TYPES = frozenset({Decimal, int})
"""Exactly these: a bool is an int, and to_micro_units refuses it."""


def from_micro_units(value: int) -> Decimal:
    """The Decimal an integer column means, in its shortest spelling (``3.75``, not
    ``3.750000``), so that API output matches what the edge sent."""
    amount = Decimal(value).scaleb(-DECIMAL_PLACES, context=_EXACT)
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize(context=_EXACT)


class MicroUnits(TypeDecorator[Decimal]):
    """A quantity or money amount stored as a BIGINT count of millionths.

    Integers sum exactly on SQLite, which has no true decimal type, and compare and index
    cheaply on PostgreSQL; one representation keeps the two databases interchangeable.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micro_units(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else from_micro_units(int(value))


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Named constraints, so a later migration can drop or alter them by a known name."""

# One row per site; locked while a push from that site is ingested.
site_sync_state = Table(
    "site_sync_state",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("acked_through_seq", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every movement ever pushed, immutable; (site_id, seq) is each site's ledger. Besides
# received_at the columns are exactly LedgerEvent's fields: ingest rebuilds a held event
# from them to tell a replay from a conflict.
ledger_events = Table(
    "ledger_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column(
        "site_id",
        String(32),
        ForeignKey(site_sync_state.c.site_id),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("item", String(64), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("location", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("unit_cost", MicroUnits, nullable=True),
    Column("ref", String(128), nullable=True),
    Column("device_id", String(64), nullable=True),
    Column("actor", String(64), nullable=True),
    UniqueConstraint("site_id", "seq"),
)

# Sum of ledger_events.qty per key, kept in the ingest transaction.
stock_balances = Table(
    "stock_balances",
    metadata,
    Column(
        "site_id",
        String(32),
        ForeignKey(site_sync_state.c.site_id),
        nullable=False,
    ),
    Column("location", String(64), nullable=False),
    Column("item", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "location", "item", "lot"),
    Index(None, "site_id", "item"),
)

# --- master data and the change feed (central -> edge) ---------------------------------
#
# Every write to a table below also appends its change to ``change_feed`` in the same
# transaction, under a version from ``feed_counter``; see ``central_api.services.feed``.
# ``version`` on an entity row is the feed version of its last change.

# An item; never deleted (the ledgers reference it), only deactivated.
items = Table(
    "items",
    metadata,
    Column("item_code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A code a scanner reads, and how many of the item's unit one scan of it counts.
item_barcodes = Table(
    "item_barcodes",
    metadata,
    Column("barcode", String(64), primary_key=True),
    Column("item_code", String(64), ForeignKey(items.c.item_code), nullable=False),
    Column("qty_per", MicroUnits, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "item_code"),
)

# One row per change, in version order; site_id NULL means every site.
change_feed = Table(
    "change_feed",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("site_id", String(32), nullable=True),
    Column("entity", String(16), nullable=False),
    Column("entity_key", String(128), nullable=False),
    Column("op", String(8), nullable=False),
    Column("data", Text, nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Index(None, "site_id", "version"),
)

# Exactly one row (id 1): the last version handed out. Its row lock orders feed writers.
feed_counter = Table(
    "feed_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_feed_counter_single_row"),
)

# --- events central refused -----------------------------------------------------------
#
# An event central cannot take (``invalid``: say, a unit its balance is not kept in;
# ``conflict``: its id is held at another seq) still occupies its seq in the site's
# ledger. Recording the refusal here lets the watermark pass it, so one bad event does
# not hold every later one back; the edge parks it as a dead letter and may requeue it.
# A row exists only while its seq is not held: accepting the event deletes it.
refused_events = Table(
    "refused_events",
    metadata,
    Column("site_id", String(32), ForeignKey(site_sync_state.c.site_id), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_refused_at", DateTime(timezone=True), nullable=False),
    Column("last_refused_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "seq"),
)

# --- site credentials -----------------------------------------------------------------
#
# A site proves who it is with a long random secret, exchanged at ``POST /sync/token`` for
# a short-lived signed token (see ``central_api.services.auth``). Only the secret's SHA-256
# is kept: it is 256 random bits, not a password, so a slow hash would add nothing.
# ``generation`` grows when the secret is rotated or revoked, which voids every token
# issued before, on every central process at once (they check it per request).
site_credentials = Table(
    "site_credentials",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

# Exactly one row (id 1): the key tokens are signed with. It lives in the database, not in
# each process's settings, so every central behind a load balancer accepts the tokens of
# every other one without a shared file to distribute.
auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("key_hex", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="ck_auth_signing_key_single_row"),
)
