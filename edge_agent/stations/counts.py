"""Stock counts at the edge (盘点): counters enter what they find, offline or not.

Central opens a count session (a snapshot of the site or of a location range); while it
is ``counting`` it reaches the site through the change feed (``count``, cached by
:class:`edge_agent.catalog.Catalog`) with its lines (location, item, lot) and **no**
quantity: counting is blind, and nothing here ever shows what the ledger holds.

* **Entering** (:func:`record_count`, ``jxc edge count enter``): a count of one
  (session, location, item, lot) in any unit of the item, kept in the ledger file
  (``count_entries``) at once, so a restart or a week offline loses none. A key counted
  again is **counted again, not added to**: the last entry wins, here and at central
  (a counter who finds more cartons re-enters the total; a sum would double a shelf
  that two people counted). A location outside the session's range is refused; an item
  or lot the session has no line for is taken (found stock: central adds a line for it).
  Each entry stores ``system_qty``, this ledger's balance of the key **in the same
  transaction**: the ledger is complete and local, so a sale during the count is not a
  variance, even one that has not reached central yet.
* **Uploading** (:class:`CountUploader`, the agent's ``counts`` job, or ``jxc edge count
  upload``): entries are not movements, so they do not ride the event stream; they go,
  oldest first, to ``POST /api/v1/sync/count-entries`` with the site's token. Each has
  an ``entry_id`` (UUID), so a batch whose answer was lost is sent again harmlessly.
  Central answers each ``taken`` or ``refused`` (the session ended meanwhile...); both
  are settled and kept with the entry. ``counted_by`` is the operator entered with the
  count (``edge S01`` when none), so at central the person who counted still may not
  approve the variances.
* **Scanning** (:class:`CountStation`, ``[counts] scanners`` in the site file): scan the
  session's id (its sheet's barcode), a badge ``BY:<name>`` for who counts, a location,
  an item (a GS1 code gives the lot), then key the quantity on the scanner's keypad
  (``Q12`` or just ``12``, in the scanned code's unit: a case barcode counts cases). The
  display says what was entered, never what the ledger holds.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx

from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog, KnownBarcode
from edge_agent.ledger import Ledger
from edge_agent.stations.errors import StationError
from edge_agent.stations.scan_station import Place, ScanStation
from jxc.feed import CountData, CountEntryAck, CountEntryBatch, CountEntryData
from jxc.paths import SYNC_COUNT_ENTRIES

log = logging.getLogger("edge_agent.counts")

UPLOAD_BATCH = 500
_ZERO = Decimal(0)

_SETTLE = (
    "UPDATE count_entries SET uploaded_at = ?1, verdict = acked.verdict, reason = acked.reason"
    " FROM (SELECT json_extract(value, '$.entry_id') AS entry_id,"
    " json_extract(value, '$.verdict') AS verdict, json_extract(value, '$.reason') AS reason"
    " FROM json_each(?2)) AS acked"
    " WHERE count_entries.entry_id = acked.entry_id"
)
"""Central's verdicts on a batch, kept in one statement: the batch's verdicts go as one
JSON parameter, each row found by its unique ``entry_id``. One ``UPDATE`` per entry cost
500 statements per full batch. ``UPDATE ... FROM`` needs SQLite 3.33 (the edge's Debian 12
has 3.40). It runs in the same one transaction as before, after central's answer: a crash
before the commit leaves the whole batch unsent, to be sent again (harmless: central
answers an entry id it already took as it did the first time)."""


class CountRefusedError(StationError):
    """The count cannot be taken (no such open session, unknown item, outside the range)."""


@dataclass(frozen=True, slots=True)
class CountEntry:
    """One count entered here, and central's verdict once uploaded."""

    entry_id: str
    count_id: str
    location: str
    item: str
    lot: str | None
    qty: Decimal
    uom: str
    counted_by: str
    counted_at: datetime
    verdict: str | None
    reason: str | None


def actor_of(ledger: Ledger, counted_by: str | None) -> str:
    """Who counted: the operator's name, else the edge itself (as write-offs name it)."""
    return (counted_by or "").strip()[:100] or f"edge {ledger.site_id}"


