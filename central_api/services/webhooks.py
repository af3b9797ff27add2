"""Outbound webhooks: document state changes and alerts, signed, retried, logged, replayable.

Where the events come from
--------------------------
Every document create and command ends with one audit entry written *in its own
transaction* (:func:`central_api.services.documents.document_write` calls
:func:`central_api.services.audit.record` last). So the audit log already is a
transactional outbox: an entry exists exactly when its change committed. And its ``seq``
is the commit order without gaps: the chain's head row is locked from the entry's insert
until the commit, so entry ``n + 1`` can only commit after entry ``n`` did. A reader that
has seen entry ``n`` has seen every entry before it, on SQLite and on PostgreSQL alike.

This module therefore adds nothing to the write path (no extra statement in any command,
no edit to the audited services): each subscription keeps a cursor, ``last_seq``, and the
worker's *fan-out* reads the entries after it, writes one delivery row per entry the
subscription's filter matches and moves the cursor, all in one transaction. A crash
before the commit fans the same entries out again; after it, never again (the rows and
the cursor moved together; ``(subscription_id, event_seq)`` is unique besides).

What is delivered
-----------------
Entries whose resource is a business document (:data:`EVENT_RESOURCES`) or an alert
(``alert.*``: whatever raises an alert records it in the audit log, as every write
does). Never users, roles, sites, sign-ins, syncs or webhooks themselves: those are not
the business's documents, and a webhook's own changes would otherwise echo.

Delivery
--------
A delivery is ``pending`` until a POST to the subscription's URL answers 2xx
(``delivered``), or its attempts run out (``failed``). After a failed attempt the next is
due after ``backoff * 2 ** (attempts - 1)`` seconds (at most an hour), drawn at random
from the upper half of that (jitter, so many receivers coming back at once are not all
retried in the same second). The worker *claims* due rows by pushing their
``next_attempt_at`` a lease ahead in a short transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several central processes share the work without sending a row twice),
sends outside any transaction, then writes the outcome. A process that dies while sending
leaves the row to be retried when the lease ends: delivery is *at least once*, and every
request carries the delivery's id for the receiver to drop a repeat.

Signing: ``Jxc-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>." + body)>``, signed afresh at each attempt; a receiver refuses a ``t`` more than
:data:`REPLAY_WINDOW_S` from its clock (``docs/integrations.md`` shows how to check).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from sqlalchemy import Connection, Engine, Row, insert, select, update

from central_api.core.config import Settings
from central_api.core.db import write_transaction
from central_api.errors import InvalidError, NotFoundError
from central_api.models.audit import audit_head, audit_log
from central_api.models.webhooks import webhook_deliveries, webhook_subscriptions
from central_api.services.audit import AUDIT_HEAD_ID, AuditContext, canonical_json, strip_financial
from central_api.services.documents import (
    check_limit,
    check_version,
    document_write,
    new_document_id,
    now_utc,
    utc,
)
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from jxc import __version__, uuid7

log = logging.getLogger("central_api.webhooks")

EVENT_RESOURCES = frozenset(
    {
        "requisition",
        "purchase_order",
        "purchase_exception",
        "purchase_receipt",
        "purchase_return",
        "supplier_invoice",
        "price_list",
        "sales_order",
        "shipment",
        "customer_return",
        "sales_invoice",
        "other_receipt",
        "other_issue",
        "write_off",
        "transfer",
        "transfer_exception",
        "stock_count",
        "alert",
    }
)
"""The audit resources whose entries are webhook events (``<resource>.<verb>``)."""

SIGNATURE_HEADER = "Jxc-Webhook-Signature"
DELIVERY_HEADER = "Jxc-Webhook-Id"
EVENT_HEADER = "Jxc-Webhook-Event"
REPLAY_WINDOW_S = 300
"""How far a signature's timestamp may be from the receiver's clock (both ways)."""
MAX_BACKOFF_S = 3600.0
MAX_EVENTS = 50
FAN_OUT_BATCH = 500
"""Audit entries read per subscription per pass: a backlog is worked off in steps."""
CLAIM_BATCH = 20
"""Deliveries one pass sends (one after another); the next pass sends the next ones."""

_EVENT_PATTERN = re.compile(r"\*|([a-z][a-z_]{0,47})\.(\*|[a-z][a-z_]{0,47})")


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# --- refusals ------------------------------------------------------------------------


class UnknownSubscriptionError(NotFoundError):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"webhook {subscription_id!r} does not exist")


class UnknownDeliveryError(NotFoundError):
    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"webhook delivery {delivery_id!r} does not exist")


# --- checks ---------------------------------------------------------------------------


def check_events(patterns: Sequence[str]) -> list[str]:
    """The event filter, checked: ``*`` (every event), ``<resource>.*`` or an exact
    ``<resource>.<verb>``, each naming a resource that has events (422 otherwise)."""
    if not 1 <= len(patterns) <= MAX_EVENTS:
        raise InvalidError(f"events: give 1 to {MAX_EVENTS} event types ('*' for all)")
    kept: list[str] = []
    for index, pattern in enumerate(patterns):
        found = _EVENT_PATTERN.fullmatch(pattern)
        if found is None:
            raise InvalidError(
                f"events[{index}]: {pattern[:80]!r} is not '*', '<resource>.*' or "
                "'<resource>.<verb>' (lower case)"
            )
        resource = found.group(1)
        if resource is not None and resource not in EVENT_RESOURCES:
            known = ", ".join(sorted(EVENT_RESOURCES))
            raise InvalidError(
                f"events[{index}]: {resource!r} has no webhook events; these do: {known}"
            )
        if pattern not in kept:
            kept.append(pattern)
    return kept


def matches(patterns: Sequence[str], action: str) -> bool:
    """Whether an audit ``action`` is an event and ``patterns`` ask for it."""
    resource, _, _verb = action.partition(".")
    if resource not in EVENT_RESOURCES:
        return False
    return any(p in ("*", action, f"{resource}.*") for p in patterns)


def _blocked_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL with a host and no credentials in it (they would show in the log);
    a literal loopback, private or link-local address (or ``localhost``) is refused
    unless ``allow_private``. Names are checked again when delivering, once resolved."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidError(f"url: not a valid URL ({exc})") from None
    if parts.scheme not in {"http", "https"}:
        raise InvalidError("url: only http:// and https:// URLs can receive webhooks")
    host = parts.hostname
    if not host:
        raise InvalidError("url: names no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidError("url: must not carry a user name or password; sign with the secret")
    if port == 0:
        raise InvalidError("url: port 0 cannot be connected to")
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise InvalidError("url: loopback targets are refused (webhook_allow_private)")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return url
        if _blocked_address(literal):
            raise InvalidError(
                f"url: {host} is a loopback, private or reserved address; such targets are "
                "refused unless central's setting webhook_allow_private is on"
            )
    return url


def _resolves_public(url: str) -> str | None:
    """None if every address ``url``'s host resolves to is public, else why not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in found:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if _blocked_address(address):
            return f"{host} resolves to {address}, a private or reserved address (refused)"
    return None


