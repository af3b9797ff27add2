"""The MQTT scanner: its payload codec (property tests) and the driver against the twin
through a real Mosquitto broker, including broker restarts and a vanishing scanner."""

from __future__ import annotations

import datetime
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import DeviceConfigError, RejectedInputError
from device_drivers.mqtt import MqttMessage
from device_drivers.scanners import Scan, Scanner
from device_drivers.scanners.mqtt_scanner import (
    MqttScanner,
    MqttScannerConfig,
    create_mqtt_scanner,
    decode_scan_payload,
)
from simulators.mqtt_devices import GARBAGE, MqttScannerTwin, encode_scan
from tests.device_drivers.driver_helpers import closed_at_teardown, twin_connected
from tests.mqtt_broker import Broker, broker_fixture, eventually, free_port, mqtt_broker_fixture
from tests.patience import patience_timeout

__all__ = ["broker_fixture", "mqtt_broker_fixture"]  # fixtures used by name below

GS = "\x1d"
GTIN_A = "09506000134352"
GTIN_B = "09501101530003"
NOW = datetime.datetime(2025, 6, 1, 8, 30, tzinfo=datetime.UTC)
PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x1D}

MakeScanner = Callable[..., MqttScanner]
MakeTwin = Callable[..., MqttScannerTwin]


def decode(payload: bytes, **options: Any) -> Scan:
    return decode_scan_payload(payload, device_id="s1", received_at=NOW, **options)


# -- the codec, from bytes alone -------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_or_a_clean_scan(payload: bytes) -> None:
    reason: str | None
    try:
        scan = decode(payload)
    except RejectedInputError as exc:
        reason = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason in {"too_long", "not_printable", "gs1_invalid", "empty", "malformed"}
        return
    assert scan.raw == payload
    assert scan.data
    assert all(ord(c) in PRINTABLE for c in scan.data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"\x00", b"\x80", b"\xff", b"\x07", b"\r"]))
def test_a_byte_no_scanner_sends_is_never_a_raw_scan(payload: bytes, bad: bytes) -> None:
    middle = len(payload) // 2
    with pytest.raises(RejectedInputError):
        decode(payload[:middle] + bad + payload[middle:] + b"X", payload_format="raw")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_never_a_json_scan(payload: bytes) -> None:
    with pytest.raises(RejectedInputError):
        decode(b"{" + payload, payload_format="json")


@settings(max_examples=200, deadline=None)
@given(
    data=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80)
    # Data starting like an AIM identifier is read as one (as on a serial line); all blank
    # is an empty read. Neither round-trips, by design.
    .filter(lambda d: not d.startswith("]") and bool(d.strip())),
    symbology=st.sampled_from([None, "]E0", "]Q1", "]A0"]),
    shape=st.sampled_from(["json", "raw"]),
)
def test_twin_encoding_round_trips_through_the_codec(
    data: str, symbology: str | None, shape: str
) -> None:
    payload = encode_scan(data, symbology, shape)  # type: ignore[arg-type]
    scan = decode(payload, gs1="never", payload_format=shape)
    assert (scan.symbology, scan.data, scan.raw) == (symbology, data, payload)


def _with_check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


