"""``POST /api/v1/integrations/orders``: an online shop places an order.

The shop signs in as its own API user, whose role grants ``sales_order.import`` (and the
financial field group: the shop sends its prices); limiting that user to some sites
limits the sites it may ship from. The order is made exactly once per (channel,
external_id) (``central_api.services.ecommerce``); a retry is answered 200 with
``Idempotent-Replayed: true``, a new order 201.

A channel with a secret in ``Settings.shop_secrets`` must also sign each request
(``Jxc-Shop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + raw body>``, the
outbound webhooks' scheme and its 300 s window): a stolen bearer token alone cannot place
that shop's orders, and a captured request cannot be replayed later.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import ERRORS, answer, refuse_unseen_prices
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.errors import UnauthorizedError
from central_api.schemas.ecommerce import ShopOrderIn, ShopOrderOut
from central_api.schemas.sales import SalesOrderOut
from central_api.services import ecommerce as service
from central_api.services import sales
from central_api.services.idempotency import IdempotentReplay
from central_api.services.webhooks import verify
from jxc.paths import INTEGRATION_ORDERS, below_api_root

router = APIRouter(prefix=below_api_root(INTEGRATION_ORDERS), tags=["integrations"])


SIGNATURE_HEADER = "Jxc-Shop-Signature"


async def check_shop_signature(
    request: Request,
    settings: SettingsDep,
    signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            max_length=1000,
            description="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + the raw body>, "
            "keyed with the channel's secret; required for a channel that has one",
        ),
    ] = None,
) -> None:
    """Refuse (401) an order for a channel with a secret unless its signature over the
    raw body is right and fresh. Runs on the bytes as sent: a body that is not an object
    with a channel is left to the body's validation (422)."""
    if not settings.shop_secrets:
        return
    raw = await request.body()
    try:
        channel = json.loads(raw).get("channel")
    except (ValueError, AttributeError, RecursionError):
        return
    secret = settings.shop_secrets.get(channel) if isinstance(channel, str) else None
    if secret is None:
        return
    if signature is None:
        raise UnauthorizedError(
            f"channel {channel!r} signs its orders: send the {SIGNATURE_HEADER} header"
        )
    if not verify(secret.get_secret_value(), signature, raw, now=time.time()):
        raise UnauthorizedError(
            f"{SIGNATURE_HEADER}: not a valid signature of this body with channel "
            f"{channel!r}'s secret, or older than 300 seconds"
        )


def _order(body: ShopOrderIn) -> service.ShopOrder:
    return service.ShopOrder(
        channel=body.channel,
        external_id=body.external_id,
        customer=body.customer,
        site_id=body.site_id,
        note=body.note,
        min_remaining_days=body.min_remaining_days,
        confirm=body.confirm,
        lines=[service.ShopLine(**line.model_dump()) for line in body.lines],
    )


@router.post(
    "",
    dependencies=[Requires(service.ACTION), Depends(check_shop_signature)],
    responses={
        **ERRORS,
        200: {"description": "A retry of an order already imported: that sales order."},
    },
    status_code=status.HTTP_201_CREATED,
)
def import_shop_order(
    *,
    body: ShopOrderIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ShopOrderOut:
    """A shop's order as a draft sales order (confirmed at once with ``confirm``);
    the same (channel, external_id) again: the same order, or 409 if its content differs."""
    refuse_unseen_prices(body.lines, principal)
    try:
        imported = service.import_order(
            connection,
            _order(body),
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        )
        so, refusal = imported.order, imported.confirm_refused
    except IdempotentReplay as replay:
        replayed(response)
        response.status_code = status.HTTP_200_OK
        so = sales.get_sales_order(connection, replay.resource_id, visible=principal.sites)
        refusal = None
    return ShopOrderOut(
        channel=body.channel,
        external_id=body.external_id,
        sales_order=answer(response, so, SalesOrderOut),
        confirm_refused=refusal,
    )
