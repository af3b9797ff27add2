"""A scale (or weight transmitter, or a gateway in front of one) that publishes its weight
to an MQTT broker as JSON, and optionally takes zero/tare commands the same way.

Nothing like MT-SICS exists for MQTT scales, so jxc defines the messages here; a gateway for
another scale maps its protocol onto them. Topics, by default (``{device_id}`` is replaced):

* ``jxc/scales/{device_id}/weight``: the device publishes every reading, a few per second.
* ``jxc/scales/{device_id}/availability``: ``online`` (retained) when the device connects,
  ``offline`` as its last will (retained), so a scale unplugged behind a healthy broker is
  reported at once instead of after its last reading ages out.
* ``jxc/scales/{device_id}/command`` and ``.../reply``: zero and tare (optional; without a
  command topic, :meth:`MqttScale.zero` and friends raise the "not supported" error).

**A weight message** is one UTF-8 JSON object::

    {"net": "1.250", "gross": "1.750", "tare": "0.500", "unit": "kg",
     "stable": true, "status": "ok", "ts": "2025-06-01T08:30:00.125+00:00"}

``net`` (required when ``status`` is ``ok``), ``gross`` and ``tare`` (optional) are decimal
strings, at most 12 digits before the point and 9 after; JSON numbers are accepted too and
read exactly from their text (``parse_float=Decimal``), never through a float. All three are
in ``unit`` (``mg``, ``g``, ``kg``, ``lb``, ``oz``); when all three are sent, gross - tare
must equal net. ``stable`` (required, a JSON boolean) is the device's own motion flag.
``status`` is ``ok`` (default), ``overload`` or ``underload``; the weights may then be left
out. ``ts`` (optional, ISO 8601 with a UTC offset) is when the device measured it; other keys
are ignored. The number of decimals sent is the display's division unless ``division`` is
configured.

**A current weight** is one measured at most ``max_age`` seconds ago: by ``ts`` when the
device sends it, else by when it arrived. A message older than that (queued by a gateway, a
retained message from yesterday, a device whose clock lags) is never a current weight, and
a retained message without ``ts`` has no known age, so it is not one either.

**A command** (QoS 1, never retained)::

    {"id": "3f0c...", "command": "zero" | "tare" | "clear_tare",
     "expires_at": "2025-06-01T08:30:05+00:00"}

The device must ignore a command past ``expires_at`` (it may have been queued through an
outage, and a tare taken minutes late weighs the wrong pallet); for ``zero`` and ``tare`` it
waits for a still load until then. It answers on the reply topic with the same ``id``::

    {"id": "3f0c...", "ok": true, "tare": "0.500", "unit": "kg"}    (tare carries its value)
    {"id": "3f0c...", "ok": false, "error": "motion", "detail": "..."}

``error`` is ``motion``, ``overload``, ``underload``, ``busy``, ``unsupported`` (raised as
the MT-SICS ``ES`` "the device lacks this command" error) or anything else (raised as
``EL``, understood but not executable). A reply for an id nobody waits for any more is late
and dropped.

Stable weights: ``stable_mode = "device"`` takes the device's flag; ``"consecutive"`` also
wants ``stable_readings`` flagged readings in a row within one division, with no gap longer
than ``max_age`` between them (every message counts, not only those a caller happened to
see, so a swing between two polls is never missed). Overload and underload end a wait at
once; motion, silence and stale readings are retried until the timeout and then raised as
what was seen last. Errors are never turned into a weight of zero.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeVar, get_args

from device_drivers.errors import DeviceConfigError, RejectedInputError
from device_drivers.mqtt import (
    MqttEndpoint,
    MqttLink,
    MqttMessage,
    check_positive_seconds,
    check_qos,
    check_topic,
    device_endpoint,
    device_health,
    expand_topic,
    load_json_object,
)
from device_drivers.options import config_from_options
from device_drivers.scales.base import GRAMS_PER_UNIT, ScaleErrorReason, Weight, WeightReading
from device_drivers.scales.config import check_division, check_stable_mode
from device_drivers.scales.errors import (
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.health import count_problem
from device_drivers.scales.stable import StableMode, StableRun
from device_drivers.status import DeviceStatus

__all__ = [
    "MQTT_SCALE_ERROR_REASONS",
    "CommandReply",
    "MqttScale",
    "MqttScaleConfig",
    "WeightMessage",
    "WeightStatus",
    "create_mqtt_scale",
    "decode_command_reply",
    "decode_weight_payload",
]

log = logging.getLogger("device_drivers.scale")

WeightStatus = Literal["ok", "overload", "underload"]
ScaleCommand = Literal["zero", "tare", "clear_tare"]

MQTT_SCALE_ERROR_REASONS: tuple[str, ...] = (*get_args(ScaleErrorReason), "stale", "device_offline")
"""The scale counters plus ``stale`` (only old readings were there) and ``device_offline``."""

_WEIGHT_TEXT = re.compile(r"[+-]?\d{1,12}(?:\.\d{1,9})?")
_MAX_INT_DIGITS = 12
_MAX_PLACES = 9
_DEGRADED_AFTER_DISCARDS = 3
_DEGRADED_AFTER_TIMEOUTS = 2
_UNCOUNTED_REASONS = frozenset({"io"})
"""Lost connections are counted once per outage by LinkHealth, not once per failed call."""

_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class WeightMessage:
    """One decoded weight message; weights exact, in ``unit``."""

    status: WeightStatus
    net: Decimal | None
    gross: Decimal | None
    tare: Decimal | None
    unit: str | None
    stable: bool
    measured_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The device's answer to one command."""

    id: str
    ok: bool
    error: str | None
    detail: str | None
    tare: Decimal | None
    unit: str | None


