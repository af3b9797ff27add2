"""MQTT scanner and scale twins: clients of a real broker that publish what such devices do.

Written from the message definitions (the scanner's ``{"data", "symbology"}`` JSON or raw
read; the scale's weight, availability, command and reply messages), never from the
drivers: this module imports nothing from ``device_drivers``, so a driver that misreads the
definitions fails against it.

Both twins behave like a well-made MQTT device: they announce ``online`` (retained) on the
availability topic once connected and subscribed (every SUBACK in, so a command published
after ``wait_connected()`` is heard) and leave ``offline`` as their last will; they publish
with QoS 1 and keep what they publish while the broker is away, sending it after the
reconnect; they retry a lost broker every ``retry_delay`` seconds. Faults are injected on
command: garbage and truncated payloads, an abrupt or clean disconnect with a comeback, a
scanner that drops GS separators, a weight that wobbles and then settles, overload and
underload, a lagging clock (stale readings), silence, and slow, missing or refused replies
to commands.

All paho calls run on the twin's own thread (paho is not safe to drive from two threads
without its own loop thread); the methods below queue work for it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.closing import ClosedOnExit
from simulators.load import UNITS, PlatformLoad

__all__ = [
    "GARBAGE",
    "GS",
    "MqttScaleTwin",
    "MqttScannerTwin",
    "encode_scan",
    "encode_weight",
]

log = logging.getLogger("simulators.mqtt_devices")

GS = "\x1d"
GARBAGE = b"\xf0\x00\x8c\x1f\xfe\x7f\x9a\x03\xe6{"
"""Not UTF-8, not JSON, not printable: what a damaged payload looks like."""

_STEP = 0.02
_ANSWER_TIME = datetime.timedelta(seconds=0.15)
_JOIN_TIMEOUT = 5.0

PayloadShape = Literal["json", "raw"]
NumberStyle = Literal["string", "number"]


def encode_scan(data: str, symbology: str | None, shape: PayloadShape = "json") -> bytes:
    """A read as a scanner publishes it: JSON ``{"data", "symbology"}`` or the raw read."""
    if shape == "json":
        document: dict[str, object] = {"data": data}
        if symbology is not None:
            document["symbology"] = symbology
        return json.dumps(document).encode("utf-8")
    return ((symbology or "") + data).encode("utf-8")


def _json_value(value: object, numbers: NumberStyle) -> str:
    if isinstance(value, Decimal):
        return str(value) if numbers == "number" else json.dumps(str(value))
    return json.dumps(value)


def encode_weight(fields: dict[str, object], numbers: NumberStyle = "string") -> bytes:
    """A weight message; weights as decimal strings, or as bare JSON numbers written from
    the decimal's own digits (``1.250``, which a float would print as ``1.25``)."""
    body = ", ".join(f"{json.dumps(k)}: {_json_value(v, numbers)}" for k, v in fields.items())
    return ("{" + body + "}").encode("utf-8")


@dataclass(frozen=True)
class BrokerLogin:
    """How a twin logs in to a broker that wants credentials and TLS, as a real device
    configured for such a broker would. The password stays out of ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca_file is not None or self.tls_cert_file is not None

    def apply(self, client: paho.Client) -> None:
        """Set the credentials and TLS on a paho client before its first connect."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.uses_tls:
            context = ssl.create_default_context(
                cafile=None if self.tls_ca_file is None else str(self.tls_ca_file)
            )
            if self.tls_cert_file is not None:
                key = None if self.tls_key_file is None else str(self.tls_key_file)
                context.load_cert_chain(str(self.tls_cert_file), key)
            client.tls_set_context(context)


