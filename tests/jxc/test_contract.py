"""The wire contract: exact decimals, UUIDv7 ids, contiguous batches, stable digests."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from jxc.contract import (
    DECIMAL_PLACES,
    MAX_ABS_AMOUNT,
    EventKind,
    ExactDecimal,
    LedgerEvent,
    PushBatch,
)
from jxc.ids import uuid7, uuid7_time_ms


def event(seq: int = 1, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid7()),
        "site_id": "S01",
        "seq": seq,
        "occurred_at": "2026-11-25T10:00:00Z",
        "kind": "receipt",
        "item": "09506000134352",
        "location": "DOCK-1",
        "qty": "12",
        "uom": "EA",
    }
    body.update(overrides)
    return body


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids), "ids made in one burst must sort in creation order"
    assert len(set(ids)) == len(ids)
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert abs(uuid7_time_ms(ids[-1]) - now_ms) < 5000


def test_float_quantity_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        LedgerEvent.model_validate(event(qty=1.5))
    assert info.value.errors()[0]["loc"] == ("qty",)
    assert "string" in info.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("qty", "-3"),  # a receipt cannot take stock away
        ("qty", "0.0000001"),  # finer than six places
        ("qty", "NaN"),
        ("qty", "1e13"),
        ("event_id", "0b4f2d43-8c1e-4a57-9b2e-3f6a1c0d9e21"),  # version 4; fixed, so ids agree
        ("occurred_at", "2026-11-25T10:00:00"),  # no offset: which clock?
        ("occurred_at", "0001-01-01T00:30:00+01:00"),  # before year 1 in UTC
        ("site_id", "bad site"),
        ("kind", "teleport"),
        ("item", ""),
    ],
)
def test_bad_field_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        LedgerEvent.model_validate(event(**{field: value}))


def test_sign_follows_kind() -> None:
    assert LedgerEvent.model_validate(event(kind="sale", qty="-2")).qty == Decimal(-2)
    assert LedgerEvent.model_validate(event(kind="adjustment", qty="-0.5")).qty == Decimal("-0.5")
    with pytest.raises(ValidationError):
        LedgerEvent.model_validate(event(kind="scrap", qty="1"))


def test_occurred_at_is_normalised_to_utc() -> None:
    parsed = LedgerEvent.model_validate(event(occurred_at="2026-11-25T18:00:00+08:00"))
    assert parsed.occurred_at == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parsed.occurred_at.tzinfo == timezone(timedelta(0))


def test_batch_must_be_one_site_and_contiguous() -> None:
    PushBatch.model_validate({"site_id": "S01", "events": [event(1), event(2), event(3)]})
    with pytest.raises(ValidationError, match="contiguous"):
        PushBatch.model_validate({"site_id": "S01", "events": [event(1), event(3)]})
    with pytest.raises(ValidationError, match="site"):
        PushBatch.model_validate({"site_id": "S02", "events": [event(1)]})
    same = event(1)
    with pytest.raises(ValidationError, match="twice"):
        PushBatch.model_validate({"site_id": "S01", "events": [same, {**same, "seq": 2}]})
    with pytest.raises(ValidationError):
        PushBatch.model_validate({"site_id": "S01", "events": []})


exact_amounts = st.decimals(
    min_value=Decimal("0.000001"),
    max_value=Decimal("999999999999"),
    places=DECIMAL_PLACES,
    allow_nan=False,
    allow_infinity=False,
)


@given(qty=exact_amounts, kind=st.sampled_from(list(EventKind)))
def test_round_trip_through_json_is_exact(qty: Decimal, kind: EventKind) -> None:
    signed = qty if kind in {"receipt", "return", "transfer_in", "adjustment"} else -qty
    original = LedgerEvent.model_validate(event(kind=kind.value, qty=str(signed)))
    wire = original.model_dump_json()
    assert '"qty":"' in wire, "quantities travel as strings"
    again = LedgerEvent.model_validate_json(wire)
    assert again == original
    assert again.qty == signed
    assert again.content_digest() == original.content_digest()


@given(qty=exact_amounts)
def test_digest_ignores_spelling_but_not_value(qty: Decimal) -> None:
    fixed = {"event_id": str(uuid7())}
    plain = LedgerEvent.model_validate(event(qty=str(qty), **fixed))
    padded = LedgerEvent.model_validate(event(qty=f"{qty:.6f}", **fixed))
    assert plain.content_digest() == padded.content_digest()
    other = qty + 1 if qty < 999_999_999_000 else qty - 1
    more = LedgerEvent.model_validate(event(qty=str(other), **fixed))
    assert more.content_digest() != plain.content_digest()


@pytest.mark.parametrize("field", ["item", "location", "lot", "uom", "ref", "device_id", "actor"])
@pytest.mark.parametrize("control", ["\x00", "\t", "\n", "\x7f"])
def test_control_characters_are_refused_in_every_text_field(field: str, control: str) -> None:
    """PostgreSQL cannot store NUL in text at all; central must refuse it with a 422 at the
    door, not fail on it deep inside an insert (a 500 the edge would retry forever)."""
    with pytest.raises(ValidationError) as refused:
        LedgerEvent.model_validate(event(**{field: f"a{control}b"}))
    assert refused.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("spelling", ["-0", "-0.000", "0.00", "+0"])
def test_a_zero_amount_has_one_spelling(spelling: str) -> None:
    zero = LedgerEvent.model_validate(event(unit_cost=spelling))
    plain = LedgerEvent.model_validate({**event(unit_cost="0"), "event_id": zero.event_id})
    assert str(zero.unit_cost) == "0"
    assert zero.content_digest() == plain.content_digest()


_code = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: "\x7f" not in s
)
_text = _code  # no field of an event takes control characters (see test_control_characters...)


@given(
    qty=exact_amounts,
    unit_cost=st.none() | exact_amounts,
    item=_code,
    location=_code,
    lot=st.none() | _text,
    ref=st.none() | _text,
    actor=st.none() | _text,
    device_id=st.none() | _text,
    expiry=st.none() | st.dates(),
    occurred_at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5))]
        ),
    ),
)
def test_fast_digest_writes_exactly_the_canonical_json(
    qty: Decimal,
    unit_cost: Decimal | None,
    item: str,
    location: str,
    lot: str | None,
    ref: str | None,
    actor: str | None,
    device_id: str | None,
    expiry: Any,
    occurred_at: datetime,
) -> None:
    """``content_digest`` spells the canonical form by hand for speed; it must be the very
    string ``json.dumps(model_dump(mode="json"), sort_keys=True)`` makes, for any content
    (non-ASCII text, quotes, microseconds, offsets other than UTC on the way in)."""
    parsed = LedgerEvent.model_validate(
        event(
            qty=str(qty),
            unit_cost=None if unit_cost is None else str(unit_cost),
            item=item,
            location=location,
            lot=lot,
            ref=ref,
            actor=actor,
            device_id=device_id,
            expiry=None if expiry is None else expiry.isoformat(),
            occurred_at=occurred_at.isoformat(),
        )
    )
    slow = hashlib.sha256(
        json.dumps(parsed.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert parsed.content_digest() == slow
    assert parsed.content_digest(event_id_text=str(parsed.event_id)) == slow


class _Amount(BaseModel):
    amount: ExactDecimal


def _plainly_canonical(value: object) -> Decimal | None:
    """The definition of an accepted amount, spelled out slowly and exactly (in
    fractions, where nothing rounds): an exact str, int or Decimal (never a float or
    bool), finite, below the limit in magnitude, a whole number of millionths; kept in
    the plain spelling of its shortest form. None: refused."""
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        return None
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    exact = Fraction(amount)
    if abs(exact) >= Fraction(MAX_ABS_AMOUNT):
        return None
    millionths = exact * 10**DECIMAL_PLACES
    if millionths.denominator != 1:
        return None
    digits = str(abs(millionths.numerator)).rjust(DECIMAL_PLACES + 1, "0")
    whole, fraction = digits[:-DECIMAL_PLACES], digits[-DECIMAL_PLACES:].rstrip("0")
    sign = "-" if millionths < 0 else ""
    return Decimal(f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}")


_LIMIT = int(MAX_ABS_AMOUNT)
wire_amounts = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-(10**13), max_value=10**13, places=7),
    st.decimals(min_value=_LIMIT - 1, max_value=_LIMIT + 1, places=25),
    st.decimals(min_value=-(_LIMIT + 1), max_value=-(_LIMIT - 1), places=25),
    st.decimals(min_value=-(10**6), max_value=10**6, places=30),
    st.integers(min_value=-(10**13), max_value=10**13),
    st.builds(str, st.decimals(allow_nan=True, allow_infinity=True)),
    st.builds(lambda d: f" {d:f} ", st.decimals(min_value=-(10**13), max_value=10**13, places=8)),
    st.builds(
        lambda nines, zeros: f"{'9' * 12}.{'9' * nines}{'0' * zeros}",
        st.integers(min_value=0, max_value=40),
        st.integers(min_value=0, max_value=40),
    ),
    st.sampled_from(
        [
            "-0",
            "0E+5",
            "1E+3",
            "-1.500000",
            "1_000",
            "abc",
            "",
            "sNaN",
            "١٢",
            "1E+1000000",
            "1E-1000000",
            "123456789012.0000000000000000000000001",
            "1." + "0" * 40,
        ]
    ),
    st.sampled_from([1.5, True, None, [1], {"a": 1}]),
)


@given(value=wire_amounts)
def test_an_amount_is_accepted_exactly_as_the_definition_says(value: object) -> None:
    """The validator is written for speed; here it is held to the plain definition: the
    same values accepted, with the same digits and exponent, and the rest refused."""
    expected = _plainly_canonical(value)
    try:
        got: Decimal | None = _Amount.model_validate({"amount": value}).amount
    except ValidationError:
        got = None
    assert (got is None) == (expected is None), (value, got, expected)
    if got is not None and expected is not None:
        assert got.as_tuple() == expected.as_tuple()
