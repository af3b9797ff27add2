"""Exactly-once label jobs for any printer language: the queue, the journal and the link.

A label printer driver is a job queue in front of a byte transport: jobs run one at a time,
in order, on one worker thread per printer; ``print_label`` waits for its job's result,
``submit`` returns a future. The connection opens lazily and reconnects with backoff, so a
printer that is power-cycled or unplugged comes back on its own and callers only ever see
results. :class:`JournaledPrinter` is all of that, once; a language's driver
(:mod:`~device_drivers.printers.zpl_printer`, :mod:`~device_drivers.printers.tspl_printer`)
adds only how a label becomes bytes, how the printer is asked for its status, and whether
it keeps a label count.

How a job is printed exactly once
---------------------------------
1. Wait (bounded by ``job_timeout``) until the printer answers its status query and says
   *idle*: ready (no paper out, head open, ribbon out, pause, full buffer) and nothing of
   anyone's in the buffer or being printed. A printer that does not answer is not ready.
2. Read the label counter (where the language has one), and journal the job as ``sending``
   with that count *before* a byte leaves (fsync'ed when the journal has a file).
3. Send the job and, on the same connection, the status query. Printers read their input in
   order, so a complete reply proves the printer read the whole job: it is ``delivered``
   and is never sent again.
4. Poll until the printer is idle again and (with a counter) the counter has moved on by
   the quantity: ``printed``. If that does not happen in time (the printer paused after
   receiving it), the result is ``delivered``; asking again with the same id keeps watching.
5. If the connection fails between 2 and 3's reply, the job is ``in doubt``. The driver
   reconnects and asks the printer: job still in its buffer -> delivered (step 4); counter
   moved by the quantity -> printed; printer idle and the counter unchanged, twice
   ``settle_time`` apart -> it never arrived, and only then is it sent again. Without a
   counter the job stays ``in_doubt``: we prefer a missing label, which a person notices and
   reprints, to a duplicate that goes unseen.

The same resolution runs when a job id comes back after a restart and the journal says
``sending`` or ``in_doubt``; ``printed`` and ``delivered`` ids are answered from the journal.
One host per printer: another sender's labels would be taken for ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, Literal, Self, TypeVar, get_args

from device_drivers.errors import DeviceConfigError, DeviceUnavailableError
from device_drivers.link import LinkHealth
from device_drivers.printers.base import JobOutcome, JobResult, PrinterStatus
from device_drivers.printers.journal import JobJournal, JobRecord, JobState
from device_drivers.status import DeviceStatus
from device_drivers.transport import ByteTransport, SerialTransport, TcpTransport, read_reply

__all__ = ["JournaledPrinter", "PrinterConfig", "PrinterErrorReason", "ReplyLength"]

log = logging.getLogger("device_drivers.printer")

PrinterErrorReason = Literal[
    "io", "no_status", "garbled_status", "garbled_counter", "job_in_doubt", "job_not_printed"
]
"""Keys of ``DeviceStatus.errors`` for printers."""

_OUTCOMES: dict[JobState, JobOutcome] = {
    "printed": "printed",
    "delivered": "delivered",
    "not_printed": "not_printed",
    "in_doubt": "in_doubt",
    "sending": "in_doubt",
}

ReplyLength = Callable[[bytes], int | None]


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    """How one printer is reached and how long jobs may wait for it, whatever its language.

    Give ``host`` (raw TCP, port 9100 by default) or ``serial_port`` (a stable name such as
    ``/dev/serial/by-id/...``). ``reply_timeout`` bounds every answer the printer owes;
    ``job_timeout`` bounds one job's wait for a ready printer plus its wait for the label.
    ``journal_path`` keeps job states across restarts of the agent.
    """

    device_id: str
    host: str | None = None
    port: int = 9100
    serial_port: str | os.PathLike[str] | None = None
    baudrate: int = 9600
    connect_timeout: float = 2.0
    reply_timeout: float = 1.0
    write_timeout: float = 5.0
    job_timeout: float = 30.0
    poll_interval: float = 0.25
    settle_time: float = 0.5
    journal_path: Path | None = None
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 1.0

    def __post_init__(self) -> None:
        if not self.device_id:
            raise DeviceConfigError("device_id must not be empty")
        if (self.host is None) == (self.serial_port is None):
            raise DeviceConfigError(f"{self.device_id}: give exactly one of host or serial_port")
        if not 0 < self.port < 65536:
            raise DeviceConfigError(f"{self.device_id}: port must be 1..65535")
        timings = (
            self.connect_timeout,
            self.reply_timeout,
            self.write_timeout,
            self.job_timeout,
            self.poll_interval,
        )
        if min(timings) <= 0 or self.settle_time < 0:
            raise DeviceConfigError(f"{self.device_id}: timeouts and intervals must be positive")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise DeviceConfigError(
                f"{self.device_id}: need 0 < reconnect_min_delay <= reconnect_max_delay"
            )

    def make_transport(self) -> ByteTransport:
        if self.host is not None:
            return TcpTransport(
                self.host,
                self.port,
                connect_timeout=self.connect_timeout,
                write_timeout=self.write_timeout,
            )
        assert self.serial_port is not None
        return SerialTransport(
            self.serial_port, baudrate=self.baudrate, write_timeout=self.write_timeout
        )


def _not_ready(status: PrinterStatus) -> str:
    if status.ready:
        return "the printer's buffer never emptied (another sender?)"
    why = ", ".join(status.conditions)
    return f"{why} ({status.detail})" if status.detail else why


class _NotConnectedError(DeviceUnavailableError):
    """No link and none to be had right now: nothing was sent."""


@dataclass(frozen=True, slots=True)
class _QueuedJob:
    job_id: str
    data: bytes
    quantity: int
    future: Future[JobResult]


_J = TypeVar("_J")
_C = TypeVar("_C", bound=PrinterConfig)


class JournaledPrinter(ABC, Generic[_C, _J]):
    """A label printer's job queue, journal and link; a language's driver fills in the rest.

    ``_J`` is the job type the driver takes. Thread-safe: any thread may submit jobs, ask
    for status or close.
    """

    def __init__(self, config: _C, *, transport: ByteTransport | None = None) -> None:
        self.config = config
        self._transport = transport if transport is not None else config.make_transport()
        self._journal = JobJournal(config.journal_path)
        self._io_lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._closing = threading.Event()
        self._jobs: queue.SimpleQueue[_QueuedJob | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._link_open = False
        self._counter_supported: bool | None = None
        self._link = LinkHealth(
            config.device_id,
            kind="printer",
            reasons=get_args(PrinterErrorReason),
            min_delay=config.reconnect_min_delay,
            max_delay=config.reconnect_max_delay,
            logger=log,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the interface ---------------------------------------------------------------

    def print_label(self, job: _J) -> JobResult:
        """Queue ``job`` behind earlier ones and wait for its result."""
        return self.submit(job).result()

    def submit(self, job: _J) -> Future[JobResult]:
        """Queue ``job``; the future resolves to its result and never to an exception.

        Raises :class:`~device_drivers.printers.base.LabelDataError` here, in the caller's
        thread, when the job could never be printed.
        """
        job_id, data, quantity = self._render(job)
        future: Future[JobResult] = Future()
        with self._queue_lock:
            if self._closing.is_set():
                future.set_result(JobResult(job_id, "not_printed", detail="driver closed"))
                return future
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name=f"printer-{self.config.device_id}", daemon=True
                )
                self._worker.start()
            self._jobs.put(_QueuedJob(job_id, data, quantity, future))
        return future

    def printer_status(self) -> PrinterStatus:
        """Ask the printer now (bounded by ``reply_timeout``); offline if it cannot say."""
        if self._closing.is_set():
            return PrinterStatus.offline("driver closed")
        return self._query_status()

    def status(self) -> DeviceStatus:
        """The link's health as every device reports it, without asking the printer (a
        status page must not wait on one); ``scans`` stays 0, jobs report themselves."""
        return self._link.snapshot()

    def close(self) -> None:
        """Stop taking jobs, settle the running one quickly, release the link."""
        with self._queue_lock:
            self._closing.set()
            worker = self._worker
            if worker is not None:
                self._jobs.put(None)
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        with self._io_lock:
            self._drop_link()
        self._link.closed()

    # -- the job queue ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            if not item.future.set_running_or_notify_cancel():
                continue
            if self._closing.is_set():
                closed = JobResult(item.job_id, "not_printed", detail="driver closed")
                item.future.set_result(closed)
                continue
            try:
                result = self._run_job(item)
            except Exception as exc:  # a bug must not leave a caller waiting forever
                log.exception("print job %s failed inside the driver", item.job_id)
                result = JobResult(item.job_id, "in_doubt", detail=f"driver error: {exc!r}")
            item.future.set_result(result)

    def _run_job(self, job: _QueuedJob) -> JobResult:
        deadline = time.monotonic() + self.config.job_timeout
        record = self._journal.get(job.job_id)
        if record is not None:
            earlier = self._resume(record, deadline)
            if earlier is not None:
                return earlier
        attempts = record.attempts if record is not None else 0
        while True:
            status = self._await_idle(deadline)
            if not status.idle or time.monotonic() >= deadline:
                return self._finish(
                    JobRecord(
                        job.job_id, "not_printed", job.quantity, None, attempts, _not_ready(status)
                    ),
                    status,
                )
            result, sent = self._attempt(job, attempts + 1, deadline)
            attempts += sent
            if result is not None:
                return result

    def _resume(self, record: JobRecord, deadline: float) -> JobResult | None:
        """Settle a job id seen before; ``None`` when it is safe to (re)send."""
        if record.state == "printed":
            return self._result(record, None)
        if record.state == "delivered":
            return self._await_printed(record, deadline)
        if record.state in ("sending", "in_doubt"):
            resolved = self._resolve(record, deadline)
            if resolved.outcome != "not_printed":
                return resolved
        return None

    def _attempt(
        self, job: _QueuedJob, attempt: int, deadline: float
    ) -> tuple[JobResult | None, int]:
        """Send once to an idle printer: ``(result, 1)``, or ``(None, sent)`` to go again."""
        try:
            counter = self._read_counter()
        except DeviceUnavailableError:
            return None, 0
        record = JobRecord(job.job_id, "sending", job.quantity, counter, attempt)
        self._journal.record(record)
        outcome, _status = self._send_and_confirm(job.data)
        if outcome == "not_sent":
            self._journal.record(replace(record, state="not_printed", attempts=attempt - 1))
            return None, 0
        if outcome == "delivered":
            delivered = record.moved_to("delivered", "the printer confirmed receipt")
            self._journal.record(delivered)
            return self._await_printed(delivered, deadline), 1
        doubt = record.moved_to("in_doubt", "connection lost before the printer confirmed")
        self._journal.record(doubt)
        self._count("job_in_doubt", f"job {job.job_id}: {doubt.detail}")
        resolved = self._resolve(doubt, deadline)
        if resolved.outcome != "not_printed":
            return resolved, 1
        log.info(
            "print job %s did not reach the printer; sending it again",
            job.job_id,
            extra=self._log_extra(job=job.job_id),
        )
        return None, 1

    def _await_idle(self, deadline: float) -> PrinterStatus:
        while True:
            status = self._query_status()
            if status.idle or not self._pause(deadline):
                return status

    def _await_printed(self, record: JobRecord, deadline: float) -> JobResult:
        detail = record.detail
        while True:
            status = self._query_status()
            if status.online and not (
                status.formats_in_buffer or status.labels_remaining or status.partial_format
            ):
                if self._counted_out(record, status):
                    printed = record.moved_to("printed", "the printer printed it")
                    return self._finish(printed, status)
                detail = "buffer drained, but the printer has not confirmed the label yet"
            elif status.online:
                detail = "waiting in the printer: " + ", ".join(status.conditions)
            else:
                detail = f"printer has the job but is {status.detail}"
            if not self._pause(deadline):
                return self._finish(record.moved_to("delivered", detail), status)

    def _counted_out(self, record: JobRecord, status: PrinterStatus) -> bool:
        """For a delivered job whose buffer drained: did the label count confirm it?

        ``status`` is the reply that showed the buffer drained; a language whose status
        says less than ZPL's (TSPL) judges from it instead of a counter.
        """
        del status
        if record.counter_before is None:
            return True
        count: int | None = None
        with contextlib.suppress(DeviceUnavailableError):
            count = self._read_counter()
        if count is None:
            return self._counter_supported is False
        return count - record.counter_before >= record.quantity

    def _resolve(self, record: JobRecord, deadline: float) -> JobResult:
        """Decide what happened to a job whose delivery was never confirmed."""
        quiet: tuple[int, float] | None = None
        while True:
            status = self._query_status()
            verdict, detail, quiet = self._judge_doubt(record, status, quiet)
            if verdict == "delivered":
                delivered = record.moved_to("delivered", detail)
                self._journal.record(delivered)
                return self._await_printed(delivered, deadline)
            if verdict == "not_printed":
                # Not a failure to report: the caller's loop sends the job again.
                unprinted = record.moved_to("not_printed", detail)
                self._journal.record(unprinted)
                return self._result(unprinted, status)
            if verdict is not None:
                return self._finish(record.moved_to(verdict, detail), status)
            if not self._pause(deadline):
                return self._finish(record.moved_to("in_doubt", detail), status)

    def _judge_doubt(
        self, record: JobRecord, status: PrinterStatus, quiet: tuple[int, float] | None
    ) -> tuple[JobState | None, str, tuple[int, float] | None]:
        """One look at the printer: a verdict, or ``None`` to look again after a pause.

        ``quiet`` is the label count and when it was first seen with the printer idle; the
        job counts as never delivered only when it holds still for ``settle_time``.
        """
        if not status.online:
            return None, f"printer {status.detail}", None
        if status.formats_in_buffer or status.labels_remaining:
            return "delivered", "found waiting in the printer", quiet
        if status.partial_format:
            return None, "the printer holds a partial format", None
        return self._judge_count(record, quiet)

    def _judge_count(
        self, record: JobRecord, quiet: tuple[int, float] | None
    ) -> tuple[JobState | None, str, tuple[int, float] | None]:
        """The printer is idle: only its label count can tell whether the job came out."""
        count: int | None = None
        if record.counter_before is not None:
            with contextlib.suppress(DeviceUnavailableError):
                count = self._read_counter()
        if count is None or record.counter_before is None:
            if record.counter_before is None or self._counter_supported is False:
                return "in_doubt", "the printer keeps no label count to tell", quiet
            return None, "label count unreadable", None
        moved = count - record.counter_before
        verdict: JobState | None = None
        if moved >= record.quantity:
            verdict, detail = "printed", "label count moved by the quantity"
        elif moved > 0:
            verdict, detail = "in_doubt", f"label count moved by {moved} of {record.quantity}"
        else:
            now = time.monotonic()
            if quiet is None or quiet[0] != count:
                quiet = (count, now)
            if now - quiet[1] >= self.config.settle_time:
                verdict, detail = "not_printed", "printer idle, label count unchanged"
            else:
                detail = "printer idle, waiting for the label count to settle"
        return verdict, detail, quiet

    def _pause(self, deadline: float) -> bool:
        """Wait one poll interval; ``False`` once the deadline has passed or we are closing."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self._closing.is_set():
            return False
        self._closing.wait(min(self.config.poll_interval, remaining))
        return not self._closing.is_set()

    def _finish(self, record: JobRecord, status: PrinterStatus | None) -> JobResult:
        self._journal.record(record)
        if record.state == "not_printed":
            self._count("job_not_printed", f"job {record.job_id}: {record.detail}")
        elif record.state == "in_doubt":
            self._count("job_in_doubt", f"job {record.job_id}: {record.detail}")
        log.info(
            "print job %s %s: %s",
            record.job_id,
            record.state,
            record.detail,
            extra=self._log_extra(job=record.job_id, outcome=record.state),
        )
        return self._result(record, status)

    @staticmethod
    def _result(record: JobRecord, status: PrinterStatus | None) -> JobResult:
        return JobResult(
            record.job_id, _OUTCOMES[record.state], record.attempts, record.detail, status
        )

    # -- talking to the printer ------------------------------------------------------

    def _send_and_confirm(
        self, data: bytes
    ) -> tuple[Literal["delivered", "not_sent", "in_doubt"], PrinterStatus | None]:
        # One lock hold: the confirming ~HS must travel on the connection that carried the
        # format, or its answer proves nothing about those bytes.
        with self._io_lock:
            try:
                transport = self._open_link()
                transport.discard_input()
            except DeviceUnavailableError as exc:
                if not isinstance(exc, _NotConnectedError):
                    self._lost_link(str(exc))
                return "not_sent", None
            try:
                transport.write(data)
            except DeviceUnavailableError as exc:
                self._lost_link(str(exc))
                return "in_doubt", PrinterStatus.offline(f"lost while sending: {exc}")
            status = self._query_status(reconnect=False)
            return ("delivered" if status.online else "in_doubt"), status

    @abstractmethod
    def _render(self, job: _J) -> tuple[str, bytes, int]:
        """``(job id, bytes to send, label quantity)``; raise ``LabelDataError`` if unprintable."""

    @abstractmethod
    def _query_status(self, *, reconnect: bool = True) -> PrinterStatus:
        """Ask the printer now; offline (never raising) when it cannot say.

        ``reconnect=False`` asks only on the connection already open, as step 3 needs.
        """

    @abstractmethod
    def _read_counter(self) -> int | None:
        """The lifetime label count, ``None`` if unknown; raises if the link breaks."""

    def _exchange(
        self, request: bytes, reply_length: ReplyLength, *, reconnect: bool = True
    ) -> tuple[bytes | None, int]:
        """Send ``request`` and read its whole reply: ``(reply or None, bytes received)``.

        Raises :class:`DeviceUnavailableError` when there is no link or it breaks. A reply
        that is missing or incomplete when ``reply_timeout`` runs out also ends the
        connection: a late answer would otherwise be read as the answer to the next request.
        """
        with self._io_lock:
            if reconnect:
                transport = self._open_link()
            elif self._link_open:
                transport = self._transport
            else:
                raise DeviceUnavailableError("the connection is gone")
            try:
                transport.discard_input()
                transport.write(request)
                reply, received = read_reply(transport, reply_length, self.config.reply_timeout)
            except DeviceUnavailableError as exc:
                self._lost_link(str(exc))
                raise
            if reply is None:
                self._drop_link()
            return reply, len(received)

    # -- the link --------------------------------------------------------------------

    def _open_link(self) -> ByteTransport:
        if self._link_open:
            return self._transport
        if self._closing.is_set():
            raise _NotConnectedError("driver closed")
        now = time.monotonic()
        if not self._link.may_attempt(now):
            wait = self._link.next_attempt_at - now
            raise _NotConnectedError(f"reconnecting in {wait:.1f} s")
        try:
            self._transport.open()
        except DeviceUnavailableError as exc:
            self._link.open_failed(now, str(exc))
            raise _NotConnectedError(str(exc)) from exc
        self._link_open = True
        self._link.opened(now, self._transport.name)
        return self._transport

    def _lost_link(self, detail: str) -> None:
        self._drop_link()
        self._link.lost(time.monotonic(), detail)

    def _drop_link(self) -> None:
        self._link_open = False
        with contextlib.suppress(Exception):
            self._transport.close()

    # -- accounting ------------------------------------------------------------------

    def _count(self, reason: PrinterErrorReason, detail: str, *, degrade: bool = False) -> None:
        self._link.count(reason, detail, degrade=degrade)
        log.warning("printer %s: %s", reason, detail, extra=self._log_extra(reason=reason))

    def _log_extra(self, **more: str) -> dict[str, str]:
        return {"device": self.config.device_id, **more}
