"""One MQTT connection per device, driven by our own I/O thread over paho-mqtt 2.x.

Why not paho's ``loop_start``: its thread reconnects with paho's own backoff (whole seconds,
up to two minutes), out of sight of the device's :class:`~device_drivers.link.LinkHealth`.
Every driver must report an outage the same way and retry on the same schedule, so this
module runs paho's single-step ``loop()`` from a thread it owns and tells ``LinkHealth``
about every failed connect, every lost connection and every message, exactly as the serial
drivers do from their read loop.

Rules this wrapper keeps so the drivers on top can be simple:

* A link is *up* only once the broker has accepted the session (CONNACK) **and** granted
  every subscription (SUBACK). Before that a message published by a device could miss us.
* Everything that touches the paho client runs on the I/O thread. Without ``loop_start``
  paho writes to the socket from whichever thread calls ``publish``/``ack``, which would
  race the I/O thread; other threads queue an action instead and the thread runs it within
  one loop step (:data:`_LOOP_STEP` seconds).
* Callbacks into the driver never escape: a driver bug is logged, the link stays alive.
* The optional availability topic (``online``/``offline``, retained, and the device's last
  will) is how a device behind the broker says it is gone: our link to the broker can be
  fine while the scanner or scale itself is unplugged. ``offline`` marks the device
  degraded and is counted once per transition as ``device_offline``.

MQTT 3.1.1 is spoken, since every broker and device gateway has it; QoS 2 is not used (QoS 1
and idempotent handling on top cost less and survive the same failures).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_drivers.errors import DeviceConfigError, RejectedInputError
from device_drivers.link import LinkHealth

__all__ = [
    "AVAILABILITY_OFFLINE",
    "AVAILABILITY_ONLINE",
    "MqttBrokerOptions",
    "MqttEndpoint",
    "MqttLink",
    "MqttMessage",
    "check_positive_seconds",
    "check_qos",
    "check_topic",
    "device_endpoint",
    "device_health",
    "expand_topic",
    "load_json_object",
    "read_password_file",
]

AVAILABILITY_ONLINE = b"online"
AVAILABILITY_OFFLINE = b"offline"

_LOOP_STEP = 0.05
"""Seconds one paho ``loop()`` may block: the latency of a queued publish or ack, and of
noticing ``close``. Twenty wake-ups a second per device is nothing for an edge box."""

_JOIN_TIMEOUT = 5.0
_AUTH_REFUSALS = frozenset({4, 5, 134, 135})
"""CONNACK codes for bad credentials: MQTT 3.1.1's "bad user name or password" and "not
authorised", and their MQTT 5 numbers."""
_MAX_JSON_DEPTH = 8
_DEVICE_ID_PLACEHOLDER = "{device_id}"
_CLIENT_ID_OK = re.compile(r"^[0-9A-Za-z._:-]{1,64}$")

LinkPhase = Literal["down", "connecting", "subscribing", "up", "closed"]


def expand_topic(template: str, device_id: str) -> str:
    """Put the device id into a topic template (plain replace, so other braces stay)."""
    return template.replace(_DEVICE_ID_PLACEHOLDER, device_id)


def check_topic(device_id: str, name: str, topic: str) -> str:
    """Refuse a topic a device cannot publish to exactly.

    Wildcards are refused on purpose: each device has its own topic, so a message's topic
    alone says which device it came from, and ``+`` would let one scanner's reads be booked
    under another's id.
    """
    if not topic:
        raise DeviceConfigError(f"{device_id}: {name} must not be empty")
    if any(c in topic for c in "+#\x00"):
        raise DeviceConfigError(
            f"{device_id}: {name} {topic!r} must be one exact topic (no '+', '#' or NUL)"
        )
    if len(topic.encode("utf-8")) > 1024:
        raise DeviceConfigError(f"{device_id}: {name} is too long")
    return topic


def check_qos(device_id: str, qos: int) -> None:
    """QoS 0 or 1; QoS 2 is not used (see the module docstring)."""
    if qos not in (0, 1):
        raise DeviceConfigError(f"{device_id}: qos must be 0 or 1, got {qos!r}")


