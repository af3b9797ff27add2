"""Outbound webhooks: who is told of what (subscriptions) and every attempt to tell them
(deliveries, the outbox and its log). See ``docs/integrations.md``.

The events themselves are the audit log's entries: every document command writes one in
its own transaction, and its ``seq`` is the commit order (the chain's head is locked until
the commit). A subscription's ``last_seq`` is how far the worker has read that log for it;
the worker turns each matching entry into one delivery row, in one transaction with the
cursor's move, so an entry is fanned out once and only once, whatever crashes between.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from central_api.models.base import metadata

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", String(16), primary_key=True),
    Column("url", String(2048), nullable=False),
    # Kept as given: the worker needs it to sign (HMAC), so it cannot be a one-way hash.
    # Never answered or logged after the create's own answer.
    Column("secret", String(128), nullable=False),
    Column("events", Text, nullable=False),
    Column("description", String(200), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("financial", Boolean, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", String(36), primary_key=True),
    Column(
        "subscription_id",
        String(16),
        ForeignKey("webhook_subscriptions.subscription_id", name="fk_webhook_deliveries_sub"),
        nullable=False,
    ),
    Column("event_seq", BigInteger, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("subscription_id", "event_seq", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
)
