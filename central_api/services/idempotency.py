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

from sqlalchemy import Connection, delete, insert, select

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
    found = connection.execute(
        select(
            idempotency_keys.c.operation,
            idempotency_keys.c.fingerprint,
            idempotency_keys.c.resource_id,
            idempotency_keys.c.created_at,
        ).where(
            idempotency_keys.c.principal == claim.principal,
            idempotency_keys.c.key == claim.key,
        )
    ).one_or_none()
    if found is None:
        return
    if _utc(found.created_at) < datetime.now(UTC) - KEY_TTL:
        connection.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.principal == claim.principal,
                idempotency_keys.c.key == claim.key,
            )
        )
        return
    if (found.operation, found.fingerprint) != (claim.operation, claim.fingerprint):
        raise IdempotencyKeyReusedError(claim.key, found.operation)
    raise IdempotentReplay(found.resource_id)


def remember(
    connection: Connection,
    claim: IdempotencyClaim | None,
    resource_id: str,
    *,
    now: datetime | None = None,
) -> None:
    """Store ``claim``'s key with what it made, in the caller's transaction."""
    if claim is None:
        return
    now = now or datetime.now(UTC)
    connection.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < now - KEY_TTL)
    )
    connection.execute(
        insert(idempotency_keys).values(
            principal=claim.principal,
            key=claim.key,
            operation=claim.operation,
            fingerprint=claim.fingerprint,
            resource_id=resource_id[:256],
            created_at=now,
        )
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
