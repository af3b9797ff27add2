"""Register maps of Modbus weight transmitters: profiles and a pure codec.

No standard register map exists for weighing over Modbus; every model has its own. A
*profile* (a TOML file, see ``profiles/``) says where the weight is, in which type, in which
word and byte order, with how many decimals, where the status word is and what its bits
mean, and which values written to the command register zero and tare the scale (a device
without a command register leaves the ``[command]`` section out). This module
turns such a file into a :class:`RegisterProfile` (refusing a bad one with a
:class:`~device_drivers.errors.DeviceConfigError` that names the field) and turns register
values into exact weights. Nothing here does I/O, so every rule can be tested in isolation.

Orders: ``word_order = "big"`` sends the high word first, ``"little"`` the low word first;
``byte_order`` is the order of the two bytes inside each register. With letters for the
bytes of the big-endian value, big/big is ABCD, little/big is CDAB (the common "low word
first"), big/little is BADC and little/little is DCBA.

A decoded weight is a :class:`~decimal.Decimal` with exactly ``decimals`` places. Integers
are scaled (raw 12345 with 3 decimals is 12.345). A float32 is not exact (12.345 reads back
as 12.34500027): it is taken from the float's shortest ``repr`` as the multiple of the
division it stands for, so no binary float ever reaches a reading.

What the codec does about a wrong word or byte order, the classic bug of Modbus weighing.
A wrong order turns the registers into another number, and often one that looks like a
weight: 12.345 kg as a float32 read in the wrong word order is about -7.5e-36, which would
round to a stable 0.000 kg. So a value is refused as ``garbage`` (with a message that names
the order that would have read it plausibly) when:

- it is a nonzero float that rounds to zero at the profile's decimals;
- it is more than ten times the capacity away from zero (no load cell survives that, so it
  is never an overload, with or without an overload bit);
- it is a float32 that is not a multiple of the division, to within float32's precision: a
  transmitter sends the weight it displays, and 12.345 arrives as 12.34500027, not as
  12.3449 (a word-swapped float lands between divisions almost always);
- it lies beyond the capacity or below the minimum while the device's own overload or
  underload bit is clear;
- **it is ambiguous**: another order reads the same registers as a different plausible
  weight, and no earlier reading on this link has confirmed the profile's order.

The last rule is what makes the others enough. A reading *confirms* a field's order when
every other order reads its registers as something implausible; the driver remembers that
until the link drops. Suppose the device really uses another order than the profile: then
that order reads every reading as the true weight, which is plausible, so no reading can
confirm the profile's order, and a reading the profile's order makes plausible is
ambiguous and refused. So a wrong order never yields a weight other than the true one, only
refusals (provided the device sends its displayed weight, within ten times its capacity).
With the right order nearly every reading confirms it; an unlucky first weighing whose
bytes read plausibly in another order too (a few weights in a thousand) is refused until
the load changes.

For float32 every other word and byte order is checked. For int32 and uint32 only the
orders with the other word order are: a byte order error inside each register cannot be
told from the registers (12.345 kg, raw ``0x3039``, byte-swapped is raw ``0x3930``,
14.640 kg, as plausible as any weight), and int16/uint16 have only that kind of error. Only
a profile checked against a known load at commissioning rules those out.
"""

from __future__ import annotations

import math
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from importlib import resources
from pathlib import Path
from typing import Final, Literal, cast, get_args

from device_drivers.errors import DeviceConfigError
from device_drivers.scales.base import GRAMS_PER_UNIT

__all__ = [
    "REGISTER_COUNT",
    "Commands",
    "DecodeReason",
    "FieldName",
    "Measurement",
    "Numbering",
    "Order",
    "RegisterDecodeError",
    "RegisterField",
    "RegisterProfile",
    "RegisterTable",
    "StatusBits",
    "StatusFlags",
    "ValueType",
    "builtin_profile",
    "builtin_profile_names",
    "decode_measurement",
    "decode_raw",
    "decode_status",
    "encode_raw",
    "load_profile",
    "order_name",
    "parse_profile",
    "raw_to_weight",
    "weight_to_raw",
]

