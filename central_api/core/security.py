"""Security machinery: secrets, their digests, and signed tokens. No database, no HTTP.

Who holds which credential, and whether it is still valid, is the business of
``central_api.services.auth``; this module only makes and checks the bytes.

A site token is ``jxc1:<site>:<generation>:<expiry>:<signature>``: the format version
first, so a later format can be told apart at a glance; the site and the generation of
its secret, so a rotated or revoked secret voids the token at once; the expiry as Unix
seconds; and an HMAC-SHA256 of everything before it, URL-safe base64 without padding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from central_api.errors import TokenRefusedError

TOKEN_PREFIX = "jxc1"  # noqa: S105 (a format tag, not a secret)
"""Format version of a token, first so a later format can be told apart at a glance."""

EXPIRY_SKEW_S = 60
"""How far a token's expiry may lie beyond now + TTL: the clocks of several centrals on
one database may differ by this much."""

_EXPIRY_DIGITS = 15
"""An expiry of more digits is no Unix time this side of the year 30 million."""

_SEPARATOR = ":"
"""Never part of a site id (see ``jxc.contract.SiteId``), so a token splits unambiguously."""


def new_secret() -> str:
    """A fresh site secret: 32 random bytes as URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """The SHA-256 central keeps of a secret, in hex.

    Why not a password hash (scrypt, argon2): the secret is random, not chosen by a
    person, so there is no dictionary for a slow hash to slow down, and the exchange
    stays microseconds.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def same_text(offered: str, expected: str) -> bool:
    """Compare in constant time, so timing does not tell how much of a guess was right."""
    return hmac.compare_digest(offered.encode(), expected.encode())


def sign(key: bytes, payload: str) -> str:
    """HMAC-SHA256 of ``payload`` under ``key``, URL-safe base64 without padding."""
    mac = hmac.new(key, payload.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SiteTokenClaims:
    """What a site token says, read but not yet checked (see :func:`read_site_token`)."""

    site_id: str
    generation: str
    """The secret's generation as written; compared as text with the current one."""
    expires: str
    """Unix seconds as written; :meth:`expired` refuses anything that is not digits."""
    payload: str
    """Everything the signature covers."""
    signature: str

    def expires_at(self) -> int | None:
        """The expiry as Unix seconds, or None if it is not a plain number of a sane size."""
        text = self.expires
        if not (0 < len(text) <= _EXPIRY_DIGITS and text.isascii() and text.isdigit()):
            return None
        return int(text)

    def expired(self, now: float | None = None) -> bool:
        """Whether the token has expired (or its expiry is not a number)."""
        current = time.time() if now is None else now
        expires = self.expires_at()
        return expires is None or expires <= current

    def lasts_too_long(self, ttl_s: int, now: float | None = None) -> bool:
        """Whether the expiry lies further ahead than any token central issues would have.

        Central never issues a token for longer than its TTL, so an expiry beyond now +
        TTL (+ the clocks' skew) was written by someone holding the signing key who is
        not central: a copy of the key would otherwise mint tokens valid for fifty years.
        """
        current = time.time() if now is None else now
        expires = self.expires_at()
        return expires is None or expires > current + ttl_s + EXPIRY_SKEW_S


def site_token(key: bytes, *, site_id: str, generation: int, ttl_s: int) -> str:
    """A signed token for ``site_id`` at its secret's ``generation``, valid ``ttl_s``."""
    expires = int(time.time()) + ttl_s
    payload = _SEPARATOR.join((TOKEN_PREFIX, site_id, str(generation), str(expires)))
    return f"{payload}{_SEPARATOR}{sign(key, payload)}"


def read_site_token(token: str) -> SiteTokenClaims:
    """Split a token into its claims; TokenRefusedError if it is not a site token at all.

    Nothing is verified here: the caller checks the signature with the key it holds
    (:func:`signed_by`), then the expiry, then the generation against the database.
    """
    parts = token.split(_SEPARATOR)
    if len(parts) != 5 or parts[0] != TOKEN_PREFIX or not token.isascii():
        raise TokenRefusedError("the bearer token is not a jxc site token")
    _, site_id, generation, expires, signature = parts
    return SiteTokenClaims(
        site_id=site_id,
        generation=generation,
        expires=expires,
        payload=_SEPARATOR.join(parts[:4]),
        signature=signature,
    )


def signed_by(key: bytes, claims: SiteTokenClaims) -> bool:
    """Whether ``key`` made the token's signature."""
    return same_text(claims.signature, sign(key, claims.payload))
