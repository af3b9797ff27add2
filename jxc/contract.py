"""The versioned wire contract between an edge agent and the central service.

Everything that crosses the network between the two sides is one of these models. Both
sides validate with the same code, so a field rule changed here changes on both at once.

Quantities and money are :class:`~decimal.Decimal` in Python and strings on the wire:
a JSON number would pass through a binary float somewhere along the way, so a float on
the wire is refused rather than silently rounded.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

CONTRACT_VERSION: Literal[1] = 1
"""Bumped when a change to these models would be misread by the other side."""

DECIMAL_PLACES = 6
"""Finest step of any quantity or money amount. Central stores micro-units as integers."""

MAX_ABS_AMOUNT = Decimal(10) ** 12
MAX_EVENTS_PER_BATCH = 5000


def _refuse_inexact(value: object) -> object:
    """Let through strings, ints and Decimals; refuse floats before pydantic coerces them."""
    if isinstance(value, bool | float):
        raise ValueError(
            'must be an exact decimal written as a string, e.g. "12.5", not a JSON number'
        )
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    return value


def _canonical_decimal(value: Decimal) -> Decimal:
    """One spelling per amount, so that ``"1.50"`` and ``"1.5"`` hash the same."""
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if abs(value) >= MAX_ABS_AMOUNT:
        raise ValueError(f"must be smaller than {MAX_ABS_AMOUNT} in magnitude")
    if value.is_zero():
        return Decimal(0)  # "-0" too: central stores both as 0, so they must be one value
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMAL_PLACES:
        raise ValueError(f"has more than {DECIMAL_PLACES} decimal places")
    return Decimal(format(normal, "f"))


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_refuse_inexact),
    AfterValidator(_canonical_decimal),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]
"""A quantity or amount: exact, at most six decimal places, a string in JSON."""

SITE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
SiteId = Annotated[str, Field(pattern=SITE_ID_PATTERN)]
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
"""No C0 control character or DEL: PostgreSQL refuses NUL in text outright, and a tab or
a line break in a code or a reference is a scanner's or a typist's slip, not data."""
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_CONTROL)]


class EventKind(StrEnum):
    """Every way stock can move. Corrections are new events, never edits."""

    RECEIPT = "receipt"
    ISSUE = "issue"
    SALE = "sale"
    RETURN = "return"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    ADJUSTMENT = "adjustment"
    SCRAP = "scrap"


INBOUND_KINDS = frozenset({EventKind.RECEIPT, EventKind.RETURN, EventKind.TRANSFER_IN})
OUTBOUND_KINDS = frozenset(
    {EventKind.ISSUE, EventKind.SALE, EventKind.TRANSFER_OUT, EventKind.SCRAP}
)


class LedgerEvent(BaseModel):
    """One immutable stock movement, made at the edge and merged at central."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    site_id: SiteId
    seq: int = Field(ge=1, description="gapless per site, assigned with the event")
    occurred_at: datetime = Field(description="edge clock, UTC")
    kind: EventKind
    item: Code
    lot: Annotated[str, Field(min_length=1, max_length=40, pattern=_NO_CONTROL)] | None = None
    expiry: date | None = None
    location: Code
    qty: ExactDecimal = Field(description="signed by kind: positive in, negative out")
    uom: Annotated[str, Field(min_length=1, max_length=16, pattern=_NO_CONTROL)]
    unit_cost: ExactDecimal | None = None
    ref: Annotated[str, Field(max_length=128, pattern=_NO_CONTROL)] | None = None
    device_id: Annotated[str, Field(max_length=64, pattern=_NO_CONTROL)] | None = None
    actor: Annotated[str, Field(max_length=64, pattern=_NO_CONTROL)] | None = None

    @field_validator("event_id")
    @classmethod
    def _must_be_v7(cls, value: uuid.UUID) -> uuid.UUID:
        if value.version != 7:
            raise ValueError("must be a UUIDv7 (time-ordered) made at the edge")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _must_be_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-25T10:00:00Z")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _sign_matches_kind(self) -> Self:
        if self.kind in INBOUND_KINDS and self.qty <= 0:
            raise ValueError(f"qty of a {self.kind} must be positive, got {self.qty}")
        if self.kind in OUTBOUND_KINDS and self.qty >= 0:
            raise ValueError(f"qty of a {self.kind} must be negative, got {self.qty}")
        if self.kind is EventKind.ADJUSTMENT and self.qty == 0:
            raise ValueError("qty of an adjustment must not be zero")
        if self.unit_cost is not None and self.unit_cost < 0:
            raise ValueError("unit_cost must not be negative")
        return self

    def content_digest(self, *, event_id_text: str | None = None) -> str:
        """SHA-256 of the canonical JSON form: equal content, equal digest, on both sides.

        A fingerprint of an event's content that any party can compute: the chaos tests
        compare the edge's ledger with central's by it. (Central itself tells a replay from
        a conflicting event by comparing the held event with the pushed one value by
        value, which needs no digest stored per event; see ``central_api.services.ingest``.)

        The canonical form is ``json.dumps(self.model_dump(mode="json"), sort_keys=True,
        separators=(",", ":"))``, written out field by field here, in sorted key order, with
        the same escaping (``json``'s own encoder, ASCII only) and the same spelling of every
        value as pydantic's JSON mode: about four times cheaper, and byte for byte the same
        string (``_DIGEST_FIELDS`` below fails the import if a field is added without being
        hashed here). ``event_id_text`` is ``str(self.event_id)`` if the caller already has
        it: spelling a UUID out is a tenth of the work.
        """
        occurred_at = self.occurred_at
        if occurred_at.tzinfo is not UTC:
            # Validation always leaves UTC; only a model_construct()ed event lands here.
            return _sha256(_canonical_json_slow(self))
        expiry = "null" if self.expiry is None else f'"{self.expiry.isoformat()}"'
        unit_cost = "null" if self.unit_cost is None else f'"{self.unit_cost:f}"'
        canonical = (
            f'{{"actor":{_json_text(self.actor)},"device_id":{_json_text(self.device_id)},'
            f'"event_id":"{event_id_text or self.event_id}",'
            f'"expiry":{expiry},'
            f'"item":{_json_str(self.item)},"kind":{_json_str(self.kind)},'
            f'"location":{_json_str(self.location)},"lot":{_json_text(self.lot)},'
            # pydantic spells a UTC datetime as isoformat() with "Z" for "+00:00".
            f'"occurred_at":"{occurred_at.isoformat()[:-6]}Z",'
            f'"qty":"{self.qty:f}","ref":{_json_text(self.ref)},"seq":{self.seq},'
            f'"site_id":{_json_str(self.site_id)},'
            f'"unit_cost":{unit_cost},'
            f'"uom":{_json_str(self.uom)}}}'
        )
        return _sha256(canonical)