RegisterTable = Literal["holding", "input"]
ValueType = Literal["int16", "uint16", "int32", "uint32", "float32"]
Order = Literal["big", "little"]
Numbering = Literal["protocol", "one_based", "modicon"]
"""How a profile writes addresses: ``protocol`` is the 0-based address on the wire,
``one_based`` the register number a manual gives (register 1 is address 0), ``modicon`` the
40001 (holding) / 30001 (input) style, whose prefix must agree with the table."""

DecodeReason = Literal["overload", "underload", "device_error", "garbage"]
FieldName = Literal["weight", "tare"]
"""The fields whose word and byte order a reading can confirm."""

REGISTER_COUNT: Final[dict[str, int]] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
}

_STRUCT: Final[dict[str, str]] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
}

_OVERLOAD_DIVISIONS: Final = 9
"""How far above capacity a display may still show a weight (OIML R 76: Max + 9 e)."""

_FAR_FACTOR: Final = 10
"""A reading more than this many capacities from zero is no weight at all: no load cell
survives it, so it is garbage whatever the status bits say."""

_FLOAT32_ULPS: Final = 4
"""How far (in float32 steps) a float may lie from a multiple of the division and still be
that multiple: a transmitter computing in float32 is a step or two off, a swapped float is
anywhere."""

_ORDER_NAMES: Final[dict[tuple[str, str], str]] = {
    ("big", "big"): "ABCD",
    ("little", "big"): "CDAB",
    ("big", "little"): "BADC",
    ("little", "little"): "DCBA",
}

_MAX_DECIMALS: Final = 6
_STATUS_FLAGS: Final = ("stable", "motion", "overload", "underload", "zero", "net", "error")
_MODICON_BASE: Final[dict[str, int]] = {"holding": 40001, "input": 30001}
_PROFILE_PACKAGE: Final = "device_drivers.scales"
_PROFILE_FOLDER: Final = "profiles"


class RegisterDecodeError(ValueError):
    """Register values that are not a weight; ``reason`` says what to report instead.

    ``garbage`` covers values no correctly configured device sends (NaN, a nonzero float
    that rounds to zero, a float between two divisions, a weight beyond what the scale can
    show while its own overload bit is clear, a reading another order makes plausible too):
    they mean a wrong profile, most often a wrong word order, and are never turned into a
    reading.
    """

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DecodeReason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RegisterField:
    """One value in the device's registers; ``address`` is the 0-based wire address."""

    table: RegisterTable
    address: int
    type: ValueType
    word_order: Order = "big"
    byte_order: Order = "big"

    @property
    def count(self) -> int:
        return REGISTER_COUNT[self.type]


@dataclass(frozen=True, slots=True)
class StatusBits:
    """Where the status word is and which bit (0 = least significant) means what.

    A flag the device does not have is ``None``. ``stable`` set means the weight holds
    still; ``motion`` set means it does not; a device has one or the other (or both).
    """

    table: RegisterTable
    address: int
    stable: int | None = None
    motion: int | None = None
    overload: int | None = None
    underload: int | None = None
    zero: int | None = None
    net: int | None = None
    error: int | None = None


@dataclass(frozen=True, slots=True)
class Commands:
    """The command register (always a holding register) and what to write for each action."""

    address: int
    zero: int
    tare: int
    clear_tare: int | None = None


