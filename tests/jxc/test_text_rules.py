"""The contract's text and integer rules: what any field on the wire may hold.

Every text field of every model is ``Text`` (or ``MultilineText``) narrowed, and every
integer ``Int64``; these properties are what the central fuzz test relies on when it
expects a 422 rather than a database error.
"""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from jxc.contract import INT64_MAX, MAX_TEXT, Int64, LedgerEvent, MultilineText, Text
from jxc.feed import ItemData

LINE = TypeAdapter(Text)
MULTILINE = TypeAdapter(MultilineText)
INT64 = TypeAdapter(Int64)

_CONTROL = [chr(code) for code in range(0x20)] + ["\x7f"]
_LINE_BREAKS_AND_TAB = ["\t", "\n", "\r"]


def _storable(text: str) -> bool:
    """What any database and any log line can hold: UTF-8, no C0 control, no DEL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(char in _CONTROL for char in text)


@given(st.text(max_size=MAX_TEXT + 5))
def test_single_line_text_is_accepted_exactly_when_storable(text: str) -> None:
    ok = _storable(text) and len(text) <= MAX_TEXT
    try:
        assert LINE.validate_python(text) == text
    except ValidationError:
        assert not ok
    else:
        assert ok


@given(st.text(max_size=50), st.sampled_from(_CONTROL), st.text(max_size=50))
def test_any_control_character_anywhere_is_refused_on_one_line(
    before: str, control: str, after: str
) -> None:
    with pytest.raises(ValidationError):
        LINE.validate_python(before + control + after)


@given(st.text(max_size=50), st.sampled_from(_LINE_BREAKS_AND_TAB), st.text(max_size=50))
def test_multiline_text_takes_tab_and_line_breaks(before: str, brk: str, after: str) -> None:
    text = before + brk + after
    ok = _storable("".join(c for c in text if c not in _LINE_BREAKS_AND_TAB))
    try:
        MULTILINE.validate_python(text)
    except ValidationError:
        assert not ok
    else:
        assert ok


@given(st.integers(min_value=0xD800, max_value=0xDFFF), st.text(max_size=20))
def test_a_lone_surrogate_is_refused_from_python_and_from_json(code: int, rest: str) -> None:
    text = rest + chr(code)
    for adapter in (LINE, MULTILINE):
        with pytest.raises(ValidationError):
            adapter.validate_python(text)
        with pytest.raises(ValidationError):  # JSON spells it \udXXX
            adapter.validate_json(f'{json.dumps(rest)[:-1]}\\u{code:04x}"'.encode())


@given(st.integers())
def test_int64_holds_exactly_what_a_bigint_holds(value: int) -> None:
    try:
        assert INT64.validate_python(value) == value
    except ValidationError:
        assert not 0 <= value <= INT64_MAX
    else:
        assert 0 <= value <= INT64_MAX


@pytest.mark.parametrize("seq", [2**63, 10**30, -1, 0])
def test_an_event_seq_beyond_64_bits_is_refused_from_json(seq: int) -> None:
    event = (
        '{"event_id":"01932f1e-7a00-7000-8000-000000000001","site_id":"S01",'
        f'"seq":{seq},"occurred_at":"2026-11-25T10:00:00Z","kind":"receipt",'
        '"item":"A","location":"L","qty":"1","uom":"EA"}'
    )
    with pytest.raises(ValidationError) as refused:
        LedgerEvent.model_validate_json(event)
    assert refused.value.errors()[0]["loc"] == ("seq",)


@pytest.mark.parametrize("unit", ["E\tA", "E\x00A", "EA\n", "E\ud800"])
def test_a_unit_the_event_contract_refuses_is_refused_in_the_item_master_too(unit: str) -> None:
    with pytest.raises(ValidationError):
        ItemData(item_code="A", uom=unit)


def test_a_field_narrows_text_and_keeps_its_rules() -> None:
    class Model(BaseModel):
        code: Annotated[Text, Field(min_length=1, max_length=3)]

    assert Model(code="abc").code == "abc"
    for bad in ("", "abcd", "a\tb", "\x00"):
        with pytest.raises(ValidationError):
            Model(code=bad)
