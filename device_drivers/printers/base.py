"""The label printer interface the edge agent programs against, and the values it exchanges.

A station hands a :class:`PrintJob` to a :class:`LabelPrinter` and gets a :class:`JobResult`
back; it never sees sockets, serial ports or ZPL status strings. The outcome is worded for
the one decision the station has to make next: is the label on the carton, will it be, or
does someone have to look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from device_drivers.errors import DeviceError
from device_drivers.status import Device, DeviceStatus

if TYPE_CHECKING:
    from device_drivers.printers.label import LabelJob

__all__ = [
    "JOB_ID_PATTERN",
    "JobOutcome",
    "JobResult",
    "LabelDataError",
    "LabelPrinter",
    "PrintJob",
    "PrinterCondition",
    "PrinterStatus",
]

JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""What a job id may look like: it travels inside the label as a ZPL comment, where a caret
or tilde would end the comment or run a command, and it names a journal entry on disk."""


class LabelDataError(DeviceError, ValueError):
    """A label that cannot be printed as asked, whatever the printer's state.

    Raised while building or submitting, never for a device problem: retrying the same
    data would only fail again, so the caller must fix the data (or the template).
    """


PrinterCondition = Literal[
    "ready",
    "offline",
    "paper_out",
    "ribbon_out",
    "head_open",
    "paused",
    "buffer_full",
    "over_temperature",
    "under_temperature",
    "corrupt_ram",
    "partial_format",
]
"""Why a printer is or is not printing, as a status page shows it."""

_BLOCKING = ("paper_out", "ribbon_out", "head_open", "paused", "buffer_full", "over_temperature")
"""Conditions that stop labels coming out. Under-temperature and corrupt RAM only warn: the
printer still prints (perhaps faintly, or with factory settings)."""


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer said about itself in its last status reply, or that it said nothing.

    The fields are ZPL's ``~HS``; a TSPL driver maps its status byte onto them (printing as
    one label remaining, cover open as head open, jam as paper out) and names the TSPL
    conditions in ``detail``.

    ``online`` is true only for a complete, well-formed reply: a printer that is silent, or
    answers half a status, is reported ``offline`` and never ``ready``, because Zebra
    printers stop answering ``~HS`` exactly when media or ribbon is out or the head is open.
    ``detail`` says why a status is offline.
    """

    online: bool
    paper_out: bool = False
    paused: bool = False
    label_length_dots: int = 0
    formats_in_buffer: int = 0
    buffer_full: bool = False
    diagnostic_mode: bool = False
    partial_format: bool = False
    corrupt_ram: bool = False
    under_temperature: bool = False
    over_temperature: bool = False
    head_open: bool = False
    ribbon_out: bool = False
    thermal_transfer: bool = False
    print_mode: int = 0
    label_waiting: bool = False
    labels_remaining: int = 0
    graphics_stored: int = 0
    detail: str | None = None

    @classmethod
    def offline(cls, detail: str) -> PrinterStatus:
        return cls(online=False, detail=detail)

    @property
    def conditions(self) -> tuple[PrinterCondition, ...]:
        """Every condition that holds, ``("ready",)`` when nothing is wrong."""
        if not self.online:
            return ("offline",)
        flags: tuple[tuple[PrinterCondition, bool], ...] = (
            ("paper_out", self.paper_out),
            ("ribbon_out", self.ribbon_out),
            ("head_open", self.head_open),
            ("paused", self.paused),
            ("buffer_full", self.buffer_full),
            ("over_temperature", self.over_temperature),
            ("under_temperature", self.under_temperature),
            ("corrupt_ram", self.corrupt_ram),
            ("partial_format", self.partial_format),
        )
        return tuple(name for name, flag in flags if flag) or ("ready",)

    @property
    def ready(self) -> bool:
        """The printer answered and nothing stops it printing."""
        return self.online and not any(c in _BLOCKING for c in self.conditions)

    @property
    def idle(self) -> bool:
        """Ready with nothing of anyone's in its buffer: a new job's effect can be measured."""
        return (
            self.ready
            and self.formats_in_buffer == 0
            and self.labels_remaining == 0
            and not self.partial_format
        )

    def as_dict(self) -> dict[str, object]:
        """Plain types only, for a status page or a heartbeat."""
        return {
            "online": self.online,
            "ready": self.ready,
            "conditions": list(self.conditions),
            "formats_in_buffer": self.formats_in_buffer,
            "labels_remaining": self.labels_remaining,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class PrintJob:
    """One ZPL format to print as it is (a stored template), under an id chosen by the caller.

    Stations print :class:`~device_drivers.printers.label.LabelJob` instead, which every
    printer language renders; only the ZPL driver takes this.

    The id is the caller's (a receipt's event id and a suffix, say) so that a job retried
    after a crash of the agent is recognised as the same job and not printed twice.
    ``zpl`` is exactly one ``^XA … ^XZ`` format; build it with
    :func:`device_drivers.printers.zpl.build_zpl` or take it from a stored template.
    """

    job_id: str
    zpl: bytes

    def __post_init__(self) -> None:
        if not JOB_ID_PATTERN.fullmatch(self.job_id):
            raise LabelDataError(f"job id {self.job_id!r} must be 1-64 of A-Z a-z 0-9 . _ : -")


JobOutcome = Literal["printed", "delivered", "not_printed", "in_doubt"]
"""``printed``: the printer took the format and its buffer drained (and, where the printer
keeps a label counter, the counter moved on by the label quantity).
``delivered``: the printer confirmed it holds the format but has not printed it yet
(paused, out of paper after receipt); it will print on its own, so never resend.
``not_printed``: nothing reached the printer; resubmitting the same job is safe.
``in_doubt``: the bytes may or may not have arrived and the printer could not tell us;
resubmitting the same job id resolves it first and prints only if it finds it unprinted."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """The driver's account of one job; ``attempts`` counts how often its bytes were sent."""

    job_id: str
    outcome: JobOutcome
    attempts: int = 0
    detail: str | None = None
    status: PrinterStatus | None = None

    @property
    def printed(self) -> bool:
        return self.outcome == "printed"


@runtime_checkable
class LabelPrinter(Device, Protocol):
    """A label printer that survives its device coming and going.

    ``print_label`` blocks until the job is settled one way or another (bounded by the
    driver's job timeout) and never raises because the printer is away or unwell: the
    answer is in the :class:`JobResult`. It raises :class:`LabelDataError` only for a job
    that no printer could print.
    """

    def print_label(self, job: LabelJob) -> JobResult: ...

    def printer_status(self) -> PrinterStatus:
        """Ask the printer now (bounded by the driver's reply timeout): paper, head, pause."""
        ...

    def status(self) -> DeviceStatus:
        """The link's health, as every device reports it; never waits on the printer."""
        ...

    def close(self) -> None: ...
