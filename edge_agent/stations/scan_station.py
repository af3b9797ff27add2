"""What every scan-driven station does around a scan, written once.

Picking, transfers and counts are each a small state machine driven by one scanner: a scan
selects a document (a pick list, a transfer, a count sheet), a location, or a carton, and
the station answers on its display line. Around their own rules they share the same
machinery, kept here so that a new station (and a fix to one) does not copy it again:

* :meth:`ScanStation.on_scan` strips the scan, takes today's date from it, hands it to the
  station's :meth:`~ScanStation.take` and, when the station refuses it with its own
  :class:`~edge_agent.stations.errors.StationError` subclass, counts the refusal, puts the
  message on the display line, logs it and raises it again (:func:`note_refusal`);
* :meth:`ScanStation.place_of` tells a location scan from an item (a location of the site's
  tree, or a location-shaped code that is no item: stock is where the edge says) and
  :meth:`ScanStation.at` moves the station there, after the station's own check;
* :func:`read_carton` decodes a carton (a GS1 code's GTIN, count, lot and expiry, or an
  item barcode) and looks it up in the catalog; :meth:`ScanStation.active_item` refuses a
  code that is no active item of the site;
* :meth:`ScanStation.chosen` / :meth:`ScanStation.still_open` refuse a carton scanned before
  a document is selected, or after central cancelled or closed it;
* :meth:`ScanStation.report` is the status page's view: display line, what is selected,
  where, how many scans were refused, and the station's own figures.

The helpers that need no station state (:func:`read_carton`, :func:`item_of`,
:func:`note_refusal`, :func:`may_be_location`) serve stations that are no ``ScanStation``
(the counter's till, receiving) as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import ClassVar, Literal, Protocol, TypeVar

from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog, KnownBarcode
from edge_agent.ledger import Ledger
from edge_agent.stations.errors import StationError

LaterExpiry = Literal["refuse", "warn"]
"""Site policy for a lot that expires later than one the station would take first."""
UNSELLABLE_KINDS = frozenset({"quarantine", "damaged", "in_transit"})
"""Location kinds no goods are picked or shipped from."""

_T = TypeVar("_T")


def may_be_location(data: str) -> bool:
    """A code that can name a location: an event's location rules (1-64 printable
    characters), and not shaped like a GTIN (a misread item is no place)."""
    if not 1 <= len(data) <= 64 or not data.isprintable():
        return False
    return not (data.isdigit() and len(data) in (8, 12, 13, 14))


@dataclass(frozen=True, slots=True)
class Carton:
    """A scanned carton as the site reads it: what the code says and the item it is."""

    gtin: str | None
    """The GS1 code's GTIN (01), else the GTIN of its contents (02); None for a barcode."""
    code: str
    """The code the display names: the GTIN, else the scanned data."""
    known: KnownBarcode | None
    """The catalog's item for the code (may be inactive), None when the site knows none."""
    count: int
    """How many trade items the code stands for (GS1 (30)/(37)), else 1."""
    lot: str | None
    expiry: date | None


def read_carton(catalog: Catalog, scan: Scan) -> Carton:
    """Decode ``scan`` as a carton and look its item up (nothing refused here)."""
    gs1 = scan.gs1
    gtin = (gs1.gtin or gs1.content_gtin) if gs1 else None
    return Carton(
        gtin=gtin,
        code=gtin or scan.data,
        known=catalog.lookup(gtin, scan.data),
        count=gs1.count if gs1 and gs1.count else 1,
        lot=gs1.lot if gs1 else None,
        expiry=gs1.expiry if gs1 else None,
    )


def item_of(
    catalog: Catalog,
    scan: Scan,
    refusal: Callable[[str], StationError],
    *,
    unknown: str = "is no active item here",
    shown: str | None = None,
) -> tuple[Carton, KnownBarcode]:
    """The carton and its active item; ``refusal("REFUSED: <code> <unknown>")`` when the
    site knows no item for it or the item is inactive (``shown`` replaces the code)."""
    carton = read_carton(catalog, scan)
    if carton.known is None or not carton.known.active:
        raise refusal(f"REFUSED: {carton.code if shown is None else shown} {unknown}")
    return carton, carton.known


class _Refusing(Protocol):
    display: str
    refused: int


def note_refusal(
    station: _Refusing, refused: StationError, data: str, logger: logging.Logger, event: str
) -> None:
    """Count a refused scan, show why on the display line and log it (data cut to 80)."""
    station.refused += 1
    station.display = str(refused)
    logger.info(event, extra={"data": data[:80], "reason": str(refused)})


@dataclass(frozen=True, slots=True)
class Place:
    """A scanned location: of the site's tree (``known``), or a code the edge takes as one."""

    code: str
    kind: str
    active: bool
    known: bool