@settings(max_examples=100, deadline=None)
@given(
    body=st.text("0123456789", min_size=13, max_size=13),
    lot=st.text("ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=1, max_size=20),
    shape=st.sampled_from(["json", "raw"]),
)
def test_gs1_round_trip_and_a_wrong_check_digit_is_refused(body: str, lot: str, shape: str) -> None:
    gtin = _with_check_digit(body)
    payload = encode_scan(f"01{gtin}10{lot}{GS}3103001250", "]C1", shape)  # type: ignore[arg-type]
    scan = decode(payload)
    assert scan.gs1 is not None
    assert (scan.gs1.gtin, scan.gs1.lot, str(scan.gs1.net_weight_kg)) == (gtin, lot, "1.250")
    wrong = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
    with pytest.raises(RejectedInputError) as refused:
        decode(encode_scan(f"01{wrong}", "]C1", shape))  # type: ignore[arg-type]
    assert refused.value.reason == "gs1_invalid"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"data": "0109506000', "malformed"),
        (b'{"symbology": "]C1"}', "malformed"),
        (b'{"data": 12345}', "malformed"),
        (b'{"data": "A", "data": "B"}', "malformed"),
        (b'{"data": "A", "symbology": "C1"}', "malformed"),
        (b' {"data": ["A"]}', "malformed"),
        (b'{"data": "caf\xc3\xa9"}', "not_printable"),
        (b'{"data": "\xff"}', "not_printable"),
        (GARBAGE, "not_printable"),
        (b"   ", "empty"),
        (b'{"data": ""}', "empty"),
        (b'{"data": "' + b"9" * 300 + b'"}', "too_long"),
        (b"X" * 5000, "too_long"),
        (b"]C10109506000134353", "gs1_invalid"),
        (b"]E09506000134353", "gs1_invalid"),  # a misread EAN-13
        (b'{"data": "96385075", "symbology": "]E4"}', "gs1_invalid"),  # a misread EAN-8
        (f"]C101{GTIN_A}10LOT4217250600".encode(), "gs1_invalid"),  # lost FNC1
    ],
)
def test_bad_payloads_are_refused_with_their_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(RejectedInputError) as refused:
        decode(payload)
    assert refused.value.reason == reason


def test_raw_read_may_carry_one_line_terminator() -> None:
    assert decode(b"ABC-123\r\n").data == "ABC-123"
    with pytest.raises(RejectedInputError):
        decode(b"ABC\r123")


# -- the driver against the twin, through the broker -----------------------------------


@pytest.fixture
def device_id() -> str:
    return f"dock-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_scanner(broker: Broker, device_id: str, no_leaks: None) -> Iterator[MakeScanner]:
    yield from closed_at_teardown(
        lambda **options: MqttScanner(MqttScannerConfig(**options)),
        {"device_id": device_id, "port": broker.port},
    )


@pytest.fixture
def make_twin(broker: Broker, device_id: str, no_leaks: None) -> Iterator[MakeTwin]:
    yield from closed_at_teardown(
        partial(MqttScannerTwin, device_id, port=broker.port), ready=twin_connected
    )


def connected(scanner: MqttScanner, within: float = 10.0) -> MqttScanner:
    eventually(lambda: scanner.status().state == "connected", within=within, what="connected")
    return scanner


def read_scans(scanner: Scanner, count: int, within: float = 10.0) -> list[Scan]:
    scans: list[Scan] = []
    give_up_at = datetime.datetime.now() + datetime.timedelta(seconds=within)
    while len(scans) < count and datetime.datetime.now() < give_up_at:
        scan = scanner.read_scan(0.2)
        if scan is not None:
            scans.append(scan)
    return scans


@pytest.mark.timeout(60)
def test_scans_arrive_in_order_json_and_raw(make_scanner: MakeScanner, make_twin: MakeTwin) -> None:
    scanner = connected(make_scanner())
    twin = make_twin()
    assert isinstance(scanner, Scanner)
    for n in range(10):
        twin.scan(f"01{GTIN_A}10LOT{n:03d}{GS}17270300", "]C1", shape="json")
    twin.scan("9506000134352", "]E0", shape="raw")

    scans = read_scans(scanner, 11)

    assert [s.gs1.lot for s in scans[:10] if s.gs1] == [f"LOT{n:03d}" for n in range(10)]
    assert scans[0].gs1 is not None
    assert scans[0].gs1.expiry == datetime.date(2027, 3, 31)
    assert scans[0].raw == twin.sent[0]
    assert (scans[10].symbology, scans[10].data, scans[10].gs1) == ("]E0", "9506000134352", None)
    assert scanner.read_scan(0.2) is None
    status = scanner.status()
    assert (status.scans, sum(status.errors.values())) == (11, 0)


