"""``/webhooks``: subscriptions as an admin writes and reads them, and their delivery log.

A subscription's ``secret`` appears in one answer only: the create's (and a rotation's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from jxc.contract import Text

WebhookUrl = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^[!-~]+$")]
"""Printable ASCII without spaces; central checks the scheme and host itself."""
EventType = Annotated[str, Field(min_length=1, max_length=97, pattern=r"^[a-z_.*]+$")]
SubscriptionId = Annotated[str, Field(pattern=r"^[A-Z]{1,4}[0-9]{1,10}$", max_length=16)]
DeliveryId = Annotated[str, Field(pattern=r"^[0-9a-f-]{36}$")]
DeliveryStatusName = Literal["pending", "delivered", "failed"]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(description="http(s) URL the events are POSTed to")
    events: list[EventType] = Field(
        min_length=1,
        max_length=50,
        description="'*', '<resource>.*' or '<resource>.<verb>' (purchase_order.approve)",
    )
    description: Annotated[Text, Field(max_length=200)] | None = None
    financial: bool = Field(
        default=False, description="send costs, prices and amounts (stripped otherwise)"
    )


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=50)
    description: Annotated[Text, Field(max_length=200)] | None = None
    active: bool | None = None
    financial: bool | None = None


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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


class SubscriptionWithSecret(SubscriptionOut):
    """The create's (or a rotation's) answer: the only time the secret is shown. A
    retried request (same ``Idempotency-Key``) is answered with ``secret`` null."""

    secret: str | None = Field(description="HMAC-SHA256 key of the signatures; keep it safe")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    delivery_id: str
    subscription_id: str
    event_seq: int = Field(description="the audit entry (event_id in the payload)")
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_after: int | None