@dataclass(frozen=True, slots=True)
class RegisterProfile:
    """A whole register map, validated; see the module docstring and ``profiles/*.toml``."""

    name: str
    weight: RegisterField
    decimals: int
    unit: str
    capacity: Decimal
    division: Decimal
    minimum: Decimal
    commands: Commands | None = None
    """``None``: the device takes no commands (no ``[command]`` section), so the driver
    cannot zero or tare it."""
    status: StatusBits | None = None
    tare: RegisterField | None = None
    model: str = ""

    @property
    def step(self) -> Decimal:
        """One unit of the last decimal: the value of raw ``1``."""
        return Decimal(1).scaleb(-self.decimals)

    @property
    def maximum(self) -> Decimal:
        """The highest weight a display may show before it must say overload."""
        return self.capacity + _OVERLOAD_DIVISIONS * self.division

    @property
    def far(self) -> Decimal:
        """Beyond this distance from zero a value is garbage, never an overload."""
        return _FAR_FACTOR * max(self.capacity, -self.minimum)

    def has_stable_flag(self) -> bool:
        return self.status is not None and (
            self.status.stable is not None or self.status.motion is not None
        )


@dataclass(frozen=True, slots=True)
class StatusFlags:
    """The status word, decoded; ``stable`` is ``None`` when the device has no such flag."""

    stable: bool | None = None
    overload: bool = False
    underload: bool = False
    zero: bool = False
    net: bool = False
    error: bool = False


@dataclass(frozen=True, slots=True)
class Measurement:
    """One decoded sample: net weight (exact), tare if the device shows it, and the flags.

    ``confirmed`` names the fields whose word and byte order this sample proves (every
    other order reads their registers as something implausible); the driver remembers them
    for the life of the link and passes them back as ``known_orders``.
    """

    net: Decimal
    tare: Decimal | None
    flags: StatusFlags
    confirmed: frozenset[FieldName] = frozenset()


# -- raw values ------------------------------------------------------------------------


def encode_raw(
    value: int | float, type_: ValueType, word_order: Order, byte_order: Order
) -> list[int]:
    """Registers carrying ``value`` the way a device with these orders sends it."""
    try:
        data = struct.pack(">" + _STRUCT[type_], value)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit {type_}: {exc}") from None
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def decode_raw(
    registers: Sequence[int], type_: ValueType, word_order: Order, byte_order: Order
) -> int | float:
    """The value ``registers`` carry; a register outside 0..65535 or a wrong count is garbage."""
    count = REGISTER_COUNT[type_]
    if len(registers) != count:
        raise RegisterDecodeError(
            "garbage", f"{type_} needs {count} registers, got {len(registers)}"
        )
    if any(not 0 <= r <= 0xFFFF for r in registers):
        raise RegisterDecodeError("garbage", f"not 16-bit registers: {list(registers)}")
    words = [r.to_bytes(2, "big") for r in registers]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    value: int | float = struct.unpack(">" + _STRUCT[type_], b"".join(words))[0]
    return value


def raw_to_weight(raw: int | float, decimals: int) -> Decimal:
    """An exact weight with ``decimals`` places from a raw integer or float32 value.

    A float is taken from its shortest ``repr`` (never from its binary expansion) and rounded
    half-even to ``decimals``. NaN, infinities and subnormal floats are garbage: no
    transmitter means them as a weight, and a subnormal is what a word-swapped round weight
    looks like (it would otherwise read as a plausible zero).
    """
    step = Decimal(1).scaleb(-decimals)
    if isinstance(raw, int):
        return Decimal(raw).scaleb(-decimals)
    if not math.isfinite(raw):
        raise RegisterDecodeError("garbage", f"float32 value {raw!r} is not a weight")
    if raw != 0 and abs(raw) < _FLOAT32_MIN_NORMAL:
        raise RegisterDecodeError(
            "garbage", f"float32 value {raw!r} is subnormal; check the profile's word order"
        )
    with localcontext() as ctx:
        ctx.prec = 80  # enough for any float32 (up to 3.4e38) with 6 decimals
        value = Decimal(repr(raw)).quantize(step)
    return value.copy_abs() if value == 0 else value


_FLOAT32_MIN_NORMAL: Final = 2.0**-126


def weight_to_raw(weight: Decimal, type_: ValueType, decimals: int) -> int | float:
    """The raw value a device sends for ``weight``: the inverse of :func:`raw_to_weight`."""
    if type_ == "float32":
        return float(weight)
    scaled = weight.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{weight} has more than {decimals} decimals")
    return int(scaled)