# --- signing -----------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, window_s: int = REPLAY_WINDOW_S
) -> bool:
    """What a receiver checks (written for receivers in Python; the docs show it): the
    header parses, its time is within ``window_s`` of ``now``, and one ``v1`` matches."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > window_s:
        return False
    wanted = sign(secret, body, timestamp).rsplit("v1=", 1)[1]
    return any(hmac.compare_digest(wanted, offered) for offered in fields.get("v1", []))


# --- subscriptions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as answered: never its secret."""

    subscription_id: str
    url: str
    events: list[str]
    description: str | None
    active: bool
    financial: bool
    version: int
    created_by: str
    created_at: datetime
    changed_at: datetime
    secret: str | None = None
    """Only in the answer to the create (and to a rotation): shown once."""


def _subscription(row: Row[Any], secret: str | None = None) -> Subscription:
    return Subscription(
        subscription_id=row.subscription_id,
        url=row.url,
        events=row.events.split(),
        description=row.description,
        active=bool(row.active),
        financial=bool(row.financial),
        version=int(row.version),
        created_by=row.created_by,
        created_at=utc(row.created_at) or row.created_at,
        changed_at=utc(row.changed_at) or row.changed_at,
        secret=secret,
    )


def _safe(found: Subscription) -> dict[str, Any]:
    """What the audit log keeps of a subscription: everything but the secret."""
    return {
        "url": found.url,
        "events": found.events,
        "description": found.description,
        "active": found.active,
        "financial": found.financial,
        "version": found.version,
    }


