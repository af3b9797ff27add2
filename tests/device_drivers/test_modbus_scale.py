"""The Modbus scale driver against the twin, over real loopback TCP and RTU over a pty."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.scales import (
    Scale,
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleUnavailableError,
    ScaleUnderloadError,
    Weight,
)
from device_drivers.scales.modbus_scale import (
    ModbusScale,
    ModbusScaleConfig,
    ScaleDeviceFaultError,
    ScaleGarbageError,
    create_modbus_scale,
)
from simulators.modbus_scale import ModbusScaleTwin
from tests.device_drivers.driver_helpers import (
    Wire,
    closed_at_teardown,
    errors_of,
    read_until_it_works,
    tcp_url,
    weights_while_unplugged,
    wired,
)
from tests.patience import patience_timeout

pytestmark = pytest.mark.timeout(60)

PROFILES = Path(__file__).resolve().parents[2] / "device_drivers" / "scales" / "profiles"
CDAB = PROFILES / "generic-int32-cdab.toml"
FLOAT = PROFILES / "generic-float32-abcd.toml"

MakeScale = Callable[..., ModbusScale]
ModbusWire = Wire[ModbusScaleTwin]


@pytest.fixture(params=["tcp", "rtu"])
def wire(request: pytest.FixtureRequest, tmp_path: Path, no_leaks: None) -> Iterator[ModbusWire]:
    """A transmitter loaded with 12.345 kg, over TCP or an RS-485 bus through a by-id link."""
    if request.param == "tcp":
        twin = ModbusScaleTwin(CDAB, tcp_port=0, weight=Decimal("12.345"))
        yield from wired(request.param, twin, tcp_url(twin))
    else:
        link = tmp_path / "usb-FTDI_RS485-if00-port0"
        twin = ModbusScaleTwin(CDAB, rtu=True, link=link, weight=Decimal("12.345"))
        yield from wired(request.param, twin, str(link))


@pytest.fixture
def twin(wire: ModbusWire) -> ModbusScaleTwin:
    return wire.twin


@pytest.fixture
def make_scale(wire: ModbusWire) -> Iterator[MakeScale]:
    yield from closed_at_teardown(
        lambda **settings: ModbusScale(ModbusScaleConfig(**settings)),
        {
            "device_id": "dock-1-scale",
            "address": wire.address,
            "profile": "generic-int32-cdab",
            "reply_timeout": 0.3,
        },
    )


def test_driver_is_a_scale(make_scale: MakeScale) -> None:
    assert isinstance(make_scale(), Scale)


def test_stable_read_is_exact_with_tare_gross_unit_and_raw_frame(
    make_scale: MakeScale,
) -> None:
    reading = make_scale().read_stable(2.0)
    assert (reading.net, reading.tare, reading.gross, reading.unit, reading.stable) == (
        Decimal("12.345"),
        Decimal("0.000"),
        Decimal("12.345"),
        "kg",
        True,
    )
    assert isinstance(reading.net, Decimal)
    assert reading.raw  # the reply frame as it came off the wire
    assert reading.read_at.tzinfo is not None


def test_wobble_then_settle_never_gives_a_moving_weight(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal("25"), settle=0.6)
    moving = scale.read_now()
    reading = scale.read_stable(5.0)
    assert moving.stable is False
    assert moving.net != Decimal("25.000")
    assert (reading.net, reading.stable) == (Decimal("25.000"), True)


def test_consecutive_mode_wants_readings_within_one_division(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale(stable_mode="consecutive", stable_readings=4, poll_interval=0.01)
    before = len(twin.requests)
    assert scale.read_stable(3.0).net == Decimal("12.345")
    assert len(twin.requests) - before >= 4


def test_motion_that_outlasts_the_timeout_is_a_motion_error(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.wobble(30.0)
    with pytest.raises(ScaleMotionError):
        scale.read_stable(0.5)
    assert errors_of(scale) == {"motion": 1}


@pytest.mark.parametrize(
    ("fault", "error"), [("overload", ScaleOverloadError), ("underload", ScaleUnderloadError)]
)
def test_overload_and_underload_are_typed_errors(
    twin: ModbusScaleTwin, make_scale: MakeScale, fault: str, error: type[ScaleError]
) -> None:
    scale = make_scale()
    getattr(twin, fault)()
    with pytest.raises(error):
        scale.read_stable(5.0)  # waiting does not cure it: raised at the first reading
    with pytest.raises(error):
        scale.read_now()
    assert errors_of(scale) == {fault: 2}
    twin.clear_faults()
    assert scale.read_stable(2.0).net == Decimal("12.345")


def test_a_load_beyond_capacity_is_an_overload(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal("75"))  # capacity 60 kg
    with pytest.raises(ScaleOverloadError):
        scale.read_stable(2.0)


def test_the_error_bit_is_a_device_fault(twin: ModbusScaleTwin, make_scale: MakeScale) -> None:
    scale = make_scale()
    twin.device_error()
    with pytest.raises(ScaleDeviceFaultError):
        scale.read_stable(5.0)
    twin.clear_faults()
    assert scale.read_now().net == Decimal("12.345")


def test_wrong_word_order_is_refused_not_emitted(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.swap_words()  # 12.345 kg sent ABCD to a profile that says CDAB
    with pytest.raises(ScaleGarbageError, match="word"):
        scale.read_now()
    with pytest.raises(ScaleGarbageError):
        scale.read_stable(0.4)
    assert errors_of(scale)["garbage"] >= 2
    twin.clear_faults()
    assert scale.read_stable(2.0).net == Decimal("12.345")


def test_no_reply_is_a_timeout_and_degrades_until_the_device_answers(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("12.345")
    twin.no_reply(None)
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()
    with pytest.raises(ScaleTimeoutError):
        scale.read_stable(0.7)
    status = scale.status()
    assert status.state == "degraded"
    assert status.errors["timeout"] >= 2
    assert status.errors["motion"] == 0  # silence is not motion
    twin.clear_faults()
    assert read_until_it_works(scale, within=3.0).net == Decimal("12.345")
    assert scale.status().state == "connected"


@pytest.mark.parametrize(
    ("wire", "fault"),
    [
        *((kind, fault) for kind in ("tcp", "rtu") for fault in ("garbage", "cut", "short")),
        ("rtu", "bad_crc"),  # Modbus TCP frames carry no CRC
    ],
    indirect=["wire"],
)
def test_damaged_replies_are_counted_garbage_never_a_reading(
    wire: ModbusWire, twin: ModbusScaleTwin, make_scale: MakeScale, fault: str
) -> None:
    scale = make_scale()
    twin.wire_fault(fault)  # type: ignore[arg-type]
    with pytest.raises(ScaleGarbageError):
        scale.read_now()
    assert errors_of(scale) == {"garbage": 1}
    assert read_until_it_works(scale, within=3.0).net == Decimal("12.345")


def test_damaged_replies_inside_a_stable_read_are_retried(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.wire_fault("garbage", count=2)
    assert scale.read_stable(5.0).net == Decimal("12.345")
    assert errors_of(scale) == {"garbage": 2}


@pytest.mark.parametrize("wire", ["rtu"], indirect=True)  # unasked bytes: a serial-line fault
def test_noise_on_the_rtu_line_is_counted_and_dropped(
    wire: ModbusWire, twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("12.345")
    twin.send_garbage()
    time.sleep(0.1)
    assert scale.read_now().net == Decimal("12.345")
    assert errors_of(scale) == {"garbage": 1}


def test_slow_replies_within_the_timeout_are_fine(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=0.6)
    twin.set_delay(0.15)
    assert scale.read_stable(5.0).net == Decimal("12.345")
    assert errors_of(scale) == {}


def test_a_late_reply_is_never_taken_for_the_next_one(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=0.3)
    twin.set_delay(0.45)
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()  # its answer, 12.345 kg, is still on its way
    twin.set_delay(0.0)
    twin.set_weight(Decimal("42"))
    assert read_until_it_works(scale, within=3.0).net == Decimal("42.000")
    assert scale.read_stable(2.0).net == Decimal("42.000")


def test_tare_zero_and_clear_tare(twin: ModbusScaleTwin, make_scale: MakeScale) -> None:
    scale = make_scale()
    twin.set_weight(Decimal("0.5"))  # an empty crate
    assert scale.tare() == Weight(Decimal("0.500"), "kg")
    twin.set_weight(Decimal("17"))
    full = scale.read_stable(2.0)
    assert (full.net, full.tare, full.gross) == (
        Decimal("16.500"),
        Decimal("0.500"),
        Decimal("17.000"),
    )
    scale.clear_tare()
    assert scale.read_stable(2.0).net == Decimal("17.000")

    with pytest.raises(ScaleCommandError) as caught:
        scale.zero()  # 17 kg is a load, not a zero drift: the device refuses
    assert caught.value.code == "EL"
    twin.set_weight(Decimal("0.3"))  # an empty platform that drifted
    scale.zero()
    assert scale.read_stable(2.0).net == Decimal("0.000")
    twin.set_weight(Decimal("1.3"))
    assert scale.read_stable(2.0).net == Decimal("1.000")


def test_tare_waits_for_a_still_load(twin: ModbusScaleTwin, make_scale: MakeScale) -> None:
    scale = make_scale()
    twin.set_weight(Decimal("2"), settle=0.5)
    assert scale.tare(timeout=patience_timeout(5.0)) == Weight(Decimal("2.000"), "kg")
    twin.wobble(30.0)
    with pytest.raises(ScaleMotionError):
        scale.tare(timeout=0.4)


def test_reconnects_within_two_seconds_of_the_device_coming_back(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("12.345")
    twin.disconnect()  # cable pulled, or the gateway rebooting
    assert weights_while_unplugged(scale, 0.6) == []  # nothing but errors while it is gone
    status = scale.status()
    assert status.state == "disconnected"
    assert status.errors["io"] == 1  # one outage, however many retries

    twin.reconnect()
    back_at = time.monotonic()
    reading = read_until_it_works(scale, within=5.0)
    assert reading.net == Decimal("12.345")
    assert time.monotonic() - back_at < 2.0
    status = scale.status()
    assert (status.state, status.reconnects, status.errors["io"]) == ("connected", 1, 1)


def test_the_device_coming_back_mid_stable_read(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    scale.read_now()
    twin.disconnect()
    timer = threading.Timer(0.4, twin.reconnect)
    timer.start()
    try:
        assert scale.read_stable(4.0).net == Decimal("12.345")
    finally:
        timer.join()
    assert scale.status().reconnects == 1


def test_close_ends_a_stable_read_and_later_calls(
    twin: ModbusScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.wobble(30.0)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            scale.read_stable(20.0)
        except ScaleError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    scale.close()
    reader.join(timeout=patience_timeout(5))
    assert not reader.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ScaleUnavailableError)
    with pytest.raises(ScaleUnavailableError, match="closed"):
        scale.read_now()
    assert scale.status().state == "disconnected"


def test_a_float32_transmitter_reads_exact_decimals(no_leaks: None) -> None:
    with ModbusScaleTwin(FLOAT, tcp_port=0, weight=Decimal("123.5")) as twin:
        address = tcp_url(twin)
        with ModbusScale(
            ModbusScaleConfig("float", address, "generic-float32-abcd", reply_timeout=0.3)
        ) as scale:
            reading = scale.read_stable(2.0)
            assert (reading.net, reading.tare, reading.gross) == (Decimal("123.50"), None, None)
            twin.swap_words()  # 123.5 is 0x42F70000: swapped it is a subnormal, not zero
            with pytest.raises(ScaleGarbageError):
                scale.read_now()


WEIGHT_ONLY = """
name = "weight-only"
[weight]
address = 0
type = "int32"
word_order = "little"
decimals = 3
unit = "kg"
capacity = "60"
[status]
address = 2
stable = 0
overload = 1
underload = 2
"""


def test_a_profile_without_commands_weighs_and_says_it_cannot_zero_or_tare(
    tmp_path: Path, no_leaks: None
) -> None:
    profile = tmp_path / "weight-only.toml"
    profile.write_text(WEIGHT_ONLY)
    with ModbusScaleTwin(profile, tcp_port=0, weight=Decimal("7.5")) as twin:
        config = ModbusScaleConfig("dock-3-scale", tcp_url(twin), profile, reply_timeout=0.3)
        with ModbusScale(config) as scale:
            assert scale.read_stable(2.0).net == Decimal("7.500")
            asked = len(twin.requests)
            for call in (scale.zero, scale.tare, scale.clear_tare):
                with pytest.raises(ScaleCommandError, match=r"no \[command\] section") as caught:
                    call()
                assert "weight-only" in caught.value.detail
            assert len(twin.requests) == asked  # nothing was sent
            assert errors_of(scale) == {}  # the device did nothing wrong


FLOAT_CDAB = """
name = "float32-cdab"
[weight]
address = 0
type = "float32"
word_order = "little"
decimals = 3
unit = "kg"
capacity = "60"
division = "0.005"
[status]
address = 2
stable = 0
overload = 1
underload = 2
"""


@pytest.fixture
def float_cdab(tmp_path: Path) -> Path:
    """A float32 transmitter, low word first, weighing 60 kg by 5 g."""
    profile = tmp_path / "float32-cdab.toml"
    profile.write_text(FLOAT_CDAB)
    return profile


def test_a_float_in_the_wrong_word_order_is_refused_not_a_stable_zero(
    float_cdab: Path, no_leaks: None
) -> None:
    """12.345 kg sent high word first to a profile that says low word first reads as about
    -7.5e-36, which used to pass as a stable 0.000 kg."""
    with ModbusScaleTwin(float_cdab, tcp_port=0, weight=Decimal("12.345")) as twin:
        twin.swap_words()
        config = ModbusScaleConfig("dock-4-scale", tcp_url(twin), float_cdab, reply_timeout=0.3)
        with ModbusScale(config) as scale:
            with pytest.raises(ScaleGarbageError) as caught:
                scale.read_stable(1.0)
            assert "rounds to 0.000" in caught.value.detail
            assert "check the profile's word and byte order" in caught.value.detail
            assert "as ABCD they read 12.345 kg" in caught.value.detail
            assert errors_of(scale)["garbage"] >= 1
            twin.clear_faults()
            assert scale.read_stable(2.0).net == Decimal("12.345")


SWAPS = {
    "words": ("swap_words",),
    "bytes": ("swap_bytes",),
    "words and bytes": ("swap_words", "swap_bytes"),
}


@pytest.mark.parametrize(
    ("profile_kind", "swap"),
    [
        ("float32", "words"),
        ("float32", "bytes"),
        ("float32", "words and bytes"),
        ("int32", "words"),
        ("int32", "words and bytes"),
        # int32 with only the bytes swapped cannot be seen: see modbus_map's docstring.
    ],
)
def test_a_wrong_order_never_gives_another_weight_through_the_driver(
    float_cdab: Path, no_leaks: None, profile_kind: str, swap: str
) -> None:
    """Weights across the whole range, sent in a wrong order: each is refused (or read
    exactly where the registers happen to mean the same in both orders). The same weights
    in the right order then read exactly."""
    profile = float_cdab if profile_kind == "float32" else CDAB
    sample = random.Random(f"{profile_kind} {swap}")
    weights = [Decimal(sample.randrange(-12_000, 12_001)) * Decimal("0.005") for _ in range(30)]
    weights += [Decimal("12.345"), Decimal("0.005"), Decimal("-0.005"), Decimal("60")]
    with ModbusScaleTwin(profile, tcp_port=0) as twin:
        config = ModbusScaleConfig("dock-5-scale", tcp_url(twin), profile, reply_timeout=0.5)
        with ModbusScale(config) as scale:
            for method in SWAPS[swap]:
                getattr(twin, method)()
            refused = 0
            for weight in weights:
                twin.set_weight(weight)
                try:
                    reading = scale.read_now()
                except ScaleError:
                    refused += 1
                    continue
                assert reading.net == weight, f"{weight} kg read as {reading.net} kg"
            assert refused >= len(weights) - 1  # at most the zero-like one reads the same
            twin.clear_faults()
            for weight in weights:
                twin.set_weight(weight)
                assert scale.read_now().net == weight


# -- an RS-485 bus with two transmitters ------------------------------------------------------


def test_two_units_on_one_rtu_bus_share_the_port_and_are_serialized(
    tmp_path: Path, no_leaks: None
) -> None:
    link = tmp_path / "usb-RS485-bus"
    with ModbusScaleTwin(CDAB, rtu=True, link=link, units=(1, 2), weight=Decimal(1)) as twin:
        twin.set_weight(Decimal(2), unit=2)
        twin.set_delay(0.01)  # a request arriving during another one's reply would be seen
        first = ModbusScale(ModbusScaleConfig("a", link, CDAB, unit_id=1, reply_timeout=0.5))
        second = ModbusScale(ModbusScaleConfig("b", link, CDAB, unit_id=2, reply_timeout=0.5))
        try:
            assert first.bus is second.bus
            seen: dict[str, list[Decimal]] = {"a": [], "b": []}
            failures: list[BaseException] = []

            def poll(scale: ModbusScale) -> None:
                try:
                    for _ in range(15):
                        seen[scale.config.device_id].append(scale.read_now().net)
                except BaseException as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=poll, args=(s,)) for s in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=patience_timeout(30))
            assert not failures
            assert seen == {"a": [Decimal("1.000")] * 15, "b": [Decimal("2.000")] * 15}
            assert twin.overlaps == 0
            assert {unit for unit, *_ in twin.requests} == {1, 2}
            assert errors_of(first) == errors_of(second) == {}
        finally:
            first.close()
            second.close()


def test_units_on_one_bus_must_agree_on_the_line(tmp_path: Path, no_leaks: None) -> None:
    port = str(tmp_path / "bus")
    with ModbusScale(ModbusScaleConfig("a", port, CDAB, unit_id=1, reply_timeout=0.3)):
        with pytest.raises(DeviceConfigError, match="same"):
            ModbusScale(ModbusScaleConfig("b", port, CDAB, unit_id=2, baudrate=9600))
        with pytest.raises(DeviceConfigError, match="unit id 1"):
            ModbusScale(ModbusScaleConfig("c", port, CDAB, unit_id=1, reply_timeout=0.3))


# -- without a twin ------------------------------------------------------------------------------


def test_a_missing_device_is_reported_promptly(tmp_path: Path, no_leaks: None) -> None:
    config = ModbusScaleConfig("ghost", tmp_path / "no-such-port", CDAB, reply_timeout=0.2)
    with ModbusScale(config) as scale:
        started = time.monotonic()
        with pytest.raises(ScaleUnavailableError):
            scale.read_stable(0.5)
        with pytest.raises(ScaleUnavailableError):
            scale.read_now()
        assert time.monotonic() - started < 3.0
        status = scale.status()
    assert (status.state, status.errors["io"]) == ("disconnected", 1)


def test_a_refused_tcp_port_is_unavailable_not_oserror(no_leaks: None) -> None:
    with ModbusScale(ModbusScaleConfig("gw", "tcp://127.0.0.1:9", CDAB, reply_timeout=0.2)) as s:
        with pytest.raises(ScaleUnavailableError):
            s.read_now()
        assert s.status().errors["io"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"device_id": ""},
        {"address": "tcp://no-port"},
        {"unit_id": 0},
        {"unit_id": 248},
        {"parity": "X"},
        {"stable_mode": "hopeful"},
        {"stable_readings": 1},
        {"reply_timeout": 0},
        {"reconnect_min_delay": 5.0},
        {"profile": "acme-9000"},
        {"profile": "/no/such/profile.toml"},
    ],
)
def test_config_mistakes_are_caught_up_front(bad: dict[str, object]) -> None:
    settings: dict[str, object] = {
        "device_id": "d",
        "address": "/dev/null",
        "profile": "generic-int32-cdab",
        **bad,
    }
    with pytest.raises(DeviceConfigError):
        ModbusScaleConfig(**settings)  # type: ignore[arg-type]


def test_sub_second_timeouts_are_allowed() -> None:
    config = ModbusScaleConfig("d", "tcp://127.0.0.1:502", CDAB, reply_timeout=0.05)
    assert config.reply_timeout == 0.05
    assert config.tcp_endpoint() == ("127.0.0.1", 502)


def test_the_factory_builds_a_driver_and_names_bad_options(no_leaks: None) -> None:
    scale = create_modbus_scale(
        "dock-2", {"address": "tcp://127.0.0.1:9", "profile": "generic-float32-abcd"}
    )
    try:
        assert isinstance(scale, Scale)
        assert scale.profile.name == "generic-float32-abcd"
    finally:
        scale.close()
    with pytest.raises(DeviceConfigError, match="colour"):
        create_modbus_scale("d", {"address": "x", "profile": "generic-int32-cdab", "colour": 1})
    with pytest.raises(DeviceConfigError, match="unit_id"):
        create_modbus_scale("d", {"address": "x", "profile": CDAB, "unit_id": "1"})
    with pytest.raises(DeviceConfigError, match="profile"):
        create_modbus_scale("d", {"address": "x"})


def test_busy_is_retryable() -> None:
    assert ScaleBusyError.retryable