# -- status and measurement ---------------------------------------------------------------


def decode_status(register: int, bits: StatusBits) -> StatusFlags:
    """The flags of one status word, per the profile's bit positions."""

    def bit(position: int | None) -> bool:
        return position is not None and bool((register >> position) & 1)

    stable: bool | None = None
    if bits.stable is not None:
        stable = bit(bits.stable)
    if bits.motion is not None:
        stable = (stable is not False) and not bit(bits.motion)
    return StatusFlags(
        stable=stable,
        overload=bit(bits.overload),
        underload=bit(bits.underload),
        zero=bit(bits.zero),
        net=bit(bits.net),
        error=bit(bits.error),
    )


def decode_measurement(
    profile: RegisterProfile,
    weight: Sequence[int],
    status: int | None = None,
    tare: Sequence[int] | None = None,
    *,
    known_orders: frozenset[FieldName] = frozenset(),
) -> Measurement:
    """Register values to a measurement the profile allows, or :class:`RegisterDecodeError`.

    The device's own flags come first (error, overload, underload). Then the weight must be
    plausible (see the module docstring) and lie within ``[minimum, capacity + 9
    divisions]``. Outside it, a device that has the matching flag and did not set it is
    sending something the profile misreads (``garbage``); a device without the flag is
    simply out of range (``overload``/``underload``). ``known_orders`` are the fields whose
    order an earlier reading on this link confirmed; for the others a reading that another
    order also reads plausibly is refused as ambiguous.
    """
    flags = StatusFlags()
    if profile.status is not None:
        if status is None:
            raise RegisterDecodeError("garbage", "status register missing")
        if not 0 <= status <= 0xFFFF:
            raise RegisterDecodeError("garbage", f"status {status} is not a 16-bit register")
        flags = decode_status(status, profile.status)
        if flags.error:
            raise RegisterDecodeError(
                "device_error", f"status word 0x{status:04x} has the error bit"
            )
        if flags.overload:
            raise RegisterDecodeError("overload", "the device reports overload")
        if flags.underload:
            raise RegisterDecodeError("underload", "the device reports underload")
    confirmed: set[FieldName] = set()
    net = _field_value(
        profile, "weight", profile.weight, weight, known_orders=known_orders, confirmed=confirmed
    )
    tare_value: Decimal | None = None
    if profile.tare is not None and tare is not None:
        tare_value = _field_value(
            profile, "tare", profile.tare, tare, known_orders=known_orders, confirmed=confirmed
        )
    return Measurement(net=net, tare=tare_value, flags=flags, confirmed=frozenset(confirmed))


def order_name(word_order: Order, byte_order: Order) -> str:
    """``ABCD``, ``CDAB``, ``BADC`` or ``DCBA``: the letters manuals use for the orders."""
    return _ORDER_NAMES[(word_order, byte_order)]


def _field_value(
    profile: RegisterProfile,
    what: FieldName,
    field: RegisterField,
    registers: Sequence[int],
    *,
    known_orders: frozenset[FieldName],
    confirmed: set[FieldName],
) -> Decimal:
    """One field's value, checked as the module docstring says; adds ``what`` to
    ``confirmed`` when no other order could have read these registers plausibly."""
    raw = decode_raw(registers, field.type, field.word_order, field.byte_order)
    try:
        value = _checked(profile, what, field.type, raw)
    except RegisterDecodeError as exc:
        if exc.reason != "garbage":
            raise
        hint = "; check the profile's word and byte order"
        readings = _other_readings(profile, what, field, registers)
        if readings:
            hint += " (" + ", ".join(f"as {o} they read {v} {profile.unit}" for o, v in readings)
            hint += ")"
        raise RegisterDecodeError("garbage", f"{_show(registers)}: {exc.detail}{hint}") from None
    if what in known_orders:
        return value
    others = _other_readings(profile, what, field, registers)
    differing = [(order, other) for order, other in others if other != value]
    if differing:
        order, other = differing[0]
        raise RegisterDecodeError(
            "garbage",
            f"{_show(registers)}: {what} reads as {value} {profile.unit} in the profile's "
            f"order ({order_name(field.word_order, field.byte_order)}) but as {other} "
            f"{profile.unit} in {order}; refused until a reading that only one order can "
            "give confirms the profile (if this persists, check the profile's word and "
            "byte order against a known load)",
        )
    if not others:
        confirmed.add(what)
    return value


