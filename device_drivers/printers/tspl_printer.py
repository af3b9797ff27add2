"""A TSPL label printer (TSC, Gprinter, ...) over raw TCP 9100 or a serial line.

The job queue, the journal and the link are :class:`~device_drivers.printers.journaled.
JournaledPrinter`'s, exactly as for ZPL; this module adds the TSPL job
(:mod:`device_drivers.printers.tspl`) and the ``<ESC>!?`` status byte. A site file picks
``zpl`` or ``tspl`` and the stations, which hand over a
:class:`~device_drivers.printers.label.LabelJob`, do not notice.

What TSPL can and cannot tell, and what the driver makes of it:

- The status byte answers at once and in order with the bytes before it, so a reply read
  after a job proves the printer received the whole job: ``delivered``, never resent.
- The byte says *printing* but not how many labels are waiting, and TSPL keeps no label
  count a host can read. A delivered job counts as ``printed`` once the printer has been
  seen idle and fault-free for ``settle_time`` after delivery; a printer that stops with
  paper out, head open or paused keeps the job ``delivered`` (it prints when put right).
- A connection that breaks mid-job leaves it ``in_doubt`` (nothing prints before ``PRINT``
  arrives, but whether it arrived nobody can say); the station asks a person after a few
  tries rather than risk a duplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from device_drivers.errors import DeviceConfigError, DeviceUnavailableError, RejectedInputError
from device_drivers.options import config_from_options
from device_drivers.printers.base import PrinterStatus
from device_drivers.printers.journal import JobRecord
from device_drivers.printers.journaled import JournaledPrinter, PrinterConfig
from device_drivers.printers.label import LabelJob, item_label_layout
from device_drivers.printers.tspl import STATUS_REQUEST, build_tspl, parse_status_byte
from device_drivers.transport import ByteTransport

__all__ = ["TsplPrinter", "TsplPrinterConfig", "create_tspl_printer"]

log = logging.getLogger("device_drivers.printer")


@dataclass(frozen=True, slots=True)
class TsplPrinterConfig(PrinterConfig):
    """:class:`PrinterConfig`, and the gap between labels on the roll (``GAP``)."""

    gap_mm: float = 2.0

    def __post_init__(self) -> None:
        PrinterConfig.__post_init__(self)
        if not 0 <= self.gap_mm <= 50:
            raise DeviceConfigError(f"{self.device_id}: gap_mm must be 0..50")


def _one_byte(buffer: bytes) -> int | None:
    return 1 if buffer else None


class TsplPrinter(JournaledPrinter[TsplPrinterConfig, LabelJob]):
    """:class:`~device_drivers.printers.base.LabelPrinter` for TSPL printers.

    Thread-safe: any thread may submit jobs, ask for status or close.
    """

    def __init__(
        self, config: TsplPrinterConfig, *, transport: ByteTransport | None = None
    ) -> None:
        super().__init__(config, transport=transport)
        self._counter_supported = False  # TSPL keeps no label count a host can read
        self._idle_since: tuple[str, float] | None = None  # one job runs at a time

    def _render(self, job: LabelJob) -> tuple[str, bytes, int]:
        layout = item_label_layout(job.label)
        data = build_tspl(layout, job_id=job.job_id, gap_mm=self.config.gap_mm)
        return job.job_id, data, 1

    def _query_status(self, *, reconnect: bool = True) -> PrinterStatus:
        try:
            reply, _ = self._exchange(STATUS_REQUEST, _one_byte, reconnect=reconnect)
        except DeviceUnavailableError as exc:
            return PrinterStatus.offline(f"unreachable: {exc}")
        if reply is None:
            self._count("no_status", "no reply to <ESC>!?", degrade=True)
            return PrinterStatus.offline("no reply to <ESC>!?")
        try:
            bits = parse_status_byte(reply)
        except RejectedInputError as exc:  # pragma: no cover - one byte is always one byte
            self._count("garbled_status", exc.detail, degrade=True)
            return PrinterStatus.offline(exc.detail)
        self._link.answered()
        return PrinterStatus(
            online=True,
            head_open=bits.head_open or bits.cover_open,
            paper_out=bits.paper_out or bits.paper_jam,
            ribbon_out=bits.ribbon_out,
            paused=bits.paused or bits.other_error,
            labels_remaining=1 if bits.printing else 0,
            detail=", ".join(bits.problems) or None,
        )

    def _read_counter(self) -> int | None:
        return None

    def _counted_out(self, record: JobRecord, status: PrinterStatus) -> bool:
        """Idle and fault-free for ``settle_time`` since first seen so after delivery."""
        if not status.idle:
            self._idle_since = None
            return False
        now = time.monotonic()
        if self._idle_since is None or self._idle_since[0] != record.job_id:
            self._idle_since = (record.job_id, now)
        if now - self._idle_since[1] < self.config.settle_time:
            return False
        self._idle_since = None
        return True


def create_tspl_printer(device_id: str, options: Mapping[str, object]) -> TsplPrinter:
    """The ``tspl`` entry point: a site file's printer section to a driver.

    Options are :class:`TsplPrinterConfig`'s fields: ``host`` (raw TCP 9100) or
    ``serial_port``, a ``journal_path`` so that a job is printed once across restarts, and
    ``gap_mm``.
    """
    return TsplPrinter(config_from_options(TsplPrinterConfig, device_id, options, driver="tspl"))