def record_count(
    ledger: Ledger,
    catalog: Catalog,
    *,
    count_id: str,
    location: str,
    item: str,
    qty: Decimal,
    lot: str | None = None,
    uom: str | None = None,
    counted_by: str | None = None,
    device_id: str | None = None,
    now: datetime | None = None,
) -> CountEntry:
    """Keep one count (see the module); raises :class:`CountRefusedError`, nothing kept."""
    session = catalog.count_session(count_id)
    if session is None:
        raise CountRefusedError(
            f"REFUSED: {count_id} is no open stock count of this site (ended, or not"
            " pulled from central yet)"
        )
    if not _in_range(session, location):
        raise CountRefusedError(
            f"REFUSED: location {location} is outside {count_id}"
            f" ({session.location_from or '…'}..{session.location_to or '…'})"
        )
    known = catalog.item(item)
    if known is None:
        raise CountRefusedError(f"REFUSED: item {item!r} is unknown at this site")
    if qty < 0:
        raise CountRefusedError(f"REFUSED: a count is zero or more, got {qty}")
    base = qty
    if uom is not None and uom != known.uom:
        factor = catalog.units(known.item_code).get(uom)
        if factor is None:
            raise CountRefusedError(
                f"REFUSED: {known.item_code} has no unit {uom!r} (base unit {known.uom})"
            )
        base = qty * factor
    lot = lot or None
    at = (now or datetime.now(UTC)).astimezone(UTC)
    entry_id = str(uuid.uuid4())
    actor = actor_of(ledger, counted_by)
    with ledger.transaction() as conn:
        # The balance in the same transaction as the entry: one instant of the ledger.
        rows = conn.execute(
            "SELECT qty FROM events WHERE item = ? AND location = ? AND lot IS ?",
            (known.item_code, location, lot),
        ).fetchall()
        system = sum((Decimal(row[0]) for row in rows), _ZERO)
        conn.execute(
            "INSERT INTO count_entries (entry_id, count_id, location, item, lot, qty,"
            " system_qty, uom, counted_by, counted_at, device_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry_id,
                count_id,
                location,
                known.item_code,
                lot,
                format(base, "f"),
                format(system, "f"),
                known.uom,
                actor,
                at.isoformat(),
                device_id,
            ),
        )
    log.info("count entered", extra={"count_id": count_id, "entry_id": entry_id})
    return CountEntry(
        entry_id, count_id, location, known.item_code, lot, base, known.uom, actor, at, None, None
    )


def _in_range(session: CountData, location: str) -> bool:
    return (session.location_from is None or location >= session.location_from) and (
        session.location_to is None or location <= session.location_to
    )


def entries(ledger: Ledger, count_id: str, *, latest: bool = True) -> list[CountEntry]:
    """The session's entries made here, oldest first; with ``latest`` only the last of
    each (location, item, lot): the count that stands."""
    with ledger.reading() as conn:
        rows = conn.execute(
            "SELECT entry_id, location, item, lot, qty, uom, counted_by, counted_at, verdict,"
            " reason FROM count_entries WHERE count_id = ? ORDER BY entry_no",
            (count_id,),
        ).fetchall()
    found = [
        CountEntry(
            r[0], count_id, r[1], r[2], r[3], Decimal(r[4]), r[5], r[6],
            datetime.fromisoformat(r[7]), r[8], r[9],
        )
        for r in rows
    ]  # fmt: skip
    if not latest:
        return found
    last = {(each.location, each.item, each.lot): each for each in found}
    return sorted(last.values(), key=lambda each: (each.location, each.item, each.lot or ""))


def unsent(ledger: Ledger) -> int:
    with ledger.reading() as conn:
        (waiting,) = conn.execute(
            "SELECT COUNT(*) FROM count_entries WHERE uploaded_at IS NULL"
        ).fetchone()
    return int(waiting)