def _checked(
    profile: RegisterProfile, what: FieldName, type_: ValueType, raw: int | float
) -> Decimal:
    """``raw`` as the field's value; garbage, overload or underload when it cannot be one."""
    value = _plausible(profile, type_, raw, what)
    if what == "weight":
        _check_range(profile, value, what)
    elif not 0 <= value <= profile.maximum:
        raise RegisterDecodeError(
            "garbage", f"tare {value} {profile.unit} outside 0..{profile.maximum}"
        )
    return value


def _plausible(profile: RegisterProfile, type_: ValueType, raw: int | float, what: str) -> Decimal:
    """``raw`` as a weight, or garbage when no device could mean it (range aside)."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise RegisterDecodeError("garbage", f"{what}: float32 value {raw!r} is not a weight")
    value = raw_to_weight(raw, profile.decimals) if isinstance(raw, int) else _float_weight(raw)
    shown = f"{what} reads as {value} {profile.unit}"
    if abs(value) > profile.far:
        raise RegisterDecodeError("garbage", f"{shown}, far beyond the capacity {profile.capacity}")
    if not isinstance(raw, float):
        return value
    with localcontext() as ctx:
        ctx.prec = 40  # a float's repr has 17 digits; |value| / division stays far below 1e40
        steps = (value / profile.division).to_integral_value(ROUND_HALF_EVEN)
        on_grid = (steps * profile.division).quantize(profile.step)
    if raw != 0 and on_grid == 0:
        raise RegisterDecodeError(
            "garbage", f"{shown}, a nonzero value that rounds to {on_grid.copy_abs()}"
        )
    if _float32_steps_apart(raw, float(on_grid)) > _FLOAT32_ULPS:
        raise RegisterDecodeError(
            "garbage",
            f"{shown}, not a multiple of the division {profile.division} "
            "(a transmitter sends the weight it displays)",
        )
    return on_grid.copy_abs() if on_grid == 0 else on_grid


def _float_weight(raw: float) -> Decimal:
    """A float as the decimal its shortest ``repr`` spells (never its binary expansion)."""
    return Decimal(repr(raw))


def _float32_steps_apart(a: float, b: float) -> int:
    """How many float32 values lie between ``a`` and ``b`` (both taken as float32)."""

    def ordinal(x: float) -> int:
        bits: int = struct.unpack(">i", struct.pack(">f", x))[0]
        return bits if bits >= 0 else -(bits & 0x7FFFFFFF)

    return abs(ordinal(a) - ordinal(b))


def _other_readings(
    profile: RegisterProfile, what: FieldName, field: RegisterField, registers: Sequence[int]
) -> list[tuple[str, Decimal]]:
    """What the same registers read as in the other orders that matter, where that is not
    garbage (an overload or underload of a device without that bit counts as a reading).

    For float32 that is every other word and byte order; for the 32-bit integers the two
    with the other word order (a byte order error in an integer cannot be told apart from
    a weight); for 16-bit values none.
    """
    if field.count == 1:
        return []
    readings: list[tuple[str, Decimal]] = []
    for word_order in get_args(Order):
        for byte_order in get_args(Order):
            if word_order == field.word_order and (
                byte_order == field.byte_order or field.type != "float32"
            ):
                continue
            raw = decode_raw(registers, field.type, word_order, byte_order)
            try:
                value = _checked(profile, what, field.type, raw)
            except RegisterDecodeError as exc:
                if exc.reason == "garbage":
                    continue
                value = _plausible(profile, field.type, raw, what)
            readings.append((order_name(word_order, byte_order), value))
    return readings


def _show(registers: Sequence[int]) -> str:
    return "registers " + " ".join(f"0x{r:04x}" for r in registers)


def _check_range(profile: RegisterProfile, value: Decimal, what: str) -> None:
    status = profile.status
    if value > profile.maximum:
        detail = f"{what} {value} {profile.unit} beyond capacity {profile.capacity}"
        if status is not None and status.overload is not None:
            raise RegisterDecodeError("garbage", detail + " without the overload bit")
        raise RegisterDecodeError("overload", detail)
    if value < profile.minimum:
        detail = f"{what} {value} {profile.unit} below the minimum {profile.minimum}"
        if status is not None and status.underload is not None:
            raise RegisterDecodeError("garbage", detail + " without the underload bit")
        raise RegisterDecodeError("underload", detail)


# -- profiles ----------------------------------------------------------------------------


def builtin_profile_names() -> list[str]:
    """The profiles shipped in ``device_drivers/scales/profiles``, by file stem."""
    folder = resources.files(_PROFILE_PACKAGE).joinpath(_PROFILE_FOLDER)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_profile(name: str) -> RegisterProfile:
    """A shipped profile by name (``generic-int32-cdab``)."""
    if name not in builtin_profile_names():
        folder = resources.files(_PROFILE_PACKAGE).joinpath(_PROFILE_FOLDER)
        raise DeviceConfigError(
            f"no built-in Modbus scale profile {name!r} (looked for {name}.toml in {folder}); "
            f"built in: {', '.join(builtin_profile_names())}; a file's path ends in .toml"
        )
    folder = resources.files(_PROFILE_PACKAGE).joinpath(_PROFILE_FOLDER)
    text = folder.joinpath(f"{name}.toml").read_text("utf-8")
    return parse_profile(text, source=name)


def load_profile(path: str | Path) -> RegisterProfile:
    """A profile from a TOML file; an unreadable or invalid file is a config error."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        why = exc.strerror or exc
        raise DeviceConfigError(f"cannot read Modbus scale profile {path}: {why}") from None
    return parse_profile(text, source=str(path))


