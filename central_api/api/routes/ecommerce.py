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

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Request, Response, status
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import ERRORS, CallerDep, answer, refuse_unseen_prices, replaying
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.api.permissions import Requires
from central_api.core.config import Settings
from central_api.core.principal import PrincipalDep
from central_api.errors import UnauthorizedError
from central_api.schemas.ecommerce import (
    Channel,
    ChannelOut,
    ChannelWithSecret,
    RotateChannelIn,
    ShopOrderIn,
    ShopOrderOut,
)
from central_api.schemas.sales import SalesOrderOut
from central_api.services import ecommerce as service
from central_api.services import sales
from central_api.services.documents import now_utc
from central_api.services.idempotency import IdempotentReplay
from central_api.services.webhooks import verify
from jxc.paths import INTEGRATION_CHANNELS, INTEGRATION_ORDERS, below_api_root

router = APIRouter(prefix=below_api_root(INTEGRATION_ORDERS), tags=["integrations"])
channels_router = APIRouter(prefix=below_api_root(INTEGRATION_CHANNELS), tags=["integrations"])
MANAGE_CHANNELS = Requires("shop_channel.manage")


SIGNATURE_HEADER = "Jxc-Shop-Signature"


@dataclass(frozen=True, slots=True)
class SignedBody:
    """The raw body as sent (what a signature covers) and the signature header."""

    raw: bytes
    signature: str | None


async def signed_body(
    request: Request,
    signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            max_length=1000,
            description="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + the raw body>, "
            "keyed with the channel's secret; required for a channel that has one",
        ),
    ] = None,
) -> SignedBody:
    return SignedBody(await request.body(), signature)


def check_shop_signature(
    connection: Connection, settings: Settings, channel: str, signed: SignedBody
) -> None:
    """Refuse (401) an order of a channel that signs unless its signature over the raw
    body is right and fresh, with the channel's secret or, during a rotation's overlap,
    the one it replaced. Checked before anything is looked up or written."""
    configured = {name: value.get_secret_value() for name, value in settings.shop_secrets.items()}
    accepted = service.signing_secrets(connection, channel, configured, now=now_utc())
    if not accepted:
        return
    if signed.signature is None:
        raise UnauthorizedError(
            f"channel {channel!r} signs its orders: send the {SIGNATURE_HEADER} header"
        )
    now = time.time()
    if not any(verify(secret, signed.signature, signed.raw, now=now) for secret in accepted):
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
    dependencies=[Requires(service.ACTION)],
    responses={
        **ERRORS,
        200: {"description": "A retry of an order already imported: that sales order."},
    },
    status_code=status.HTTP_201_CREATED,
)
def import_shop_order(
    *,
    body: ShopOrderIn,
    signed: Annotated[SignedBody, Depends(signed_body)],
    connection: ConnDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ShopOrderOut:
    """A shop's order as a draft sales order (confirmed at once with ``confirm``);
    the same (channel, external_id) again: the same order, or 409 if its content differs."""
    check_shop_signature(connection, settings, body.channel, signed)
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


ChannelName = Annotated[Channel, Path(description="the channel, as its orders name it")]


def _configured(settings: Settings) -> dict[str, str]:
    return {name: value.get_secret_value() for name, value in settings.shop_secrets.items()}


@channels_router.get("", dependencies=[MANAGE_CHANNELS])
def read_channels(connection: ConnDep, settings: SettingsDep) -> list[ChannelOut]:
    """Every channel whose orders must be signed: rotated at central, or in the setting
    ``shop_secrets`` only; never the secrets."""
    found = service.list_channels(connection, _configured(settings))
    return [ChannelOut.model_validate(one) for one in found]


@channels_router.post(
    "/{channel}/rotate-secret",
    dependencies=[MANAGE_CHANNELS],
    responses={422: {"description": "overlap_s out of range."}},
)
def rotate_channel_secret(
    channel: ChannelName,
    caller: CallerDep,
    settings: SettingsDep,
    body: Annotated[RotateChannelIn | None, Body()] = None,
) -> ChannelWithSecret:
    """A new signing secret for the channel, shown this once; the old one (central's or
    the setting's) is still accepted for ``overlap_s`` seconds (the setting
    ``shop_secret_overlap_s``, a day, if not given), so the shop can switch without a
    refused order. A channel that signed nothing must sign from now on."""
    overlap = body.overlap_s if body is not None and body.overlap_s is not None else None

    def run() -> service.ChannelSigning:
        return service.rotate_channel_secret(
            caller.connection,
            channel,
            overlap_s=settings.shop_secret_overlap_s if overlap is None else overlap,
            configured=_configured(settings),
            actor=caller.principal.name,
            audit=caller.audit,
            claim=caller.claim,
        )

    found = replaying(
        caller.response, run, lambda name: service.get_channel(caller.connection, name)
    )
    return ChannelWithSecret.model_validate(found)
