"""The MQTT scale: its message codec (property tests) and the driver against the twin
through a real Mosquitto broker, with every fault the twin can produce."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import DeviceConfigError, RejectedInputError
from device_drivers.scales import (
    Scale,
    ScaleCommandError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleUnavailableError,
    ScaleUnderloadError,
    WeightReading,
)
from device_drivers.scales.mqtt_scale import (
    MqttScale,
    MqttScaleConfig,
    create_mqtt_scale,
    decode_weight_payload,
)
from simulators.mqtt_devices import MqttScaleTwin, encode_weight
from tests.device_drivers.driver_helpers import (
    closed_at_teardown,
    read_until_it_works,
    twin_connected,
)
from tests.mqtt_broker import Broker, broker_fixture, eventually, free_port, mqtt_broker_fixture
from tests.patience import patience_timeout

__all__ = ["broker_fixture", "mqtt_broker_fixture"]  # fixtures used by name below

MakeScale = Callable[..., MqttScale]
MakeTwin = Callable[..., MqttScaleTwin]

weights = st.decimals(
    min_value=Decimal("-999999"), max_value=Decimal("999999"), places=3, allow_nan=False
)


# -- the codec, from bytes alone -------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_never_a_weight(payload: bytes) -> None:
    with pytest.raises(RejectedInputError) as refused:
        decode_weight_payload(payload)
    assert refused.value.reason == "garbage"


@pytest.mark.parametrize("number", ["1E+30", "1e400", "-9.9E+27"])
def test_a_huge_json_number_is_garbage_not_a_crash(number: str) -> None:
    """Found by the property test below: 1E+30 overflowed the quantize to a whole number."""
    payload = f'{{"net": {number}, "unit": "kg", "stable": true}}'.encode()
    with pytest.raises(RejectedInputError, match="too large"):
        decode_weight_payload(payload)


json_leaves = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), st.integers(), st.floats(allow_nan=False)
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["net", "gross", "tare", "unit", "stable", "status", "ts", "x"]),
        json_leaves,
    )
)
def test_random_json_objects_are_refused_or_exact(document: dict[str, object]) -> None:
    try:
        message = decode_weight_payload(json.dumps(document).encode())
    except RejectedInputError:
        return
    for value in (message.net, message.gross, message.tare):
        assert value is None or (isinstance(value, Decimal) and value.is_finite())
    if message.status == "ok":
        assert message.net is not None
        assert message.unit in {"mg", "g", "kg", "lb", "oz"}


@settings(max_examples=300, deadline=None)
@given(
    gross=weights,
    tare=weights,
    stable=st.booleans(),
    numbers=st.sampled_from(["string", "number"]),
)
def test_twin_messages_round_trip_exactly(
    gross: Decimal, tare: Decimal, stable: bool, numbers: str
) -> None:
    net = gross - tare
    fields: dict[str, object] = {"net": net, "gross": gross, "tare": tare}
    fields.update({"unit": "kg", "stable": stable, "status": "ok"})
    message = decode_weight_payload(encode_weight(fields, numbers))  # type: ignore[arg-type]
    assert message.net is not None
    # Same value and same digits: "1.250" stays "1.250", never 1.25 or 1.2500000000000002.
    assert (str(message.net), str(message.gross), str(message.tare)) == (
        str(net if not net.is_zero() else abs(net)),
        str(gross if not gross.is_zero() else abs(gross)),
        str(tare if not tare.is_zero() else abs(tare)),
    )
    assert message.stable is stable


def test_json_numbers_are_read_exactly_from_their_text() -> None:
    message = decode_weight_payload(
        b'{"net": 0.1, "tare": 1.10, "gross": 1.20, "unit": "kg", "stable": true}'
    )
    assert (str(message.net), str(message.tare), str(message.gross)) == ("0.1", "1.10", "1.20")
    assert decode_weight_payload(b'{"net": 1e3, "unit": "g", "stable": true}').net == 1000


@pytest.mark.parametrize(
    "payload",
    [
        b'{"net": NaN, "unit": "kg", "stable": true}',
        b'{"net": Infinity, "unit": "kg", "stable": true}',
        b'{"net": "1.5", "net": "2.5", "unit": "kg", "stable": true}',
        b'{"net": "1.5", "unit": "kg", "stable": "yes"}',
        b'{"net": "1.5", "unit": "stone", "stable": true}',
        b'{"net": "1,5", "unit": "kg", "stable": true}',
        b'{"net": 1.5e-12, "unit": "kg", "stable": true}',
        b'{"net": "1.5", "gross": "2.0", "tare": "0.4", "unit": "kg", "stable": true}',
        b'{"unit": "kg", "stable": true}',
        b'{"net": "1.5", "unit": "kg", "stable": true, "status": "fine"}',
        b'{"net": "1.5", "unit": "kg", "stable": true, "ts": "2025-06-01T08:30:00"}',
        b'{"net": "1.5", "unit": "kg", "stable": tr',
        b'{"net": "1.5", "unit": "kg", "stable": true, "x": [[[[[[[[[[1]]]]]]]]]]}',
    ],
)
def test_doubtful_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(RejectedInputError):
        decode_weight_payload(payload)


def test_overload_message_needs_no_weight() -> None:
    message = decode_weight_payload(b'{"status": "overload", "stable": false}')
    assert (message.status, message.net) == ("overload", None)


# -- the driver against the twin, through the broker -----------------------------------


@pytest.fixture
def device_id() -> str:
    return f"scale-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_scale(broker: Broker, device_id: str, no_leaks: None) -> Iterator[MakeScale]:
    def up(scale: MqttScale) -> None:
        eventually(lambda: scale.status().state != "disconnected", within=10, what="up")

    yield from closed_at_teardown(
        lambda **options: MqttScale(MqttScaleConfig(**options)),
        {"device_id": device_id, "port": broker.port, "max_age": 1.0},
        ready=up,
    )


@pytest.fixture
def make_twin(broker: Broker, device_id: str, no_leaks: None) -> Iterator[MakeTwin]:
    yield from closed_at_teardown(
        partial(MqttScaleTwin, device_id, port=broker.port),
        {"weight": Decimal("12.345")},
        ready=twin_connected,
    )


def stable_within(scale: Scale, within: float = 10.0, timeout: float = 0.5) -> WeightReading:
    """Keep asking (a scale reports errors while settling) until a stable weight comes."""
    return read_until_it_works(
        scale,
        within,
        stable=timeout,
        retry_on=(ScaleMotionError, ScaleTimeoutError, ScaleUnavailableError),
        pause=0,
    )


@pytest.mark.timeout(60)
def test_stable_weight_with_gross_tare_and_raw(make_scale: MakeScale, make_twin: MakeTwin) -> None:
    scale = make_scale()
    make_twin()
    assert isinstance(scale, Scale)
    reading = stable_within(scale)
    assert (reading.net, reading.gross, reading.tare, reading.unit) == (
        Decimal("12.345"),
        Decimal("12.345"),
        Decimal("0.000"),
        "kg",
    )
    assert str(reading.net) == "12.345"
    assert reading.stable
    assert b'"net": "12.345"' in reading.raw
    assert reading.read_at.tzinfo is not None
    assert scale.status().state == "connected"


@pytest.mark.timeout(60)
def test_json_numbers_from_the_device_stay_exact(
    make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale()
    make_twin(numbers="number", weight=Decimal("0.1"))
    reading = stable_within(scale)
    assert str(reading.net) == "0.100"
    assert b'"net": 0.100' in reading.raw


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["device", "consecutive"])
def test_a_wobbling_weight_is_never_recorded_only_its_settled_value(
    make_scale: MakeScale, make_twin: MakeTwin, mode: str
) -> None:
    scale = make_scale(stable_mode=mode, stable_readings=4)
    twin = make_twin()
    if mode == "consecutive":
        twin.lie_about_stability()  # the device flags stable even while swinging
    stable_within(scale)
    twin.set_weight(Decimal("20.000"), settle=1.5)
    with pytest.raises(ScaleMotionError):
        scale.read_stable(0.3)
    now = scale.read_now()
    assert now.net != Decimal("20.000"), "a swinging load never shows its settled value"
    assert now.stable is (mode == "consecutive"), "only the lying device flags it stable"
    reading = stable_within(scale, timeout=1.0)
    assert reading.net == Decimal("20.000")
    assert scale.status().errors["motion"] >= 1


@pytest.mark.timeout(60)
def test_overload_and_underload_are_typed_errors_never_zero(
    make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale()
    twin = make_twin()
    stable_within(scale)
    twin.overload()
    eventually(lambda: _raises(scale, ScaleOverloadError), within=5, what="overload")
    started = time.monotonic()
    with pytest.raises(ScaleOverloadError):
        scale.read_stable(5.0)
    assert time.monotonic() - started < patience_timeout(4.0), (
        "overload ends the wait; waiting cures nothing"
    )
    twin.clear_faults()
    twin.underload()
    eventually(lambda: _raises(scale, ScaleUnderloadError), within=5, what="underload")
    twin.clear_faults()
    assert stable_within(scale).net == Decimal("12.345")
    errors = scale.status().errors
    assert errors["overload"] >= 2
    assert errors["underload"] >= 1


def _raises(scale: Scale, error: type[Exception]) -> bool:
    try:
        scale.read_stable(0.3)
    except error:
        return True
    except Exception:
        return False
    return False


@pytest.mark.timeout(60)
def test_garbage_and_truncated_messages_are_counted_never_weights(
    make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale()
    twin = make_twin(interval=0.1)
    stable_within(scale)
    twin.send_garbage(3)
    twin.send_truncated(2)
    eventually(lambda: scale.status().errors["garbage"] >= 5, within=5, what="counted")
    assert stable_within(scale).net == Decimal("12.345")
    assert scale.status().state == "connected"


@pytest.mark.timeout(60)
def test_stale_readings_are_not_a_current_weight(
    make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale(max_age=0.5)
    twin = make_twin()
    stable_within(scale)
    twin.set_clock_offset(-5.0)  # readings arrive five seconds late
    time.sleep(0.7)
    with pytest.raises(ScaleTimeoutError) as stale:
        scale.read_stable(0.3)
    assert stale.value.reason == "stale"
    twin.clear_faults()
    assert stable_within(scale).net == Decimal("12.345")
    assert scale.status().errors["stale"] >= 1


@pytest.mark.timeout(60)
def test_a_retained_undated_reading_is_not_current(
    make_scale: MakeScale, make_twin: MakeTwin, device_id: str
) -> None:
    twin = make_twin()
    twin.go_silent()
    twin.send_raw(b'{"net": "99.000", "unit": "kg", "stable": true}', retain=True)
    time.sleep(0.3)
    scale = make_scale()
    with pytest.raises(ScaleTimeoutError):
        scale.read_stable(0.5)
    twin.send_raw(b"", retain=True)  # clear the retained message for good
    twin.go_silent(False)
    assert stable_within(scale).net == Decimal("12.345")


@pytest.mark.timeout(60)
def test_a_silent_scale_times_out_and_degrades(make_scale: MakeScale, make_twin: MakeTwin) -> None:
    scale = make_scale()
    twin = make_twin()
    stable_within(scale)
    twin.go_silent()
    time.sleep(1.2)
    for _ in range(2):
        with pytest.raises(ScaleTimeoutError):
            scale.read_stable(0.2)
    assert scale.status().state == "degraded"
    twin.go_silent(False)
    stable_within(scale)
    assert scale.status().state == "connected"


@pytest.mark.timeout(60)
def test_tare_zero_and_clear_tare(make_scale: MakeScale, make_twin: MakeTwin) -> None:
    scale = make_scale()
    twin = make_twin()
    stable_within(scale)
    tare = scale.tare(timeout=patience_timeout(3))
    assert (tare.value, tare.unit) == (Decimal("12.345"), "kg")
    reading = stable_within(scale)
    assert (reading.net, reading.tare, reading.gross) == (
        Decimal("0.000"),
        Decimal("12.345"),
        Decimal("12.345"),
    )
    scale.clear_tare()
    assert stable_within(scale).net == Decimal("12.345")
    scale.zero(timeout=patience_timeout(3))
    assert stable_within(scale).net == Decimal("0.000")
    assert [c["command"] for c in twin.commands] == ["tare", "clear_tare", "zero"]


@pytest.mark.timeout(60)
def test_command_faults_are_typed(make_scale: MakeScale, make_twin: MakeTwin) -> None:
    scale = make_scale()
    twin = make_twin()
    stable_within(scale)
    twin.unsupported("zero")
    with pytest.raises(ScaleCommandError) as unsupported:
        scale.zero(timeout=patience_timeout(3))
    assert unsupported.value.code == "ES"
    twin.clear_faults()

    twin.wobble(1.5)
    with pytest.raises(ScaleMotionError):
        scale.tare(timeout=0.4)  # the device waits for a still load, then gives up
    twin.clear_faults()

    twin.set_reply_delay(1.0)
    started = time.monotonic()
    with pytest.raises(ScaleTimeoutError):
        scale.tare(timeout=0.3)
    assert time.monotonic() - started < 2.0
    twin.clear_faults()
    time.sleep(1.0)  # the late reply (if any) arrives now and must be ignored
    assert scale.tare(timeout=patience_timeout(3)).value == Decimal("12.345")

    twin.no_replies()
    with pytest.raises(ScaleTimeoutError):
        scale.zero(timeout=0.3)
    errors = scale.status().errors
    assert (errors["syntax"], errors["timeout"], errors["motion"]) == (1, 2, 1)


@pytest.mark.timeout(30)
def test_commands_not_configured_are_not_supported(
    make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale(command_topic="")
    twin = make_twin()
    for call in (lambda: scale.zero(1), lambda: scale.tare(1), scale.clear_tare):
        with pytest.raises(ScaleCommandError) as refused:
            call()
        assert refused.value.code == "ES"
    assert twin.commands == []


@pytest.mark.timeout(90)
def test_broker_restart_is_reported_and_recovered(
    broker: Broker, make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale()
    twin = make_twin()
    stable_within(scale)
    with broker.down():
        eventually(lambda: scale.status().state == "disconnected", within=5, what="down")
        with pytest.raises(ScaleUnavailableError):
            scale.read_stable(0.3)
        with pytest.raises(ScaleUnavailableError):
            scale.tare(0.3)
    took = eventually(lambda: scale.status().state == "connected", within=5, what="back")
    assert took < patience_timeout(2.0), f"reconnected {took:.2f} s after the broker came back"
    assert twin.wait_connected(patience_timeout(10))
    assert stable_within(scale).net == Decimal("12.345")
    assert scale.status().reconnects == 1


@pytest.mark.timeout(60)
def test_a_scale_that_vanishes_is_unavailable_then_back(
    make_scale: MakeScale, make_twin: MakeTwin
) -> None:
    scale = make_scale()
    twin = make_twin()
    stable_within(scale)
    twin.disconnect(abrupt=True)
    eventually(lambda: scale.status().state == "degraded", within=5, what="offline")
    with pytest.raises(ScaleUnavailableError, match="offline"):
        scale.read_stable(0.3)
    twin.reconnect()
    assert stable_within(scale).net == Decimal("12.345")
    status = scale.status()
    assert (status.state, status.errors["device_offline"], status.errors["io"]) == (
        "connected",
        1,
        0,
    )


@pytest.mark.timeout(30)
def test_no_broker_is_unavailable_not_a_crash(no_leaks: None) -> None:
    with MqttScale(MqttScaleConfig(device_id="ghost", port=free_port())) as scale:
        with pytest.raises(ScaleUnavailableError, match="cannot reach broker"):
            scale.read_stable(0.3)
        with pytest.raises(ScaleUnavailableError):
            scale.zero(0.3)
        assert scale.status().state == "disconnected"


def test_factory_checks_options() -> None:
    with pytest.raises(DeviceConfigError, match="unknown option"):
        create_mqtt_scale("d", {"max_agе": 1})
    with pytest.raises(DeviceConfigError, match="division"):
        create_mqtt_scale("d", {"division": 0.005})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scale("d", {"stable_mode": "eventually"})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scale("d", {"stable_readings": 1})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scale("d", {"topic": "jxc/#"})
    config = MqttScaleConfig(device_id="d", division=Decimal("0.005"))
    assert config.division == Decimal("0.005")
