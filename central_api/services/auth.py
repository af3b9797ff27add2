"""Site credentials and the short-lived tokens a site pushes and pulls with.

A site holds one long random secret (``jxc central site add`` prints it once). It trades
the secret at ``POST /api/v1/sync/token`` for a token that names the site, the secret's
generation and an expiry, signed with HMAC-SHA256 under the key in ``auth_signing_key``.
This module decides who holds a valid credential; the hashing, signing and the token's
format are ``central_api.core.security``'s.

Why this shape:

* Tokens are checked without a session table: any central process on the database
  verifies any other's tokens with the shared key, so central stays stateless behind a
  load balancer.
* Each request still reads the site's credential row (one primary-key lookup, far cheaper
  than the batch it guards) to compare the generation: rotating or revoking a secret
  takes effect at the next request everywhere, not when old tokens happen to expire.
* The secret is stored as its SHA-256. It is 256 random bits, so there is nothing for a
  slow password hash to protect against, and the exchange costs microseconds.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.core.security import (
    SiteTokenClaims,
    new_secret,
    read_site_token,
    same_text,
    secret_digest,
    signed_by,
    site_token,
)
from central_api.errors import (
    CredentialRefusedError,
    InvalidSiteIdError,
    SiteCredentialExistsError,
    TokenRefusedError,
    UnknownCredentialError,
)
from central_api.models.auth import auth_signing_key, site_credentials
from central_api.services.audit import record
from jxc.contract import SITE_ID_PATTERN

__all__ = [
    "SiteCredentialInfo",
    "TokenSigner",
    "add_site",
    "list_sites",
    "rekey",
    "revoke_site",
    "rotate_site",
]

_SITE_ID = re.compile(SITE_ID_PATTERN)

KEY_CACHE_S = 60.0
"""How long a process trusts its copy of the signing key before reading it again."""

_REREAD_MIN_S = 1.0
"""The least time between two reads of the key caused by a signature that did not match."""


@dataclass(frozen=True, slots=True)
class SiteCredentialInfo:
    """What ``jxc central site list`` shows; never the secret or its hash."""

    site_id: str
    generation: int
    revoked: bool
    created_at: datetime
    changed_at: datetime


def add_site(connection: Connection, site_id: str) -> str:
    """Give ``site_id`` its first credential and return the secret (shown once, never kept).

    Refuses a site that already has one: handing out a second secret silently would lock
    out the edge that holds the first. Rotation is its own, deliberate command.
    """
    if not _SITE_ID.fullmatch(site_id):
        raise InvalidSiteIdError(site_id)
    now = datetime.now(UTC)
    secret = new_secret()
    with write_transaction(connection):
        exists = connection.execute(
            select(site_credentials.c.site_id).where(site_credentials.c.site_id == site_id)
        ).first()
        if exists is not None:
            raise SiteCredentialExistsError(site_id)
        connection.execute(
            insert(site_credentials).values(
                site_id=site_id,
                secret_sha256=secret_digest(secret),
                generation=1,
                revoked=False,
                created_at=now,
                changed_at=now,
            )
        )
        record(
            connection,
            action="site.add",
            resource="site",
            resource_id=site_id,
            site_id=site_id,
            after={"generation": 1, "revoked": False},
        )
    return secret


def rotate_site(connection: Connection, site_id: str) -> str:
    """Replace the site's secret (also un-revokes it); every token issued before is void."""
    secret = new_secret()
    with write_transaction(connection):
        changed = connection.execute(
            update(site_credentials)
            .where(site_credentials.c.site_id == site_id)
            .values(
                secret_sha256=secret_digest(secret),
                generation=site_credentials.c.generation + 1,
                revoked=False,
                changed_at=datetime.now(UTC),
            )
        ).rowcount
        if not changed:
            raise UnknownCredentialError(site_id)
        record(
            connection,
            action="site.rotate",
            resource="site",
            resource_id=site_id,
            site_id=site_id,
            after={"revoked": False},
        )
    return secret


def revoke_site(connection: Connection, site_id: str) -> None:
    """Refuse the site from its next request on, until its secret is rotated."""
    with write_transaction(connection):
        changed = connection.execute(
            update(site_credentials)
            .where(site_credentials.c.site_id == site_id)
            .values(
                revoked=True,
                generation=site_credentials.c.generation + 1,
                changed_at=datetime.now(UTC),
            )
        ).rowcount
        if not changed:
            raise UnknownCredentialError(site_id)
        record(
            connection,
            action="site.revoke",
            resource="site",
            resource_id=site_id,
            site_id=site_id,
            after={"revoked": True},
        )


def rekey(connection: Connection) -> None:
    """Replace the signing key with a fresh random one: every token issued so far is void.

    For after a restore from backup, or whenever a copy of the database may be in other
    hands: the key is in the database, so whoever holds a copy could sign tokens (each
    valid no longer than the TTL, but as many as they like) until the key is replaced.
    Edges notice nothing but one 401, and fetch a new token with their secrets, which a
    copy does not reveal (central keeps only their SHA-256).
    """
    with connection.begin():
        connection.execute(
            update(auth_signing_key)
            .where(auth_signing_key.c.id == 1)
            .values(key_hex=secrets.token_hex(32), created_at=datetime.now(UTC))
        )


