"""The Modbus register-map codec and profile validation, without any I/O."""

from __future__ import annotations

import struct
from dataclasses import replace
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import DeviceConfigError
from device_drivers.scales.modbus_map import (
    FieldName,
    Order,
    RegisterDecodeError,
    RegisterField,
    RegisterProfile,
    StatusBits,
    ValueType,
    builtin_profile,
    builtin_profile_names,
    decode_measurement,
    decode_raw,
    encode_raw,
    parse_profile,
    raw_to_weight,
)

ORDERS: tuple[Order, ...] = get_args(Order)
TYPES: tuple[ValueType, ...] = get_args(ValueType)
INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}

GOOD_PROFILE = """
name = "t"
[weight]
address = 0
type = "int32"
word_order = "little"
decimals = 3
unit = "kg"
capacity = "60"
[status]
address = 4
stable = 0
overload = 1
underload = 2
[command]
address = 5
zero = 1
tare = 2
"""


def test_the_shipped_profiles_are_valid() -> None:
    names = builtin_profile_names()
    assert {"generic-int32-cdab", "generic-float32-abcd"} <= set(names)
    cdab = builtin_profile("generic-int32-cdab")
    # Modicon numbering: 40001 is holding register 0 on the wire.
    assert (cdab.weight.table, cdab.weight.address, cdab.weight.word_order) == (
        "holding",
        0,
        "little",
    )
    assert cdab.commands.address == 5
    assert cdab.capacity == Decimal("60.000")
    assert builtin_profile("generic-float32-abcd").weight.table == "input"


@given(
    st.sampled_from(TYPES),
    st.sampled_from(ORDERS),
    st.sampled_from(ORDERS),
    st.data(),
)
def test_encode_decode_round_trip_for_every_type_and_order(
    type_: ValueType, word: Order, byte: Order, data: st.DataObject
) -> None:
    value: int | float
    if type_ == "float32":
        value = data.draw(st.floats(width=32, allow_nan=False))
    else:
        low, high = INT_RANGES[type_]
        value = data.draw(st.integers(low, high))
    registers = encode_raw(value, type_, word, byte)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode_raw(registers, type_, word, byte) == value


def test_word_and_byte_orders_are_the_abcd_family() -> None:
    value = 0x11223344
    assert encode_raw(value, "uint32", "big", "big") == [0x1122, 0x3344]  # ABCD
    assert encode_raw(value, "uint32", "little", "big") == [0x3344, 0x1122]  # CDAB
    assert encode_raw(value, "uint32", "big", "little") == [0x2211, 0x4433]  # BADC
    assert encode_raw(value, "uint32", "little", "little") == [0x4433, 0x2211]  # DCBA


def test_scaled_integers_and_floats_become_exact_decimals() -> None:
    assert raw_to_weight(12345, 3) == Decimal("12.345")
    assert raw_to_weight(-5, 2) == Decimal("-0.05")
    as_float32 = struct.unpack(">f", struct.pack(">f", 12.345))[0]
    assert as_float32 != 12.345  # 12.345000267028809: not exact
    weight = raw_to_weight(as_float32, 3)
    assert weight == Decimal("12.345")
    assert weight.as_tuple().exponent == -3
    assert str(raw_to_weight(-0.0001, 2)) == "0.00"  # never "-0.00"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2.0**-140])
def test_floats_that_are_no_weight_are_garbage(bad: float) -> None:
    with pytest.raises(RegisterDecodeError) as caught:
        raw_to_weight(bad, 2)
    assert caught.value.reason == "garbage"


def _profile(type_: ValueType, word: Order, byte: Order, decimals: int) -> RegisterProfile:
    base = parse_profile(GOOD_PROFILE.replace('type = "int32"', 'type = "int32"'))
    capacity = Decimal(30) if type_ == "int16" and decimals <= 2 else Decimal(3)
    if type_ == "int16" and decimals > 2:
        capacity = Decimal("0.3")
    return replace(
        base,
        weight=RegisterField("holding", 0, type_, word, byte),
        decimals=decimals,
        capacity=capacity,
        division=Decimal(1).scaleb(-decimals),
        minimum=-capacity,
    )


@given(
    st.sampled_from(TYPES),
    st.sampled_from(ORDERS),
    st.sampled_from(ORDERS),
    st.integers(0, 4),
    st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
    st.integers(0, 0xFFFF),
)
def test_random_registers_never_give_a_reading_the_profile_does_not_allow(
    type_: ValueType,
    word: Order,
    byte: Order,
    decimals: int,
    registers: list[int],
    status: int,
) -> None:
    profile = _profile(type_, word, byte, decimals)
    weight = registers[: profile.weight.count]
    try:
        measurement = decode_measurement(profile, weight, status)
    except RegisterDecodeError:
        return  # refused: fine, as long as it is never a reading
    net = measurement.net
    assert isinstance(net, Decimal)
    assert net.is_finite()
    assert net.as_tuple().exponent == -decimals
    assert profile.minimum <= net <= profile.maximum
    assert measurement.flags.stable is bool(status & 1)
    assert not measurement.flags.overload
    assert not measurement.flags.underload


