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
from decimal import Context, Decimal, Inexact, InvalidOperation
from enum import StrEnum
from operator import attrgetter
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

CONTRACT_VERSION: Literal[1] = 1
"""Bumped when a change to these models would be misread by the other side."""

DECIMAL_PLACES = 6
"""Finest step of any quantity or money amount. Central stores micro-units as integers."""

MAX_ABS_AMOUNT = Decimal(10) ** 12
MAX_EVENTS_PER_BATCH = 5000


_NOT_A_NUMBER_MESSAGE = (
    'must be an exact decimal written as a string, e.g. "12.5", not a JSON number'
)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_MIN_AMOUNT = -MAX_ABS_AMOUNT


def _exact_amount(value: object) -> object:
    """Turn a wire amount into its one canonical Decimal, or refuse it.

    Strings, ints and Decimals are taken; a float is refused before pydantic could
    coerce it, since it may already be rounded; anything else is left to pydantic's own
    Decimal check, which names what it got. One Python call per amount, since a full
    push holds some 6000 amounts and each call costs as much as the rest of the field.
    """
    if type(value) is str:  # the wire's form, by far the most common
        amount = _parse_amount(value)
    elif type(value) is Decimal:
        amount = value
    elif isinstance(value, bool | float):
        raise ValueError(_NOT_A_NUMBER_MESSAGE)
    elif isinstance(value, str):
        amount = _parse_amount(value)
    elif isinstance(value, int | Decimal):
        amount = Decimal(value)
    else:
        return value
    return _canonical_decimal(amount)


def _parse_amount(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None


def _canonical_decimal(value: Decimal) -> Decimal:
    """One spelling per amount, so that ``"1.50"`` and ``"1.5"`` are one value: the
    shortest plain form (``12.5``, ``100``, never ``1E+2``), and zero without a sign.

    Nothing here rounds: the comparisons are exact, and ``normalize`` runs in a context
    that raises rather than round. An amount below the limit with more digits than that
    context holds has more than six places, and is refused as such.
    """
    if not value.is_finite():
        # The type and words pydantic's own Decimal check gives, as it did before this
        # validator took the check over.
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    if not _MIN_AMOUNT < value < MAX_ABS_AMOUNT:
        raise ValueError(f"must be smaller than {MAX_ABS_AMOUNT} in magnitude")
    if not value:
        return _ZERO  # "-0" too: central stores both as 0, so they must be one value
    try:
        normal = value.normalize(_NO_ROUNDING)  # positional: a keyword costs twice as much
    except Inexact:
        raise ValueError(f"has more than {DECIMAL_PLACES} decimal places") from None
    exponent = int(normal.as_tuple().exponent)  # an int: the value is finite
    if exponent < -DECIMAL_PLACES:
        raise ValueError(f"has more than {DECIMAL_PLACES} decimal places")
    # normalize() writes whole hundreds as 1E+2; the plain spelling is that, quantized.
    return normal.quantize(_ONE, None, _NO_ROUNDING) if exponent > 0 else normal


_NO_ROUNDING = Context(prec=28, traps=[Inexact, InvalidOperation])
"""28 digits hold any amount the contract takes (12 before the point, 6 after) many
times over; the trap turns a value that would need more into an error."""


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_exact_amount),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]
"""A quantity or amount: exact, at most six decimal places, a string in JSON."""

SITE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
SiteId = Annotated[str, Field(pattern=SITE_ID_PATTERN)]

# --- text and integers: what every field of every model on the wire may hold ----------

SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""No C0 control character (tab, CR and LF included) and no DEL: PostgreSQL refuses NUL
in text outright, a line break in a name splits a log line or a label, and a tab in a code
or a unit is a scanner's or a typist's slip, not data."""

MULTILINE_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""As :data:`SINGLE_LINE_PATTERN`, but tab, LF and CR are allowed (a note, a detail)."""

MAX_TEXT = 1000
"""The longest text any field takes unless it says less: the bound that keeps a field
from carrying a megabyte into a database row, a log line or an error message."""

Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=SINGLE_LINE_PATTERN)]
"""Any single-line text field of a request, an answer or an event.

A field narrows it with its own bounds, ``Annotated[Text, Field(min_length=1,
max_length=64)]`` (the later bound wins). The pattern is checked by pydantic-core's own
regex engine, which works on UTF-8 and so also refuses a lone surrogate (``"\\ud800"``,
which JSON can spell and no database can store) as ``string_unicode``; the check costs
nanoseconds per field, in Rust, not a Python call. The same type validates both ends of
the wire, so a text central accepts into master data is one the edge accepts back.
"""