@pytest.mark.timeout(60)
def test_every_kind_of_garbage_is_counted_never_scanned(
    make_scanner: MakeScanner, make_twin: MakeTwin
) -> None:
    scanner = connected(make_scanner())
    twin = make_twin()
    twin.send_garbage()
    twin.send_truncated(f"01{GTIN_A}", "]C1")
    twin.send_raw(b'{"data": "\xff\xfe"}')
    assert scanner.read_scan(1.0) is None
    eventually(lambda: scanner.status().state == "degraded", within=5, what="degraded")
    twin.scan("0109506000134353", "]C1")  # bad check digit
    twin.send_raw(b"Z" * 5000)
    twin.drop_gs()
    twin.scan(f"01{GTIN_A}10LOT42{GS}17270300", "]C1")  # GS lost: lot swallows the expiry
    twin.drop_gs(False)
    twin.scan(f"01{GTIN_B}", "]C1")

    scans = read_scans(scanner, 1)

    assert [s.data for s in scans] == [f"01{GTIN_B}"]
    assert scanner.read_scan(0.3) is None
    status = scanner.status()
    assert status.state == "connected", "a good scan clears degraded"
    assert status.scans == 1
    errors = {k: v for k, v in status.errors.items() if v}
    assert errors == {"not_printable": 2, "malformed": 1, "gs1_invalid": 2, "too_long": 1}


@pytest.mark.timeout(90)
def test_broker_restart_reconnects_and_loses_no_scan(
    broker: Broker, make_scanner: MakeScanner, make_twin: MakeTwin
) -> None:
    scanner = connected(make_scanner())
    twin = make_twin()
    twin.scan("BEFORE")
    assert [s.data for s in read_scans(scanner, 1)] == ["BEFORE"]

    with broker.down():
        eventually(lambda: scanner.status().state == "disconnected", within=5, what="down")
        assert scanner.read_scan(0.3) is None  # never raises
        for n in range(5):
            twin.scan(f"DURING-{n}")  # the twin keeps them until the broker is back
    took = eventually(lambda: scanner.status().state == "connected", within=5, what="back")
    twin.scan("AFTER")

    scans = read_scans(scanner, 6)

    assert took < patience_timeout(2.0), f"reconnected {took:.2f} s after the broker came back"
    assert [s.data for s in scans] == [*(f"DURING-{n}" for n in range(5)), "AFTER"]
    assert scanner.read_scan(0.5) is None, "nothing twice"
    status = scanner.status()
    assert (status.errors["io"], status.reconnects) == (1, 1)


@pytest.mark.timeout(90)
def test_broker_that_lost_its_sessions_is_resubscribed(
    broker: Broker, make_scanner: MakeScanner, make_twin: MakeTwin
) -> None:
    scanner = connected(make_scanner())
    twin = make_twin()
    with broker.down(forget_sessions=True):
        eventually(lambda: scanner.status().state == "disconnected", within=5, what="down")
    connected(scanner, within=5)
    assert twin.wait_connected(patience_timeout(10))
    twin.scan("AFTER-A-FRESH-BROKER")
    assert [s.data for s in read_scans(scanner, 1)] == ["AFTER-A-FRESH-BROKER"]


@pytest.mark.timeout(60)
def test_scans_published_while_the_agent_is_down_arrive_after_its_restart(
    make_scanner: MakeScanner, make_twin: MakeTwin
) -> None:
    first = connected(make_scanner())
    twin = make_twin()
    twin.scan("READ-1")
    assert [s.data for s in read_scans(first, 1)] == ["READ-1"]
    twin.scan("UNREAD")  # received by the first driver, never handed on
    eventually(lambda: bool(first._ready), within=5, what="received")
    first.close()
    twin.scan("WHILE-DOWN-1")
    twin.scan("WHILE-DOWN-2")

    second = connected(make_scanner())  # same device id, so the same client id and session

    assert [s.data for s in read_scans(second, 3)] == ["UNREAD", "WHILE-DOWN-1", "WHILE-DOWN-2"]
    assert second.read_scan(0.5) is None