def test_status_bits_come_first() -> None:
    profile = parse_profile(GOOD_PROFILE)
    regs = encode_raw(1000, "int32", "little", "big")
    assert decode_measurement(profile, regs, 0b001).net == Decimal("1.000")
    for status, reason in ((0b010, "overload"), (0b100, "underload")):
        with pytest.raises(RegisterDecodeError) as caught:
            decode_measurement(profile, regs, status)
        assert caught.value.reason == reason


def test_a_word_swapped_int32_is_caught_as_implausible() -> None:
    profile = parse_profile(GOOD_PROFILE)  # says CDAB
    sent_as_abcd = encode_raw(12345, "int32", "big", "big")
    with pytest.raises(RegisterDecodeError) as caught:
        decode_measurement(profile, sent_as_abcd, 0b001)
    assert caught.value.reason == "garbage"
    assert "word" in caught.value.detail


def test_a_word_swapped_round_float_is_caught_not_read_as_zero() -> None:
    profile = builtin_profile("generic-float32-abcd")  # says ABCD
    sent_as_cdab = encode_raw(100.0, "float32", "little", "big")
    with pytest.raises(RegisterDecodeError) as caught:
        decode_measurement(profile, sent_as_cdab, 0)
    assert caught.value.reason == "garbage"


FLOAT_CDAB_3 = GOOD_PROFILE.replace('type = "int32"', 'type = "float32"')
"""A float32 transmitter, low word first, weighing to 0.001 kg."""


def test_a_word_swapped_float_that_rounds_to_zero_is_garbage_not_a_stable_zero() -> None:
    """The reported case: 12.345 kg sent ABCD to a profile that says CDAB is -7.5e-36."""
    profile = parse_profile(FLOAT_CDAB_3)
    sent_as_abcd = encode_raw(12.345, "float32", "big", "big")
    assert -8e-36 < decode_raw(sent_as_abcd, "float32", "little", "big") < -7e-36
    with pytest.raises(RegisterDecodeError) as caught:
        decode_measurement(profile, sent_as_abcd, 0b001)
    assert caught.value.reason == "garbage"
    assert "rounds to 0.000" in caught.value.detail
    assert "word and byte order" in caught.value.detail
    assert "as ABCD they read 12.345 kg" in caught.value.detail  # says what would fit


def test_a_float_between_two_divisions_is_garbage() -> None:
    profile = builtin_profile("generic-float32-abcd")  # division 0.5
    assert decode_measurement(profile, encode_raw(123.5, "float32", "big", "big"), 0).net == (
        Decimal("123.50")
    )
    with pytest.raises(RegisterDecodeError, match=r"not a multiple of the division 0\.5"):
        decode_measurement(profile, encode_raw(123.37, "float32", "big", "big"), 0)


def test_far_beyond_capacity_is_garbage_even_without_an_overload_bit() -> None:
    profile = parse_profile(GOOD_PROFILE.replace("overload = 1\n", ""))  # 60 kg
    with pytest.raises(RegisterDecodeError) as caught:
        decode_measurement(profile, encode_raw(600_001, "int32", "little", "big"), 1)
    assert caught.value.reason == "garbage"
    assert "far beyond the capacity" in caught.value.detail


def test_an_order_is_confirmed_by_a_reading_no_other_order_makes_plausible() -> None:
    profile = parse_profile(FLOAT_CDAB_3)
    regs = encode_raw(12.345, "float32", "little", "big")
    assert decode_measurement(profile, regs, 1).confirmed == {"weight"}
    zero = encode_raw(0.0, "float32", "little", "big")
    assert decode_measurement(profile, zero, 1).confirmed == set()  # zero in every order


def test_a_reading_another_order_makes_plausible_waits_for_a_confirmed_order() -> None:
    """With the right order too, a weight whose bytes read plausibly in another order is
    refused until some reading has confirmed the order (rare: see the module docstring)."""
    profile = builtin_profile("generic-float32-abcd")  # ABCD, 1500 kg by 0.5 kg
    regs = encode_raw(392.0, "float32", "big", "big")
    assert decode_raw(regs, "float32", "big", "little") == -780.0  # BADC: a weight too
    with pytest.raises(RegisterDecodeError, match=r"but as -780\.00 kg in BADC"):
        decode_measurement(profile, regs, 0)
    measurement = decode_measurement(profile, regs, 0, known_orders=frozenset({"weight"}))
    assert measurement.net == Decimal("392.00")


