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

from device_drivers.printers import ItemLabel, LabelJob, LabelPrinter
from device_drivers.printers.base import LabelDataError, PrintJob
from edge_agent.jobs import JobHealth
from edge_agent.ledger import Ledger, OwedLabel
from edge_agent.stations import sscc as units
from jxc.contract import LedgerEvent

log = logging.getLogger("edge_agent.labels")

IDLE_POLL_S = 0.25
"""How often an idle spooler looks for labels queued by another process; labels this
process queues wake it at once (``Ledger.wait_for_labels``)."""
RETRY_S = 2.0
"""Wait after a label the printer could not take (paused, no paper, away) before retrying."""
IN_DOUBT_ATTEMPTS = 3
"""Tries to resolve a label the printer cannot vouch for before a person is asked to."""


def receipt_label(event: LedgerEvent) -> ItemLabel:
    """What a dock label says about one booking; the printer's driver lays it out.

    The QR code's reference carries site, seq and event id, which identify the booking
    itself in the central ledger.
    """
    return ItemLabel(
        item_code=event.item,
        quantity=event.qty,
        unit=event.uom,
        site_id=event.site_id,
        lot=event.lot,
        expiry=event.expiry,
        location=event.location,
        seq=event.seq,
        reference=f"jxc:{event.site_id}:{event.seq}:{event.event_id}",
    )


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
            seen = self.ledger.label_generation  # before looking: a label queued meanwhile wakes us
            done = self.jobs.run(self.job_name, lambda: self.run_once(stop), None)
            if done is None:
                self.state.last_error = self.jobs.last_error(self.job_name)
            if done:
                self.ledger.wait_for_labels(seen, IDLE_POLL_S)
            else:
                stop.wait(RETRY_S)

    def run_once(self, stop: threading.Event) -> bool:
        """Print the owed labels in order; False if one must wait (printer not ready)."""
        if not self.may_print():
            return True  # another agent on this ledger sends and prints; we stand by
        for owed in self.ledger.pending_labels(self.printer_id, limit=20):
            if stop.is_set() or not self.print_one(owed):
                return False
        for unit in units.owed_pack_labels(self.ledger, self.printer_id):
            if stop.is_set() or not self.print_pack(unit):
                return False
        return True

    def print_pack(self, unit: units.Pack) -> bool:
        """Print one packed unit's GS1 logistic label (SSCC); False to retry later.

        ZPL as built here (:func:`~edge_agent.stations.sscc.logistic_label_zpl`), under
        the job id ``sscc-<SSCC>``, so the driver's journal never prints it twice. A
        printer that takes only :class:`LabelJob` (TSPL) cannot print it: the unit's
        label is then failed, for a person to print elsewhere.
        """
        try:
            zpl = units.logistic_label_zpl(unit, site_id=self.ledger.site_id)
            result = self.printer.print_label(PrintJob(job_id=unit.job_id, zpl=zpl))  # type: ignore[arg-type]
        except (LabelDataError, TypeError, AttributeError) as exc:
            self.state.failed += 1
            self.state.last_error = f"SSCC {unit.sscc}: cannot be printed: {exc}"
            units.settle_pack_label(self.ledger, unit.serial, "failed", str(exc)[:300])
            log.error("logistic label needs a person", extra={"sscc": unit.sscc})
            return True
        if result.outcome in ("printed", "delivered"):
            if result.outcome == "printed":
                self.state.printed += 1
            else:
                self.state.held_by_printer += 1
            units.settle_pack_label(self.ledger, unit.serial, result.outcome, result.detail)
            return True
        detail = f"{result.outcome}: {result.detail}"
        if result.outcome == "in_doubt" and unit.attempts + 1 >= IN_DOUBT_ATTEMPTS:
            self.state.failed += 1
            units.settle_pack_label(self.ledger, unit.serial, "failed", detail)
            return True
        self.state.retries += 1
        self.state.last_error = detail
        units.settle_pack_label(self.ledger, unit.serial, "pending", detail)
        return False

    def print_one(self, owed: OwedLabel) -> bool:
        """Print one owed label; False if it is still owed and should be retried later."""
        event = owed.event
        job_id = owed.job_id
        try:
            job = LabelJob(job_id=job_id, label=receipt_label(event))
            result = self.printer.print_label(job)
        except LabelDataError as exc:  # no printer could print it: a person must look
            self._give_up(event, f"cannot be printed: {exc}")
            return True
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
