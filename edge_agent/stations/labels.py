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
from edge_agent.ledger import Ledger, LedgerError
from jxc.contract import LedgerEvent

log = logging.getLogger("edge_agent.labels")

IDLE_POLL_S = 0.25
RETRY_S = 2.0
"""Wait after a label the printer could not take (paused, no paper, away) before retrying."""


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
        Code128(30, 225, event.item[:40], height=90),
        QrCode(620, 20, f"jxc:{event.site_id}:{event.seq}:{event.event_id}", magnification=4),
    ]
    return Label(tuple(lines), width_dots=812, length_dots=609)


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

    def __init__(self, ledger: Ledger, printer: LabelPrinter, printer_id: str) -> None:
        self.ledger = ledger
        self.printer = printer
        self.printer_id = printer_id
        self.state = SpoolerState()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: print what is owed, then wait for more."""
        while not stop.is_set():
            try:
                owed = self.ledger.pending_labels(self.printer_id, limit=20)
            except LedgerError as exc:  # the ledger is closing or broken: say so, keep trying
                self.state.last_error = str(exc)
                stop.wait(RETRY_S)
                continue
            if not owed:
                stop.wait(IDLE_POLL_S)
                continue
            for event in owed:
                if stop.is_set() or not self.print_one(event):
                    stop.wait(RETRY_S)
                    break

    def print_one(self, event: LedgerEvent) -> bool:
        """Print ``event``'s label; False if it is still owed and should be retried later."""
        job_id = str(event.event_id)
        try:
            job = PrintJob(job_id=job_id, zpl=build_zpl(receipt_label(event), job_id=job_id))
        except LabelDataError as exc:  # no printer could print it: a person must look
            self.state.failed += 1
            self.state.last_error = str(exc)
            self.ledger.settle_label(event.seq, "failed", str(exc))
            log.error("label cannot be printed", extra={"seq": event.seq, "reason": str(exc)})
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
        # not_printed, or in_doubt: the same job id again is safe (the driver resolves a
        # doubt from the printer's label counter before it sends anything).
        self.state.retries += 1
        self.state.last_error = f"{result.outcome}: {result.detail}"
        log.warning(
            "label not printed yet, will retry",
            extra={"seq": event.seq, "outcome": result.outcome, "detail": result.detail},
        )
        return False