def _head_seq(connection: Connection) -> int:
    seq = connection.execute(
        select(audit_head.c.seq).where(audit_head.c.id == AUDIT_HEAD_ID)
    ).scalar_one_or_none()
    return int(seq or 0)


def _read(connection: Connection, subscription_id: str, *, lock: bool = False) -> Row[Any]:
    query = select(webhook_subscriptions).where(
        webhook_subscriptions.c.subscription_id == subscription_id
    )
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    if row is None:
        raise UnknownSubscriptionError(subscription_id)
    return row


def create_subscription(
    connection: Connection,
    *,
    url: str,
    events: Sequence[str],
    description: str | None,
    financial: bool,
    actor: str,
    audit: AuditContext,
    claim: IdempotencyClaim | None,
    allow_private: bool,
) -> Subscription:
    """A new subscription with a fresh secret (answered this once), told of the events
    committed after it. A retried key raises ``IdempotentReplay`` (answered without it)."""
    url = check_url(url, allow_private=allow_private)
    patterns = check_events(events)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with document_write(connection, action="webhook.create", audit=audit, claim=claim) as written:
        subscription_id = new_document_id(
            connection,
            sequence="#webhook",
            prefix="WH",
            column=webhook_subscriptions.c.subscription_id,
        )
        connection.execute(
            insert(webhook_subscriptions).values(
                subscription_id=subscription_id,
                url=url,
                secret=secret,
                events=" ".join(patterns),
                description=description,
                active=True,
                financial=financial,
                last_seq=_head_seq(connection),
                version=1,
                created_by=actor,
                created_at=written.now,
                changed_at=written.now,
            )
        )
        made = _subscription(_read(connection, subscription_id), secret)
        written.doc_id = subscription_id
        written.after = _safe(made)
    return made


def get_subscription(connection: Connection, subscription_id: str) -> Subscription:
    with read_snapshot(connection):
        return _subscription(_read(connection, subscription_id))


def list_subscriptions(connection: Connection) -> list[Subscription]:
    with read_snapshot(connection):
        rows = connection.execute(
            select(webhook_subscriptions).order_by(webhook_subscriptions.c.subscription_id)
        ).all()
    return [_subscription(row) for row in rows]


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """The fields a PATCH gave (None: unchanged)."""

    url: str | None = None
    events: Sequence[str] | None = None
    description: str | None = None
    active: bool | None = None
    financial: bool | None = None


def update_subscription(
    connection: Connection,
    subscription_id: str,
    change: SubscriptionChange,
    *,
    audit: AuditContext,
    if_match: str | None,
    allow_private: bool,
) -> Subscription:
    """Change a subscription. Switched back on, it starts from the events committed
    after that: what happened while it was off is not sent (replay by hand if wanted)."""
    values: dict[str, Any] = {}
    if change.url is not None:
        values["url"] = check_url(change.url, allow_private=allow_private)
    if change.events is not None:
        values["events"] = " ".join(check_events(change.events))
    if change.description is not None:
        values["description"] = change.description or None
    if change.financial is not None:
        values["financial"] = change.financial
    with document_write(connection, action="webhook.update", audit=audit) as written:
        row = _read(connection, subscription_id, lock=True)
        check_version("webhook", subscription_id, int(row.version), if_match)
        before = _subscription(row)
        if change.active is not None:
            values["active"] = change.active
            if change.active and not row.active:
                values["last_seq"] = _head_seq(connection)
        connection.execute(
            update(webhook_subscriptions)
            .where(webhook_subscriptions.c.subscription_id == subscription_id)
            .values(**values, version=row.version + 1, changed_at=written.now)
        )
        after = _subscription(_read(connection, subscription_id))
        written.doc_id = subscription_id
        written.before, written.after = _safe(before), _safe(after)
    return after