def check_positive_seconds(device_id: str, **durations: object) -> None:
    """Each of ``durations`` a number of seconds above zero, checked in the order given.

    A site file may spell a duration as an int or a float; a bool is neither, even though
    Python counts it as an int.
    """
    for option, value in durations.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise DeviceConfigError(f"{device_id}: {option} must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where the broker is and how to hold a session with it.

    ``persistent_session`` (MQTT ``clean_session = 0``) makes the broker keep our
    subscriptions and queue QoS 1 messages while we are away, under ``client_id``; that
    only works if the id is the same every time, and two processes using one id knock each
    other off the broker, so a standby agent must be given another id.
    ``keepalive`` bounds how long a silently dead broker (a pulled cable rather than a
    refused connection) goes unnoticed: about 1.5 times it.

    TLS is on with ``tls`` or any ``tls_*`` file: the broker's certificate is checked
    against ``tls_ca_file`` (the system's trust store without it) and its name against
    ``host``; ``tls_cert_file``/``tls_key_file`` are the device link's own certificate for
    a broker that asks for one. The password is kept out of ``repr`` (and so out of every
    log line and error that prints the endpoint).
    """

    device_id: str
    host: str
    port: int
    client_id: str
    persistent_session: bool
    keepalive: int = 10
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 2.0
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 2.0
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def __post_init__(self) -> None:
        name = self.device_id
        if not name:
            raise DeviceConfigError("device_id must not be empty")
        if not self.host:
            raise DeviceConfigError(f"{name}: host must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise DeviceConfigError(f"{name}: port must be a number")
        if not 0 < self.port < 65536:
            raise DeviceConfigError(f"{name}: port must be 1..65535, got {self.port}")
        if not _CLIENT_ID_OK.match(self.client_id):
            raise DeviceConfigError(
                f"{name}: client_id must be 1-64 letters, digits or . _ : -, got {self.client_id!r}"
            )
        if isinstance(self.keepalive, bool) or not isinstance(self.keepalive, int):
            raise DeviceConfigError(f"{name}: keepalive must be whole seconds")
        if not 1 <= self.keepalive <= 65535:
            raise DeviceConfigError(f"{name}: keepalive must be 1..65535 s")
        check_positive_seconds(
            name,
            connect_timeout=self.connect_timeout,
            reconnect_min_delay=self.reconnect_min_delay,
            reconnect_max_delay=self.reconnect_max_delay,
        )
        if self.reconnect_min_delay > self.reconnect_max_delay:
            raise DeviceConfigError(f"{name}: need reconnect_min_delay <= reconnect_max_delay")
        if self.password is not None and self.username is None:
            raise DeviceConfigError(f"{name}: a password needs a username")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise DeviceConfigError(f"{name}: tls_cert_file and tls_key_file go together")
        if self.uses_tls:
            self.ssl_context()  # a missing or unreadable file fails at start, not at connect

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(
            f is not None for f in (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        )

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.uses_tls else 'mqtt'}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings of the link: verify the broker (certificate and name) always.

        There is no switch to skip verification: a device link that trusts anyone is
        plain text with extra steps. A broker with its own CA gets ``tls_ca_file``.
        Errors name the file and what is wrong with it, never its content.
        """
        name = self.device_id
        try:
            context = ssl.create_default_context(
                cafile=None if self.tls_ca_file is None else str(self.tls_ca_file)
            )
        except (OSError, ssl.SSLError) as exc:
            raise DeviceConfigError(
                f"{name}: cannot use tls_ca_file {self.tls_ca_file}: {_ssl_reason(exc)}"
            ) from None
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            try:
                context.load_cert_chain(str(self.tls_cert_file), str(self.tls_key_file))
            except (OSError, ssl.SSLError) as exc:
                raise DeviceConfigError(
                    f"{name}: cannot use tls_cert_file {self.tls_cert_file} with tls_key_file "
                    f"{self.tls_key_file}: {_ssl_reason(exc)}"
                ) from None
        return context


def _ssl_reason(exc: BaseException) -> str:
    """Why a certificate or key file could not be used, without quoting any of it."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or "not a PEM certificate or key this link can use"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


_MAX_PASSWORD_FILE = 4096


def read_password_file(device_id: str, path: Path) -> str:
    """The broker password kept in ``path`` (one line; a final newline is dropped).

    A password in its own file (mode 0600, like the site secret) keeps it out of the site
    file, which is copied and versioned freely. Errors say what is wrong with the file,
    never what is in it.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise DeviceConfigError(
            f"{device_id}: cannot read password_file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(raw) > _MAX_PASSWORD_FILE:
        raise DeviceConfigError(
            f"{device_id}: password_file {path} is larger than {_MAX_PASSWORD_FILE} bytes"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DeviceConfigError(f"{device_id}: password_file {path} is not UTF-8 text") from None
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            text = text[: -len(ending)]
            break
    if not text:
        raise DeviceConfigError(f"{device_id}: password_file {path} is empty")
    if "\n" in text or "\r" in text:
        raise DeviceConfigError(f"{device_id}: password_file {path} holds more than one line")
    return text


class MqttBrokerOptions(Protocol):
    """The broker options every MQTT device's config has, under the same names, so a site
    file spells them alike for a scanner and a scale."""

    @property
    def device_id(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def client_id(self) -> str | None: ...

    @property
    def persistent_session(self) -> bool: ...

    @property
    def keepalive(self) -> int: ...

    @property
    def username(self) -> str | None: ...

    @property
    def password(self) -> str | None: ...

    @property
    def connect_timeout(self) -> float: ...

    @property
    def reconnect_min_delay(self) -> float: ...

    @property
    def reconnect_max_delay(self) -> float: ...

    @property
    def password_file(self) -> Path | None: ...

    @property
    def tls(self) -> bool: ...

    @property
    def tls_ca_file(self) -> Path | None: ...

    @property
    def tls_cert_file(self) -> Path | None: ...

    @property
    def tls_key_file(self) -> Path | None: ...


def device_endpoint(options: MqttBrokerOptions, *, kind: str) -> MqttEndpoint:
    """The endpoint a device's config describes (which also checks the broker options).

    Without a ``client_id`` the device gets ``jxc-<kind>-<device_id>``: stable across
    restarts, as a persistent session needs, and distinct per device. ``password_file``
    is read here, each time: a password changed in the file is used at the next start.
    """
    password = options.password
    if options.password_file is not None:
        if password is not None:
            raise DeviceConfigError(
                f"{options.device_id}: give password or password_file, not both"
            )
        password = read_password_file(options.device_id, options.password_file)
    return MqttEndpoint(
        device_id=options.device_id,
        host=options.host,
        port=options.port,
        client_id=options.client_id or f"jxc-{kind}-{options.device_id}",
        persistent_session=options.persistent_session,
        keepalive=options.keepalive,
        username=options.username,
        password=password,
        connect_timeout=options.connect_timeout,
        reconnect_min_delay=options.reconnect_min_delay,
        reconnect_max_delay=options.reconnect_max_delay,
        tls=options.tls,
        tls_ca_file=options.tls_ca_file,
        tls_cert_file=options.tls_cert_file,
        tls_key_file=options.tls_key_file,
    )


def device_health(
    endpoint: MqttEndpoint, *, kind: str, reasons: Iterable[str], logger: logging.Logger
) -> LinkHealth:
    """The :class:`LinkHealth` for an MQTT device's link, on the endpoint's backoff, saying
    where it is trying to connect until the first connection is up."""
    health = LinkHealth(
        endpoint.device_id,
        kind=kind,
        reasons=reasons,
        min_delay=endpoint.reconnect_min_delay,
        max_delay=endpoint.reconnect_max_delay,
        logger=logger,
    )
    health.io_detail = f"{endpoint.where} not connected yet"
    return health


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One message as it arrived, with our clocks: the wall clock for the record and the
    monotonic one for ages and timeouts."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    received_at: datetime.datetime
    received_mono: float


def load_json_object(
    payload: bytes, *, encoding_reason: str, syntax_reason: str
) -> dict[str, object]:
    """Strict JSON for device payloads: UTF-8, one object, exact numbers, no tricks.

    Numbers become :class:`~decimal.Decimal` straight from their text (``parse_float``,
    ``parse_int``), so ``1.250`` is ``Decimal("1.250")`` and never passes through a float.
    ``NaN``/``Infinity`` (which Python's json accepts by default), duplicate keys (which it
    resolves silently, last one wins) and deep nesting are refused: each is a way for a
    damaged or hostile payload to mean something other than what it shows.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedInputError(encoding_reason, f"payload is not UTF-8: {exc}") from None
    try:
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise RejectedInputError(syntax_reason, "JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError and our own refusals
        raise RejectedInputError(syntax_reason, f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RejectedInputError(syntax_reason, f"JSON is a {type(value).__name__}, not an object")
    if _depth(value) > _MAX_JSON_DEPTH:
        raise RejectedInputError(syntax_reason, "JSON nested too deeply")
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number a device may send")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class MqttLink:
    """A device's MQTT session: connect, subscribe, reconnect with backoff, deliver.

    ``on_message`` runs on the I/O thread for each message on a subscribed topic other than
    the availability topic; it must be quick (decode and queue), it may not block on the
    link. ``on_session(session_present)`` runs when the broker accepts the session, before
    any message of the new connection is delivered: a driver with a persistent session that
    the broker still had is about to be sent every unacknowledged message again, and must
    decide there what to keep. ``on_down()`` runs when an established link is lost.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        health: LinkHealth,
        logger: logging.Logger,
        topics: Sequence[str],
        qos: int,
        on_message: Callable[[MqttMessage], None],
        availability_topic: str | None = None,
        on_availability: Callable[[bool], None] | None = None,
        on_session: Callable[[bool], None] | None = None,
        on_down: Callable[[], None] | None = None,
        manual_ack: bool = False,
    ) -> None:
        check_qos(endpoint.device_id, qos)
        self.endpoint = endpoint
        self._health = health
        self._log = logger
        self._qos = qos
        self._topics = list(dict.fromkeys(topics))
        self._availability_topic = availability_topic
        if availability_topic is not None and availability_topic not in self._topics:
            self._topics.append(availability_topic)
        self._on_message = on_message
        self._on_availability = on_availability
        self._on_session = on_session
        self._on_down = on_down
        self._manual_ack = manual_ack
        self._closing = threading.Event()
        self._actions: deque[Callable[[], None]] = deque()
        self._actions_lock = threading.Lock()
        self._phase: LinkPhase = "down"
        self._phase_lock = threading.Lock()
        self._connack_deadline = 0.0
        self._subscribe_mid: int | None = None
        self._refusal: str | None = None
        self._socket_error: str | None = None
        """paho's last socket error (its own log line), the only trace of why a broker
        closed a TLS session without a CONNACK."""
        self._refusal_reason = "io"
        """The counter a refused connect goes under: ``auth`` for bad credentials, so an
        operator can tell a wrong password from a broker that is down."""
        self._device_online: bool | None = None
        self._client = self._new_client()
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-{endpoint.device_id}", daemon=True
        )

    def start(self) -> None:
        """Start the I/O thread; it connects at once and keeps retrying on its own."""
        self._thread.start()

    @property
    def up(self) -> bool:
        """Whether the session is established and every subscription granted."""
        with self._phase_lock:
            return self._phase == "up"

    @property
    def device_online(self) -> bool | None:
        """What the availability topic last said; ``None`` when it said nothing (yet)."""
        return self._device_online

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish on the I/O thread; ``False`` (nothing sent) while the link is down.

        Refusing rather than letting paho queue it is deliberate: a command buffered through
        an outage would reach the device long after whoever sent it stopped waiting.
        """
        if not self.up:
            return False

        def send() -> None:
            if self._phase == "up":
                self._client.publish(topic, payload, qos=qos, retain=retain)

        self._queue(send)
        return True

    def ack(self, message: MqttMessage) -> None:
        """Acknowledge a QoS 1 message that the driver has handed on (manual acks only).

        An ack queued while the link is down is dropped: the broker sends the message again
        after the reconnect, and the driver recognises it by its id.
        """
        if not self._manual_ack or message.qos != 1:
            return

        def send() -> None:
            if self._phase == "up":
                self._client.ack(message.mid, message.qos)

        self._queue(send)

    def close(self) -> None:
        """Disconnect cleanly (no last will is fired for us) and stop the thread."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_JOIN_TIMEOUT)
        elif self._thread.ident is None:  # never started: release what __init__ built
            self._release_client()
        self._health.closed()

    # -- the I/O thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                try:
                    self._step()
                except Exception:
                    # A paho or driver bug must not kill the thread: drop the connection
                    # and let the backoff bring it back.
                    self._log.exception(
                        "mqtt link step failed",
                        extra={"device": self.endpoint.device_id, "reason": "io"},
                    )
                    self._drop("internal error in the MQTT link")
        finally:
            self._shutdown()

    def _step(self) -> None:
        now = time.monotonic()
        with self._phase_lock:
            phase = self._phase
        if phase == "down":
            if self._health.may_attempt(now):
                self._attempt(now)
            else:
                self._run_actions()
                self._closing.wait(min(self._health.next_attempt_at - now, _LOOP_STEP))
            return
        self._run_actions()
        rc = self._client.loop(timeout=_LOOP_STEP)
        with self._phase_lock:
            phase = self._phase
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and phase != "down":
            # paho normally reports this through on_disconnect; this is the backstop.
            self._drop(f"connection to {self.endpoint.where} failed: {paho.error_string(rc)}")
        elif phase in ("connecting", "subscribing") and time.monotonic() > self._connack_deadline:
            self._refusal = (
                f"{self.endpoint.where} accepted the connection but did not set up the "
                f"session within {self.endpoint.connect_timeout:g} s"
            )
            self._drop(self._refusal)

    def _attempt(self, now: float) -> None:
        endpoint = self.endpoint
        self._refusal = None
        self._refusal_reason = "io"
        self._socket_error = None
        self._subscribe_mid = None
        try:
            self._client.connect(endpoint.host, endpoint.port, keepalive=endpoint.keepalive)
        except ssl.SSLCertVerificationError as exc:
            # The broker answered, with a certificate we must not trust: a setup fault
            # (wrong tls_ca_file, a name not in the certificate), counted as such.
            self._set_phase("down")
            self._health.open_failed(
                now,
                f"broker {endpoint.where} has a certificate this link does not trust "
                f"({exc.verify_message or exc.reason}); check tls_ca_file and host",
                reason="tls",
            )
            return
        except ssl.SSLError as exc:
            self._set_phase("down")
            self._health.open_failed(
                now,
                f"TLS with broker {endpoint.where} failed: {exc.reason or exc}",
                reason="tls",
            )
            return
        except (OSError, ValueError) as exc:
            self._set_phase("down")
            self._health.open_failed(now, f"cannot reach broker {endpoint.where}: {exc}")
            return
        self._connack_deadline = now + endpoint.connect_timeout
        self._set_phase("connecting")

    def _drop(self, detail: str) -> None:
        """Close the socket and account for it, whatever state the session was in."""
        with self._phase_lock:
            was = self._phase
        if was in ("down", "closed"):
            return
        with contextlib.suppress(Exception):
            # On an open socket this sends DISCONNECT and runs on_disconnect, which does the
            # accounting; on a dead one it does nothing and we account below.
            self._client.disconnect()
        with self._phase_lock:
            if self._phase in ("down", "closed"):
                return
            self._phase = "down"
        self._account_down(was, detail)

    def _account_down(self, was: LinkPhase, detail: str) -> None:
        now = time.monotonic()
        self._subscribe_mid = None
        if was == "up":
            self._health.lost(now, detail)
            if self._on_down is not None:
                self._guard("on_down", self._on_down)
        elif was in ("connecting", "subscribing"):
            reason, socket_error = self._refusal_reason, self._socket_error
            if self._refusal is None and socket_error is not None:
                # The broker ended the session before answering: after a TLS handshake,
                # that is the broker refusing the link's certificate (or its lack of one).
                detail = f"{detail} ({socket_error})"
                if self.endpoint.uses_tls and any(
                    word in socket_error.lower() for word in ("ssl", "tls")
                ):
                    reason = "tls"
                    detail += (
                        "; the broker may want a client certificate (tls_cert_file)"
                        if self.endpoint.tls_cert_file is None
                        else "; check that the broker trusts tls_cert_file"
                    )
            self._health.open_failed(now, self._refusal or detail, reason=reason)

    def _shutdown(self) -> None:
        with self._phase_lock:
            was, self._phase = self._phase, "closed"
        if was != "down":
            with contextlib.suppress(Exception):
                self._client.disconnect()  # a clean DISCONNECT: the broker fires no will
        if was == "up" and self._on_down is not None:
            self._guard("on_down", self._on_down)
        self._release_client()
        with self._actions_lock:
            self._actions.clear()

    def _release_client(self) -> None:
        # paho keeps a socket pair for waking its select() and closes it only in __del__ or
        # reinitialise(); a driver closed and re-made all day must not leak them.
        with contextlib.suppress(Exception):
            self._client.reinitialise()

    def _queue(self, action: Callable[[], None]) -> None:
        with self._actions_lock:
            self._actions.append(action)

    def _run_actions(self) -> None:
        while True:
            with self._actions_lock:
                if not self._actions:
                    return
                action = self._actions.popleft()
            self._guard("queued action", action)

    def _set_phase(self, phase: LinkPhase) -> None:
        with self._phase_lock:
            if self._phase != "closed":
                self._phase = phase

    def _guard(self, what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            self._log.exception(
                "mqtt %s failed", what, extra={"device": self.endpoint.device_id, "reason": "io"}
            )

    # -- paho callbacks (always on the I/O thread, inside loop()) ------------------------

    def _new_client(self) -> paho.Client:
        endpoint = self.endpoint
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=endpoint.client_id,
            clean_session=not endpoint.persistent_session,
            protocol=MQTTProtocolVersion.MQTTv311,
            manual_ack=self._manual_ack,
        )
        client.connect_timeout = endpoint.connect_timeout
        client.suppress_exceptions = True  # ours are caught in _guard; never unwind paho
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.uses_tls:
            client.tls_set_context(endpoint.ssl_context())
        client.on_connect = self._connected
        client.on_subscribe = self._subscribed
        client.on_disconnect = self._disconnected
        client.on_message = self._received
        client.on_log = self._paho_logged
        return client

    def _paho_logged(self, client: paho.Client, userdata: object, level: int, text: str) -> None:
        # Only socket errors are kept (paho's other lines may name the account); their
        # text is the OS's or the TLS library's, never what was sent.
        if level == paho.MQTT_LOG_ERR and text.startswith(
            ("failed to receive", "failed to send", "timeout on")
        ):
            self._socket_error = text

    def _connected(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            # paho closes the socket next and on_disconnect does the accounting.
            self._refusal = f"broker {self.endpoint.where} refused the session: {reason}"
            if reason.value in _AUTH_REFUSALS:
                self._refusal_reason = "auth"
                self._refusal += " (check username and password" + (
                    ")" if self.endpoint.username is not None else ": none are set)"
                )
            return
        on_session = self._on_session
        if on_session is not None:
            session_present = bool(flags.session_present)
            self._guard("on_session", lambda: on_session(session_present))
        rc, mid = client.subscribe([(topic, self._qos) for topic in self._topics])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._refusal = f"cannot subscribe: {paho.error_string(rc)}"
            return
        self._subscribe_mid = mid
        self._set_phase("subscribing")

    def _subscribed(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [topic for topic, r in zip(self._topics, reasons, strict=False) if r.is_failure]
        if refused or len(reasons) != len(self._topics):
            self._refusal = f"broker refused the subscription to {', '.join(refused) or '?'}"
            client.disconnect()
            return
        self._set_phase("up")
        self._health.opened(time.monotonic(), self.endpoint.where)

    def _disconnected(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._phase_lock:
            was = self._phase
            if was == "closed":
                return
            self._phase = "down"
        self._account_down(was, f"lost {self.endpoint.where}: {reason}")

    def _received(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        self._health.data_arrived()
        try:
            topic = message.topic
        except UnicodeDecodeError:
            return  # a broker does not route such a topic to an exact subscription
        received = MqttMessage(
            topic=topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            dup=bool(message.dup),
            mid=message.mid,
            received_at=datetime.datetime.now(datetime.UTC),
            received_mono=time.monotonic(),
        )
        if topic == self._availability_topic:
            self._availability(received)
            if self._manual_ack and received.qos == 1:
                client.ack(received.mid, received.qos)
            return
        self._guard("on_message", lambda: self._on_message(received))

    def _availability(self, message: MqttMessage) -> None:
        said = message.payload.strip().lower()
        if said not in (AVAILABILITY_ONLINE, AVAILABILITY_OFFLINE):
            self._log.warning(
                "ignored availability message %r",
                message.payload[:32],
                extra={"device": self.endpoint.device_id, "reason": "malformed"},
            )
            return
        online = said == AVAILABILITY_ONLINE
        before, self._device_online = self._device_online, online
        if online:
            if before is False:
                self._log.info(
                    "device back online",
                    extra={"device": self.endpoint.device_id, "event": "device_online"},
                )
                self._health.answered()
        else:
            # Degrade every time (a reconnect set the link "connected" again), but count
            # the outage once: the retained "offline" comes back after every reconnect.
            self._health.degrade()
            if before is not False:
                self._health.count("device_offline", "the device reports itself offline")
                self._log.warning(
                    "device reports itself offline",
                    extra={"device": self.endpoint.device_id, "reason": "device_offline"},
                )
        on_availability = self._on_availability
        if on_availability is not None:
            self._guard("on_availability", lambda: on_availability(online))
