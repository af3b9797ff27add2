"""``Idempotency-Key`` for creates: a retried request makes nothing twice.

A client that sends ``POST /api/v1/items`` and loses the answer (a timeout, a dropped
phone connection on the warehouse floor) cannot know whether the item was made; with a
generated item code, sending it again would make a second item. With a key, the retry is
answered with what the first request made.

How
---
A create that carries a key passes an :class:`IdempotencyClaim` to its service, which
calls :func:`check` first thing inside its write transaction and :func:`remember` last.
So the key is stored in the same transaction as what it made: both or neither, and no
window in which a crash leaves one without the other.

* The same key again with the same request (operation and body bytes): :func:`check`
  raises :class:`IdempotentReplay` with the resource's id; the transaction rolls back
  (it wrote nothing) and the route answers with the resource as it is now.
* The same key with a different request: refused (422), since the client has a bug.
* Two requests with one key at the same instant: on SQLite the write lock orders them; on
  PostgreSQL the loser's insert of the key meets the winner's row, waits for its commit
  and fails, which is answered 409 "retry", and the retry is a replay.

Keys are per principal (two users may both use ``1``) and kept for :data:`KEY_TTL`; a
retry comes within minutes, not days.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, DateTime, bindparam, delete, insert, select

from central_api.core import driver
from central_api.errors import InvalidError
from central_api.models.master import idempotency_keys

KEY_TTL = timedelta(hours=24)
KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
"""Printable ASCII without spaces, at most 128 characters (a UUID is the usual choice)."""


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """One create's key, who sent it, and what exactly it asked for."""

    principal: str
    key: str
    operation: str
    """``POST /api/v1/items``: a key reused for another kind of create is refused."""
    fingerprint: str
    """SHA-256 of the request as sent: its path and body."""

    @classmethod
    def of(cls, *, principal: str, key: str, operation: str, body: bytes) -> IdempotencyClaim:
        return cls(
            principal=principal[:100],
            key=key,
            operation=operation[:100],
            fingerprint=hashlib.sha256(body).hexdigest(),
        )


class IdempotentReplay(Exception):  # noqa: N818 (an outcome, not an error)
    """The key was used before for this very request; ``resource_id`` is what it made."""

    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id
        super().__init__(resource_id)


class IdempotencyKeyReusedError(InvalidError):
    """The key was used before for a different request."""

    def __init__(self, key: str, operation: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request "
            f"({operation}); use a new key for a new request"
        )


def check(connection: Connection, claim: IdempotencyClaim | None) -> None:
    """Raise :class:`IdempotentReplay` if ``claim``'s key already made something."""
    if claim is None:
        return
    dialect, key = connection.dialect, {"principal": claim.principal, "key": claim.key}
    # At the driver (central_api.core.driver), as every create with a key runs it.
    found = driver.rows(connection, driver.prepared(_FIND_KEY, dialect), key)
    if not found:
        return
    operation, fingerprint, resource_id, created_at = found[0]
    if _utc(created_at) < datetime.now(UTC) - KEY_TTL:
        driver.run(connection, driver.prepared(_FORGET_KEY, dialect), key)
        return
    if (operation, fingerprint) != (claim.operation, claim.fingerprint):
        raise IdempotencyKeyReusedError(claim.key, operation)
    raise IdempotentReplay(resource_id)


def remember(
    connection: Connection,
    claim: IdempotencyClaim | None,
    resource_id: str,
    *,
    now: datetime | None = None,
) -> None:
    """Store ``claim``'s key with what it made, in the caller's transaction; keys older
    than :data:`KEY_TTL` are deleted on the way."""
    if claim is None:
        return
    now = now or datetime.now(UTC)
    values = {
        "principal": claim.principal,
        "key": claim.key,
        "operation": claim.operation,
        "fingerprint": claim.fingerprint,
        "resource_id": resource_id[:256],
        "created_at": now,
        "expired_before": now - KEY_TTL,
    }
    dialect = connection.dialect
    if dialect.name == "postgresql":
        # One statement, one round trip: the expired keys' delete in a WITH of the insert.
        driver.run(connection, driver.prepared(_FORGET_EXPIRED_AND_STORE, dialect), values)
        return
    driver.run(connection, driver.prepared(_FORGET_EXPIRED, dialect), values)
    driver.run(connection, driver.prepared(_STORE_KEY, dialect), values)


_OF_KEY = (
    idempotency_keys.c.principal == bindparam("principal"),
    idempotency_keys.c.key == bindparam("key"),
)
_FIND_KEY = select(
    idempotency_keys.c.operation,
    idempotency_keys.c.fingerprint,
    idempotency_keys.c.resource_id,
    idempotency_keys.c.created_at,
).where(*_OF_KEY)
_FORGET_KEY = delete(idempotency_keys).where(*_OF_KEY)
_FORGET_EXPIRED = delete(idempotency_keys).where(
    idempotency_keys.c.created_at < bindparam("expired_before", type_=DateTime(timezone=True))
)
_STORE_KEY = insert(idempotency_keys).values(
    {column.name: bindparam(column.name, type_=column.type) for column in idempotency_keys.c}
)
_FORGET_EXPIRED_AND_STORE = _STORE_KEY.add_cte(_FORGET_EXPIRED.cte("expired"))
"""Built once, the values given at execution (each built per call cost more than it ran)."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