class CountUploader:
    """Sends the entries central has not answered for, oldest first, in batches."""

    def __init__(self, ledger: Ledger, client: httpx.Client) -> None:
        self.ledger = ledger
        self.client = client
        self.unsupported = False
        self.last_error: str | None = None
        self.uploaded = 0
        self.refused = 0

    def run(self) -> None:
        """Upload until nothing is left or central cannot take more now."""
        while self.upload_once():
            pass

    def upload_once(self) -> bool:
        """One batch; True when it was settled and more may be waiting."""
        if self.unsupported:
            return False
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT entry_id, count_id, location, item, lot, qty, system_qty, counted_by,"
                " counted_at FROM count_entries WHERE uploaded_at IS NULL"
                " ORDER BY entry_no LIMIT ?",
                (UPLOAD_BATCH,),
            ).fetchall()
        if not rows:
            return False
        batch = CountEntryBatch(
            site_id=self.ledger.site_id,
            entries=[
                CountEntryData(
                    entry_id=r[0], count_id=r[1], location=r[2], item_code=r[3], lot=r[4],
                    qty=Decimal(r[5]), system_qty=Decimal(r[6]), counted_by=r[7],
                    counted_at=datetime.fromisoformat(r[8]),
                )
                for r in rows
            ],
        )  # fmt: skip
        try:
            answer = self.client.post(
                SYNC_COUNT_ENTRIES,
                content=batch.model_dump_json().encode(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.info("count entries not uploaded", extra={"error": self.last_error})
            return False
        if answer.status_code in (404, 405):
            self.unsupported = True
            self.last_error = "central does not take count entries (it is older than this agent)"
            log.warning(self.last_error)
            return False
        if answer.status_code >= 400:
            self.last_error = f"central answered {answer.status_code}: {answer.text[:200]}"
            log.warning("count entries refused", extra={"status": answer.status_code})
            return False
        ack = CountEntryAck.model_validate_json(answer.content)
        now = datetime.now(UTC).isoformat()
        sent = {entry.entry_id for entry in batch.entries}
        verdicts = [
            {"entry_id": result.entry_id, "verdict": result.verdict, "reason": result.reason}
            for result in ack.results
            if result.entry_id in sent
        ]
        with self.ledger.transaction() as conn:
            conn.execute(_SETTLE, (now, json.dumps(verdicts, ensure_ascii=False)))
        refused = [result for result in ack.results if result.verdict == "refused"]
        for result in refused:
            log.warning(
                "count entry refused by central",
                extra={"entry_id": result.entry_id, "reason": result.reason},
            )
        self.uploaded += len(ack.results) - len(refused)
        self.refused += len(refused)
        self.last_error = None
        return len(rows) == UPLOAD_BATCH

    def as_dict(self) -> dict[str, Any]:
        return {
            "unsent": unsent(self.ledger),
            "uploaded": self.uploaded,
            "refused": self.refused,
            "last_error": self.last_error,
            "unsupported_by_central": self.unsupported,
        }


_QUANTITY = re.compile(r"^[Qq]?(\d{1,7}(?:\.\d{1,6})?)$")
"""A keyed quantity: up to 7 digits, an optional fraction, optionally after ``Q``."""


@dataclass(slots=True)
class CountStation(ScanStation):
    """Counting by scanner: session, location, item, quantity (one per scanner)."""

    counted_by: str | None = None
    item: KnownBarcode | None = None
    lot: str | None = None
    entered: list[CountEntry] = field(default_factory=list)

    refusal = CountRefusedError
    logger = log
    refused_event = "count scan refused"
    select_first = "scan the count sheet (its session id) first"
    selected_key = "count"
    next_scan = "an item"

    @property
    def count_id(self) -> str | None:
        """The selected count session."""
        return self.selected

    def take(self, scan: Scan, data: str, today: date) -> object:
        """A badge ``BY:<name>``, a session, a keyed quantity, a location, else an item."""
        if data.upper().startswith("BY:") and data[3:].strip():
            self.counted_by = data[3:].strip()[:100]
            self.display = f"counting as {self.counted_by}"
            return self.counted_by
        if scan.gs1 is None and (session := self.catalog.count_session(data)) is not None:
            self.select(session.count_id)
            self.item = None
            self.display = f"{session.count_id}: {len(session.lines)} line(s); scan a location"
            return session
        amount = _QUANTITY.match(data) if self.item is not None and scan.gs1 is None else None
        if amount is not None and self.catalog.lookup(data) is None:
            return self._enter(Decimal(amount.group(1)), scan.device_id)
        if (place := self.place_of(scan, data)) is not None:
            return self.at(place)
        return self._item(scan)

    def _session(self) -> CountData:
        return self.still_open(self.catalog.count_session, "has ended; count nothing more on it")

    def check_place(self, place: Place) -> None:
        session = self._session()
        if not _in_range(session, place.code):
            raise CountRefusedError(f"REFUSED: location {place.code} is outside {session.count_id}")
        self.item, self.lot = None, None

    def at(self, place: Place) -> str:
        """Counting names no location unknown: a code outside the tree reads as any other."""
        return ScanStation.at(self, Place(place.code, place.kind, place.active, known=True))

    def _item(self, scan: Scan) -> KnownBarcode:
        self._session()
        if self.location is None:
            raise CountRefusedError("REFUSED: scan the location first")
        carton, known = self.active_item(scan, shown=scan.data[:40])
        self.item, self.lot = known, carton.lot or None
        unit = known.pack_uom or known.uom
        self.display = (
            f"{known.item_code} lot {self.lot or '-'} at {self.location}: key how many {unit}"
        )
        return known

    def _enter(self, qty: Decimal, device_id: str | None) -> CountEntry:
        assert self.item is not None
        assert self.location is not None
        assert self.count_id is not None
        entry = record_count(
            self.ledger, self.catalog, count_id=self.count_id, location=self.location,
            item=self.item.item_code, lot=self.lot, qty=qty * self.item.qty_per,
            counted_by=self.counted_by, device_id=device_id,
        )  # fmt: skip
        self.entered.append(entry)
        self.display = (
            f"COUNTED {entry.qty} {entry.uom} {entry.item} lot {entry.lot or '-'}"
            f" at {entry.location}; scan the next item"
        )
        self.item, self.lot = None, None
        return entry

    def figures(self) -> dict[str, object]:
        """The count station's own entries of the status page (never a system quantity)."""
        return {"counted_by": self.counted_by, "entered": len(self.entered)}