class _TwinClient:
    """One device's connection to the broker, on its own thread, with a fixed retry delay."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        login: BrokerLogin | None = None,
        client_id: str,
        availability_topic: str,
        subscriptions: list[str],
        on_message: Callable[[str, bytes], None],
        on_tick: Callable[[], None],
        retry_delay: float,
        name: str,
    ) -> None:
        self.host, self.port = host, port
        self.availability_topic = availability_topic
        self.retry_delay = retry_delay
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_tick = on_tick
        self._actions: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._unacked_subscriptions: set[int] = set()
        self._socket_open = False
        self._online_wanted = True
        self._back_at: float | None = None
        self._next_try = 0.0
        # A persistent session on the device side too: QoS 1 messages published while the
        # broker was away are still owed, and paho sends them after the reconnect.
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._client.suppress_exceptions = True
        if login is not None:
            login.apply(self._client)
        self._client.will_set(availability_topic, b"offline", qos=1, retain=True)
        self._client.on_connect = self._connected_cb
        self._client.on_disconnect = self._disconnected_cb
        self._client.on_message = self._message_cb
        self._client.on_subscribe = self._subscribed_cb
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def call(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the twin's thread, soon."""
        with self._lock:
            self._actions.append(action)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.call(lambda: self.publish_now(topic, payload, qos=qos, retain=retain))

    def publish_now(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        # Only on the twin's thread. Queued by paho (QoS 1) while not connected, and sent
        # after the reconnect.
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def go_offline(self, seconds: float | None, *, abrupt: bool) -> None:
        """Leave the broker: ``abrupt`` like a power cut (the broker fires our last will),
        otherwise saying ``offline`` first and disconnecting cleanly."""

        def leave() -> None:
            self._online_wanted = False
            self._back_at = None if seconds is None else time.monotonic() + seconds
            if abrupt:
                sock = self._client.socket()
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                self._client.loop(timeout=0.01)  # let paho see the dead socket and close it
            else:
                self._client.publish(self.availability_topic, b"offline", qos=1, retain=True)
                self._client.loop(timeout=0.01)
                self._client.disconnect()
            self._socket_open = False
            self._connected.clear()

        self.call(leave)

    def come_back(self) -> None:
        def back() -> None:
            self._online_wanted = True
            self._back_at = None
            self._next_try = 0.0

        self.call(back)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=_JOIN_TIMEOUT)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._step()
        finally:
            if self._socket_open:
                with contextlib.suppress(Exception):
                    self._client.publish(self.availability_topic, b"offline", qos=1, retain=True)
                    self._client.loop(timeout=0.05)
                    self._client.disconnect()
            self._connected.clear()
            with contextlib.suppress(Exception):
                self._client.reinitialise()  # closes paho's wake-up socket pair

    def _step(self) -> None:
        while True:
            with self._lock:
                if not self._actions:
                    break
                action = self._actions.popleft()
            action()
        with contextlib.suppress(Exception):
            self._on_tick()
        now = time.monotonic()
        if not self._online_wanted and self._back_at is not None and now >= self._back_at:
            self._online_wanted, self._back_at, self._next_try = True, None, 0.0
        if not self._socket_open:
            if self._online_wanted and now >= self._next_try:
                try:
                    self._client.connect(self.host, self.port, keepalive=10)
                    self._socket_open = True
                except OSError:
                    self._next_try = now + self.retry_delay
            if not self._socket_open:
                self._stopping.wait(_STEP)
                return
        rc = self._client.loop(timeout=_STEP)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._socket_open = False
            self._connected.clear()
            self._next_try = time.monotonic() + self.retry_delay

    def _connected_cb(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Subscribe, and say ``online`` only once the broker has acknowledged every
        subscription: a twin that reported itself connected earlier would miss a command
        published at once (the broker drops what no one has subscribed to yet)."""
        if reason.is_failure:
            return
        self._unacked_subscriptions = set()
        for topic in self._subscriptions:
            result, mid = client.subscribe(topic, qos=1)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._unacked_subscriptions.add(mid)
        if not self._unacked_subscriptions:
            self._listening()

    def _subscribed_cb(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid not in self._unacked_subscriptions:
            return
        if any(reason.is_failure for reason in reasons):
            # Refused by the broker (an ACL): never claim to listen; the twin stays
            # unconnected, which is what wait_connected() then reports.
            log.warning("the broker refused a subscription", extra={"reasons": str(reasons)})
            return
        self._unacked_subscriptions.discard(mid)
        if not self._unacked_subscriptions:
            self._listening()

    def _listening(self) -> None:
        self._client.publish(self.availability_topic, b"online", qos=1, retain=True)
        self._connected.set()

    def _disconnected_cb(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._socket_open = False
        self._connected.clear()
        self._next_try = time.monotonic() + self.retry_delay

    def _message_cb(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with contextlib.suppress(Exception):
            self._on_message(message.topic, bytes(message.payload))


class _Twin(ClosedOnExit):
    """What both twins share: the connection, its faults, and being a context manager."""

    _client: _TwinClient

    @property
    def connected(self) -> bool:
        return self._client.connected

    def wait_connected(self, timeout: float = 5.0) -> bool:
        return self._client.wait_connected(timeout)

    def disconnect(self, seconds: float | None = None, *, abrupt: bool = True) -> None:
        """Vanish from the broker; back by itself after ``seconds``, else on :meth:`reconnect`."""
        self._client.go_offline(seconds, abrupt=abrupt)

    def reconnect(self) -> None:
        self._client.come_back()

    def close(self) -> None:
        """Switch the device off cleanly (it says ``offline`` first)."""
        self._client.close()


class MqttScannerTwin(_Twin):
    """A scanner on ``jxc/scanners/<device_id>/scan`` (or ``topic``)."""

    def __init__(
        self,
        device_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        topic: str | None = None,
        availability_topic: str | None = None,
        shape: PayloadShape = "json",
        client_id: str | None = None,
        retry_delay: float = 0.1,
        login: BrokerLogin | None = None,
    ) -> None:
        self.device_id = device_id
        self.topic = topic or f"jxc/scanners/{device_id}/scan"
        self.shape: PayloadShape = shape
        self.drops_gs = False
        self.sent: list[bytes] = []
        """Every payload published, in order, for tests to compare against."""
        self._client = _TwinClient(
            host=host,
            port=port,
            login=login,
            client_id=client_id or f"twin-scanner-{device_id}",
            availability_topic=availability_topic or f"jxc/scanners/{device_id}/availability",
            subscriptions=[],
            on_message=lambda topic, payload: None,
            on_tick=lambda: None,
            retry_delay=retry_delay,
            name=f"mqtt-scanner-twin-{device_id}",
        )

    def scan(
        self, data: str, symbology: str | None = None, *, shape: PayloadShape | None = None
    ) -> None:
        """Publish one read (GS removed first when the twin is set to drop separators)."""
        if self.drops_gs:
            data = data.replace(GS, "")
        self.send_raw(encode_scan(data, symbology, shape or self.shape))

    def send_raw(self, payload: bytes) -> None:
        self.sent.append(payload)
        self._client.publish(self.topic, payload)

    def send_garbage(self) -> None:
        self.send_raw(GARBAGE)

    def send_truncated(self, data: str, symbology: str | None = None) -> None:
        """The first half of a JSON read: a gateway that cut the message short."""
        whole = encode_scan(data, symbology, "json")
        self.send_raw(whole[: max(len(whole) // 2, 1)])

    def drop_gs(self, on: bool = True) -> None:
        """Behave like a scanner configured to drop FNC1 separators inside the data."""
        self.drops_gs = on


@dataclass
class _Command:
    id: str
    command: str
    expires_at: datetime.datetime
    reply_at: float


class MqttScaleTwin(_Twin):
    """A scale publishing its weight every ``interval`` seconds, taking zero/tare commands."""

    def __init__(
        self,
        device_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        weight: Decimal = Decimal(0),
        unit: str = "kg",
        decimals: int = 3,
        capacity: Decimal = Decimal(150),
        interval: float = 0.05,
        numbers: NumberStyle = "string",
        with_gross: bool = True,
        client_id: str | None = None,
        retry_delay: float = 0.1,
        topic: str | None = None,
        command_topic: str | None = None,
        reply_topic: str | None = None,
        availability_topic: str | None = None,
        login: BrokerLogin | None = None,
    ) -> None:
        """Topics default to ``jxc/scales/<device_id>/{weight,command,reply,availability}``;
        a site that renames them (as the driver allows) passes its own; ``command_topic=""``
        is a scale without commands."""
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        self.device_id = device_id
        base = f"jxc/scales/{device_id}"
        self.topic = topic or f"{base}/weight"
        self.command_topic = f"{base}/command" if command_topic is None else command_topic
        self.reply_topic = reply_topic or f"{base}/reply"
        self.unit = unit
        self.interval = interval
        self.numbers: NumberStyle = numbers
        self.with_gross = with_gross
        self.capacity = capacity
        self.commands: list[dict[str, object]] = []
        """Every command received (parsed), for tests to assert on."""
        self.published = 0
        self._lock = threading.RLock()
        self._division = Decimal(1).scaleb(-decimals)
        self._platform = PlatformLoad(self._division, weight)
        self._lying = False
        self._clock_offset = 0.0
        self._timestamps = True
        self._silent = False
        self._mangle: deque[Literal["garbage", "truncated"]] = deque()
        self._reply_delay = 0.0
        self._no_replies = False
        self._unsupported: set[str] = set()
        self._pending: list[_Command] = []
        self._next_at = 0.0
        self._client = _TwinClient(
            host=host,
            port=port,
            login=login,
            client_id=client_id or f"twin-scale-{device_id}",
            availability_topic=availability_topic or f"{base}/availability",
            subscriptions=[self.command_topic] if self.command_topic else [],
            on_message=self._on_message,
            on_tick=self._tick,
            retry_delay=retry_delay,
            name=f"mqtt-scale-twin-{device_id}",
        )

    # -- the platform ----------------------------------------------------------------

    @property
    def tare_weight(self) -> Decimal:
        with self._lock:
            return self._platform.tare

    def set_weight(self, value: Decimal, *, settle: float = 0.0) -> None:
        """Put a load (gross, in the display unit) on the platform; with ``settle`` it swings
        that long first, as a box dropped on the platform does."""
        with self._lock:
            self._platform.put(value, settle=settle)

    def wobble(self, seconds: float, amplitude: Decimal | None = None) -> None:
        with self._lock:
            self._platform.wobble(seconds, amplitude)

    def overload(self) -> None:
        with self._lock:
            self._platform.force("overload")

    def underload(self) -> None:
        with self._lock:
            self._platform.force("underload")

    def lie_about_stability(self, on: bool = True) -> None:
        """Flag every reading stable, even while the load swings (a too-eager motion filter)."""
        with self._lock:
            self._lying = on

    def set_clock_offset(self, seconds: float) -> None:
        """Stamp readings this far from the real time (negative: a lagging clock, or a
        gateway delivering old readings)."""
        with self._lock:
            self._clock_offset = seconds

    def send_timestamps(self, on: bool) -> None:
        with self._lock:
            self._timestamps = on

    def go_silent(self, on: bool = True) -> None:
        """Stay connected but stop publishing (a hung indicator)."""
        with self._lock:
            self._silent = on

    def send_garbage(self, count: int = 1) -> None:
        """Replace the next ``count`` readings by non-JSON bytes."""
        with self._lock:
            self._mangle.extend(["garbage"] * count)

    def send_truncated(self, count: int = 1) -> None:
        """Send only the first half of the next ``count`` readings."""
        with self._lock:
            self._mangle.extend(["truncated"] * count)

    def send_raw(self, payload: bytes, *, retain: bool = False) -> None:
        self._client.publish(self.topic, payload, retain=retain)

    def set_reply_delay(self, seconds: float) -> None:
        with self._lock:
            self._reply_delay = max(seconds, 0.0)

    def no_replies(self, on: bool = True) -> None:
        """Take commands and never answer them."""
        with self._lock:
            self._no_replies = on

    def unsupported(self, *commands: str) -> None:
        """Answer these commands with ``unsupported``, as a model without them does."""
        with self._lock:
            self._unsupported = set(commands)

    def clear_faults(self) -> None:
        with self._lock:
            self._platform.force(None)
            self._lying = False
            self._clock_offset = 0.0
            self._timestamps = True
            self._silent = False
            self._mangle.clear()
            self._reply_delay = 0.0
            self._no_replies = False
            self._unsupported = set()
            self._platform.hold_still()

    # -- on the twin's thread ------------------------------------------------------------

    def _moving(self, now: float) -> bool:
        return self._platform.moving(now)

    def _shown(self, value: Decimal) -> Decimal:
        return self._platform.shown(value)

    def _reading(self, now: float) -> dict[str, object]:
        platform = self._platform
        fields: dict[str, object]
        if platform.over(self.capacity):
            fields = {"status": "overload", "unit": self.unit, "stable": False}
        elif platform.under(-self.capacity * Decimal("0.02")):
            fields = {"status": "underload", "unit": self.unit, "stable": False}
        else:
            # The swing is on the gross (what the load cell sees); the tare is subtracted from
            # the shown gross, as the display does, so net = shown gross - shown tare exactly.
            offset, moving = platform.swing(now)
            shown_gross = self._shown(platform.gross + offset)
            tare = self._shown(platform.tare)
            fields = {"net": shown_gross - tare}
            if self.with_gross:
                fields.update({"gross": shown_gross, "tare": tare})
            fields.update({"unit": self.unit, "stable": self._lying or not moving, "status": "ok"})
        if self._timestamps:
            stamp = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=self._clock_offset
            )
            fields["ts"] = stamp.isoformat()
        return fields

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._answer_due(now)
            if now < self._next_at or self._silent or not self._client.connected:
                return
            self._next_at = now + self.interval
            payload = encode_weight(self._reading(now), self.numbers)
            if self._mangle:
                fault = self._mangle.popleft()
                payload = GARBAGE if fault == "garbage" else payload[: len(payload) // 2]
            self.published += 1
        self._client.publish_now(self.topic, payload, qos=1, retain=False)  # on our thread

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic != self.command_topic:
            return
        try:
            document = json.loads(payload)
            command_id = str(document["id"])
            command = str(document["command"])
            expires_at = datetime.datetime.fromisoformat(str(document["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return  # a real indicator ignores what it cannot read
        with self._lock:
            self.commands.append(document)
            if self._no_replies:
                return
            self._pending.append(
                _Command(command_id, command, expires_at, time.monotonic() + self._reply_delay)
            )

    def _answer_due(self, now: float) -> None:
        keep: list[_Command] = []
        for pending in self._pending:
            if now < pending.reply_at:
                keep.append(pending)
                continue
            # Give up waiting for a still load a little before the deadline, so that the
            # "motion" answer reaches the sender while it is still listening.
            expired = datetime.datetime.now(datetime.UTC) >= pending.expires_at - _ANSWER_TIME
            if pending.command in ("zero", "tare") and self._moving(now) and not expired:
                keep.append(pending)  # waiting for a still load, as the device does
                continue
            reply = self._execute(pending, now, expired=expired)
            if reply is not None:
                body = json.dumps({"id": pending.id, **reply}).encode("utf-8")
                self._client.publish_now(self.reply_topic, body, qos=1, retain=False)
        self._pending = keep

    def _execute(self, pending: _Command, now: float, *, expired: bool) -> dict[str, object] | None:
        if expired and not (pending.command in ("zero", "tare") and self._moving(now)):
            return None  # too late: whoever sent it has stopped waiting
        if pending.command not in ("zero", "tare", "clear_tare") or (
            pending.command in self._unsupported
        ):
            return {"ok": False, "error": "unsupported", "detail": pending.command}
        forced = self._platform.forced
        if forced is not None:
            return {"ok": False, "error": forced}
        if pending.command in ("zero", "tare") and self._moving(now):
            return {"ok": False, "error": "motion", "detail": "the load did not settle"}
        return self._perform(pending.command)

    def _perform(self, command: str) -> dict[str, object]:
        platform = self._platform
        if command == "zero":
            platform.zero_here()
            return {"ok": True}
        if command == "tare":
            platform.set_tare(self._shown(platform.gross))
            return {"ok": True, "tare": str(platform.tare), "unit": self.unit}
        platform.set_tare(Decimal(0))
        return {"ok": True}