def test_a_byte_order_error_inside_an_integer_register_cannot_be_seen() -> None:
    """The limit of what the registers say: 12.345 kg (0x3039) byte-swapped is 0x3930,
    14.640 kg, as plausible as any weight. Only a known load at commissioning shows it."""
    profile = parse_profile(GOOD_PROFILE)  # CDAB
    sent_as_dcba = encode_raw(12345, "int32", "little", "little")
    assert decode_measurement(profile, sent_as_dcba, 1).net == Decimal("14.640")


def test_without_an_overload_bit_beyond_capacity_is_an_overload() -> None:
    profile = parse_profile(GOOD_PROFILE.replace("overload = 1\n", ""))
    with pytest.raises(RegisterDecodeError) as caught:
        decode_measurement(profile, encode_raw(61000, "int32", "little", "big"), 1)
    assert caught.value.reason == "overload"


def test_modicon_and_one_based_numbering() -> None:
    text = GOOD_PROFILE.replace('name = "t"', 'name = "t"\nnumbering = "one_based"')
    text = text.replace("address = 0\n", "address = 1\n").replace("address = 4", "address = 5")
    text = text.replace("address = 5\nzero", "address = 6\nzero")
    assert parse_profile(text).weight.address == 0
    modicon = GOOD_PROFILE.replace('name = "t"', 'name = "t"\nnumbering = "modicon"')
    modicon = modicon.replace("address = 4", "address = 40005").replace(
        "address = 5\nzero", "address = 40006\nzero"
    )
    modicon = modicon.replace("address = 0\n", "address = 400001\n")  # 6-digit style
    profile = parse_profile(modicon)
    assert (profile.weight.address, profile.status.address if profile.status else None) == (0, 4)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('type = "int32"', 'type = "int64"'), "weight.type"),
        (('word_order = "little"', 'word_order = "middle"'), "weight.word_order"),
        (("decimals = 3", "decimals = 9"), "weight.decimals"),
        (('unit = "kg"', 'unit = "stone"'), "weight.unit"),
        (('capacity = "60"', 'capacity = "-1"'), "weight.capacity"),
        (('capacity = "60"', 'capacity = "6000000"'), "weight.capacity"),
        (("stable = 0", "stable = 16"), "status.stable"),
        (("overload = 1", "overload = 0"), "status"),
        (("address = 4", "address = 1"), "status.address"),
        (("tare = 2", "tare = 1"), "command"),
        (("zero = 1\n", ""), "command.zero"),
        (('name = "t"', 'name = "t"\ncolour = "red"'), "profile.colour"),
        (("[command]", "[commands]"), "profile.commands"),
    ],
)
def test_a_bad_profile_is_a_config_error_naming_the_field(
    change: tuple[str, str], field: str
) -> None:
    text = GOOD_PROFILE.replace(*change)
    assert text != GOOD_PROFILE
    with pytest.raises(DeviceConfigError, match=rf"\b{field}\b"):
        parse_profile(text, source="bad.toml")


def test_a_profile_without_a_command_section_is_valid_and_has_no_commands() -> None:
    """A transmitter that only reports its weight has no command register to describe."""
    text = GOOD_PROFILE[: GOOD_PROFILE.index("[command]")]
    profile = parse_profile(text, source="weight-only.toml")
    assert profile.commands is None
    assert profile.weight.address == 0
    regs = encode_raw(1000, "int32", "little", "big")
    assert decode_measurement(profile, regs, 0b001).net == Decimal("1.000")


def test_a_command_section_that_is_there_must_still_be_whole() -> None:
    text = GOOD_PROFILE.replace("zero = 1\ntare = 2\n", "")
    with pytest.raises(DeviceConfigError, match=r"command\.zero"):
        parse_profile(text, source="bad.toml")


def test_modicon_numbers_must_match_the_table() -> None:
    text = GOOD_PROFILE.replace('name = "t"', 'name = "t"\nnumbering = "modicon"')
    text = text.replace("address = 0\n", "address = 30001\n")
    with pytest.raises(DeviceConfigError, match=r"weight\.address"):
        parse_profile(text)


def test_not_toml_is_a_config_error() -> None:
    with pytest.raises(DeviceConfigError, match="not valid TOML"):
        parse_profile("[weight", source="x.toml")
    with pytest.raises(DeviceConfigError, match="no built-in"):
        builtin_profile("acme-9000")


