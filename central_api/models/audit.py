"""The audit log (操作日志): who changed what, append-only, as a hash chain.

Rows are appended only by :func:`central_api.services.audit.record`, inside the
transaction of the change they describe. Each row's ``hash`` is a SHA-256 over its own
content and the previous row's hash, so editing, deleting or reordering a row breaks
the chain at that row (``jxc central audit verify`` walks it).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from central_api.models.base import metadata

# One row per change, seq 1, 2, 3, ... without gaps. before/after hold canonical JSON text
# (the exact bytes that were hashed), not a JSON column: PostgreSQL's jsonb would reorder
# keys and a re-serialised value could no longer be checked against its hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("site_id", String(32), nullable=True),
    Column("action", String(64), nullable=False),
    Column("resource", String(64), nullable=False),
    Column("resource_id", String(256), nullable=True),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("source", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "at"),
    Index(None, "actor_kind", "actor_id"),
    Index(None, "resource", "resource_id"),
    Index(None, "action"),
    Index(None, "site_id", "seq"),
)

# Exactly one row (id 1): the chain's last seq and hash. Appenders lock it, so two
# transactions can never both extend the chain from the same entry; verify compares it
# with the last row, so deleting entries from the end shows too.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="ck_audit_head_single_row"),
)