def list_sites(connection: Connection) -> list[SiteCredentialInfo]:
    """Every site with a credential, by id."""
    rows = connection.execute(
        select(
            site_credentials.c.site_id,
            site_credentials.c.generation,
            site_credentials.c.revoked,
            site_credentials.c.created_at,
            site_credentials.c.changed_at,
        ).order_by(site_credentials.c.site_id)
    ).all()
    return [SiteCredentialInfo(*row) for row in rows]


_CURRENT_GENERATION = select(site_credentials.c.generation, site_credentials.c.revoked).where(
    site_credentials.c.site_id == bindparam("site_id")
)
"""Built once: every request with a site token runs it (docs/performance.md)."""


@dataclass(frozen=True, slots=True)
class _KeySnapshot:
    """The signing key as read at one moment: never changed, only replaced whole."""

    key: bytes
    read_at: float


class TokenSigner:
    """Issues and checks site tokens with the database's signing key.

    The key is kept for ``KEY_CACHE_S`` and re-read when a signature does not match it, so
    a key replaced in the database (``jxc central rekey``, to void every token) is taken
    up by every central without a restart. Issuing always reads the key afresh, so a new
    token is never signed with a key that was replaced.

    Safe across threads by construction: the key is held in one immutable snapshot that
    is replaced by a single attribute assignment, never cleared or edited in place, so a
    thread reading it sees the old key or the new one, never a gap. Two threads may both
    re-read the key at once; each then installs a correct snapshot. A signature that does
    not match re-reads the key at most once per ``_REREAD_MIN_S``, so a stream of forged
    tokens costs one key read a second, not one per request.

    Both methods run their reads in a transaction of their own, on the request's
    connection, before the route's service begins its own.
    """

    def __init__(self, engine: Engine, *, ttl_s: int) -> None:
        self._engine = engine
        self.ttl_s = ttl_s
        self._snapshot: _KeySnapshot | None = None

    def _read_key(self, connection: Connection) -> bytes:
        key_hex = connection.execute(
            select(auth_signing_key.c.key_hex).where(auth_signing_key.c.id == 1)
        ).scalar_one()
        snapshot = _KeySnapshot(bytes.fromhex(key_hex), time.monotonic())
        self._snapshot = snapshot
        return snapshot.key

    def _signing_key(self, connection: Connection) -> bytes:
        snapshot = self._snapshot  # one read: the snapshot cannot change under us
        if snapshot is None or time.monotonic() - snapshot.read_at > KEY_CACHE_S:
            return self._read_key(connection)
        return snapshot.key

    def _signed(self, connection: Connection, claims: SiteTokenClaims) -> bool:
        """Whether the token is signed with the key; a mismatch re-reads the key (at most
        once per ``_REREAD_MIN_S``), so a replaced key is taken up without a restart."""
        snapshot = self._snapshot
        key = self._signing_key(connection)
        if signed_by(key, claims):
            return True
        if snapshot is not None and time.monotonic() - snapshot.read_at < _REREAD_MIN_S:
            return False
        fresh = self._read_key(connection)
        return fresh != key and signed_by(fresh, claims)

    def issue(self, connection: Connection, site_id: str, secret: str) -> str:
        """A token for ``site_id`` if ``secret`` is its current one; else CredentialRefused.

        Unknown site, wrong secret and revoked credential get the same refusal, so the
        answer does not tell a prober which site ids exist.
        """
        with connection.begin():
            row = connection.execute(
                select(
                    site_credentials.c.secret_sha256,
                    site_credentials.c.generation,
                    site_credentials.c.revoked,
                ).where(site_credentials.c.site_id == site_id)
            ).first()
            key = self._read_key(connection)
        offered = secret_digest(secret)
        # Compare even when there is no row, so timing does not tell the two cases apart.
        expected = row.secret_sha256 if row is not None else secret_digest(new_secret())
        matches = same_text(offered, expected)
        if row is None or row.revoked or not matches:
            raise CredentialRefusedError(site_id)
        return site_token(key, site_id=site_id, generation=row.generation, ttl_s=self.ttl_s)

    def verify(self, connection: Connection, token: str) -> str:
        """The site a valid, unexpired, current token speaks for; else TokenRefused."""
        claims = read_site_token(token)
        site_id = claims.site_id
        with connection.begin():
            if not self._signed(connection, claims):
                raise TokenRefusedError("the bearer token's signature is not valid")
            if claims.expired():
                raise TokenRefusedError("the bearer token has expired; ask for a new one")
            if claims.lasts_too_long(self.ttl_s):
                raise TokenRefusedError(
                    "the bearer token claims to last longer than central issues tokens for; "
                    "it was not issued by central"
                )
            # At the driver (central_api.core.driver): every site request runs it.
            found = driver.rows(
                connection,
                driver.prepared(_CURRENT_GENERATION, connection.dialect),
                {"site_id": site_id},
            )
        if not found or found[0][1]:
            raise TokenRefusedError(f"site {site_id}: its credential was revoked")
        if str(found[0][0]) != claims.generation:
            raise TokenRefusedError(
                f"site {site_id}: its secret was rotated since this token was issued"
            )
        return site_id
