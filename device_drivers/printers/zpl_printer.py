"""A Zebra (ZPL II) label printer over raw TCP 9100 or a serial line, with a job queue.

Jobs run one at a time, in order, on one worker thread per printer; ``print_label`` waits
for its job's result, ``submit`` returns a future. The connection opens lazily, and when it
fails the driver reconnects with exponential backoff on the next use, so a printer that is
power-cycled or unplugged comes back on its own and callers only ever see results.

How a job is printed exactly once
---------------------------------
ZPL has no acknowledgement and no job ids, and TCP says nothing about what the printer did
with bytes that left our socket. What a printer does offer: it processes its input in
order, ``~HS`` reports formats waiting in its buffer, labels remaining in the batch and a
half-received format, and (Link-OS firmware) a lifetime label counter readable with
``! U1 getvar "odometer.total_label_count"``. Each job therefore goes like this:

1. Wait (bounded by ``job_timeout``) until ``~HS`` answers and says *idle*: ready (no paper
   out, head open, ribbon out, pause, full buffer, over-temperature) and nothing of anyone's
   in the buffer. A printer that does not answer is not ready.
2. Read the label counter, and journal the job as ``sending`` with that count *before* a
   byte leaves (fsync'ed when the journal has a file).
3. Send the format (stamped ``^FXjxc-job:<id>^FS``) and, on the same connection, ``~HS``.
   A complete reply proves the printer read the whole format, since it reads in order:
   the job is ``delivered`` and is never sent again.
4. Poll until the buffer drains and the counter has moved on by the ``^PQ`` quantity:
   ``printed``. If that does not happen in time (the printer paused after receiving it),
   the result is ``delivered``; asking again with the same id keeps watching.
5. If the connection fails between 2 and 3's reply, the job is ``in doubt``. The driver
   reconnects and asks the printer: format still in the buffer -> delivered (step 4);
   counter moved by the quantity -> printed; printer idle and the counter unchanged, twice
   ``settle_time`` apart -> it never arrived, and only then is it sent again.

The same resolution runs when a job id comes back after a restart and the journal says
``sending`` or ``in_doubt``; ``printed`` and ``delivered`` ids are answered from the journal.

Limits, stated plainly:

- One host per printer. Another sender's labels move the counter and fill the buffer; the
  driver would take them for its own job's (so an in-doubt job could be wrongly counted as
  printed) or wait for a buffer that never empties (the job ends ``not_printed``).
- Without the label counter (older firmware answers ``"?"``, ``use_label_counter=False``)
  a job cut off mid-send stays ``in_doubt``: the printer cannot tell us, and we prefer a
  missing label, which a person notices and reprints, to a duplicate that goes unseen.
- A counter that lags the buffer (label being fed while the buffer already reads empty)
  longer than ``settle_time`` would make a printed job look unprinted.
- A printer holding a partial format (connection cut mid-format, and firmware that keeps
  it) is left alone: appending our resend to half a format would print garbage. The job
  stays in doubt until that clears (power cycle) or times out.
- A printer that silently discards a format (bad ZPL) leaves the job ``delivered``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from device_drivers.errors import DeviceUnavailableError, RejectedInputError
from device_drivers.options import config_from_options
from device_drivers.printers.base import PrinterStatus, PrintJob
from device_drivers.printers.host_status import (
    HOST_IDENTIFICATION_REQUEST,
    HOST_STATUS_REQUEST,
    LABEL_COUNTER_REQUEST,
    HostIdentification,
    host_identification_reply_length,
    host_status_reply_length,
    label_counter_reply_length,
    parse_host_identification,
    parse_host_status,
    parse_label_counter,
)
from device_drivers.printers.journaled import JournaledPrinter, PrinterConfig, PrinterErrorReason
from device_drivers.printers.label import LabelJob, item_label_layout
from device_drivers.printers.zpl import build_zpl, stamp_job_format

__all__ = ["PrinterErrorReason", "ZplPrinter", "ZplPrinterConfig"]

log = logging.getLogger("device_drivers.printer")


@dataclass(frozen=True, slots=True)
class ZplPrinterConfig(PrinterConfig):
    """:class:`PrinterConfig`, and whether to rely on the Link-OS label counter.

    Without the counter (``use_label_counter=False``, or firmware that answers ``"?"``) a
    job cut off mid-send stays ``in_doubt``.
    """

    use_label_counter: bool = True


class ZplPrinter(JournaledPrinter[ZplPrinterConfig, "LabelJob | PrintJob"]):
    """:class:`~device_drivers.printers.base.LabelPrinter` for ZPL II printers.

    Takes a :class:`LabelJob` (laid out and rendered here) or a :class:`PrintJob` (ZPL as
    it is, from a stored template). Thread-safe: any thread may submit jobs, ask for status
    or close.
    """

    def _render(self, job: LabelJob | PrintJob) -> tuple[str, bytes, int]:
        zpl = (
            build_zpl(item_label_layout(job.label), job_id=job.job_id)
            if isinstance(job, LabelJob)
            else job.zpl
        )
        data, quantity = stamp_job_format(zpl, job.job_id)
        return job.job_id, data, quantity

    def identify(self) -> HostIdentification | None:
        """Model and firmware from ``~HI``, or ``None`` when the printer does not answer."""
        try:
            reply, _ = self._exchange(HOST_IDENTIFICATION_REQUEST, host_identification_reply_length)
        except DeviceUnavailableError:
            return None
        if reply is None:
            return None
        try:
            return parse_host_identification(reply)
        except RejectedInputError as exc:
            log.warning(
                "printer identification unreadable: %s", exc.detail, extra=self._log_extra()
            )
            return None

    def _query_status(self, *, reconnect: bool = True) -> PrinterStatus:
        try:
            reply, received = self._exchange(
                HOST_STATUS_REQUEST, host_status_reply_length, reconnect=reconnect
            )
        except DeviceUnavailableError as exc:
            return PrinterStatus.offline(f"unreachable: {exc}")
        if reply is None:
            detail = f"partial reply to ~HS ({received} bytes)" if received else "no reply to ~HS"
            self._count("no_status", detail, degrade=True)
            return PrinterStatus.offline(detail)
        try:
            status = parse_host_status(reply)
        except RejectedInputError as exc:
            self._count("garbled_status", exc.detail, degrade=True)
            return PrinterStatus.offline(f"garbled reply to ~HS: {exc.detail}")
        self._link.answered()
        return status

    def _read_counter(self) -> int | None:
        """The lifetime label count, ``None`` if unknown; raises if the link breaks."""
        if not self.config.use_label_counter or self._counter_supported is False:
            return None
        reply, _ = self._exchange(LABEL_COUNTER_REQUEST, label_counter_reply_length)
        if reply is None:
            return None
        try:
            value = parse_label_counter(reply)
        except RejectedInputError as exc:
            self._count("garbled_counter", exc.detail)
            return None
        if value is None:
            if self._counter_supported is None:
                log.info(
                    "printer keeps no label count; interrupted jobs cannot be resolved",
                    extra=self._log_extra(),
                )
            self._counter_supported = False
            return None
        self._counter_supported = True
        return value


def create_zpl_printer(device_id: str, options: Mapping[str, object]) -> ZplPrinter:
    """The ``zpl`` entry point: a site file's printer section to a driver.

    Options are :class:`ZplPrinterConfig`'s fields: ``host`` (raw TCP 9100) or
    ``serial_port``, and a ``journal_path`` so that a job is printed once across restarts.
    """
    return ZplPrinter(config_from_options(ZplPrinterConfig, device_id, options, driver="zpl"))
