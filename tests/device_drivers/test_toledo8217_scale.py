"""The Toledo 8217 driver against its twin over a real pty, with every fault the twin has.

A pty carries no parity and Linux forces it to 8 data bits, so the driver is pointed at the
twin with 8N1; the protocol's 7E1 stays the default for real ports (one test checks both).
Timings are asserted only where an error must come promptly, never for the happy path.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
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
    WeightReading,
)
from device_drivers.scales.toledo8217_scale import (
    ScaleGarbledReplyError,
    Toledo8217Scale,
    Toledo8217ScaleConfig,
    create_toledo8217_scale,
)
from simulators.toledo8217 import Toledo8217Twin
from tests.device_drivers.driver_helpers import (
    closed_at_teardown,
    errors_of,
    read_until_it_works,
    wait_until,
    weights_while_unplugged,
)
from tests.patience import patience_timeout

MakeScale = Callable[..., Toledo8217Scale]
MakeTwin = Callable[..., Toledo8217Twin]

PTY_SERIAL = {"bytesize": 8, "parity": "N"}


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "usb-Toledo_8217-if00"


@pytest.fixture
def make_twin(link: Path, no_leaks: None) -> Iterator[MakeTwin]:
    yield from closed_at_teardown(partial(Toledo8217Twin, link), {"weight": Decimal("1.25")})


@pytest.fixture
def twin(make_twin: MakeTwin) -> Toledo8217Twin:
    """A twin in kg with three decimals, 1.250 kg on the platform."""
    return make_twin()


@pytest.fixture
def make_scale(link: Path, no_leaks: None) -> Iterator[MakeScale]:
    """Build drivers for the twin's link; every driver built is closed at teardown."""
    yield from closed_at_teardown(
        lambda **settings: Toledo8217Scale(Toledo8217ScaleConfig(**settings)),
        {
            "device_id": "dock-1-scale",
            "address": str(link),
            "reply_timeout": 0.5,
            "reconnect_max_delay": 0.5,
            **PTY_SERIAL,
        },
    )


def test_driver_is_a_scale(twin: Toledo8217Twin, make_scale: MakeScale) -> None:
    assert isinstance(make_scale(), Scale)


