"""The errors a scale raises instead of a weight.

A scale that cannot give a trustworthy weight must say why, in a way a station can act on:
"take the load off" (overload), "wait for the pallet to stop swinging" (motion), "check the
cable" (unavailable). Each reason is its own class so the agent's coordinator maps them in
one place, and each carries the counter key it is reported under in the device status.

None of these is ever turned into a weight of zero: an empty platform is a reading, a scale
that did not answer is not.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from device_drivers.errors import DeviceError, DeviceUnavailableError

__all__ = [
    "ScaleBusyError",
    "ScaleCommandError",
    "ScaleError",
    "ScaleErrorCode",
    "ScaleMotionError",
    "ScaleOverloadError",
    "ScalePortSettingsError",
    "ScaleTimeoutError",
    "ScaleTransmissionError",
    "ScaleUnavailableError",
    "ScaleUnderloadError",
]

ScaleErrorCode = Literal["ES", "ET", "EL"]
"""MT-SICS general errors: syntax (command not recognised), transmission (the device
received a damaged command), logical (understood but not executable now)."""


_CODE_REASONS: dict[str, str] = {"ES": "syntax", "ET": "transmission", "EL": "logical"}


class ScaleError(DeviceError):
    """Root of the scale errors; ``reason`` is the key of its counter in the device status."""

    default_reason: ClassVar[str] = "scale"

    def __init__(self, device_id: str, detail: str, *, reason: str | None = None) -> None:
        self.reason = reason or self.default_reason
        super().__init__(f"{device_id}: {self.reason}: {detail}")
        self.device_id = device_id
        self.detail = detail


class ScaleOverloadError(ScaleError):
    """The load is above what the scale can weigh; it clears when the load comes off."""

    default_reason = "overload"
    retryable = True


class ScaleUnderloadError(ScaleError):
    """The scale reads below its lower limit, usually a weighing pan or platform missing."""

    default_reason = "underload"
    retryable = True


class ScaleMotionError(ScaleError):
    """The weight did not hold still within the time the caller allowed."""

    default_reason = "motion"
    retryable = True


class ScaleBusyError(ScaleError):
    """The device refused for now: it is executing another command, or its own wait for
    stability ran out (MT-SICS answers both with status ``I`` and does not say which)."""

    default_reason = "busy"
    retryable = True


class ScaleTimeoutError(ScaleError, DeviceUnavailableError):
    """No complete reply arrived in time: the device is off, the cable is out, or the line
    is so noisy that nothing readable got through."""

    default_reason = "timeout"


class ScaleUnavailableError(ScaleError, DeviceUnavailableError):
    """The port or connection could not be opened or was lost; the driver keeps retrying."""

    default_reason = "io"


class ScalePortSettingsError(ScaleUnavailableError):
    """The port refuses the serial settings the site file asks for (a pseudo-terminal takes
    8N1 only; an adapter may lack a speed). Counted as ``io`` like any port that will not
    work, but not retryable: waiting does not change the port, so a stable read gives up at
    once instead of trying until its deadline. The next call tries the port again."""

    retryable = False


class ScaleCommandError(ScaleError):
    """The device answered the command with a general error instead of a result.

    ``code`` says which (``ES``, ``ET``, ``EL``) and ``command`` what was sent, because the
    fix differs: ``ES`` means this model lacks the command, ``EL`` that it cannot do it in
    its present state.
    """

    def __init__(self, device_id: str, code: ScaleErrorCode, command: str) -> None:
        super().__init__(device_id, f"{code} in reply to {command!r}", reason=_CODE_REASONS[code])
        self.code: ScaleErrorCode = code
        self.command = command


class ScaleTransmissionError(ScaleCommandError):
    """``ET``: the command reached the device damaged; sending it again usually works."""

    retryable = True