def rotate_secret(
    connection: Connection,
    subscription_id: str,
    *,
    audit: AuditContext,
    claim: IdempotencyClaim | None,
) -> Subscription:
    """A new secret, answered this once; deliveries from now on are signed with it.
    (A retried key raises ``IdempotentReplay``: the secret is not shown twice.)"""
    secret = "whsec_" + secrets.token_urlsafe(32)
    with document_write(
        connection, action="webhook.rotate_secret", audit=audit, claim=claim
    ) as written:
        row = _read(connection, subscription_id, lock=True)
        connection.execute(
            update(webhook_subscriptions)
            .where(webhook_subscriptions.c.subscription_id == subscription_id)
            .values(secret=secret, version=row.version + 1, changed_at=written.now)
        )
        written.doc_id = subscription_id
        written.after = {"version": row.version + 1}
        return _subscription(_read(connection, subscription_id), secret)


# --- the delivery log --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    subscription_id: str
    event_seq: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        delivery_id=row.delivery_id,
        subscription_id=row.subscription_id,
        event_seq=int(row.event_seq),
        event_type=row.event_type,
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=utc(row.next_attempt_at),
        last_attempt_at=utc(row.last_attempt_at),
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=utc(row.created_at) or row.created_at,
        delivered_at=utc(row.delivered_at),
    )


def list_deliveries(
    connection: Connection,
    subscription_id: str,
    *,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[Delivery], int | None]:
    """A page of one subscription's deliveries by event (oldest first) and the cursor
    (an event seq) of the next page."""
    check_limit(limit)
    columns = webhook_deliveries.c
    conditions = [columns.subscription_id == subscription_id]
    if status is not None:
        conditions.append(columns.status == status)
    if after is not None:
        conditions.append(columns.event_seq > after)
    with read_snapshot(connection):
        _read(connection, subscription_id)
        rows = connection.execute(
            select(webhook_deliveries)
            .where(*conditions)
            .order_by(columns.event_seq)
            .limit(limit + 1)
        ).all()
    found = [_delivery(row) for row in rows[:limit]]
    return found, (found[-1].event_seq if len(rows) > limit else None)


def get_delivery(connection: Connection, delivery_id: str) -> Delivery:
    with read_snapshot(connection):
        row = connection.execute(
            select(webhook_deliveries).where(webhook_deliveries.c.delivery_id == delivery_id)
        ).one_or_none()
    if row is None:
        raise UnknownDeliveryError(delivery_id)
    return _delivery(row)


def replay_delivery(
    connection: Connection,
    delivery_id: str,
    *,
    audit: AuditContext,
    claim: IdempotencyClaim | None,
) -> Delivery:
    """Send a delivery again, whatever its state (a receiver that lost one, a failed one
    whose receiver is fixed): pending, due now, with a fresh count of attempts."""
    with document_write(connection, action="webhook.replay", audit=audit, claim=claim) as written:
        row = connection.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.delivery_id == delivery_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownDeliveryError(delivery_id)
        connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.delivery_id == delivery_id)
            .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=written.now)
        )
        written.doc_id = delivery_id
        written.audit_id = delivery_id
        written.before = {"status": row.status, "attempts": int(row.attempts)}
        written.after = {"status": DeliveryStatus.PENDING, "attempts": 0}
        written.site_id = None
    return get_delivery(connection, delivery_id)


# --- the worker's passes -----------------------------------------------------------------


def _payload(entry: Row[Any], financial: bool) -> str:
    before = None if entry.before is None else json.loads(entry.before)
    after = None if entry.after is None else json.loads(entry.after)
    if not financial:
        before, after = strip_financial(before), strip_financial(after)
    return canonical_json(
        {
            "event_id": int(entry.seq),
            "type": entry.action,
            "occurred_at": utc(entry.at),
            "resource": entry.resource,
            "resource_id": entry.resource_id,
            "site_id": entry.site_id,
            "actor": {"kind": entry.actor_kind, "id": entry.actor_id},
            "before": before,
            "after": after,
        }
    )


