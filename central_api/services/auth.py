"""Site credentials and the short-lived tokens a site pushes and pulls with.

A site holds one long random secret (``jxc central site add`` prints it once). It trades
the secret at ``POST /api/v1/sync/token`` for a token that names the site, the secret's
generation and an expiry, signed with HMAC-SHA256 under the key in ``auth_signing_key``.

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

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update

from central_api.errors import (
    CredentialRefusedError,
    InvalidSiteIdError,
    SiteCredentialExistsError,
    TokenRefusedError,
    UnknownCredentialError,
)
from central_api.models import auth_signing_key, site_credentials
from jxc.contract import SITE_ID_PATTERN

__all__ = [
    "SiteCredentialInfo",
    "TokenSigner",
    "add_site",
    "list_sites",
    "new_secret",
    "revoke_site",
    "rotate_site",
]

TOKEN_PREFIX = "jxc1"  # noqa: S105 (a format tag, not a secret)
"""Format version of a token, first so a later format can be told apart at a glance."""

_SITE_ID = re.compile(SITE_ID_PATTERN)

KEY_CACHE_S = 60.0
"""How long a process trusts its copy of the signing key before reading it again."""

_SEPARATOR = ":"
"""Never part of a site id (see ``jxc.contract.SiteId``), so a token splits unambiguously."""


def new_secret() -> str:
    """A fresh site secret: 32 random bytes as URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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
    with connection.begin():
        exists = connection.execute(
            select(site_credentials.c.site_id).where(site_credentials.c.site_id == site_id)
        ).first()
        if exists is not None:
            raise SiteCredentialExistsError(site_id)
        connection.execute(
            insert(site_credentials).values(
                site_id=site_id,
                secret_sha256=_digest(secret),
                generation=1,
                revoked=False,
                created_at=now,
                changed_at=now,
            )
        )
    return secret


def rotate_site(connection: Connection, site_id: str) -> str:
    """Replace the site's secret (also un-revokes it); every token issued before is void."""
    secret = new_secret()
    with connection.begin():
        changed = connection.execute(
            update(site_credentials)
            .where(site_credentials.c.site_id == site_id)
            .values(
                secret_sha256=_digest(secret),
                generation=site_credentials.c.generation + 1,
                revoked=False,
                changed_at=datetime.now(UTC),
            )
        ).rowcount
    if not changed:
        raise UnknownCredentialError(site_id)
    return secret


def revoke_site(connection: Connection, site_id: str) -> None:
    """Refuse the site from its next request on, until its secret is rotated."""
    with connection.begin():
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


def _sign(key: bytes, payload: str) -> str:
    mac = hmac.new(key, payload.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


class TokenSigner:
    """Issues and checks site tokens with the database's signing key.

    The key is kept for ``KEY_CACHE_S`` and re-read at once when a signature does not match
    it, so a key replaced in the database (to void every token) is taken up by every
    central within that time without a restart.
    Both methods run their reads in a transaction of their own, on the request's
    connection, before the route's service begins its own.
    """

    def __init__(self, engine: Engine, *, ttl_s: int) -> None:
        self._engine = engine
        self.ttl_s = ttl_s
        self._key: bytes | None = None
        self._key_read_at = 0.0

    def _signing_key(self, connection: Connection) -> bytes:
        now = time.monotonic()
        if self._key is None or now - self._key_read_at > KEY_CACHE_S:
            key_hex = connection.execute(
                select(auth_signing_key.c.key_hex).where(auth_signing_key.c.id == 1)
            ).scalar_one()
            self._key = bytes.fromhex(key_hex)
            self._key_read_at = now
        return self._key

    def _signed(self, connection: Connection, payload: str, signature: str) -> bool:
        """Whether ``signature`` is the key's; a mismatch re-reads the key once, so a key
        replaced in the database is taken up without restarting every central."""
        if hmac.compare_digest(
            signature.encode(), _sign(self._signing_key(connection), payload).encode()
        ):
            return True
        self._key = None
        return hmac.compare_digest(
            signature.encode(), _sign(self._signing_key(connection), payload).encode()
        )

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
            key = self._signing_key(connection)
        offered = _digest(secret)
        # Compare even when there is no row, so timing does not tell the two cases apart.
        expected = row.secret_sha256 if row is not None else _digest(new_secret())
        matches = hmac.compare_digest(offered, expected)
        if row is None or row.revoked or not matches:
            raise CredentialRefusedError(site_id)
        expires = int(time.time()) + self.ttl_s
        payload = _SEPARATOR.join((TOKEN_PREFIX, site_id, str(row.generation), str(expires)))
        return f"{payload}{_SEPARATOR}{_sign(key, payload)}"

    def verify(self, connection: Connection, token: str) -> str:
        """The site a valid, unexpired, current token speaks for; else TokenRefused."""
        parts = token.split(_SEPARATOR)
        if len(parts) != 5 or parts[0] != TOKEN_PREFIX or not token.isascii():
            raise TokenRefusedError("the bearer token is not a jxc site token")
        _, site_id, generation, expires, signature = parts
        payload = _SEPARATOR.join(parts[:4])
        with connection.begin():
            if not self._signed(connection, payload, signature):
                raise TokenRefusedError("the bearer token's signature is not valid")
            if not expires.isdigit() or int(expires) <= time.time():
                raise TokenRefusedError("the bearer token has expired; ask for a new one")
            current = connection.execute(
                select(site_credentials.c.generation, site_credentials.c.revoked).where(
                    site_credentials.c.site_id == site_id
                )
            ).first()
        if current is None or current.revoked:
            raise TokenRefusedError(f"site {site_id}: its credential was revoked")
        if str(current.generation) != generation:
            raise TokenRefusedError(
                f"site {site_id}: its secret was rotated since this token was issued"
            )
        return site_id