def test_stable_read_keeps_net_gross_unit_and_raw_frame(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    before = datetime.datetime.now(datetime.UTC)
    reading = scale.read_stable(3.0)
    assert reading == WeightReading(
        device_id="dock-1-scale",
        net=Decimal("1.250"),
        gross=Decimal("1.250"),
        tare=Decimal("0.000"),  # no N in the frame: the scale says no tare is in force
        unit="kg",
        stable=True,
        raw=b"\x0201.250\r",
        read_at=reading.read_at,
    )
    assert reading.read_at >= before
    assert reading.net_in("g") == Decimal("1250")
    assert scale.status().state == "connected"
    assert errors_of(scale) == {}
    assert set(twin.received) == {ord("W")}  # only ever W, no terminator


def test_a_keypad_tare_gives_a_net_weight_with_unknown_gross(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_tare(Decimal("0.250"))
    reading = scale.read_stable(3.0)
    assert (reading.net, reading.gross, reading.tare) == (Decimal("1.000"), None, None)
    assert reading.raw == b"\x0201.000N\r"


def test_pounds_are_converted_exactly_through_base(
    make_twin: MakeTwin, make_scale: MakeScale
) -> None:
    make_twin(weight=Decimal("2.5"), unit="lb", decimals=2)
    reading = make_scale(unit="lb").read_stable(3.0)
    assert (reading.net, reading.unit) == (Decimal("2.50"), "lb")
    assert reading.net_in("kg") == Decimal("1.133980925")


def test_wobble_then_settle_gives_the_settled_weight_in_device_mode(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal("2.5"), settle=0.6)
    with pytest.raises(ScaleMotionError):
        scale.read_now()  # in motion the scale gives no weight at all
    reading = scale.read_stable(5.0)
    assert (reading.net, reading.stable) == (Decimal("2.500"), True)


def test_a_scale_in_motion_is_waited_on_and_then_gives_its_stable_weight(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    """A real scale answers ``STX ? A CR`` while the load swings (bit 6 set, as always):
    that is motion, to be waited out, never a refused command."""
    scale = make_scale()
    twin.set_weight(Decimal("2.5"), settle=1.0)
    with pytest.raises(ScaleMotionError) as caught:
        scale.read_now()
    assert caught.value.reason == "motion"
    asked_before = twin.received.count(ord("W"))
    reading = scale.read_stable(10.0)
    assert (reading.net, reading.stable, reading.raw) == (Decimal("2.500"), True, b"\x0202.500\r")
    assert twin.received.count(ord("W")) - asked_before >= 2  # asked again while it swung
    assert errors_of(scale) == {"motion": 1}  # the read_now; the wait itself counts nothing


def test_consecutive_mode_waits_out_an_eager_motion_filter(
    make_twin: MakeTwin, make_scale: MakeScale
) -> None:
    twin = make_twin(report_motion=False)  # weights keep coming while the load swings
    scale = make_scale(stable_mode="consecutive", stable_readings=3, poll_interval=0.02)
    twin.set_weight(Decimal("2.5"), settle=0.6)
    swinging = scale.read_now()
    assert swinging.net != Decimal("2.500")
    reading = scale.read_stable(5.0)
    assert reading.net == Decimal("2.500")
    assert errors_of(scale) == {}


def test_consecutive_mode_wants_several_readings_within_one_division(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    # Not a test of the reply's timeout: a busy machine must not make a poll time out and
    # start the run again (the same test of MT-SICS once counted seven polls in CI).
    scale = make_scale(
        stable_mode="consecutive",
        stable_readings=4,
        poll_interval=0.01,
        reply_timeout=patience_timeout(0.5),
    )
    assert scale.read_stable(patience_timeout(3.0)).net == Decimal("1.250")
    assert twin.received.count(ord("W")) == 4


def test_motion_that_outlasts_the_timeout_is_a_motion_error(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.wobble(30.0)
    with pytest.raises(ScaleMotionError) as caught:
        scale.read_stable(0.5)
    assert caught.value.retryable
    assert errors_of(scale) == {"motion": 1}
    assert scale.status().state == "connected"


@pytest.mark.parametrize(
    ("fault", "error"), [("overload", ScaleOverloadError), ("underload", ScaleUnderloadError)]
)
def test_overload_and_underload_are_typed_errors_at_once(
    twin: Toledo8217Twin, make_scale: MakeScale, fault: str, error: type[ScaleError]
) -> None:
    scale = make_scale()
    getattr(twin, fault)()
    started = time.monotonic()
    with pytest.raises(error) as caught:
        scale.read_stable(10.0)
    assert time.monotonic() - started < 5.0  # waiting does not cure an overload
    assert caught.value.reason == fault
    assert fault.replace("load", "") in caught.value.detail  # "over capacity" / "under zero"
    with pytest.raises(error):
        scale.read_now()
    assert errors_of(scale) == {fault: 2}
    twin.clear_faults()
    assert scale.read_stable(3.0).net == Decimal("1.250")


def test_a_load_beyond_capacity_or_below_zero_is_never_a_weight(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.set_weight(Decimal(16))  # capacity 15 kg
    with pytest.raises(ScaleOverloadError):
        scale.read_stable(3.0)
    twin.set_weight(Decimal("-0.2"))  # the platform lifted off
    with pytest.raises(ScaleUnderloadError):
        scale.read_stable(3.0)
    twin.set_tare(Decimal("0.5"))
    twin.set_weight(Decimal(16))  # over capacity with a tare in force: "STX ? b CR"
    with pytest.raises(ScaleOverloadError):
        scale.read_now()
    assert errors_of(scale) == {"overload": 2, "underload": 1}


def test_no_reply_is_a_timeout_and_degrades_until_the_device_answers(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=0.3)
    assert scale.read_now().net == Decimal("1.250")
    twin.no_reply(None)
    with pytest.raises(ScaleTimeoutError) as caught:
        scale.read_now()
    assert caught.value.retryable
    with pytest.raises(ScaleTimeoutError):
        scale.read_stable(1.0)
    status = scale.status()
    assert status.state == "degraded"
    assert status.errors["timeout"] >= 2
    assert status.errors["motion"] == 0  # silence is not motion

    twin.clear_faults()
    assert scale.read_stable(3.0).net == Decimal("1.250")
    assert scale.status().state == "connected"


def test_garbage_is_counted_and_never_a_reading(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    # The patient reply timeout: a good reply slower than a bare 0.3 s on a busy machine
    # was counted as a second timeout. The garbled reply still times out (no STX ever).
    scale = make_scale(reply_timeout=patience_timeout(0.3))
    assert scale.read_now().net == Decimal("1.250")
    twin.send_garbage()  # unasked noise between two requests
    assert scale.read_stable(patience_timeout(3.0)).net == Decimal("1.250")
    twin.garble_replies(1)  # the reply itself is noise: no STX, so no reply at all
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()
    assert scale.read_stable(patience_timeout(3.0)).net == Decimal("1.250")
    errors = errors_of(scale)
    assert errors["garbage"] == 2
    assert errors["timeout"] == 1


def test_a_half_frame_is_a_half_line_and_is_retried(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.cut_replies(1)
    with pytest.raises(ScaleGarbledReplyError):
        scale.read_now()
    twin.cut_replies(2)
    assert scale.read_stable(5.0).net == Decimal("1.250")  # two damaged replies, then good
    assert errors_of(scale) == {"half_line": 3}


def test_a_run_of_half_frames_degrades_until_a_good_reply(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    twin.cut_replies(3)
    for _ in range(3):
        with pytest.raises(ScaleGarbledReplyError):
            scale.read_now()
    assert scale.status().state == "degraded"
    assert scale.read_now().net == Decimal("1.250")
    assert scale.status().state == "connected"


def test_slow_replies_within_the_reply_timeout_are_fine(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=1.0)
    twin.set_delay(0.2)
    assert scale.read_stable(5.0).net == Decimal("1.250")
    assert errors_of(scale) == {}


def test_a_late_reply_is_never_taken_for_the_next_one(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale(reply_timeout=0.3, late_reply_grace=1.0)
    twin.set_delay(0.6)
    with pytest.raises(ScaleTimeoutError):
        scale.read_now()  # its answer, 1.250 kg, is still on its way
    twin.set_delay(0.0)
    twin.set_weight(Decimal("0.042"))
    assert scale.read_now().net == Decimal("0.042")
    assert scale.read_stable(3.0).net == Decimal("0.042")


def test_reconnects_within_two_seconds_of_the_scale_coming_back(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    assert scale.read_now().net == Decimal("1.250")
    twin.disconnect()  # cable pulled

    seen = weights_while_unplugged(scale, 0.6)
    assert seen == []  # nothing but errors while the scale is gone, never a made-up weight
    assert scale.status().state == "disconnected"
    assert scale.status().errors["io"] == 1  # one outage, however many retries

    twin.set_weight(Decimal("3.3"))
    twin.reconnect()  # plugged back in: a new pty behind the same link
    reading: WeightReading | None = None
    with contextlib.suppress(ScaleError):
        reading = read_until_it_works(scale, within=2.0, stable=2.0)
    assert reading is not None, f"not back within 2 s: {scale.status()}"
    assert reading.net == Decimal("3.300")
    status = scale.status()
    assert (status.state, status.reconnects, status.errors["io"]) == ("connected", 1, 1)


def test_twin_coming_back_by_itself_mid_stable_read(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    scale.read_now()
    twin.disconnect(0.4)
    assert scale.read_stable(5.0).net == Decimal("1.250")
    assert scale.status().reconnects == 1


def test_zero_and_tare_are_refused_without_touching_the_wire(
    twin: Toledo8217Twin, make_scale: MakeScale
) -> None:
    scale = make_scale()
    for call in (scale.zero, scale.tare, scale.clear_tare):
        with pytest.raises(ScaleCommandError, match="keypad"):
            call()
    assert twin.received == bytearray()
    assert errors_of(scale) == {}


def test_close_interrupts_a_stable_read(twin: Toledo8217Twin, make_scale: MakeScale) -> None:
    scale = make_scale()
    twin.wobble(30.0)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            scale.read_stable(30.0)
        except ScaleError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert wait_until(lambda: ord("W") in twin.received)
    scale.close()
    reader.join(timeout=patience_timeout(5))
    assert not reader.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ScaleUnavailableError)
    assert scale.status().state == "disconnected"


def test_a_missing_device_is_reported_not_hung(tmp_path: Path, no_leaks: None) -> None:
    config = Toledo8217ScaleConfig("s", tmp_path / "nothing-here", reply_timeout=0.2)
    with Toledo8217Scale(config) as scale:
        with pytest.raises(ScaleUnavailableError):
            scale.read_stable(0.5)
        status = scale.status()
        assert (status.state, status.errors["io"]) == ("disconnected", 1)


def test_defaults_are_the_protocols_7e1_and_a_port_refusing_them_is_no_crash(
    twin: Toledo8217Twin, link: Path, no_leaks: None
) -> None:
    config = Toledo8217ScaleConfig("s", link, reply_timeout=0.2)
    assert (config.baudrate, config.bytesize, config.parity, config.stopbits) == (9600, 7, "E", 1)
    # A pty takes 7E1 once and then refuses to be reconfigured (termios EINVAL): whatever the
    # port does, the caller sees a scale error, never pyserial's or termios' exceptions.
    with Toledo8217Scale(config) as scale:
        for _ in range(3):
            with contextlib.suppress(ScaleError):
                scale.read_now()


# -- status replies the twin does not produce, through a scripted transport -------------


class ScriptedTransport:
    """Answers every W with the next scripted frame."""

    def __init__(self, *frames: bytes) -> None:
        self.frames = list(frames)
        self.pending = b""

    @property
    def name(self) -> str:
        return "scripted"

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        assert data == b"W"
        self.pending += self.frames.pop(0)

    def read(self, timeout: float) -> bytes:
        data, self.pending = self.pending, b""
        if not data:
            time.sleep(min(timeout, 0.01))
        return data

    def discard_input(self) -> None:
        self.pending = b""

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("frame", "error", "reason"),
    [
        # Status bytes as a real scale sends them: printable, bit 6 always set.
        (b"\x02?A\r", ScaleMotionError, "motion"),
        (b"\x02?a\r", ScaleMotionError, "motion"),  # in motion, net
        (b"\x02?B\r", ScaleOverloadError, "overload"),
        (b"\x02?D\r", ScaleUnderloadError, "underload"),
        (b"\x02?c\r", ScaleOverloadError, "overload"),  # over capacity beats motion
        (b"\x02?@\r", ScaleBusyError, "busy"),  # no condition, and yet no weight
        (b"\x02?H\r", ScaleBusyError, "busy"),  # outside zero capture only: no weight now
        (b"\x02?\x01\r", ScaleMotionError, "motion"),  # bit 6 clear reads the same
    ],
)
def test_status_bits_map_to_typed_errors(
    frame: bytes, error: type[ScaleError], reason: str
) -> None:
    config = Toledo8217ScaleConfig("s", "/dev/null", reply_timeout=0.2)
    with Toledo8217Scale(config, transport=ScriptedTransport(frame)) as scale:
        with pytest.raises(error) as caught:
            scale.read_now()
        assert caught.value.reason == reason
        assert scale.status().errors[reason] == 1


def test_a_malformed_frame_in_reply_is_counted_and_retried() -> None:
    config = Toledo8217ScaleConfig("s", "/dev/null", reply_timeout=0.2)
    transport = ScriptedTransport(b"\x02-1.000\r", b"\x0201.500\r")
    with Toledo8217Scale(config, transport=transport) as scale:
        assert scale.read_stable(2.0).net == Decimal("1.500")
        assert scale.status().errors["garbage"] == 1


# -- configuration and the entry point ----------------------------------------------------


def test_factory_builds_a_driver_from_site_file_options(link: Path) -> None:
    scale = create_toledo8217_scale(
        "scale-1",
        {"address": str(link), "unit": "lb", "division": "0.01", "reply_timeout": 0.4},
    )
    with scale:
        assert isinstance(scale, Scale)
        assert scale.config.division == Decimal("0.01")
        assert scale.config.unit == "lb"


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"address": "/dev/x", "speed": 9600}, "unknown option"),
        ({"address": "/dev/x", "division": 0.01}, "division"),  # a float is not exact
        ({"address": "/dev/x", "unit": "stone"}, "unit"),
        ({"address": "/dev/x", "reply_timeout": "fast"}, "reply_timeout"),
        ({"address": "/dev/x", "stable_readings": 1}, "stable_readings"),
        ({"address": "tcp://host"}, "tcp://host:port"),
        ({}, "address"),
    ],
)
def test_config_mistakes_are_caught_up_front(options: dict[str, object], why: str) -> None:
    with pytest.raises(DeviceConfigError, match=why):
        create_toledo8217_scale("scale-1", options)
