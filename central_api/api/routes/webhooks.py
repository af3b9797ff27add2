"""``/api/v1/webhooks``: outbound webhook subscriptions, their delivery log, replay by hand.

Admins only (``webhook.manage``): a subscription sends the business's documents to an
address outside. Every write is audited (``webhook.create``, ``.update``,
``.rotate_secret``, ``.replay``) without the secret; creates and commands take an
``Idempotency-Key``. The design is in ``docs/integrations.md``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import CallerDep, Limit, replaying
from central_api.api.permissions import Requires
from central_api.errors import ForbiddenError
from central_api.schemas.webhooks import (
    DeliveryId,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatusName,
    SubscriptionId,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
    SubscriptionWithSecret,
)
from central_api.services import webhooks as service
from jxc.paths import WEBHOOKS, below_api_root

router = APIRouter(prefix=below_api_root(WEBHOOKS), tags=["webhooks"])

MANAGE = Requires("webhook.manage")

_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Financial payloads asked for by a role that does not see them."},
    404: {"description": "No such webhook or delivery."},
    412: {"description": "If-Match names a version that is no longer current."},
    422: {"description": "Invalid URL, event type or field; the message names it."},
}


@router.post(
    "",
    dependencies=[MANAGE],
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
)
def create_webhook(
    body: SubscriptionIn, caller: CallerDep, settings: SettingsDep
) -> SubscriptionWithSecret:
    """Subscribe a URL to events; the answer holds the signing secret, shown this once."""
    if body.financial and not caller.principal.financial:
        raise ForbiddenError("financial: your roles do not show amounts, so you may not send them")

    def run() -> service.Subscription:
        return service.create_subscription(
            caller.connection,
            url=body.url,
            events=body.events,
            description=body.description,
            financial=body.financial,
            actor=caller.principal.name,
            audit=caller.audit,
            claim=caller.claim,
            allow_private=settings.webhook_allow_private,
        )

    made = replaying(
        caller.response, run, lambda found: service.get_subscription(caller.connection, found)
    )
    return SubscriptionWithSecret.model_validate(made)


@router.get("", dependencies=[MANAGE])
def read_webhooks(connection: ConnDep) -> list[SubscriptionOut]:
    """Every subscription (never their secrets), by id."""
    return [SubscriptionOut.model_validate(s) for s in service.list_subscriptions(connection)]


@router.get("/{subscription_id}", dependencies=[MANAGE], responses=_ERRORS)
def read_webhook(subscription_id: SubscriptionId, connection: ConnDep) -> SubscriptionOut:
    return SubscriptionOut.model_validate(service.get_subscription(connection, subscription_id))


@router.patch("/{subscription_id}", dependencies=[MANAGE], responses=_ERRORS)
def change_webhook(
    subscription_id: SubscriptionId,
    body: SubscriptionPatch,
    caller: CallerDep,
    settings: SettingsDep,
) -> SubscriptionOut:
    """Change the URL, events, description, financial or active; ``active: false``
    holds its pending deliveries, and back on it starts from the events after that."""
    if body.financial and not caller.principal.financial:
        raise ForbiddenError("financial: your roles do not show amounts, so you may not send them")
    found = service.update_subscription(
        caller.connection,
        subscription_id,
        service.SubscriptionChange(
            url=body.url,
            events=body.events,
            description=body.description,
            active=body.active,
            financial=body.financial,
        ),
        audit=caller.audit,
        if_match=caller.if_match,
        allow_private=settings.webhook_allow_private,
    )
    caller.response.headers["ETag"] = f'"{found.version}"'
    return SubscriptionOut.model_validate(found)


@router.post("/{subscription_id}/rotate-secret", dependencies=[MANAGE], responses=_ERRORS)
def rotate_webhook_secret(
    subscription_id: SubscriptionId, caller: CallerDep
) -> SubscriptionWithSecret:
    """A new signing secret, shown this once; the old one stops signing at once."""

    def run() -> service.Subscription:
        return service.rotate_secret(
            caller.connection, subscription_id, audit=caller.audit, claim=caller.claim
        )

    found = replaying(
        caller.response, run, lambda found: service.get_subscription(caller.connection, found)
    )
    return SubscriptionWithSecret.model_validate(found)


@router.get("/{subscription_id}/deliveries", dependencies=[MANAGE], responses=_ERRORS)
def read_deliveries(
    subscription_id: SubscriptionId,
    connection: ConnDep,
    limit: Limit = 100,
    *,
    status_is: Annotated[DeliveryStatusName | None, Query(alias="status")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> DeliveryPage:
    """The delivery log: each event's status, attempts, last answer and next attempt."""
    found, next_after = service.list_deliveries(
        connection, subscription_id, status=status_is, after=after, limit=limit
    )
    return DeliveryPage(
        deliveries=[DeliveryOut.model_validate(one) for one in found], next_after=next_after
    )


@router.get("/deliveries/{delivery_id}", dependencies=[MANAGE], responses=_ERRORS)
def read_delivery(delivery_id: DeliveryId, connection: ConnDep) -> DeliveryOut:
    return DeliveryOut.model_validate(service.get_delivery(connection, delivery_id))


@router.post("/deliveries/{delivery_id}/replay", dependencies=[MANAGE], responses=_ERRORS)
def replay_delivery(delivery_id: DeliveryId, caller: CallerDep) -> DeliveryOut:
    """Send a delivery again now (delivered, failed or pending), attempts counted anew."""

    def run() -> service.Delivery:
        return service.replay_delivery(
            caller.connection, delivery_id, audit=caller.audit, claim=caller.claim
        )

    found = replaying(
        caller.response, run, lambda found: service.get_delivery(caller.connection, found)
    )
    return DeliveryOut.model_validate(found)
