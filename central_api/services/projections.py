"""What else a push keeps current: projections of the ledger, run inside ingest.

Document progress (how much of a purchase order has been received), valuation (the cost
of what is on hand) and alerts (stock below its reorder point) all follow the same
events the ledger takes in. Each is a *projection*: a function that ingest calls with the
events a push really inserted, inside the push's own transaction, after the insert and
the balance update and before the watermark moves. So:

* a projection sees every accepted event exactly once, in seq order: never a duplicate
  (a replay inserts nothing), never a refused event, never one from a rolled-back push;
* what it writes commits with the events or not at all: if it raises, the whole push is
  rolled back and answered as an error, and the edge sends it again later;
* the fast path's verdict logic does not know projections exist: the same step runs
  after the short path and after the careful one;
* a projection writes only what the pushing site's lock covers: a change to another
  site (valuation carrying a transfer's cost into the receiving site) is recorded in the
  transaction and done after its commit, holding that site alone
  (:func:`central_api.core.db.after_commit`), or two sites pushing at once could each
  wait for the other's lock.

Stock balances are not a projection in this sense: ingest's verdicts depend on them (a
unit the balance is not kept in is refused), so they stay inside ingest.

A projection is registered under a name in a :class:`Projections` registry. The app makes
its registry with :func:`built_in_projections` (``app.state.projections``); a new
built-in projection is one more line there. A projection must be cheap next to the
insert (a push of thousands of events runs it once, with all of them): look things up
for the whole batch at once, as ingest does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial

from sqlalchemy import Connection

from jxc.contract import LedgerEvent


@dataclass(frozen=True, slots=True)
class AcceptedEvents:
    """The events one push inserted into the ledger, in seq order (never empty)."""

    site_id: str
    events: Sequence[LedgerEvent]
    received_at: datetime
    central: bool = False
    """Booked by central itself (a document at headquarters), not pushed by an edge."""


Projection = Callable[[Connection, AcceptedEvents], None]
"""Called inside the push's transaction; writes with ``connection``; raises to refuse."""


class Projections:
    """The projections ingest runs after each insert, in the order they were added."""

    def __init__(self) -> None:
        self._by_name: dict[str, Projection] = {}

    def add(self, name: str, projection: Projection) -> None:
        """Run ``projection`` after every insert from now on, after those added before."""
        if name in self._by_name:
            raise ValueError(f"a projection named {name!r} is registered already")
        self._by_name[name] = projection

    def remove(self, name: str) -> None:
        """Stop running the projection ``name``; KeyError if there is none."""
        del self._by_name[name]

    @contextmanager
    def added(self, name: str, projection: Projection) -> Iterator[None]:
        """``projection`` registered for the duration of the block (for tests and tools)."""
        self.add(name, projection)
        try:
            yield
        finally:
            self.remove(name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def run(self, connection: Connection, accepted: AcceptedEvents) -> None:
        """Run every projection on ``accepted``; the first to raise ends the push."""
        for name, projection in self._by_name.items():
            try:
                projection(connection, accepted)
            except Exception as error:
                error.add_note(f"raised by the ledger projection {name!r}")
                raise


def built_in_projections(*, write_off_approval_value: Decimal = Decimal(1000)) -> Projections:
    """A registry of central's own projections; each new one is added here.

    ``po_progress``: received quantities and progress of purchase orders
    (:mod:`central_api.services.po_progress`); ``so_progress``: shipped quantities,
    reservations consumed and closing of sales orders (:mod:`central_api.services.so_progress`);
    ``transfer_progress``: what each transfer shipped and received per lot, so what is in
    transit (:mod:`central_api.services.transfers`); ``customer_returns``: what an edge's
    returns station received of each customer return line
    (:mod:`central_api.services.customer_returns`); ``valuation``: the value of stock and
    the cost of goods of every movement (:mod:`central_api.services.valuation`); ``retail``:
    the revenue of a store's counter sales and refunds (:mod:`central_api.services.retail`);
    ``periods``: an exception for edge events dated inside a closed month
    (:mod:`central_api.services.periods`); ``alerts`` (last of those that raise: it mirrors
    the exceptions the others raised): stock alerts for the touched (site, item) pairs
    (:mod:`central_api.services.alerts`); ``edge_write_offs`` (after it: it writes audit
    entries, which a push writes last): a write-off document for each write-off an edge
    booked, above ``write_off_approval_value`` pending approval
    (:mod:`central_api.services.inventory`).
    """
    from central_api.services import (  # noqa: PLC0415 - they import this
        alerts,
        customer_returns,
        inventory,
        periods,
        po_progress,
        retail,
        so_progress,
        transfers,
        valuation,
    )

    registry = Projections()
    registry.add(po_progress.NAME, po_progress.project)
    registry.add(so_progress.NAME, so_progress.project)
    registry.add(transfers.NAME, transfers.project)
    registry.add(customer_returns.NAME, customer_returns.project)
    registry.add(valuation.NAME, valuation.project)
    registry.add(retail.NAME, retail.project)
    registry.add(periods.NAME, periods.project)
    registry.add(alerts.NAME, alerts.project)
    registry.add(
        inventory.EDGE_WRITE_OFFS,
        partial(inventory.project_edge_write_offs, approval_value=write_off_approval_value),
    )
    return registry
