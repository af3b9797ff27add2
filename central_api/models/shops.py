"""The secrets online shops sign their orders with, rotatable from the API
(``POST /api/v1/integrations/channels/{channel}/rotate-secret``; docs/integrations.md).

A channel with a row here signs with ``secret``; ``previous_secret`` is still accepted
until ``previous_until`` (the overlap a rotation grants, so the shop can switch without
refused orders), then never again. A channel without a row falls back to central's setting
``shop_secrets``, or signs nothing.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table

from central_api.models.base import metadata

shop_channels = Table(
    "shop_channels",
    metadata,
    Column("channel", String(64), primary_key=True),
    # Kept as made: checking an HMAC needs the secret itself, so it cannot be a one-way
    # hash (as webhook_subscriptions.secret). Answered once, by the rotation; never logged.
    Column("secret", String(128), nullable=False),
    Column("previous_secret", String(128), nullable=True),
    Column("previous_until", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("changed_by", String(64), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
