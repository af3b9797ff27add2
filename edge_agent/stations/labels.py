"""Printing the labels the ledger owes, once each, whatever happens to agent or printer.

A booking that needs a label queues it in the same transaction as the event
(``label_queue`` in the ledger), so a label is never forgotten: an agent killed after the
booking prints it after restart. The job id is the event's id, and the printer driver's
journal answers for ids it has seen (printed, or held by the printer), so a label is
never printed twice either. The spooler runs in its own thread: a printer out of paper
holds up labels, never the scanning that books the goods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from device_drivers.printers import (
    Code128,
    Label,
    LabelField,
    LabelPrinter,
    PrintJob,
    QrCode,
    Text,
)
from device_drivers.printers.base import LabelDataError
from device_drivers.printers.zpl import build_zpl
from edge_agent.jobs import JobHealth
from edge_agent.ledger import Ledger, OwedLabel
from jxc.contract import LedgerEvent

log = logging.getLogger("edge_agent.labels")

IDLE_POLL_S = 0.25
RETRY_S = 2.0
"""Wait after a label the printer could not take (paused, no paper, away) before retrying."""
IN_DOUBT_ATTEMPTS = 3
"""Tries to resolve a label the printer cannot vouch for before a person is asked to."""


def receipt_label(event: LedgerEvent) -> Label:
    """A 4 x 3 in dock label: what was booked, where, and codes to find the booking again.

    The Code 128 carries the item code (what a picker scans); the QR code carries site,
    seq and event id, which identify the booking itself in the central ledger.
    """
    lines: list[LabelField] = [
        Text(30, 20, event.item[:32], 50),
        Text(30, 85, f"QTY {event.qty:f} {event.uom}", 40),
        Text(30, 135, f"LOT {event.lot or '-'}   EXP {event.expiry or '-'}", 30),
        Text(30, 175, f"{event.site_id} #{event.seq}  {event.location}", 30),
        *_item_barcode(event.item),
        QrCode(620, 20, f"jxc:{event.site_id}:{event.seq}:{event.event_id}", magnification=4),
    ]
    return Label(tuple(lines), width_dots=812, length_dots=609)


def _item_barcode(item: str) -> list[LabelField]:
    """A Code 128 of the item code when Code 128 can carry it whole, else none.

    A code with characters Code 128 (or ZPL's field data) cannot hold, or too long for the
    label, is left to the text line and the QR code: a shortened barcode would scan as a
    different item.
    """
    printable = all(32 < ord(c) < 127 for c in item) and not set(item) & set("^~>")
    return [Code128(30, 225, item, height=90)] if printable and len(item) <= 40 else []


@dataclass
class SpoolerState:
    """What the status page shows about one printer's labels."""

    printed: int = 0
    held_by_printer: int = 0
    retries: int = 0
    failed: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "printed": self.printed,
            "held_by_printer": self.held_by_printer,
            "retries": self.retries,
            "failed": self.failed,
            "last_error": self.last_error,
        }


class LabelSpooler:
    """Prints one printer's owed labels in seq order, retrying until each is settled."""

    def __init__(
        self,
        ledger: Ledger,
        printer: LabelPrinter,
        printer_id: str,
        *,
        may_print: Callable[[], bool] = lambda: True,
        jobs: JobHealth | None = None,
    ) -> None:
        self.ledger = ledger
        self.printer = printer
        self.printer_id = printer_id
        self.may_print = may_print
        self.jobs = jobs if jobs is not None else JobHealth()
        self.job_name = f"labels {printer_id}"
        self.state = SpoolerState()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: print what is owed, then wait for more.

        Nothing ends this loop but ``stop``: a failure (the ledger locked by another
        process, a full disk, a driver bug) goes through the agent's job guard (logged,
        counted, an alert on the status page) and the loop tries again later. A spooler
        thread that died would leave labels owed with nothing to say why.
        """
        while not stop.is_set():
            done = self.jobs.run(self.job_name, lambda: self.run_once(stop), None)
            if done is None:
                self.state.last_error = self.jobs.last_error(self.job_name)
            stop.wait(IDLE_POLL_S if done else RETRY_S)

    def run_once(self, stop: threading.Event) -> bool:
        """Print the owed labels in order; False if one must wait (printer not ready)."""
        if not self.may_print():
            return True  # another agent on this ledger sends and prints; we stand by
        for owed in self.ledger.pending_labels(self.printer_id, limit=20):
            if stop.is_set() or not self.print_one(owed):
                return False
        return True

    def print_one(self, owed: OwedLabel) -> bool:
        """Print one owed label; False if it is still owed and should be retried later."""
        event = owed.event
        job_id = owed.job_id
        try:
            job = PrintJob(job_id=job_id, zpl=build_zpl(receipt_label(event), job_id=job_id))
        except LabelDataError as exc:  # no printer could print it: a person must look
            self._give_up(event, f"cannot be printed: {exc}")
            return True
        result = self.printer.print_label(job)
        if result.outcome == "printed":
            self.state.printed += 1
            self.ledger.settle_label(event.seq, "printed")
            return True
        if result.outcome == "delivered":
            # The printer holds it and prints it when resumed; sending it again would
            # make a second label.
            self.state.held_by_printer += 1
            self.ledger.settle_label(event.seq, "delivered", result.detail)
            return True
        detail = f"{result.outcome}: {result.detail}"
        if result.outcome == "in_doubt" and owed.attempts + 1 >= IN_DOUBT_ATTEMPTS:
            # The printer cannot say whether it printed (no label counter): sending it
            # again could make a second label, waiting longer blocks every later one.
            self._give_up(event, f"{detail}; check the printer and reprint if it is missing")
            return True
        # not_printed, or in_doubt still being resolved: the same job id again is safe
        # (the driver resolves a doubt from the label counter before it sends anything).
        self.state.retries += 1
        self.state.last_error = detail
        self.ledger.settle_label(event.seq, "pending", detail)
        log.warning(
            "label not printed yet, will retry",
            extra={"seq": event.seq, "outcome": result.outcome, "detail": result.detail},
        )
        return False

    def _give_up(self, event: LedgerEvent, reason: str) -> None:
        self.state.failed += 1
        self.state.last_error = reason
        self.ledger.settle_label(event.seq, "failed", reason)
        log.error("label needs a person", extra={"seq": event.seq, "reason": reason})