MultilineText = Annotated[str, Field(max_length=MAX_TEXT, pattern=MULTILINE_PATTERN)]
"""Text that may hold tab and line breaks (a verdict's detail); still no NUL, other
control characters or lone surrogates."""

INT64_MAX = 2**63 - 1
"""The largest integer a BIGINT column (PostgreSQL) or an SQLite integer holds; a larger
one is refused at the edge of the wire rather than overflowing in the driver."""

Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""Any count, seq, version or cursor on the wire: 0 <= n < 2**63. A field narrows it
(``Annotated[Int64, Field(ge=1)]``)."""

Code = Annotated[Text, Field(min_length=1, max_length=64)]


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


DocumentType = Literal[
    "purchase_order",
    "sales_order",
    "transfer_order",
    "stock_count",
    "other_receipt",
    "other_issue",
    "write_off",
    "retail_receipt",
    "customer_return",
]
"""The documents an event can name a line of. An edge posts ``transfer_order`` lines as
its site's ``transfer_out`` / ``transfer_in`` events; a shipment names the sales order
line it ships (an ``issue``), a customer return the line it came back from; a store's
counter books ``sale`` events naming a line of its ``retail_receipt`` and a refund
``return`` events naming the line refunded (``jxc.retail``); an edge's returns station
books ``return`` events naming a ``customer_return`` line (the RMA's, not the order's:
two returns of one order line stay apart); the rest are written by
central's own stream so far (``docs/inventory.md``). An older edge never sends the newer
values, so adding them breaks no one."""

DOCUMENT_FIELDS = ("doc_type", "doc_id", "doc_line")
"""An event's structured reference to the document line it fulfils: all three or none.

Absent from the wire (and from the canonical form the digest hashes) when the event names
no document, so an event without one is written, hashed and read exactly as before the
fields existed, and an edge can send it to a central that does not know them yet."""


_SIGN_OF_KIND = {
    kind: 1 if kind in INBOUND_KINDS else -1 if kind in OUTBOUND_KINDS else 0 for kind in EventKind
}
"""The sign a kind's qty must have; 0: either (an adjustment), but never zero."""


