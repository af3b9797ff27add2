"""The errors every driver raises, classified once as retryable or rejected.

The edge agent adapts drivers in one place (its coordinator) and has to decide there whether
to try again or to give up on a piece of input. Putting that decision on the exception class
keeps it out of ``except`` clauses scattered through the agent.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "DeviceConfigError",
    "DeviceError",
    "DeviceUnavailableError",
    "InvalidGs1Error",
    "RejectedInputError",
]


class DeviceError(Exception):
    """Root of the hierarchy, so the agent can catch any driver failure with one clause."""

    retryable: ClassVar[bool] = False


class DeviceUnavailableError(DeviceError):
    """The device cannot be reached now (port missing, unplugged, busy); it may come back."""

    retryable = True


class DeviceConfigError(DeviceError, ValueError):
    """A configuration that could never work; retrying would only repeat the mistake."""


class RejectedInputError(DeviceError):
    """Input from the device that is not a trustworthy reading and must not become one.

    ``reason`` is the short counter key that ends up in the device status, so operators can
    tell a noisy cable (``not_printable``) from a badly printed label (``gs1_invalid``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidGs1Error(RejectedInputError):
    """A barcode that claims to be GS1 but whose element strings do not hold up."""

    def __init__(self, detail: str) -> None:
        super().__init__("gs1_invalid", detail)