def fan_out(connection: Connection, *, now: datetime | None = None) -> int:
    """Turn the audit entries after each active subscription's cursor into deliveries
    (one transaction); the number of deliveries made."""
    now = now or now_utc()
    made = 0
    with write_transaction(connection):
        subscriptions = connection.execute(
            select(
                webhook_subscriptions.c.subscription_id,
                webhook_subscriptions.c.events,
                webhook_subscriptions.c.financial,
                webhook_subscriptions.c.last_seq,
            )
            .where(webhook_subscriptions.c.active.is_(True))
            .order_by(webhook_subscriptions.c.subscription_id)
            .with_for_update(skip_locked=True)
        ).all()
        for sub in subscriptions:
            entries = connection.execute(
                select(audit_log)
                .where(audit_log.c.seq > sub.last_seq)
                .order_by(audit_log.c.seq)
                .limit(FAN_OUT_BATCH)
            ).all()
            if not entries:
                continue
            patterns = sub.events.split()
            rows = [
                {
                    "delivery_id": str(uuid7()),
                    "subscription_id": sub.subscription_id,
                    "event_seq": int(entry.seq),
                    "event_type": entry.action,
                    "payload": _payload(entry, bool(sub.financial)),
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for entry in entries
                if matches(patterns, entry.action)
            ]
            if rows:
                connection.execute(insert(webhook_deliveries), rows)
                made += len(rows)
            connection.execute(
                update(webhook_subscriptions)
                .where(webhook_subscriptions.c.subscription_id == sub.subscription_id)
                .values(last_seq=int(entries[-1].seq))
            )
    return made


@dataclass(frozen=True, slots=True)
class _Due:
    delivery_id: str
    event_type: str
    payload: str
    attempts: int
    url: str
    secret: str


def _claim_due(connection: Connection, now: datetime, lease: timedelta) -> list[_Due]:
    """Take up to :data:`CLAIM_BATCH` due deliveries of active subscriptions, pushing
    their next attempt a lease ahead so no other worker takes them meanwhile."""
    d, s = webhook_deliveries.c, webhook_subscriptions.c
    with write_transaction(connection):
        ids = (
            connection.execute(
                select(d.delivery_id)
                .join(webhook_subscriptions, s.subscription_id == d.subscription_id)
                .where(
                    d.status == DeliveryStatus.PENDING,
                    d.next_attempt_at <= now,
                    s.active.is_(True),
                )
                .order_by(d.next_attempt_at, d.delivery_id)
                .limit(CLAIM_BATCH)
                .with_for_update(of=webhook_deliveries, skip_locked=True)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        connection.execute(
            update(webhook_deliveries)
            .where(d.delivery_id.in_(ids))
            .values(next_attempt_at=now + lease)
        )
        rows = connection.execute(
            select(d.delivery_id, d.event_type, d.payload, d.attempts, s.url, s.secret)
            .join(webhook_subscriptions, s.subscription_id == d.subscription_id)
            .where(d.delivery_id.in_(ids))
            .order_by(d.delivery_id)
        ).all()
    return [
        _Due(row.delivery_id, row.event_type, row.payload, int(row.attempts), row.url, row.secret)
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    status_code: int | None
    error: str | None


def _send(client: httpx.Client, due: _Due, *, allow_private: bool) -> _Outcome:
    """One POST; never raises. The secret and the body are not logged."""
    if not allow_private:
        refused = _resolves_public(due.url)
        if refused is not None:
            return _Outcome(False, None, refused)
    body = due.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"jxc-webhooks/{__version__}",
        DELIVERY_HEADER: due.delivery_id,
        EVENT_HEADER: due.event_type,
        SIGNATURE_HEADER: sign(due.secret, body, int(time.time())),
    }
    try:
        answer = client.post(due.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return _Outcome(False, None, f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= answer.status_code < 300:
        return _Outcome(True, answer.status_code, None)
    return _Outcome(False, answer.status_code, f"answered {answer.status_code}")


def backoff_s(attempts: int, base_s: float, pick: Callable[[float, float], float]) -> float:
    """The wait after ``attempts`` failed attempts: ``base * 2 ** (attempts - 1)`` capped
    at an hour, drawn from its upper half by ``pick`` (``random.uniform``)."""
    ceiling = min(base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return pick(ceiling / 2, ceiling)


_jitter = random.SystemRandom()


def _record_outcome(
    connection: Connection,
    due: _Due,
    outcome: _Outcome,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    attempts = due.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.ok:
        values |= {"status": DeliveryStatus.DELIVERED, "next_attempt_at": None, "delivered_at": now}
    elif attempts >= settings.webhook_max_attempts:
        values |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    else:
        wait = backoff_s(attempts, settings.webhook_backoff_s, _jitter.uniform)
        values["next_attempt_at"] = now + timedelta(seconds=wait)
    with write_transaction(connection):
        # Only if nobody replayed it meanwhile (a replay resets attempts to 0).
        connection.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.delivery_id == due.delivery_id,
                webhook_deliveries.c.attempts == due.attempts,
                webhook_deliveries.c.status == DeliveryStatus.PENDING,
            )
            .values(**values)
        )


@dataclass(slots=True)
class PassReport:
    """What one pass of the worker did."""

    fanned_out: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    errors: list[str] = field(default_factory=list)


def _any_active(connection: Connection) -> bool:
    with read_snapshot(connection):
        found = connection.execute(
            select(webhook_subscriptions.c.subscription_id)
            .where(webhook_subscriptions.c.active.is_(True))
            .limit(1)
        ).first()
    return found is not None


def run_pass(
    engine: Engine,
    settings: Settings,
    *,
    now: Callable[[], datetime] = now_utc,
    stop: Callable[[], bool] = lambda: False,
) -> PassReport:
    """Fan out, then send what is due, once. ``now`` is the clock the schedule reads
    (signatures always carry the real time); ``stop`` is asked between sends."""
    report = PassReport()
    lease = timedelta(seconds=settings.webhook_timeout_s + 60)
    with engine.connect() as connection:
        if not _any_active(connection):
            return report  # the usual case: one read, no write lock taken
        report.fanned_out = fan_out(connection, now=now())
        due = _claim_due(connection, now(), lease)
    if not due:
        return report
    timeout = httpx.Timeout(settings.webhook_timeout_s)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for one in due:
            if stop():
                break  # its lease runs out and a later pass sends it
            outcome = _send(client, one, allow_private=settings.webhook_allow_private)
            with engine.connect() as connection:
                _record_outcome(connection, one, outcome, now=now(), settings=settings)
            if outcome.ok:
                report.delivered += 1
            else:
                report.failed_attempts += 1
                host = urlsplit(one.url).hostname
                log.warning(
                    "webhook delivery %s to %s failed (attempt %d): %s",
                    one.delivery_id,
                    host,
                    one.attempts + 1,
                    outcome.error,
                )
    return report


class WebhookWorker:
    """The background worker of one central process: an asyncio task (started in the
    app's lifespan) that runs :func:`run_pass` in a worker thread every poll, so no
    request waits for it. Its state is all in the database: a restarted process picks up
    where the last one stopped. ``settings`` is asked at each poll (the app's current
    settings; a poll of 0 pauses it)."""

    def __init__(self, engine: Engine, settings: Callable[[], Settings]) -> None:
        self.engine = engine
        self.settings = settings
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jxc-webhooks")

    async def stop(self) -> None:
        """Finish the send under way (at most one timeout), then end."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            poll = self.settings().webhook_poll_s
            await asyncio.sleep(poll or 1.0)
            settings = self.settings()
            if settings.webhook_poll_s <= 0:
                continue
            try:
                await anyio.to_thread.run_sync(self._pass, settings)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the worker for good
                log.exception("webhook worker pass failed; trying again next poll")

    def _pass(self, settings: Settings) -> None:
        run_pass(self.engine, settings, stop=lambda: self._stopping)