# -- a wrong word or byte order never reads as another weight ---------------------------------

ORDER_PAIRS = [(w, b) for w in ORDERS for b in ORDERS]


@st.composite
def profiles(draw: st.DrawFn, type_: ValueType) -> RegisterProfile:
    """A transmitter of ``type_``: 0-4 decimals, a division of 1, 2 or 5 steps, 50 to
    100000 divisions, with or without status bits, reaching below zero unless unsigned."""
    decimals = draw(st.integers(0, 4))
    division = Decimal(draw(st.sampled_from([1, 2, 5]))).scaleb(-decimals)
    capacity = division * draw(st.integers(50, 100_000))
    word, byte = draw(st.sampled_from(ORDER_PAIRS))
    bits = draw(st.booleans())
    status = StatusBits("holding", 4, stable=0, overload=1, underload=2) if bits else None
    return RegisterProfile(
        name="drawn",
        weight=RegisterField("holding", 0, type_, word, byte),
        decimals=decimals,
        unit="kg",
        capacity=capacity,
        division=division,
        minimum=Decimal(0) if type_ == "uint32" else -capacity,
        status=status,
    )


def _sent(profile: RegisterProfile, weight: Decimal, word: Order, byte: Order) -> list[int]:
    """The registers a device with these orders sends for ``weight`` (its displayed one)."""
    type_ = profile.weight.type
    raw: int | float = float(weight) if type_ == "float32" else int(weight.scaleb(profile.decimals))
    return encode_raw(raw, type_, word, byte)


def _weights(profile: RegisterProfile, data: st.DataObject) -> list[Decimal]:
    """Displayed weights within what the device may send: the capacity and minimum, or as
    far as ten capacities when it has no status bits to say overload or underload."""
    low, high = profile.minimum, profile.maximum
    if profile.status is None:
        low, high = (low if low == 0 else -profile.far), profile.far
    steps = st.integers(int(low / profile.division), int(high / profile.division))
    return [k * profile.division for k in data.draw(st.lists(steps, min_size=1, max_size=12))]


def _read(
    profile: RegisterProfile, registers: list[int], known: frozenset[FieldName]
) -> tuple[Decimal | None, frozenset[FieldName]]:
    """What a driver holding ``known`` gets: a weight (or ``None`` if refused, overloaded or
    underloaded), and what it knows afterwards."""
    try:
        measurement = decode_measurement(profile, registers, 1, known_orders=known)
    except RegisterDecodeError:
        return None, known
    return measurement.net, known | measurement.confirmed


@settings(max_examples=400, deadline=None)
@given(
    profile=st.sampled_from(["float32", "int32", "uint32"]).flatmap(profiles),
    device_order=st.sampled_from(ORDER_PAIRS),
    data=st.data(),
)
def test_a_wrong_word_or_byte_order_never_reads_as_another_weight(
    profile: RegisterProfile, device_order: tuple[Order, Order], data: st.DataObject
) -> None:
    """Whatever weights a device sends in an order other than the profile's, each reading
    is the true weight or refused, and none confirms the profile's order. For the integer
    types the device's word order differs (a byte order error alone cannot be seen)."""
    field = profile.weight
    word, byte = device_order
    if (word, byte) == (field.word_order, field.byte_order):
        word = "big" if field.word_order == "little" else "little"
    if field.type != "float32" and word == field.word_order:
        word = "big" if field.word_order == "little" else "little"
    known: frozenset[FieldName] = frozenset()
    for weight in _weights(profile, data):
        value, known = _read(profile, _sent(profile, weight, word, byte), known)
        assert value is None or value == weight
    assert known == frozenset()


@settings(max_examples=300, deadline=None)
@given(
    profile=st.sampled_from(["float32", "int32", "uint32"]).flatmap(profiles),
    data=st.data(),
)
def test_the_right_order_reads_every_weight_once_confirmed(
    profile: RegisterProfile, data: st.DataObject
) -> None:
    field = profile.weight
    known: frozenset[FieldName] = frozenset()
    for weight in _weights(profile, data):
        registers = _sent(profile, weight, field.word_order, field.byte_order)
        value, learned = _read(profile, registers, known)
        if weight <= profile.maximum and weight >= profile.minimum:
            # Within range a reading is refused only as ambiguous, and only before the
            # order is confirmed.
            assert value == weight or "weight" not in known
        assert value is None or value == weight
        known = learned
    once_known = frozenset({"weight"})
    for weight in _weights(profile, data):
        if profile.minimum <= weight <= profile.maximum:
            value, _ = _read(
                profile, _sent(profile, weight, field.word_order, field.byte_order), once_known
            )
            assert value == weight
