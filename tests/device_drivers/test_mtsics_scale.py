"""The MT-SICS driver against the scale twin, over a real pty and over loopback TCP."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.scales import (
    MtSicsScale,
    MtSicsScaleConfig,
    Scale,
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleTransmissionError,
    ScaleUnavailableError,
    ScaleUnderloadError,
    Weight,
    WeightReading,
)
from simulators.scale import MtSicsScaleTwin
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

MakeScale = Callable[..., MtSicsScale]
MtSicsWire = Wire[MtSicsScaleTwin]


@pytest.fixture(params=["pty", "tcp"])
def wire(request: pytest.FixtureRequest, tmp_path: Path, no_leaks: None) -> Iterator[MtSicsWire]:
    """A twin loaded with 1234.5 g, reached through a by-id style link or a TCP port."""
    if request.param == "pty":
        link = tmp_path / "usb-Mettler_Toledo-if00"
        twin = MtSicsScaleTwin(link, weight=Decimal("1234.5"))
        yield from wired(request.param, twin, str(link))
    else:
        twin = MtSicsScaleTwin(pty=False, tcp_port=0, weight=Decimal("1234.5"))
        yield from wired(request.param, twin, tcp_url(twin))


@pytest.fixture
def twin(wire: MtSicsWire) -> MtSicsScaleTwin:
    return wire.twin


@pytest.fixture
def make_scale(wire: MtSicsWire) -> Iterator[MakeScale]:
    """Build drivers for the twin; every driver built is closed at teardown."""
    yield from closed_at_teardown(
        lambda **settings: MtSicsScale(MtSicsScaleConfig(**settings)),
        {"device_id": "dock-1-scale", "address": wire.address, "reply_timeout": 0.3},
    )


def test_driver_is_a_scale(make_scale: MakeScale) -> None:
    assert isinstance(make_scale(), Scale)


def test_stable_read_keeps_net_tare_gross_unit_and_raw_frame(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.preset_tare(Weight(Decimal("100.00"), "g")) == Weight(Decimal("100.00"), "g")
    before = datetime.datetime.now(datetime.UTC)

    reading = scale.read_stable(1.0)

    assert reading == WeightReading(
        device_id="dock-1-scale",
        net=Decimal("1134.50"),
        gross=Decimal("1234.50"),
        tare=Decimal("100.00"),
        unit="g",
        stable=True,
        raw=b"S S    1134.50 g",
        read_at=reading.read_at,
    )
    assert reading.read_at.tzinfo is datetime.UTC
    assert reading.read_at >= before
    assert scale.status().state == "connected"
    assert errors_of(scale) == {}


@pytest.mark.parametrize("mode", ["device", "consecutive"])
def test_wobble_then_settle_gives_the_settled_weight_and_never_a_dynamic_one(
    twin: MtSicsScaleTwin, make_scale: MakeScale, mode: str
) -> None:
    scale = make_scale(stable_mode=mode)
    twin.set_weight(Decimal("2500"), settle=0.6)
    shown_while_moving = scale.read_now()
    started = time.monotonic()

    reading = scale.read_stable(3.0)

    assert time.monotonic() - started >= 0.45
    assert (reading.net, reading.stable) == (Decimal("2500.00"), True)
    assert shown_while_moving.stable is False
    assert shown_while_moving.net != Decimal("2500.00")
    # The blocking S command is never used: its late answer would look like an SI answer.
    assert "S" not in twin.received
    assert errors_of(scale) == {}


def test_consecutive_mode_wants_several_readings_within_one_division(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    # A reply's timeout is not what this test is about: on a busy machine the twin's answer
    # can take longer than 0.3 s, the poll times out, the run starts again and more than
    # four SI are sent (CI saw seven). So the patient timeout, and no timeout may happen.
    scale = make_scale(
        stable_mode="consecutive",
        stable_readings=4,
        poll_interval=0.01,
        reply_timeout=patience_timeout(0.3),
    )
    reading = scale.read_stable(patience_timeout(2.0))
    assert reading.net == Decimal("1234.50")
    assert twin.received.count("SI") == 4
    assert errors_of(scale) == {}


def test_motion_that_outlasts_the_timeout_is_a_motion_error(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.wobble(5.0)
    started = time.monotonic()
    with pytest.raises(ScaleMotionError) as caught:
        scale.read_stable(0.5)
    assert 0.45 <= time.monotonic() - started < 1.0
    assert caught.value.retryable
    assert errors_of(scale) == {"motion": 1}
    assert scale.status().state == "connected"


@pytest.mark.parametrize(
    ("fault", "error"), [("overload", ScaleOverloadError), ("underload", ScaleUnderloadError)]
)
def test_overload_and_underload_are_typed_errors_at_once(
    twin: MtSicsScaleTwin, make_scale: MakeScale, fault: str, error: type[ScaleError]
) -> None:
    scale = make_scale()
    getattr(twin, fault)()
    started = time.monotonic()
    with pytest.raises(error):
        scale.read_stable(5.0)
    assert time.monotonic() - started < 0.5  # waiting does not cure an overload
    with pytest.raises(error):
        scale.read_now()
    assert errors_of(scale) == {fault: 2}
    twin.clear_faults()
    assert scale.read_stable(1.0).net == Decimal("1234.50")


def test_a_load_beyond_capacity_is_an_overload_not_a_weight(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal("6"), "kg")  # capacity 5100 g
    with pytest.raises(ScaleOverloadError):
        scale.read_stable(1.0)
    twin.set_weight(Decimal("-200"))  # the pan taken off
    with pytest.raises(ScaleUnderloadError):
        scale.read_stable(1.0)


def test_busy_device_is_retried_then_reported_as_busy(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.busy()
    with pytest.raises(ScaleBusyError):
        scale.read_stable(0.3)
    with pytest.raises(ScaleBusyError):
        scale.zero()
    assert errors_of(scale) == {"busy": 2}


def test_no_reply_is_a_timeout_and_degrades_until_the_device_answers(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("1234.50")
    twin.no_reply(None)
    started = time.monotonic()
    with pytest.raises(ScaleTimeoutError) as caught:
        scale.read_now()
    assert 0.25 < time.monotonic() - started < 0.6
    assert caught.value.retryable
    with pytest.raises(ScaleTimeoutError):
        scale.read_stable(0.5)
    status = scale.status()
    assert status.state == "degraded"
    assert status.errors["timeout"] >= 2
    assert status.errors["motion"] == 0  # silence is not motion

    twin.clear_faults()
    assert scale.read_now().net == Decimal("1234.50")
    assert scale.status().state == "connected"


@pytest.mark.parametrize(
    ("code", "reason", "error"),
    [
        ("ES", "syntax", ScaleCommandError),
        ("ET", "transmission", ScaleTransmissionError),
        ("EL", "logical", ScaleCommandError),
    ],
)
def test_general_errors_say_which_and_for_what_command(
    twin: MtSicsScaleTwin, make_scale: MakeScale, code: str, reason: str, error: type[ScaleError]
) -> None:
    scale = make_scale()
    twin.reply_error(code)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        scale.read_now()
    assert isinstance(caught.value, ScaleCommandError)
    assert (caught.value.code, caught.value.command) == (code, "SI")
    assert caught.value.retryable is (code == "ET")
    assert errors_of(scale) == {reason: 1}
    assert scale.read_now().net == Decimal("1234.50")


def test_a_transmission_error_inside_a_stable_read_is_retried(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.reply_error("ET")
    assert scale.read_stable(1.0).net == Decimal("1234.50")
    assert errors_of(scale) == {}


def test_tare_and_zero_round_trip(twin: MtSicsScaleTwin, make_scale: MakeScale) -> None:
    scale = make_scale()
    twin.set_weight(Decimal(500))  # an empty crate
    assert scale.tare() == Weight(Decimal("500.00"), "g")
    empty = scale.read_stable(1.0)
    assert (empty.net, empty.tare, empty.gross) == (
        Decimal("0.00"),
        Decimal("500.00"),
        Decimal("500.00"),
    )

    twin.set_weight(Decimal(1700))  # the crate filled
    full = scale.read_stable(1.0)
    assert (full.net, full.tare, full.gross) == (
        Decimal("1200.00"),
        Decimal("500.00"),
        Decimal("1700.00"),
    )
    assert scale.tare_value() == Weight(Decimal("500.00"), "g")

    scale.clear_tare()
    cleared = scale.read_stable(1.0)
    assert (cleared.net, cleared.tare, cleared.gross) == (
        Decimal("1700.00"),
        Decimal("0.00"),
        Decimal("1700.00"),
    )

    with pytest.raises(ScaleOverloadError, match="zero"):
        scale.zero()  # 1700 g is a load, not a zero drift
    twin.set_weight(Decimal(30))  # an empty platform that drifted
    scale.zero()
    assert scale.read_stable(1.0).net == Decimal("0.00")
    twin.set_weight(Decimal(80))
    assert scale.read_stable(1.0).net == Decimal("50.00")


def test_immediate_tare_and_zero_do_not_wait_for_stability(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal(40))
    twin.wobble(5.0)
    started = time.monotonic()
    scale.zero(immediate=True)
    tare = scale.tare(immediate=True)
    assert time.monotonic() - started < 0.5
    assert tare.unit == "g"
    assert twin.received[-2:] == ["ZI", "TI"]


def test_a_waiting_zero_gives_up_as_the_caller_asked(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal(40))
    twin.wobble(5.0)
    with pytest.raises(ScaleTimeoutError):
        scale.zero(timeout=0.3)  # the device is still waiting for the load to settle
    twin.clear_faults()  # the load settles, so the device carries out the zero after all
    # The owed "Z A" is not mistaken for anything, and the next weighing shows the zero: a
    # zero that timed out may still happen, as the driver says.
    assert scale.read_stable(1.0).net == Decimal("0.00")


def test_preset_tare_out_of_range_is_a_logical_error(make_scale: MakeScale) -> None:
    scale = make_scale()
    with pytest.raises(ScaleCommandError) as caught:
        scale.preset_tare(Weight(Decimal("99999"), "g"))
    assert caught.value.code == "EL"
    with pytest.raises(DeviceConfigError):
        scale.preset_tare(Weight(Decimal(-1), "g"))


def test_garbage_is_counted_and_never_a_reading(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("1234.50")
    twin.send_garbage()
    assert scale.read_stable(1.0).net == Decimal("1234.50")
    twin.garble_replies(1)  # the reply itself is noise
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()
    assert scale.read_now().net == Decimal("1234.50")
    assert errors_of(scale) == {"garbage": 2, "timeout": 1}


def test_a_run_of_garbage_degrades_until_a_good_reply(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    scale.read_now()
    for _ in range(3):
        twin.send_garbage()
    time.sleep(0.1)
    twin.no_reply(1)
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()
    assert scale.status().state == "degraded"
    assert scale.read_now().net == Decimal("1234.50")
    assert scale.status().state == "connected"


def test_a_half_reply_is_a_half_line_and_never_a_reading(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.cut_replies(1)
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()
    assert scale.read_now().net == Decimal("1234.50")
    assert errors_of(scale) == {"half_line": 1, "timeout": 1}


def test_slow_replies_within_the_reply_timeout_are_fine(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=0.3)
    twin.set_delay(0.2)
    assert scale.read_stable(2.0).net == Decimal("1234.50")
    assert errors_of(scale) == {}


def test_a_late_reply_is_never_taken_for_the_next_one(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=0.3)
    twin.set_delay(0.5)
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()  # its answer, 1234.50 g, is still on its way
    twin.set_delay(0.0)
    twin.set_weight(Decimal(42))
    assert scale.read_now().net == Decimal("42.00")
    assert scale.read_stable(1.0).net == Decimal("42.00")


def test_identify_and_supported_commands(make_scale: MakeScale) -> None:
    scale = make_scale()
    identity = scale.identify()
    assert identity.serial_number == "B912345678"
    assert identity.balance_data == "JXC-TWIN 5100 g"
    commands = scale.supported_commands()
    assert (0, "SI") in commands
    assert (1, "TAC") in commands
    assert len(commands) == 13


def test_reconnects_within_two_seconds_of_the_scale_coming_back(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("1234.50")
    twin.disconnect()  # cable pulled

    assert weights_while_unplugged(scale, 0.5) == []  # nothing but errors while it is gone
    assert scale.status().state == "disconnected"
    assert scale.status().errors["io"] == 1  # one outage, however many retries

    twin.reconnect()  # plugged back in: a new pty behind the same link, or the same port
    back_at = time.monotonic()
    reading = read_until_it_works(scale, within=3.0)
    took = time.monotonic() - back_at

    assert reading.net == Decimal("1234.50")
    assert took < patience_timeout(2.0)
    status = scale.status()
    assert (status.state, status.reconnects, status.errors["io"]) == ("connected", 1, 1)


def test_twin_coming_back_by_itself_mid_stable_read(
    twin: MtSicsScaleTwin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    scale.read_now()
    twin.disconnect(0.4)
    assert scale.read_stable(2.5).net == Decimal("1234.50")
    assert scale.status().reconnects == 1


def test_close_interrupts_a_stable_read(twin: MtSicsScaleTwin, make_scale: MakeScale) -> None:
    scale = make_scale()
    twin.wobble(10.0)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            scale.read_stable(10.0)
        except ScaleError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    started = time.monotonic()
    scale.close()
    reader.join(timeout=patience_timeout(3))
    assert not reader.is_alive()
    assert time.monotonic() - started < 1.0
    assert len(outcome) == 1
    assert isinstance(outcome[0], ScaleUnavailableError)
    with pytest.raises(ScaleUnavailableError, match="closed"):
        scale.read_now()
    assert scale.status().state == "disconnected"


def test_status_is_json_ready(make_scale: MakeScale) -> None:
    scale = make_scale()
    scale.read_stable(1.0)
    as_json = json.loads(json.dumps(scale.status().as_dict()))
    assert as_json["device_id"] == "dock-1-scale"
    assert as_json["state"] == "connected"
    assert as_json["errors"]["overload"] == 0
    assert as_json["reconnects"] == 0


# -- without a twin -------------------------------------------------------------------


def test_a_missing_device_is_reported_promptly_not_hung(tmp_path: Path, no_leaks: None) -> None:
    config = MtSicsScaleConfig(
        device_id="ghost", address=tmp_path / "no-such-scale", reply_timeout=0.3
    )
    with MtSicsScale(config) as scale:
        started = time.monotonic()
        with pytest.raises(ScaleUnavailableError, match="no-such-scale"):
            scale.read_stable(0.5)
        with pytest.raises(ScaleUnavailableError):
            scale.read_now()
        assert time.monotonic() - started < 1.0
        status = scale.status()
    assert (status.state, status.errors["io"]) == ("disconnected", 1)


def test_a_refused_tcp_bridge_is_reported_not_raised_as_oserror(no_leaks: None) -> None:
    config = MtSicsScaleConfig("bridge", "tcp://127.0.0.1:9", reply_timeout=0.3)
    with MtSicsScale(config) as scale:
        with pytest.raises(ScaleUnavailableError):
            scale.read_now()
        assert scale.status().errors["io"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"device_id": ""},
        {"address": ""},
        {"address": "tcp://host-without-port"},
        {"address": "tcp://h:99999"},
        {"parity": "X"},
        {"stable_mode": "hopeful"},
        {"stable_readings": 1},
        {"division": Decimal(0)},
        {"reply_timeout": 0},
        {"reconnect_min_delay": 5.0},
    ],
)
def test_config_mistakes_are_caught_up_front(bad: dict[str, object]) -> None:
    settings: dict[str, object] = {"device_id": "d", "address": "/dev/null", **bad}
    with pytest.raises(DeviceConfigError):
        MtSicsScaleConfig(**settings)  # type: ignore[arg-type]


def test_sub_second_timeouts_and_tcp_addresses_are_accepted() -> None:
    config = MtSicsScaleConfig("d", "tcp://127.0.0.1:4001", reply_timeout=0.15)
    assert config.tcp_endpoint() == ("127.0.0.1", 4001)
    assert MtSicsScaleConfig("d", "/dev/serial/by-id/usb-x").tcp_endpoint() is None