@pytest.mark.timeout(60)
def test_a_scanner_that_vanishes_is_reported_and_comes_back(
    make_scanner: MakeScanner, make_twin: MakeTwin
) -> None:
    scanner = connected(make_scanner())
    twin = make_twin()
    twin.scan("HELLO")
    assert [s.data for s in read_scans(scanner, 1)] == ["HELLO"]

    twin.disconnect(abrupt=True)  # power cut: the broker publishes the twin's last will
    eventually(lambda: scanner.status().state == "degraded", within=5, what="degraded")
    assert scanner.status().errors["device_offline"] == 1
    twin.reconnect()
    took = eventually(lambda: scanner.status().state == "connected", within=5, what="back")
    twin.scan("AGAIN")

    assert took < patience_timeout(2.0)
    assert [s.data for s in read_scans(scanner, 1)] == ["AGAIN"]
    assert scanner.status().errors["io"] == 0, "the broker link itself never broke"


@pytest.mark.timeout(60)
def test_no_broker_is_a_state_not_a_crash(no_leaks: None) -> None:
    config = MqttScannerConfig(device_id="ghost", port=free_port(), reconnect_max_delay=0.2)
    with MqttScanner(config) as scanner:
        started = datetime.datetime.now()
        assert scanner.read_scan(0.5) is None
        assert (datetime.datetime.now() - started).total_seconds() < 2.0
        eventually(lambda: scanner.status().errors["io"] == 1, within=5, what="counted")
        status = scanner.status()
    assert status.state == "disconnected"
    assert status.last_error is not None
    assert "cannot reach broker" in status.last_error
    assert scanner.status().errors["io"] == 1, "one outage, however many retries"


@pytest.mark.timeout(60)
def test_close_wakes_a_blocked_reader(make_scanner: MakeScanner) -> None:
    scanner = connected(make_scanner())
    results: list[Scan | None] = []
    reader = threading.Thread(target=lambda: results.append(scanner.read_scan(30)))
    reader.start()
    eventually(reader.is_alive, within=2)
    scanner.close()
    reader.join(timeout=patience_timeout(5))
    assert not reader.is_alive()
    assert results == [None]
    assert scanner.status().state == "disconnected"


def test_redelivery_of_a_scan_already_handed_on_is_dropped(no_leaks: None) -> None:
    """The path where an ack was lost in an outage: same message id, flagged dup."""
    with MqttScanner(MqttScannerConfig(device_id="d", port=free_port())) as scanner:

        def message(mid: int, data: str, *, dup: bool) -> MqttMessage:
            return MqttMessage("t", data.encode(), 1, False, dup, mid, NOW, 0.0)

        scanner._received(message(7, "ONE", dup=False))
        assert [s.data for s in read_scans(scanner, 1, within=1)] == ["ONE"]
        scanner._session_started(True)  # reconnected, broker kept the session
        scanner._received(message(7, "ONE", dup=True))  # the broker never got our ack
        scanner._received(message(8, "TWO", dup=True))  # unacked and never handed on
        assert [s.data for s in read_scans(scanner, 2, within=1)] == ["TWO"]
        scanner._received(message(7, "THREE", dup=False))  # id reused for a new message
        assert [s.data for s in read_scans(scanner, 1, within=1)] == ["THREE"]


def test_factory_checks_options() -> None:
    with pytest.raises(DeviceConfigError, match="unknown option"):
        create_mqtt_scanner("d", {"prot": 1883})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scanner("d", {"topic": "jxc/+/scan"})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scanner("d", {"port": "1883"})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scanner("d", {"payload_format": "xml"})
    with pytest.raises(DeviceConfigError):
        create_mqtt_scanner("d", {"fnc1_separator": "A"})
    with pytest.raises(DeviceConfigError):
        MqttScannerConfig(device_id="d", client_id="has space")