@dataclass(slots=True)
class ScanStation:
    """The shared state and scan flow of a document-driven scan station (see the module).

    A station subclasses it as a ``@dataclass(slots=True)``, sets the class variables and
    implements :meth:`take`; its own fields come after ``ledger`` and ``catalog`` in the
    constructor, the shared state below is keyword-only.
    """

    ledger: Ledger
    catalog: Catalog
    display: str = field(default="", kw_only=True)
    """The station's display line: what the operator reads after each scan."""
    selected: str | None = field(default=None, kw_only=True)
    """The id of the document the scanner works on (pick list, transfer, count sheet)."""
    location: str | None = field(default=None, kw_only=True)
    refused: int = field(default=0, kw_only=True)

    refusal: ClassVar[type[StationError]]
    """The station's own refusal; :meth:`on_scan` counts and shows it."""
    logger: ClassVar[logging.Logger]
    refused_event: ClassVar[str]
    """The log message of a refused scan."""
    select_first: ClassVar[str]
    """What to scan when nothing is selected (``scan a pick list (...) first``)."""
    selected_key: ClassVar[str]
    """The status page's name of :attr:`selected`."""
    next_scan: ClassVar[str] = "a carton"
    """What the display asks for once the station is at a location."""

    def on_scan(self, scan: Scan, *, today: date | None = None) -> object:
        """Act on one scan; the display line says what happened. Raises the station's
        :attr:`refusal` (nothing recorded) when the scan cannot be taken."""
        today = today or scan.received_at.astimezone(UTC).date()
        data = scan.data.strip()
        try:
            return self.take(scan, data, today)
        except self.refusal as refused:
            note_refusal(self, refused, data, self.logger, self.refused_event)
            raise

    def take(self, scan: Scan, data: str, today: date) -> object:
        """The station's own answer to one scan (``data`` is the scan's stripped text)."""
        raise NotImplementedError

    # --- documents -----------------------------------------------------------------------

    def select(self, doc_id: str) -> None:
        """Work on ``doc_id`` from now on, at no location yet."""
        self.selected, self.location = doc_id, None

    def chosen(self) -> str:
        """The selected document's id; refused when none is."""
        if self.selected is None:
            raise self.refusal(f"REFUSED: {self.select_first}")
        return self.selected

    def still_open(self, fetch: Callable[[str], _T | None], gone: str) -> _T:
        """The selected document as the feed last said; when central cancelled or closed
        it, it is deselected and refused (``REFUSED: <id> <gone>``)."""
        doc_id = self.chosen()
        found = fetch(doc_id)
        if found is None:
            self.selected = None
            raise self.refusal(f"REFUSED: {doc_id} {gone}")
        return found

    # --- locations -----------------------------------------------------------------------

    def place_of(self, scan: Scan, data: str) -> Place | None:
        """The location a scan names, or None when it is no location (a GS1 code never is).

        A code of the site's tree is one; a code it does not know is taken as one when it
        has a location's shape and is no item: stock is where the edge says."""
        if scan.gs1 is not None:
            return None
        if (place := self.catalog.location(data)) is not None:
            return Place(place.code, place.kind, place.active, known=True)
        if may_be_location(data) and self.catalog.lookup(data) is None:
            return Place(data, "storage", True, known=False)
        return None

    def check_place(self, place: Place) -> None:
        """The station's refusal of a location (none by default)."""

    def bar_place(self, place: Place, barred: frozenset[str], verb: str) -> None:
        """Refuse an inactive location, or one of a ``barred`` kind: nothing is ``verb`` it."""
        if place.kind in barred or not place.active:
            why = "inactive" if not place.active else f"a {place.kind} location"
            raise self.refusal(f"REFUSED location {place.code} is {why}: nothing is {verb} it")

    def at(self, place: Place) -> str:
        """Move to ``place`` once :meth:`check_place` lets it; the display says where."""
        self.check_place(place)
        self.location = place.code
        where = "" if place.known else " (not in the site's location tree)"
        self.display = f"at {place.code}{where}: scan {self.next_scan}"
        return place.code

    # --- items ---------------------------------------------------------------------------

    def active_item(
        self, scan: Scan, *, unknown: str = "is no active item here", shown: str | None = None
    ) -> tuple[Carton, KnownBarcode]:
        """:func:`item_of` with the station's refusal."""
        return item_of(self.catalog, scan, self.refusal, unknown=unknown, shown=shown)

    # --- the status page -----------------------------------------------------------------

    def report(self) -> dict[str, object]:
        """What the status page shows of the station."""
        return {
            "display": self.display,
            self.selected_key: self.selected,
            "location": self.location,
            "refused": self.refused,
            **self.figures(),
        }

    def figures(self) -> dict[str, object]:
        """The station's own entries of :meth:`report`."""
        return {}