def _garbage(detail: str) -> RejectedInputError:
    return RejectedInputError("garbage", detail)


def _weight_value(document: Mapping[str, object], key: str) -> Decimal | None:
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        if not _WEIGHT_TEXT.fullmatch(value):
            raise _garbage(f"{key} {value[:32]!r} is not a decimal weight")
        number = Decimal(value)
    elif isinstance(value, Decimal):  # a JSON number, read exactly from its text
        if not value.is_finite():
            raise _garbage(f"{key} is not a finite number")
        # Size first: quantizing 1E+30 to a whole number would overflow the context.
        if value.adjusted() >= _MAX_INT_DIGITS:
            raise _garbage(f"{key} is too large for a weight")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)  # finite
        if exponent > 0:
            value = value.quantize(Decimal(1))  # 1E+3 is the whole number 1000
        elif exponent < -_MAX_PLACES:
            raise _garbage(f"{key} has more than {_MAX_PLACES} decimals")
        number = value
    else:
        raise _garbage(f"{key} must be a decimal string, got {type(value).__name__}")
    return number.copy_abs() if number.is_zero() else number  # no "-0.000" weights


def _timestamp(document: Mapping[str, object], key: str) -> datetime.datetime | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise _garbage(f"{key} must be an ISO 8601 time string")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise _garbage(f"{key} {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise _garbage(f"{key} {value!r} has no UTC offset, so its age is unknown")
    return moment.astimezone(datetime.UTC)


def _unit(document: Mapping[str, object], *, required: bool) -> str | None:
    unit = document.get("unit")
    if unit is None and not required:
        return None
    if not isinstance(unit, str) or unit not in GRAMS_PER_UNIT:
        raise _garbage(f"unit must be one of {', '.join(GRAMS_PER_UNIT)}, got {unit!r}")
    return unit


def decode_weight_payload(payload: bytes, *, max_payload: int = 4096) -> WeightMessage:
    """One weight message, or :class:`RejectedInputError` (reason ``garbage``) saying why not.

    Pure, so the rules can be tested from bytes alone; see the module docstring for the shape.
    """
    if len(payload) > max_payload:
        raise _garbage(f"payload of {len(payload)} bytes > {max_payload}")
    document = load_json_object(payload, encoding_reason="garbage", syntax_reason="garbage")
    status = document.get("status", "ok")
    if status not in get_args(WeightStatus):
        raise _garbage(f"status must be ok, overload or underload, got {status!r}")
    stable = document.get("stable")
    if not isinstance(stable, bool):
        raise _garbage("stable must be true or false")
    net, gross, tare = (_weight_value(document, key) for key in ("net", "gross", "tare"))
    unit = _unit(document, required=status == "ok" or net is not None)
    if status == "ok" and net is None:
        raise _garbage("a weight message with status ok needs net")
    if net is not None and gross is not None and tare is not None and gross - tare != net:
        raise _garbage(f"gross {gross} - tare {tare} is not net {net}")
    return WeightMessage(
        status=status,  # type: ignore[arg-type]  # checked against WeightStatus above
        net=net,
        gross=gross,
        tare=tare,
        unit=unit,
        stable=stable,
        measured_at=_timestamp(document, "ts"),
    )


def decode_command_reply(payload: bytes, *, max_payload: int = 4096) -> CommandReply:
    """One command reply, or :class:`RejectedInputError` (reason ``garbage``)."""
    if len(payload) > max_payload:
        raise _garbage(f"reply of {len(payload)} bytes > {max_payload}")
    document = load_json_object(payload, encoding_reason="garbage", syntax_reason="garbage")
    reply_id, ok = document.get("id"), document.get("ok")
    if not isinstance(reply_id, str) or not reply_id:
        raise _garbage("a reply needs its command's id")
    if not isinstance(ok, bool):
        raise _garbage("a reply needs ok as true or false")
    error, detail = document.get("error"), document.get("detail")
    if not ok and not isinstance(error, str):
        raise _garbage("a failed reply needs error as a string")
    tare = _weight_value(document, "tare")
    return CommandReply(
        id=reply_id,
        ok=ok,
        error=error if isinstance(error, str) else None,
        detail=detail if isinstance(detail, str) else None,
        tare=tare,
        unit=_unit(document, required=tare is not None),
    )


@dataclass(frozen=True, slots=True)
class MqttScaleConfig:
    """How one MQTT scale is reached and how patient to be with it.

    ``max_age`` bounds how old a reading may be and still be the current weight; it may be
    below one second for a device that publishes several readings a second.
    ``command_timeout`` bounds :meth:`MqttScale.clear_tare`, the one command the
    :class:`~device_drivers.scales.base.Scale` interface gives no timeout.
    """

    device_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "jxc/scales/{device_id}/weight"
    command_topic: str | None = "jxc/scales/{device_id}/command"
    reply_topic: str = "jxc/scales/{device_id}/reply"
    availability_topic: str | None = "jxc/scales/{device_id}/availability"
    client_id: str | None = None
    """Default ``jxc-scale-<device_id>``."""
    persistent_session: bool = False
    """Off by default: readings queued through an outage are stale by the time they arrive."""
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
    stable_mode: StableMode = "device"
    stable_readings: int = 3
    division: Decimal | None = None
    max_age: float = 1.0
    command_timeout: float = 2.0
    max_payload: int = 4096
    connect_timeout: float = 2.0
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 2.0

    def __post_init__(self) -> None:
        name = self.device_id
        if not name:
            raise DeviceConfigError("device_id must not be empty")
        for option, value in (
            ("topic", self.topic),
            ("reply_topic", self.reply_topic),
            ("command_topic", self.command_topic),
            ("availability_topic", self.availability_topic),
        ):
            if value is not None and (value or option in ("topic", "reply_topic")):
                check_topic(name, option, expand_topic(value, name))
        check_stable_mode(name, self.stable_mode)
        if (
            isinstance(self.stable_readings, bool)
            or not isinstance(self.stable_readings, int)
            or self.stable_readings < 2
        ):
            raise DeviceConfigError(f"{name}: stable_readings must be a whole number >= 2")
        check_division(name, self.division)
        check_positive_seconds(name, max_age=self.max_age, command_timeout=self.command_timeout)
        if (
            isinstance(self.max_payload, bool)
            or not isinstance(self.max_payload, int)
            or self.max_payload < 64
        ):
            raise DeviceConfigError(f"{name}: max_payload must be a whole number >= 64")
        check_qos(name, self.qos)
        self.endpoint()

    def _expanded(self, template: str | None) -> str | None:
        return expand_topic(template, self.device_id) if template else None

    @property
    def weight_topic(self) -> str:
        return expand_topic(self.topic, self.device_id)

    @property
    def commands_to(self) -> str | None:
        return self._expanded(self.command_topic)

    @property
    def replies_on(self) -> str:
        return expand_topic(self.reply_topic, self.device_id)

    @property
    def status_topic(self) -> str | None:
        return self._expanded(self.availability_topic)

    def endpoint(self) -> MqttEndpoint:
        return device_endpoint(self, kind="scale")


@dataclass(frozen=True, slots=True)
class _Sample:
    message: WeightMessage
    raw: bytes
    read_at: datetime.datetime
    born: float
    """``time.monotonic()`` at which the device measured it, as far as we can tell."""
    received: float
    """``time.monotonic()`` at which it arrived."""


class MqttScale:
    """:class:`~device_drivers.scales.base.Scale` over MQTT; see the module docstring.

    Messages are decoded on the link's I/O thread as they arrive; the weighing methods wait
    on what was decoded. Call them from one thread (the station loop); ``status`` and
    ``close`` are safe from any other.
    """

    def __init__(self, config: MqttScaleConfig) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._latest: _Sample | None = None
        self._run: StableRun[_Sample] = StableRun(
            config.stable_mode,
            config.stable_readings,
            config.division,
            continues=self._continues,
        )
        self._offline = False
        self._replies: dict[str, CommandReply | None] = {}
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0
        endpoint = config.endpoint()
        self._health = device_health(
            endpoint, kind="scale", reasons=MQTT_SCALE_ERROR_REASONS, logger=log
        )
        topics = [config.weight_topic]
        if config.commands_to is not None:
            topics.append(config.replies_on)
        self._link = MqttLink(
            endpoint,
            health=self._health,
            logger=log,
            topics=topics,
            qos=config.qos,
            on_message=self._received,
            availability_topic=config.status_topic,
            on_availability=self._availability,
            on_down=self._forget_readings,
        )
        self._link.start()

    def __enter__(self) -> MqttScale:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the Scale interface -------------------------------------------------------------

    def read_stable(self, timeout: float) -> WeightReading:
        """A weight that holds still, within ``timeout`` seconds (may be below one).

        Only readings that arrive after the call count, so the timeout must allow at least
        one publishing interval of the device.
        """
        return self._outcome(lambda: self._read(max(timeout, 0.0), stable=True))

    def read_now(self) -> WeightReading:
        """The current weight, stable or not (``stable`` says which); for a live display only.

        Waits up to ``max_age`` for a current reading when there is none yet.
        """
        return self._outcome(lambda: self._read(self.config.max_age, stable=False))

    def zero(self, timeout: float = 5.0) -> None:
        """Set zero; the device waits up to ``timeout`` for a still load."""
        self._outcome(lambda: self._command("zero", max(timeout, 0.0)))

    def tare(self, timeout: float = 5.0) -> Weight:
        """Take the present load as tare and return it, as the device confirms it."""

        def tare() -> Weight:
            reply = self._command("tare", max(timeout, 0.0))
            if reply.tare is None or reply.unit is None:
                raise ScaleCommandError(self.config.device_id, "EL", "tare (no tare in reply)")
            return Weight(reply.tare, reply.unit)

        return self._outcome(tare)

    def clear_tare(self) -> None:
        """Drop the tare, so net equals gross again."""
        self._outcome(lambda: self._command("clear_tare", self.config.command_timeout))

    def status(self) -> DeviceStatus:
        """A snapshot, consistent even while the I/O thread is receiving."""
        return self._health.snapshot()

    def close(self) -> None:
        """Disconnect for good; a call in progress ends promptly with an error."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._link.close()

    # -- weighing ------------------------------------------------------------------------

    def _read(self, timeout: float, *, stable: bool) -> WeightReading:
        # A stable weight must have been measured after the caller asked: the reading from
        # just before the operator put the carton down is current, but not the answer.
        asked_at = time.monotonic()
        deadline = asked_at + timeout
        with self._cond:
            while True:
                if self._closing.is_set():
                    raise ScaleUnavailableError(self.config.device_id, "closed")
                now = time.monotonic()
                sample = self._current(now)
                if sample is not None and stable and sample.received < asked_at:
                    sample = None
                if sample is not None:
                    self._check_range(sample.message)
                    if not stable or self._settled(sample):
                        self._timeouts_in_a_row = 0
                        return self._reading(sample, stable=stable or sample.message.stable)
                if now >= deadline:
                    raise self._why_not(now, timeout, asked_at if stable else float("-inf"))
                self._cond.wait(deadline - now)

    def _current(self, now: float) -> _Sample | None:
        latest = self._latest
        if latest is None or now - latest.born > self.config.max_age:
            return None
        return latest

    def _settled(self, sample: _Sample) -> bool:
        return sample.message.stable and self._run.ends_with(sample)

    def _check_range(self, message: WeightMessage) -> None:
        device_id = self.config.device_id
        if message.status == "overload":
            raise ScaleOverloadError(device_id, "weight above the permitted range")
        if message.status == "underload":
            raise ScaleUnderloadError(device_id, "weight below the permitted range")

    def _why_not(self, now: float, timeout: float, asked_at: float) -> ScaleError:
        device_id = self.config.device_id
        if not self._link.up:
            return ScaleUnavailableError(device_id, self._health.io_detail)
        if self._offline:
            return ScaleUnavailableError(device_id, "the scale reports itself offline")
        latest = self._latest
        if latest is None:
            return ScaleTimeoutError(device_id, f"no weight message within {timeout:g} s")
        age = now - latest.born
        if age > self.config.max_age:
            return ScaleTimeoutError(
                device_id,
                f"the last weight is {age:.2f} s old (max_age {self.config.max_age:g} s)",
                reason="stale",
            )
        if latest.received < asked_at:
            return ScaleTimeoutError(device_id, f"no new weight message within {timeout:g} s")
        return ScaleMotionError(device_id, f"no stable weight within {timeout:g} s")

    def _reading(self, sample: _Sample, *, stable: bool) -> WeightReading:
        message = sample.message
        # The decoder refuses an "ok" message without them.
        assert message.net is not None
        assert message.unit is not None
        return WeightReading(
            device_id=self.config.device_id,
            net=message.net,
            gross=message.gross,
            tare=message.tare,
            unit=message.unit,
            stable=stable,
            raw=sample.raw,
            read_at=sample.read_at,
        )

    # -- commands ------------------------------------------------------------------------

    def _command(self, command: ScaleCommand, timeout: float) -> CommandReply:
        device_id = self.config.device_id
        topic = self.config.commands_to
        if topic is None:
            # As an MT-SICS device answers a command it lacks: ES, "not supported".
            raise ScaleCommandError(device_id, "ES", command)
        if self._closing.is_set():
            raise ScaleUnavailableError(device_id, "closed")
        if self._offline:
            raise ScaleUnavailableError(device_id, "the scale reports itself offline")
        command_id = uuid.uuid4().hex
        expires_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=timeout)
        body = json.dumps(
            {"id": command_id, "command": command, "expires_at": expires_at.isoformat()}
        ).encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._replies[command_id] = None
        try:
            if not self._link.publish(topic, body, qos=1):
                raise ScaleUnavailableError(device_id, self._health.io_detail)
            with self._cond:
                while self._replies.get(command_id) is None:
                    remaining = deadline - time.monotonic()
                    if self._closing.is_set():
                        raise ScaleUnavailableError(device_id, "closed")
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
        finally:
            with self._cond:
                reply = self._replies.pop(command_id, None)
        if reply is None:
            raise ScaleTimeoutError(device_id, f"no reply to {command} within {timeout:g} s")
        if not reply.ok:
            raise self._refusal(command, reply)
        self._timeouts_in_a_row = 0
        return reply

    def _refusal(self, command: ScaleCommand, reply: CommandReply) -> ScaleError:
        device_id = self.config.device_id
        detail = f"{command}: {reply.detail or reply.error}"
        error = reply.error
        if error == "unsupported":
            return ScaleCommandError(device_id, "ES", command)
        classes: dict[str, type[ScaleError]] = {
            "motion": ScaleMotionError,
            "overload": ScaleOverloadError,
            "underload": ScaleUnderloadError,
            "busy": ScaleBusyError,
        }
        if error in classes:
            return classes[error](device_id, detail)
        return ScaleCommandError(device_id, "EL", f"{command} ({error})")

    # -- accounting ----------------------------------------------------------------------

    def _outcome(self, call: Callable[[], _R]) -> _R:
        """Run one public operation; count how it failed, if it did."""
        try:
            return call()
        except ScaleError as exc:
            if exc.reason not in _UNCOUNTED_REASONS and not self._closing.is_set():
                self._count(exc.reason, exc.detail)
                if isinstance(exc, ScaleTimeoutError):
                    self._timeouts_in_a_row += 1
                    if self._timeouts_in_a_row >= _DEGRADED_AFTER_TIMEOUTS:
                        self._health.degrade()
            raise

    def _count(self, reason: str, detail: str, *, sample: bytes | None = None) -> None:
        sample_text = None if sample is None else repr(sample[:64])
        count_problem(self._health, reason, detail, sample=sample_text)

    # -- on the I/O thread ---------------------------------------------------------------

    def _received(self, message: MqttMessage) -> None:
        if message.topic == self.config.weight_topic:
            self._weight(message)
        elif message.topic == self.config.replies_on:
            self._reply(message)

    def _weight(self, message: MqttMessage) -> None:
        try:
            decoded = decode_weight_payload(message.payload, max_payload=self.config.max_payload)
        except RejectedInputError as exc:
            self._discarded(exc, message.payload)
            with self._cond:
                self._run.clear()  # a damaged message breaks a run of steady readings
            return
        self._discards_in_a_row = 0
        age = 0.0
        if decoded.measured_at is not None:
            age = max((message.received_at - decoded.measured_at).total_seconds(), 0.0)
        elif message.retain:
            age = float("inf")  # retained, undated: could be from yesterday
        sample = _Sample(
            decoded,
            message.payload,
            message.received_at,
            born=message.received_mono - age,
            received=message.received_mono,
        )
        self._health.answered()
        with self._cond:
            self._offline = False  # it is publishing, so it is there
            self._latest = sample
            self._extend_run(sample)
            self._cond.notify_all()

    def _extend_run(self, sample: _Sample) -> None:
        message = sample.message
        if message.status != "ok" or not message.stable or message.net is None:
            self._run.clear()
            return
        self._run.add(sample, message.net)

    def _continues(self, previous: _Sample, sample: _Sample) -> bool:
        # A gap longer than max_age may have hidden a swing between the two readings.
        return (
            previous.message.unit == sample.message.unit
            and sample.born - previous.born <= self.config.max_age
        )

    def _reply(self, message: MqttMessage) -> None:
        try:
            reply = decode_command_reply(message.payload, max_payload=self.config.max_payload)
        except RejectedInputError as exc:
            self._discarded(exc, message.payload)
            return
        with self._cond:
            if reply.id not in self._replies:
                log.info(
                    "scale: dropped a late or unrequested reply %r",
                    message.payload[:64],
                    extra={"device": self.config.device_id, "event": "late_reply"},
                )
                return
            self._replies[reply.id] = reply
            if reply.ok:
                # Zero or tare changed what net means: earlier readings are not current.
                self._latest = None
                self._run.clear()
            self._cond.notify_all()

    def _discarded(self, exc: RejectedInputError, payload: bytes) -> None:
        self._discards_in_a_row += 1
        self._count(exc.reason, exc.detail, sample=payload)
        if self._discards_in_a_row >= _DEGRADED_AFTER_DISCARDS:
            self._health.degrade()

    def _availability(self, online: bool) -> None:
        with self._cond:
            self._offline = not online
            if not online:
                self._latest = None
                self._run.clear()
            self._cond.notify_all()

    def _forget_readings(self) -> None:
        with self._cond:
            self._latest = None
            self._run.clear()
            self._cond.notify_all()


def create_mqtt_scale(device_id: str, options: Mapping[str, object]) -> MqttScale:
    """The ``mqtt-scale`` entry point: a site file's scale section to a driver.

    Options are :class:`MqttScaleConfig`'s fields. ``division`` may be written as a string
    (``"0.005"``) or a whole number, never a float: a float in a site file is already
    inexact. An unknown or mistyped option is a :class:`DeviceConfigError` naming it.
    """
    config = config_from_options(
        MqttScaleConfig, device_id, options, driver="mqtt-scale", required=()
    )
    return MqttScale(config)