class LedgerEvent(BaseModel):
    """One immutable stock movement, made at the edge and merged at central."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    site_id: SiteId
    seq: Annotated[Int64, Field(ge=1, description="gapless per site, assigned with the event")]
    occurred_at: datetime = Field(description="edge clock, UTC")
    kind: EventKind
    item: Code
    lot: Annotated[Text, Field(min_length=1, max_length=40)] | None = None
    expiry: date | None = None
    location: Code
    qty: ExactDecimal = Field(description="signed by kind: positive in, negative out")
    uom: Annotated[Text, Field(min_length=1, max_length=16)]
    unit_cost: ExactDecimal | None = None
    ref: Annotated[Text, Field(max_length=128)] | None = None
    device_id: Annotated[Text, Field(max_length=64)] | None = None
    actor: Annotated[Text, Field(max_length=64)] | None = None
    doc_type: DocumentType | None = Field(
        default=None, description="the kind of document whose line this event fulfils"
    )
    doc_id: Code | None = Field(default=None, description="that document's id, e.g. PO000012")
    doc_line: Annotated[Int64, Field(ge=1)] | None = Field(
        default=None, description="the line's number within the document"
    )

    @model_serializer(mode="wrap")
    def _without_empty_document(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        if self.doc_type is None and isinstance(dumped, dict):
            for name in DOCUMENT_FIELDS:
                dumped.pop(name, None)
        return dumped

    @field_validator("event_id")
    @classmethod
    def _must_be_v7(cls, value: uuid.UUID) -> uuid.UUID:
        # value.version, read from the bits directly: the property chain cost a third
        # of this field's validation. Version 7 of the RFC 4122 variant (0b10).
        bits = value.int
        if (bits >> 76) & 0xF != 7 or (bits >> 62) & 0x3 != 0b10:
            raise ValueError("must be a UUIDv7 (time-ordered) made at the edge")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _must_be_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-25T10:00:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:30+01:00 is before year 1 in UTC
            raise ValueError(f"{value.isoformat()} is out of range in UTC") from None

    @model_validator(mode="after")
    def _sign_matches_kind(self) -> Self:
        qty, sign = self.qty, _SIGN_OF_KIND[self.kind]
        if sign > 0 and not qty > _ZERO:
            raise ValueError(f"qty of a {self.kind} must be positive, got {qty}")
        if sign < 0 and not qty < _ZERO:
            raise ValueError(f"qty of a {self.kind} must be negative, got {qty}")
        if not qty:
            raise ValueError(f"qty of an {self.kind} must not be zero")
        if self.unit_cost is not None and self.unit_cost < _ZERO:
            raise ValueError("unit_cost must not be negative")
        if (self.doc_type is None) != (self.doc_id is None) or (self.doc_type is None) != (
            self.doc_line is None
        ):
            raise ValueError(
                "doc_type, doc_id and doc_line name a document line together: give all or none"
            )
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
        document = (
            ""
            if self.doc_type is None
            else f'"doc_id":{_json_str(self.doc_id or "")},"doc_line":{self.doc_line},'
            f'"doc_type":{_json_str(self.doc_type)},'
        )
        canonical = (
            f'{{"actor":{_json_text(self.actor)},"device_id":{_json_text(self.device_id)},'
            f"{document}"
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
    "doc_id",
    "doc_line",
    "doc_type",
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


_SEQ, _SITE_ID, _EVENT_ID = attrgetter("seq"), attrgetter("site_id"), attrgetter("event_id")


class PushBatch(BaseModel):
    """``POST /api/v1/sync/events``: a contiguous run of one site's ledger, in seq order."""

    model_config = ConfigDict(extra="forbid")

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    events: Annotated[list[LedgerEvent], Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]

    @model_validator(mode="after")
    def _one_site_contiguous(self) -> Self:
        # Checked over whole columns in C first; the loop that names the event at fault
        # runs only when something is wrong (a Python loop over 5000 events cost more).
        events = self.events
        seqs = list(map(_SEQ, events))
        one_site = set(map(_SITE_ID, events)) == {self.site_id}
        if not one_site or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            for index, event in enumerate(events):
                if event.site_id != self.site_id:
                    raise ValueError(
                        f"events[{index}].site_id is {event.site_id!r}, "
                        f"but the batch is for site {self.site_id!r}"
                    )
                if index and event.seq != events[index - 1].seq + 1:
                    raise ValueError(
                        f"events[{index}].seq is {event.seq}, expected "
                        f"{events[index - 1].seq + 1}: a batch must be contiguous"
                    )
        if len(set(map(_EVENT_ID, events))) != len(events):
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
    seq: Int64
    status: EventStatus
    detail: Annotated[MultilineText, Field(max_length=4000)] | None = None


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
    acked_through_seq: Int64 = Field(
        description="highest seq central has settled (held, or refused and recorded) "
        "with no gap below it",
    )
    results: list[EventResult]
    server_time: datetime = Field(description="central clock, to measure the edge's skew")


MAX_DEVICES_PER_REPORT = 200


class DeviceReport(BaseModel):
    """One device of a site as its driver sees it now (the status page's ``state``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["scanner", "scale", "printer"]
    device_id: Annotated[Text, Field(min_length=1, max_length=64)]
    state: Literal["connected", "degraded", "disconnected"]
    last_error: Annotated[Text, Field(max_length=300)] | None = None


class SiteStatusReport(BaseModel):
    """``POST /api/v1/sync/status``: what an edge says about itself besides its ledger.

    An addition to contract version 1, so optional on both sides: an edge that does not
    send it is simply not watched for outbox depth and devices, and an edge whose central
    answers 404 (older than this) stops sending it until its next start. Central keeps
    only the latest report per site (``docs/integrations.md``, "Operations alerts")."""

    model_config = ConfigDict(extra="forbid")

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    reported_at: datetime = Field(description="the edge's clock when it made the report")
    outbox_depth: Int64 = Field(description="events recorded but not yet acknowledged")
    dead_letters: Int64 = 0
    devices: Annotated[list[DeviceReport], Field(max_length=MAX_DEVICES_PER_REPORT)] = Field(
        default_factory=list
    )

    @field_validator("reported_at")
    @classmethod
    def _must_be_aware(cls, value: datetime) -> datetime:
        return LedgerEvent._must_be_aware(value)

    @model_validator(mode="after")
    def _one_row_per_device(self) -> Self:
        ids = [device.device_id for device in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError("devices: the same device_id appears twice")
        return self


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
    access_token: Annotated[Text, Field(max_length=512)]
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the RFC 6750 scheme name)
    expires_in: Annotated[Int64, Field(ge=1)] = Field(description="seconds the token stays valid")
