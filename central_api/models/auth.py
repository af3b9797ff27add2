"""Credentials: who may call central, and the key its tokens are signed with.

A site proves who it is with a long random secret, exchanged at ``POST /sync/token`` for a
short-lived signed token (see ``central_api.services.auth``; the signing and hashing
themselves are in ``central_api.core.security``).
"""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Column, DateTime, Integer, String, Table

from central_api.models.base import metadata

# Only the secret's SHA-256 is kept: it is 256 random bits, not a password, so a slow
# hash would add nothing. ``generation`` grows when the secret is rotated or revoked,
# which voids every token issued before, on every central process at once (they check
# it per request).
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