_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""How ``json.dumps`` (``ensure_ascii=True``) writes a string, quotes included."""


def _json_text(value: str | None) -> str:
    return "null" if value is None else _json_str(value)


def _sha256(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical_json_slow(event: LedgerEvent) -> str:
    """The definition of the canonical form; ``content_digest`` writes the same string faster."""
    return json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


_DIGEST_FIELDS = (
    "actor",
    "device_id",
    "event_id",
    "expiry",
    "item",
    "kind",
    "location",
    "lot",
    "occurred_at",
    "qty",
    "ref",
    "seq",
    "site_id",
    "unit_cost",
    "uom",
)
"""The fields ``LedgerEvent.content_digest`` writes, in sorted order."""
if tuple(sorted(LedgerEvent.model_fields)) != _DIGEST_FIELDS:
    raise RuntimeError(
        "LedgerEvent's fields changed: write the new ones into content_digest(), "
        "then update _DIGEST_FIELDS"
    )


class PushBatch(BaseModel):
    """``POST /api/v1/sync/events``: a contiguous run of one site's ledger, in seq order."""

    model_config = ConfigDict(extra="forbid")

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    events: Annotated[list[LedgerEvent], Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]

    @model_validator(mode="after")
    def _one_site_contiguous(self) -> Self:
        for index, event in enumerate(self.events):
            if event.site_id != self.site_id:
                raise ValueError(
                    f"events[{index}].site_id is {event.site_id!r}, "
                    f"but the batch is for site {self.site_id!r}"
                )
            if index and event.seq != self.events[index - 1].seq + 1:
                raise ValueError(
                    f"events[{index}].seq is {event.seq}, expected "
                    f"{self.events[index - 1].seq + 1}: a batch must be contiguous"
                )
        if len({e.event_id for e in self.events}) != len(self.events):
            raise ValueError("the same event_id appears twice in one batch")
        return self


class EventStatus(StrEnum):
    """What central did with one pushed event."""

    ACCEPTED = "accepted"
    """Newly inserted; balances changed."""
    DUPLICATE = "duplicate"
    """Already held with identical content; nothing changed. Safe to mark synced."""
    CONFLICT = "conflict"
    """Already held (by id or by seq) with different content; nothing changed."""
    INVALID = "invalid"
    """Refused on its merits; nothing changed."""


class EventResult(BaseModel):
    """Central's verdict on one event of a batch."""

    event_id: uuid.UUID
    seq: int
    status: EventStatus
    detail: str | None = None


class PushAck(BaseModel):
    """Central's answer to a push.

    Every seq up to the watermark is settled at central: held, or refused for good (a
    ``conflict`` or ``invalid`` result, which central records). The edge marks the
    batch's own events up to the watermark synced, except the refused ones, which it
    parks as dead letters; it never marks an event it did not send in this batch, whose
    result it has not seen.
    """

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    acked_through_seq: int = Field(
        ge=0,
        description="highest seq central has settled (held, or refused and recorded) "
        "with no gap below it",
    )
    results: list[EventResult]
    server_time: datetime = Field(description="central clock, to measure the edge's skew")


def to_wire(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a contract model (decimals as strings, ids as text)."""
    return model.model_dump(mode="json")


SiteSecret = Annotated[str, Field(min_length=32, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
"""A site's long-lived secret, as ``jxc central site add`` prints it (URL-safe base64)."""


class SiteTokenRequest(BaseModel):
    """``POST /api/v1/sync/token``: a site trades its secret for a short-lived token.

    The secret travels only here, once per token lifetime; every other request carries
    the token, so a header that leaks into a proxy's log is worth minutes, not forever.
    """

    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    secret: SiteSecret


class SiteToken(BaseModel):
    """Central's answer: send ``Authorization: Bearer <access_token>`` until it expires.

    Any request may still be answered 401 before then (the secret was rotated or revoked);
    the edge then asks for a new token once and retries.
    """

    site_id: SiteId
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the RFC 6750 scheme name)
    expires_in: int = Field(gt=0, description="seconds the token stays valid")