def parse_profile(text: str, *, source: str = "profile") -> RegisterProfile:
    """Validate a profile's TOML text; every error names the file and the field."""
    try:
        # Decimals, not floats: a capacity of 60.005 must stay 60.005.
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise DeviceConfigError(f"{source}: not valid TOML: {exc}") from None
    return _Reader(source).profile(data)


class _Reader:
    """Reads one profile, so every error message can say where it is."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.numbering: Numbering = "protocol"

    def fail(self, where: str, message: str) -> DeviceConfigError:
        return DeviceConfigError(f"{self.source}: {where}: {message}")

    def table(self, data: Mapping[str, object], section: str) -> Mapping[str, object]:
        value = data.get(section)
        if not isinstance(value, dict):
            raise self.fail(section, "missing section" if value is None else "must be a table")
        return value

    def check_keys(self, data: Mapping[str, object], section: str, known: set[str]) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise self.fail(
                f"{section}.{unknown[0]}", f"unknown field; known: {', '.join(sorted(known))}"
            )

    def choice(
        self,
        data: Mapping[str, object],
        where: str,
        key: str,
        allowed: tuple[str, ...],
        default: str | None = None,
    ) -> str:
        value = data.get(key, default)
        if value is None:
            raise self.fail(f"{where}.{key}", "required")
        if value not in allowed:
            raise self.fail(f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
        assert isinstance(value, str)
        return value

    def integer(
        self,
        data: Mapping[str, object],
        where: str,
        key: str,
        low: int,
        high: int,
        *,
        default: int | None = None,
        required: bool = True,
    ) -> int | None:
        value = data.get(key, default)
        if value is None:
            if required:
                raise self.fail(f"{where}.{key}", "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where}.{key}", f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise self.fail(f"{where}.{key}", f"must be {low}..{high}, got {value}")
        return value

    def decimal(self, data: Mapping[str, object], where: str, key: str) -> Decimal | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be a number, got {value!r}")
        try:
            number = Decimal(value) if isinstance(value, (int, str, Decimal)) else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise self.fail(f"{where}.{key}", f"must be a number, got {value!r}")
        return number

    def address(self, data: Mapping[str, object], where: str, table: RegisterTable) -> int:
        value = self.integer(data, where, "address", 0, 465536)
        assert value is not None
        if self.numbering == "protocol":
            wire = value
        elif self.numbering == "one_based":
            wire = value - 1
        else:
            base = _MODICON_BASE[table]
            # 5-digit (40001..49999) and 6-digit (400001..465536) Modicon numbers.
            if base <= value < base + 9999:
                wire = value - base
            elif base * 10 - 9 <= value <= base * 10 - 10 + 65536:
                wire = value - (base * 10 - 9)
            else:
                raise self.fail(
                    f"{where}.address",
                    f"{value} is not a Modicon number of the {table} table "
                    f"({base}.. or {base * 10 - 9}..)",
                )
        if not 0 <= wire <= 0xFFFF:
            raise self.fail(
                f"{where}.address", f"{value} gives wire address {wire}, outside 0..65535"
            )
        return wire

    def register_field(
        self, data: Mapping[str, object], where: str, extra: set[str]
    ) -> RegisterField:
        self.check_keys(
            data, where, {"table", "address", "type", "word_order", "byte_order", *extra}
        )
        table = cast(
            RegisterTable, self.choice(data, where, "table", get_args(RegisterTable), "holding")
        )
        type_ = cast(ValueType, self.choice(data, where, "type", get_args(ValueType)))
        word = cast(Order, self.choice(data, where, "word_order", get_args(Order), "big"))
        byte = cast(Order, self.choice(data, where, "byte_order", get_args(Order), "big"))
        address = self.address(data, where, table)
        if address + REGISTER_COUNT[type_] - 1 > 0xFFFF:
            raise self.fail(f"{where}.address", "the value runs past address 65535")
        return RegisterField(table, address, type_, word, byte)

    def profile(self, data: Mapping[str, object]) -> RegisterProfile:
        self.check_keys(
            data, "profile", {"name", "model", "numbering", "weight", "tare", "status", "command"}
        )
        name = data.get("name", self.source)
        model = data.get("model", "")
        if not isinstance(name, str) or not name:
            raise self.fail("name", "must be a non-empty string")
        if not isinstance(model, str):
            raise self.fail("model", "must be a string")
        self.numbering = cast(
            Numbering, self.choice(data, "profile", "numbering", get_args(Numbering), "protocol")
        )

        w = self.table(data, "weight")
        weight = self.register_field(
            w, "weight", {"decimals", "unit", "capacity", "division", "minimum"}
        )
        decimals = self.integer(w, "weight", "decimals", 0, _MAX_DECIMALS)
        assert decimals is not None
        unit = w.get("unit")
        if unit not in GRAMS_PER_UNIT:
            raise self.fail(
                "weight.unit", f"must be one of {', '.join(GRAMS_PER_UNIT)}, got {unit!r}"
            )
        assert isinstance(unit, str)
        step = Decimal(1).scaleb(-decimals)
        capacity = self.decimal(w, "weight", "capacity")
        if capacity is None or capacity <= 0:
            raise self.fail("weight.capacity", "required, a positive weight")
        division = self.decimal(w, "weight", "division") or step
        if division <= 0 or division % step != 0:
            raise self.fail(
                "weight.division", f"must be a positive multiple of {step}, got {division}"
            )
        minimum = self.decimal(w, "weight", "minimum")
        if minimum is None:
            minimum = -capacity  # a tared container taken off reads down to -capacity
        if minimum >= capacity:
            raise self.fail("weight.minimum", "must be below the capacity")
        self._check_fits(weight, capacity + _OVERLOAD_DIVISIONS * division, minimum, decimals)

        tare: RegisterField | None = None
        if "tare" in data:
            tare = self.register_field(self.table(data, "tare"), "tare", set())

        status: StatusBits | None = None
        if "status" in data:
            status = self.status(self.table(data, "status"))

        commands: Commands | None = None
        if "command" in data:
            commands = self.commands(self.table(data, "command"))
        profile = RegisterProfile(
            name=name,
            model=model,
            weight=weight,
            decimals=decimals,
            unit=unit,
            capacity=capacity,
            division=division,
            minimum=minimum,
            commands=commands,
            status=status,
            tare=tare,
        )
        self._check_overlaps(profile)
        return profile

    def commands(self, c: Mapping[str, object]) -> Commands:
        self.check_keys(c, "command", {"table", "address", "zero", "tare", "clear_tare"})
        self.choice(c, "command", "table", ("holding",), "holding")
        commands = Commands(
            address=self.address(c, "command", "holding"),
            zero=self._int(c, "command", "zero"),
            tare=self._int(c, "command", "tare"),
            clear_tare=self.integer(c, "command", "clear_tare", 0, 0xFFFF, required=False),
        )
        values = [v for v in (commands.zero, commands.tare, commands.clear_tare) if v is not None]
        if len(set(values)) != len(values):
            raise self.fail("command", "zero, tare and clear_tare need different values")
        return commands

    def _int(self, data: Mapping[str, object], where: str, key: str) -> int:
        value = self.integer(data, where, key, 0, 0xFFFF)
        assert value is not None
        return value

    def status(self, s: Mapping[str, object]) -> StatusBits:
        self.check_keys(s, "status", {"table", "address", *_STATUS_FLAGS})
        table = cast(
            RegisterTable, self.choice(s, "status", "table", get_args(RegisterTable), "holding")
        )
        address = self.address(s, "status", table)
        bits = {
            flag: self.integer(s, "status", flag, 0, 15, required=False) for flag in _STATUS_FLAGS
        }
        used = [b for b in bits.values() if b is not None]
        if len(set(used)) != len(used):
            raise self.fail("status", "two flags on the same bit")
        return StatusBits(table=table, address=address, **bits)

    def _check_fits(
        self, field: RegisterField, maximum: Decimal, minimum: Decimal, decimals: int
    ) -> None:
        if field.type == "float32":
            return
        bits = 16 * field.count
        signed = field.type.startswith("int")
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if maximum.scaleb(decimals) > high:
            raise self.fail(
                "weight.capacity", f"{maximum} with {decimals} decimals does not fit {field.type}"
            )
        if minimum.scaleb(decimals) < low and not signed:
            return  # an unsigned value simply cannot go below zero; nothing to refuse
        if minimum.scaleb(decimals) < low:
            raise self.fail(
                "weight.minimum", f"{minimum} with {decimals} decimals does not fit {field.type}"
            )

    def _check_overlaps(self, profile: RegisterProfile) -> None:
        spans: list[tuple[str, str, int, int]] = [
            ("weight", profile.weight.table, profile.weight.address, profile.weight.count)
        ]
        if profile.tare is not None:
            spans.append(("tare", profile.tare.table, profile.tare.address, profile.tare.count))
        if profile.status is not None:
            spans.append(("status", profile.status.table, profile.status.address, 1))
        if profile.commands is not None:
            spans.append(("command", "holding", profile.commands.address, 1))
        for i, (name_a, table_a, start_a, count_a) in enumerate(spans):
            for name_b, table_b, start_b, count_b in spans[i + 1 :]:
                if (
                    table_a == table_b
                    and start_a < start_b + count_b
                    and start_b < start_a + count_a
                ):
                    raise self.fail(f"{name_b}.address", f"overlaps the {name_a} register(s)")
