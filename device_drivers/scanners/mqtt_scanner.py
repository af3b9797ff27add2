"""A barcode scanner that publishes its reads to an MQTT broker (a networked scanner, or a
scanner behind a gateway).

**Topic.** One exact topic per device, default ``jxc/scanners/{device_id}/scan``; a site
usually puts its own name in it (``jxc/dock-a/scanner/{device_id}/scan``). ``{device_id}``
is replaced by the device's id. Optionally an availability topic (default
``jxc/scanners/{device_id}/availability``) on which the device publishes ``online``
(retained) when it connects and has the broker publish ``offline`` (its last will, retained)
when it vanishes: the only way to tell an unplugged scanner from a quiet one.

**Payload**, one read per message, in either of two shapes (``payload_format``):

* ``raw``: exactly the bytes a serial scanner sends for one read, without or with one
  trailing CR/LF: an optional AIM identifier, then the data, with later FNC1s as GS (0x1D,
  or the configured stand-in). ``]C10109506000134352\\x1d10LOT42``.
* ``json``: a UTF-8 object ``{"data": "<read>", "symbology": "]C1"}``. ``data`` (required,
  a string) is the read without its AIM identifier, GS written ``\\u001d``; ``symbology``
  (optional, string or null) is the three-character AIM identifier. Other keys (a device
  timestamp, a sequence number) are allowed and ignored, so a gateway may add its own.

``auto`` (the default) takes a payload whose first non-blank byte is ``{`` as JSON and any
other as raw; set ``raw`` for a scanner that may read barcodes starting with ``{``.

Either way the read goes through the same codec as a serial line
(:func:`~device_drivers.scanners.framing.parse_line`), so AIM identifiers, GS1 element
strings, check digits and the lost-FNC1 check behave exactly as on a serial scanner.
Anything else (invalid or truncated JSON, a missing ``data``, non-UTF-8 or non-ASCII,
an empty read, an oversize payload, a bad GS1 check digit) is counted under its reason,
logged, acknowledged (a broken message redelivered forever helps nobody) and never a scan.

**Delivery: at least once, to the station.** QoS 1 with a persistent session
(``clean_session = 0``, a fixed client id) and *manual* acknowledgements: a message is
acknowledged to the broker only when :meth:`MqttScanner.read_scan` hands it to the station.
So:

* While the agent is down (restart, crash), the broker keeps the session and queues the
  reads; they arrive, in order, when the agent comes back.
* While the broker is down, the scanner cannot publish; whether its reads are kept depends
  on the scanner (a QoS 1 client queues them and sends them after reconnecting; the twin
  does). Reads queued for us in the broker survive a broker restart only if the broker runs
  with persistence on (Mosquitto ``persistence true``), which production must set.
* Reads received but not yet handed on when the connection drops are dropped here and sent
  again by the broker (it still has them unacknowledged). If the broker lost the session,
  they are kept and handed on instead. A read handed on whose acknowledgement was lost in
  the outage comes back flagged as a duplicate with the same message id; it is recognised
  and dropped, so the station sees it once.
* Set ``persistent_session = false`` to receive only reads published while connected.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from device_drivers.errors import DeviceConfigError, RejectedInputError
from device_drivers.mqtt import (
    MqttEndpoint,
    MqttLink,
    MqttMessage,
    check_qos,
    check_topic,
    device_endpoint,
    device_health,
    expand_topic,
    load_json_object,
)
from device_drivers.options import config_from_options
from device_drivers.scanners.base import Gs1Mode, Scan, ScanErrorReason
from device_drivers.scanners.framing import check_fnc1_separator, parse_line, split_symbology
from device_drivers.scanners.gs1 import GS
from device_drivers.status import DeviceStatus

__all__ = [
    "MQTT_SCAN_ERROR_REASONS",
    "MqttScanner",
    "MqttScannerConfig",
    "PayloadFormat",
    "create_mqtt_scanner",
    "decode_scan_payload",
]

log = logging.getLogger("device_drivers.scanner")

PayloadFormat = Literal["auto", "raw", "json"]

MQTT_SCAN_ERROR_REASONS: tuple[str, ...] = (
    *get_args(ScanErrorReason),
    "malformed",
    "device_offline",
)
"""The serial scanner's counters plus ``malformed`` (JSON that is not the documented shape)
and ``device_offline`` (the availability topic said so)."""

_DEGRADED_AFTER = 3
"""Rejected payloads in a row before the scanner counts as degraded, as for serial lines."""


@dataclass(frozen=True, slots=True)
class MqttScannerConfig:
    """How one MQTT scanner is reached; see the module docstring for topics and payloads."""

    device_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "jxc/scanners/{device_id}/scan"
    availability_topic: str | None = "jxc/scanners/{device_id}/availability"
    payload_format: PayloadFormat = "auto"
    client_id: str | None = None
    """Default ``jxc-scanner-<device_id>``; must be stable for the persistent session."""
    persistent_session: bool = True
    qos: int = 1
    keepalive: int = 10
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """Prefer ``password_file``: a password in the site file travels with every copy."""
    password_file: Path | None = None
    """A file (mode 0600) holding the broker password on one line."""
    tls: bool = False
    """Speak TLS to the broker (on by itself when a ``tls_*`` file is given)."""
    tls_ca_file: Path | None = None
    """The CA bundle that signed the broker's certificate; the system's without it."""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    """The link's own certificate and key, for a broker that asks clients for one."""
    max_length: int = 256
    """Longest read (AIM identifier + data), as for a serial line."""
    max_payload: int = 4096
    """Longest message; a larger one is refused before it is even decoded."""
    fnc1_separator: str = GS
    gs1: Gs1Mode = "auto"
    connect_timeout: float = 2.0
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 2.0

    def __post_init__(self) -> None:
        name = self.device_id
        if not name:
            raise DeviceConfigError("device_id must not be empty")
        check_topic(name, "topic", self.scan_topic)
        if self.availability_topic:
            check_topic(name, "availability_topic", self.status_topic or "")
        if self.payload_format not in get_args(PayloadFormat):
            raise DeviceConfigError(
                f"{name}: payload_format must be auto, raw or json, got {self.payload_format!r}"
            )
        if self.gs1 not in get_args(Gs1Mode):
            raise DeviceConfigError(f"{name}: gs1 must be auto, always or never, got {self.gs1!r}")
        for option in ("max_length", "max_payload"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DeviceConfigError(f"{name}: {option} must be a positive whole number")
        check_qos(name, self.qos)
        try:
            check_fnc1_separator(self.fnc1_separator)
        except DeviceConfigError as exc:
            raise DeviceConfigError(f"{name}: {exc}") from None
        self.endpoint()  # validates the broker options

    @property
    def scan_topic(self) -> str:
        return expand_topic(self.topic, self.device_id)

    @property
    def status_topic(self) -> str | None:
        if not self.availability_topic:
            return None
        return expand_topic(self.availability_topic, self.device_id)

    def endpoint(self) -> MqttEndpoint:
        return device_endpoint(self, kind="scanner")


def decode_scan_payload(
    payload: bytes,
    *,
    device_id: str,
    received_at: datetime.datetime,
    payload_format: PayloadFormat = "auto",
    fnc1_separator: str = GS,
    gs1: Gs1Mode = "auto",
    max_length: int = 256,
    max_payload: int = 4096,
) -> Scan:
    """One MQTT payload to one scan, or :class:`RejectedInputError` saying why not.

    Pure, so every rule can be tested from bytes alone. ``Scan.raw`` is the payload exactly
    as it arrived (JSON envelope included): that is what the wire carried.
    """
    if len(payload) > max_payload:
        raise RejectedInputError("too_long", f"payload of {len(payload)} bytes > {max_payload}")
    if not payload.strip():
        raise RejectedInputError("empty", "empty payload")
    shape = payload_format
    if shape == "auto":
        shape = "json" if payload.lstrip()[:1] == b"{" else "raw"
    line = _json_read(payload) if shape == "json" else _raw_read(payload)
    if not line.strip():
        raise RejectedInputError("empty", "a read with no data")
    if len(line) > max_length:
        raise RejectedInputError("too_long", f"read of {len(line)} bytes > {max_length}")
    scan = parse_line(
        line,
        device_id=device_id,
        received_at=received_at,
        fnc1_separator=fnc1_separator,
        gs1=gs1,
    )
    return dataclasses.replace(scan, raw=payload)


def _raw_read(payload: bytes) -> bytes:
    # One terminator is tolerated, as a serial-to-MQTT bridge may forward the line whole;
    # a CR or LF anywhere else is refused by parse_line as not printable.
    for ending in (b"\r\n", b"\r", b"\n"):
        if payload.endswith(ending):
            return payload[: -len(ending)]
    return payload


def _json_read(payload: bytes) -> bytes:
    document = load_json_object(payload, encoding_reason="not_printable", syntax_reason="malformed")
    data = document.get("data")
    if not isinstance(data, str):
        raise RejectedInputError("malformed", 'JSON scan needs "data" as a string')
    symbology = document.get("symbology")
    if symbology is not None and (
        not isinstance(symbology, str) or split_symbology(symbology) != (symbology, "")
    ):
        raise RejectedInputError(
            "malformed", f'"symbology" must be an AIM identifier like "]C1", got {symbology!r}'
        )
    text = (symbology or "") + data
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise RejectedInputError(
            "not_printable", f"read holds characters a scanner cannot send: {text[:32]!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class _Ready:
    scan: Scan
    message: MqttMessage
    ack: bool
    """False for a message from a session the broker has since forgotten: its id now means
    nothing there, and acknowledging it could acknowledge someone else's message."""


class MqttScanner:
    """:class:`~device_drivers.scanners.base.Scanner` over an MQTT topic.

    The connection lives on its own I/O thread (keepalives and acknowledgements must flow
    while the station is busy elsewhere); ``read_scan`` only waits for what it decoded.
    ``read_scan`` is for one thread (the station loop); ``status`` and ``close`` are safe
    from any other.
    """

    def __init__(self, config: MqttScannerConfig) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._ready: deque[_Ready] = deque()
        self._delivered_mids: set[int] = set()
        """Ids of messages handed on in this broker session: a redelivery of one of them
        (flagged dup) is a read the station already has."""
        self._discards_in_a_row = 0
        self._closing = threading.Event()
        endpoint = config.endpoint()
        self._health = device_health(
            endpoint, kind="scanner", reasons=MQTT_SCAN_ERROR_REASONS, logger=log
        )
        self._link = MqttLink(
            endpoint,
            health=self._health,
            logger=log,
            topics=[config.scan_topic],
            qos=config.qos,
            on_message=self._received,
            availability_topic=config.status_topic,
            on_session=self._session_started,
            manual_ack=config.qos == 1,
        )
        self._link.start()

    def __enter__(self) -> MqttScanner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_scan(self, timeout: float) -> Scan | None:
        """Wait up to ``timeout`` seconds for the next good scan; ``None`` if none came."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while not self._ready:
                remaining = deadline - time.monotonic()
                if self._closing.is_set() or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._ready.popleft()
            if item.ack:
                self._delivered_mids.add(item.message.mid)
        if item.ack:
            self._link.ack(item.message)
        self._health.scanned()
        return item.scan

    def status(self) -> DeviceStatus:
        """A snapshot, consistent even while the I/O thread is receiving."""
        return self._health.snapshot()

    def close(self) -> None:
        """Disconnect for good; a blocked ``read_scan`` returns ``None`` promptly.

        Reads received but not handed on are not acknowledged, so with a persistent session
        the broker gives them to the next process that connects with this client id.
        """
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._link.close()

    # -- on the I/O thread -------------------------------------------------------------

    def _session_started(self, session_present: bool) -> None:
        with self._cond:
            if session_present and self.config.persistent_session:
                # The broker still holds every unacknowledged read and sends it again now;
                # keeping our copies too would hand them on twice.
                pending = [r for r in self._ready if r.ack]
                self._ready = deque(r for r in self._ready if not r.ack)
                if pending:
                    log.info(
                        "scanner: %d unread scans will be redelivered by the broker",
                        len(pending),
                        extra={"device": self.config.device_id, "event": "redelivery"},
                    )
            else:
                # A new session: old message ids mean nothing to the broker any more, and it
                # will not send our pending reads again, so keep them and never ack them.
                self._ready = deque(dataclasses.replace(r, ack=False) for r in self._ready)
                self._delivered_mids.clear()

    def _received(self, message: MqttMessage) -> None:
        config = self.config
        with self._cond:
            if message.dup and message.mid in self._delivered_mids:
                self._delivered_mids.discard(message.mid)
                duplicate = True
            else:
                # The broker reuses an id only after our ack: the old delivery is settled.
                self._delivered_mids.discard(message.mid)
                duplicate = False
        if duplicate:
            log.info(
                "scanner: dropped a redelivered scan the station already has",
                extra={"device": config.device_id, "event": "duplicate"},
            )
            self._link.ack(message)
            return
        try:
            scan = decode_scan_payload(
                message.payload,
                device_id=config.device_id,
                received_at=message.received_at,
                payload_format=config.payload_format,
                fnc1_separator=config.fnc1_separator,
                gs1=config.gs1,
                max_length=config.max_length,
                max_payload=config.max_payload,
            )
        except RejectedInputError as exc:
            self._link.ack(message)  # a broken read redelivered forever helps nobody
            self._reject(exc, message)
            return
        self._discards_in_a_row = 0
        self._health.answered()
        with self._cond:
            self._ready.append(_Ready(scan, message, ack=message.qos == 1))
            self._cond.notify_all()

    def _reject(self, exc: RejectedInputError, message: MqttMessage) -> None:
        self._discards_in_a_row += 1
        self._health.count(
            exc.reason, exc.detail, degrade=self._discards_in_a_row >= _DEGRADED_AFTER
        )
        log.warning(
            "scanner payload rejected (%s): %s",
            exc.reason,
            exc.detail,
            extra={
                "device": self.config.device_id,
                "reason": exc.reason,
                "sample": repr(message.payload[:64]),
            },
        )


def create_mqtt_scanner(device_id: str, options: Mapping[str, object]) -> MqttScanner:
    """The ``mqtt-scanner`` entry point: a site file's scanner section to a driver.

    Options are :class:`MqttScannerConfig`'s fields; an unknown or mistyped one is a
    :class:`DeviceConfigError` naming it, so a typo in the site file fails at start-up.
    """
    config = config_from_options(
        MqttScannerConfig, device_id, options, driver="mqtt-scanner", required=()
    )
    return MqttScanner(config)
