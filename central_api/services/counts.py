"""Stock counts (盘点): a frozen snapshot, blind counting, recounts, approved variances.

States::

    counting --submit--> review --approve--> posted
       ^  \\__(lines differ beyond the threshold: recount)__/
       +-- counting / review --cancel--> cancelled

* **Open** (``stock_count.create``): the session freezes the balances of a site, or of the
  location codes ``location_from``..``location_to``, as lines with ``expected_qty``. The
  site's stream is locked while it reads, so the snapshot is one instant of that site's
  ledger; nothing stops moving (a store keeps selling during a count).
* **Count** (``stock_count.count``): a counter enters ``(location, item, lot, qty)``; the
  answer is the *sheet*, which never carries the expected quantity (blind counting: a
  counter who sees the figure tends to find it). Stock found where the snapshot had none
  is a new line expected at zero. Each entry records ``system_qty``, the balance at that
  moment: the snapshot **plus every movement since**. The variance is ``counted −
  system``, so a sale during the count is never mistaken for a variance.
* **Submit**: every line must be counted (zero is a count). A line whose variance is beyond
  ``count_recount_percent`` of its system quantity and that was counted once only is
  marked for a **recount** and the session stays ``counting``; the second count replaces
  the first (kept as ``first_qty``). Otherwise the session goes to ``review``.
* **Approve** (``stock_count.approve``, by someone who counted none of the lines): each
  variance is booked as an ``adjustment`` event of central's stream naming the count line,
  **dated at the snapshot** (the difference was true then; valuation and period close see
  it there). Adding ``counted − system`` to today's balance gives exactly the count plus
  what moved since it was taken.
* **Accuracy** per site: over posted sessions, lines counted right (no variance) / lines
  counted; for a financial reader also value-weighted, at each session's snapshot cost.

Known limit: an edge event that happened before a line was counted but reached central
after it is not in ``system_qty`` and would show as a variance; counts at sites with an
edge belong at the edge:

* **The feed.** A session in ``counting`` is a ``count`` entity of its site's feed (lines
  without any quantity: blind), sent when it opens, again when a submit marks
  recounts and when an entry at central finds stock the snapshot did not hold (a new
  line: the edge's counters count it too); its tombstone when it leaves ``counting``.
* **Entries from the edge** (:func:`enter_from_site`, ``POST /sync/count-entries``): each
  carries the edge's own balance of the key when it was counted (the edge's ledger is
  complete and local). ``system_qty`` is that plus what central's own stream of the site
  holds there (earlier count adjustments, central documents): the edge never sees those
  events. ``counted_by`` is the edge's operator, so segregation of duties still holds at
  approval. Each entry id is taken once (``stock_count_entries``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    case,
    func,
    insert,
    select,
    tuple_,
    type_coerce,
    update,
)

from central_api.errors import ConflictError, ForbiddenError, InvalidError
from central_api.models.base import MicroUnits
from central_api.models.inventory import stock_count_entries, stock_count_lines, stock_counts
from central_api.models.items import items
from central_api.models.ledger import central_events as central_event_rows
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services import central_events
from central_api.services.audit import AuditContext
from central_api.services.central_events import Movement, lot_expiries
from central_api.services.documents import (
    DocCommand,
    check_site,
    check_state,
    document_write,
    fetch_document,
    locked_document,
    new_document_id,
    plain,
    read_page,
    utc,
)
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.inventory import (
    active_location,
    from_row,
    lock_stream_of,
    page_conditions,
)
from central_api.services.projections import Projections
from jxc.contract import EventKind
from jxc.feed import (
    ChangeOp,
    CountData,
    CountEntryBatch,
    CountLineData,
    FeedEntity,
)

STOCK_COUNT = "stock_count"
_KIND = "stock count"
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
MAX_ENTRIES = 5000


class CountStatus(StrEnum):
    COUNTING = "counting"
    REVIEW = "review"
    POSTED = "posted"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class CountEntry:
    location: str
    item_code: str
    qty: Decimal
    lot: str | None = None
    edge_system_qty: Decimal | None = None
    """The edge's balance of the key when counted (entries from an edge only)."""
    counted_by: str | None = None
    """The edge's operator; None: the command's actor."""
    counted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CountLine:
    line_no: int
    location: str
    item_code: str
    lot: str | None
    uom: str
    expected_qty: Decimal
    system_qty: Decimal | None
    counted_qty: Decimal | None
    first_qty: Decimal | None
    recount: bool
    counted_by: str | None
    counted_at: datetime | None

    @property
    def variance(self) -> Decimal | None:
        if self.counted_qty is None or self.system_qty is None:
            return None
        return plain(self.counted_qty - self.system_qty)


@dataclass(frozen=True, slots=True)
class StockCount:
    count_id: str
    site_id: str
    location_from: str | None
    location_to: str | None
    status: CountStatus
    note: str
    snapshot_at: datetime
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    version: int
    updated_at: datetime
    lines: list[CountLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Accuracy:
    site_id: str
    sessions: int
    lines_counted: int
    lines_right: int
    value_counted: Decimal | None = None
    """Financial: the counted quantities at the snapshot's cost (to the cent); None
    when not asked for."""
    value_right: Decimal | None = None
    """Financial: the same, of the lines counted right only."""

    @property
    def accuracy(self) -> Decimal | None:
        if not self.lines_counted:
            return None
        return rate(Decimal(self.lines_right), Decimal(self.lines_counted))

    @property
    def value_accuracy(self) -> Decimal | None:
        """Value counted right / value counted; None without value (or not asked for)."""
        if not self.value_counted or self.value_right is None:
            return None
        return rate(self.value_right, self.value_counted)


def rate(part: Decimal, whole: Decimal) -> Decimal:
    """``part / whole`` as an accuracy is shown: four places (0.6667), exact spelling."""
    return plain((part / whole).quantize(Decimal("0.0001")))


def accuracy_row(each: Accuracy) -> dict[str, Any]:
    """One site's accuracy as the API and the report give it (the value fields are the
    financial ones: left out for a reader without the group)."""
    return {
        "site_id": each.site_id,
        "sessions": each.sessions,
        "lines_counted": each.lines_counted,
        "lines_right": each.lines_right,
        "accuracy": each.accuracy,
        "value_counted": each.value_counted,
        "value_right": each.value_right,
        "value_accuracy": each.value_accuracy,
    }


# --- reading ---------------------------------------------------------------------------------


def _line(row: Any) -> CountLine:
    # The quantities are MicroUnits columns, read in their shortest spelling already
    # (what ``plain`` would give): a session holds up to tens of thousands of lines.
    return CountLine(
        line_no=row.line_no,
        location=row.location,
        item_code=row.item_code,
        lot=row.lot or None,
        uom=row.uom,
        expected_qty=row.expected_qty,
        system_qty=row.system_qty,
        counted_qty=row.counted_qty,
        first_qty=row.first_qty,
        recount=row.recount,
        counted_by=row.counted_by,
        counted_at=row.counted_at,
    )


def _with_lines(connection: Connection, rows: Sequence[Any]) -> list[StockCount]:
    ids = [row.count_id for row in rows]
    by_id: dict[str, list[CountLine]] = defaultdict(list)
    if ids:
        for line in connection.execute(
            select(stock_count_lines)
            .where(stock_count_lines.c.count_id.in_(ids))
            .order_by(stock_count_lines.c.count_id, stock_count_lines.c.line_no)
        ):
            by_id[line.count_id].append(_line(line))
    return [
        from_row(StockCount, row, status=CountStatus(row.status), lines=by_id[row.count_id])
        for row in rows
    ]


def _read(connection: Connection, count_id: str, *, lock: bool = False) -> StockCount | None:
    query = select(stock_counts).where(stock_counts.c.count_id == count_id)
    if lock:
        query = query.with_for_update()
    rows = connection.execute(query).all()
    return _with_lines(connection, rows)[0] if rows else None


def _read_again(
    connection: Connection, count: StockCount, changed: Collection[int] = ()
) -> StockCount:
    """``count`` after a command: its header read again, the lines numbered ``changed``
    read again (chunks of 500), the others as they were. A session has up to tens of
    thousands of lines; a command changes the lines it names (a request's entries, the
    recounts a submit marks) or none (approve, cancel), so reading them all back after
    each command cost as much as the command itself."""
    row = connection.execute(
        select(stock_counts).where(stock_counts.c.count_id == count.count_id)
    ).one()
    lines = {line.line_no: line for line in count.lines}
    numbers = sorted(changed)
    for first in range(0, len(numbers), _CHUNK):
        for fresh in connection.execute(
            select(stock_count_lines).where(
                stock_count_lines.c.count_id == count.count_id,
                stock_count_lines.c.line_no.in_(numbers[first : first + _CHUNK]),
            )
        ):
            lines[fresh.line_no] = _line(fresh)
    return from_row(
        StockCount,
        row,
        status=CountStatus(row.status),
        lines=sorted(lines.values(), key=_LINE_NO),
    )


_CHUNK = 500
"""Line numbers per ``IN`` list: well under any driver's limit on bound parameters."""
_LINE_NO = attrgetter("line_no")


def get_count(
    connection: Connection, count_id: str, *, visible: frozenset[str] | None = None
) -> StockCount:
    return fetch_document(connection, _read, _KIND, count_id, visible)


def list_counts(
    connection: Connection,
    *,
    site_id: str | None,
    status: CountStatus | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[StockCount], str | None]:
    key = stock_counts.c.count_id
    conditions = page_conditions(
        stock_counts.c.site_id, key, after=after, site_id=site_id, visible=visible, limit=limit
    )
    if status is not None:
        conditions.append(stock_counts.c.status == status.value)
    return read_page(
        connection,
        stock_counts,
        key,
        conditions,
        limit=limit,
        build=lambda rows: _with_lines(connection, rows),
    )


def accuracy(
    connection: Connection,
    *,
    site_id: str | None,
    visible: frozenset[str] | None,
    financial: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Accuracy]:
    """Per site, over posted sessions: lines counted, lines without a variance; with
    ``financial``, the value of both at each session's snapshot cost. ``since`` and
    ``until`` keep the sessions whose snapshot falls in that period (a month's accuracy is
    that of the counts taken in the month, whenever they were approved)."""
    is_right = stock_count_lines.c.counted_qty == stock_count_lines.c.system_qty
    right = func.sum(case((is_right, 1), else_=0))
    conditions = list(
        page_conditions(
            stock_counts.c.site_id,
            stock_counts.c.count_id,
            after=None,
            site_id=site_id,
            visible=visible,
            limit=1,
        )
    )
    if since is not None:
        conditions.append(stock_counts.c.snapshot_at >= since)
    if until is not None:
        conditions.append(stock_counts.c.snapshot_at < until)
    query = (
        select(
            stock_counts.c.site_id,
            func.count(func.distinct(stock_counts.c.count_id)).label("sessions"),
            func.count(stock_count_lines.c.counted_qty).label("counted"),
            right.label("right"),
        )
        .join(stock_count_lines, stock_count_lines.c.count_id == stock_counts.c.count_id)
        .where(stock_counts.c.status == CountStatus.POSTED.value, *conditions)
        .group_by(stock_counts.c.site_id)
        .order_by(stock_counts.c.site_id)
    )
    if financial:
        # Valuation imports ingest, which imports this module: imported here.
        from central_api.services.valuation import settle_for_reading  # noqa: PLC0415

        settle_for_reading(connection)  # the snapshot costs read below: none stale
    with read_snapshot(connection):
        rows = connection.execute(query).all()
        values = _counted_values(connection, conditions, is_right) if financial else {}
    return [
        Accuracy(
            site_id=row.site_id,
            sessions=int(row.sessions),
            lines_counted=int(row.counted),
            lines_right=int(row.right or 0),
            value_counted=values.get(row.site_id, _NO_VALUE)[0] if financial else None,
            value_right=values.get(row.site_id, _NO_VALUE)[1] if financial else None,
        )
        for row in rows
    ]


_NO_VALUE = (_ZERO, _ZERO)


def _counted_values(
    connection: Connection, conditions: Sequence[Any], is_right: Any
) -> dict[str, tuple[Decimal, Decimal]]:
    """Per site: the value of every counted quantity of its posted sessions and of those
    counted right, each at its session's snapshot cost (the (site, item)'s valuation
    just before the snapshot, in the item's base unit: ``reports.values_before``), to
    the cent. The lines are summed per session, item, unit and right-or-not by the
    database. A line counted zero is worth nothing: the figure weighs what was counted."""
    from central_api.services.reports import cents, values_before  # noqa: PLC0415 - it imports this

    right = case((is_right, True), else_=False).label("right")
    lines = stock_count_lines.c
    groups = connection.execute(
        select(
            stock_counts.c.site_id,
            stock_counts.c.snapshot_at,
            lines.item_code,
            lines.uom,
            right,
            type_coerce(func.sum(lines.counted_qty), MicroUnits).label("qty"),
        )
        .join(stock_count_lines, lines.count_id == stock_counts.c.count_id)
        .where(
            stock_counts.c.status == CountStatus.POSTED.value,
            lines.counted_qty.is_not(None),
            *conditions,
        )
        .group_by(
            stock_counts.c.count_id,
            stock_counts.c.site_id,
            stock_counts.c.snapshot_at,
            lines.item_code,
            lines.uom,
            right,
        )
    ).all()
    worth = values_before(
        connection,
        [(g.site_id, g.item_code, g.uom, g.qty or _ZERO, g.snapshot_at) for g in groups],
    )
    counted: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    counted_right: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    for group, value in zip(groups, worth, strict=True):
        counted[group.site_id] += value
        if group.right:
            counted_right[group.site_id] += value
    return {site: (cents(counted[site]), cents(counted_right[site])) for site in counted}


# --- commands ----------------------------------------------------------------------------------


def open_count(
    connection: Connection,
    *,
    site_id: str,
    location_from: str | None,
    location_to: str | None,
    note: str,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> StockCount:
    """A session with its snapshot. Raises ``IdempotentReplay``."""
    if location_from is not None and location_to is not None and location_from > location_to:
        raise InvalidError("location_to: the range ends before it starts")
    with (
        document_write(
            connection, action="stock_count.create", audit=audit, claim=claim
        ) as written,
        feed_writer(connection, changed_at=written.now) as writer,
    ):
        now = written.now
        check_site(connection, site_id, visible)
        central_events.lock_site(connection, site_id, now=now)
        conditions = [stock_balances.c.site_id == site_id, stock_balances.c.qty != 0]
        if location_from is not None:
            conditions.append(stock_balances.c.location >= location_from)
        if location_to is not None:
            conditions.append(stock_balances.c.location <= location_to)
        snapshot = connection.execute(
            select(
                stock_balances.c.location,
                stock_balances.c.item,
                stock_balances.c.lot,
                stock_balances.c.uom,
                stock_balances.c.qty,
            )
            .where(*conditions)
            .order_by(stock_balances.c.location, stock_balances.c.item, stock_balances.c.lot)
        ).all()
        count_id = new_document_id(
            connection, sequence="#stock_count", prefix="SC", column=stock_counts.c.count_id
        )
        connection.execute(
            insert(stock_counts).values(
                count_id=count_id,
                site_id=site_id,
                location_from=location_from,
                location_to=location_to,
                status=CountStatus.COUNTING.value,
                note=note,
                snapshot_at=now,
                created_by=actor,
                created_at=now,
                version=1,
                updated_at=now,
            )
        )
        if snapshot:
            connection.execute(
                insert(stock_count_lines),
                [
                    {
                        "count_id": count_id,
                        "line_no": index + 1,
                        "location": row.location,
                        "item_code": row.item,
                        "lot": row.lot,
                        "uom": row.uom,
                        "expected_qty": row.qty,
                        "recount": False,
                    }
                    for index, row in enumerate(snapshot)
                ],
            )
        written.doc_id, written.site_id = count_id, site_id
        written.after = {"from": location_from, "to": location_to, "lines": len(snapshot)}
        found = _read(connection, count_id)
        assert found is not None
        _publish(writer, found, was=None)
    return found


def _count_data(count: StockCount) -> CountData:
    """A session as its site's counters see it: never a quantity (blind counting)."""
    return CountData(
        count_id=count.count_id,
        site_id=count.site_id,
        version=count.version,
        snapshot_at=utc(count.snapshot_at),
        location_from=count.location_from,
        location_to=count.location_to,
        lines=[
            CountLineData(
                line_no=line.line_no,
                location=line.location,
                item_code=line.item_code,
                lot=line.lot,
                uom=line.uom,
                recount=line.recount,
            )
            for line in count.lines
        ],
    )


def _publish(writer: FeedWriter, count: StockCount, *, was: CountStatus | None) -> None:
    """A session in ``counting`` goes to its site; its tombstone once it leaves it."""
    if count.status is CountStatus.COUNTING:
        data: dict[str, Any] | None = _count_data(count).model_dump(mode="json")
        op = ChangeOp.UPSERT
    elif was is CountStatus.COUNTING:
        data, op = None, ChangeOp.DELETE
    else:
        return
    writer.append(
        entity=FeedEntity.COUNT, key=count.count_id, op=op, data=data, site_id=count.site_id
    )


@dataclass(frozen=True, slots=True)
class CountCommand:
    command: DocCommand
    entries: Sequence[CountEntry] = ()
    recount_percent: Decimal = _ZERO


def _locked(connection: Connection, command: DocCommand, now: datetime) -> StockCount:
    """The session locked after its site's stream (the order a push takes them in)."""
    lock_stream_of(connection, stock_counts.c.count_id, command.doc_id, now=now)
    return locked_document(
        connection, _read, _KIND, command.doc_id, command.visible, if_match=command.if_match
    )


def _require(count: StockCount, verb: str, *allowed: CountStatus) -> None:
    check_state(_KIND, count.count_id, count.status, verb, frozenset(allowed))


def _in_range(count: StockCount, location: str) -> bool:
    return (count.location_from is None or location >= count.location_from) and (
        count.location_to is None or location <= count.location_to
    )


def _enter(
    connection: Connection, count: StockCount, order: CountCommand, now: datetime
) -> tuple[dict[str, Any], list[int]]:
    """Enter ``order``'s counts: each entry checked in order (the first refusal names its
    index), then every line written at once.

    The balances of all the entries' keys are read in a few queries (by item, as a
    booking reads them) and the lines written with one ``executemany`` for the counted
    lines and one insert for found stock, rather than a read and a statement per entry:
    a request holds up to 5,000 entries. What each entry means is unchanged: the last
    entry of a line in a request wins, a recount keeps the first count. Returns the
    outcome and the numbers of the lines written."""
    if not 1 <= len(order.entries) <= MAX_ENTRIES:
        raise InvalidError(f"entries: 1 to {MAX_ENTRIES} entries")
    by_key = {(line.location, line.item_code, line.lot or NO_LOT): line for line in count.lines}
    next_no = max((line.line_no for line in count.lines), default=0)
    held_at = central_events.balances(
        connection,
        count.site_id,
        {(entry.location, entry.item_code, entry.lot or NO_LOT) for entry in order.entries},
    )
    counted: dict[int, dict[str, Any]] = {}
    found: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(order.entries):
        where = f"entries[{index}]"
        if entry.qty < 0:
            raise InvalidError(f"{where}.qty: a count is zero or more")
        lot = entry.lot or NO_LOT
        key = (entry.location, entry.item_code, lot)
        held = held_at.get(key)
        if entry.edge_system_qty is not None:
            system = entry.edge_system_qty + _central_stream_qty(connection, count, entry)
        else:
            system = _ZERO if held is None else held[1]
        values: dict[str, Any] = {
            "system_qty": system,
            "counted_qty": entry.qty,
            "counted_by": entry.counted_by or order.command.actor,
            "counted_at": entry.counted_at or now,
        }
        line = by_key.get(key)
        if line is None:
            if not _in_range(count, entry.location):
                raise InvalidError(
                    f"{where}.location: {entry.location!r} is outside this count's range"
                )
            active_location(connection, count.site_id, where, entry.location)
            uom = held[0] if held is not None else _base_uom(connection, where, entry.item_code)
            next_no += 1
            found[next_no] = {
                "count_id": count.count_id,
                "line_no": next_no,
                "location": entry.location,
                "item_code": entry.item_code,
                "lot": lot,
                "uom": uom,
                "expected_qty": _ZERO,
                "recount": False,
                **values,
            }
            by_key[key] = replace(
                _NEW, line_no=next_no, location=entry.location, item_code=entry.item_code
            )
        elif line.line_no in found:  # found stock entered again in this request
            found[line.line_no] |= values
        else:
            # A recount's second count keeps the first; other lines keep what they hold.
            first = line.counted_qty if line.recount else line.first_qty
            counted[line.line_no] = {f"b_{name}": value for name, value in values.items()} | {
                "b_count_id": count.count_id,
                "b_line_no": line.line_no,
                "b_first_qty": first,
            }
    if found:
        connection.execute(insert(stock_count_lines), list(found.values()))
    if counted:
        connection.execute(_COUNT_LINE, list(counted.values()))
    return {"entries": len(order.entries)}, [*counted, *found]


_COUNT_LINE = (
    update(stock_count_lines)
    .where(
        stock_count_lines.c.count_id == bindparam("b_count_id"),
        stock_count_lines.c.line_no == bindparam("b_line_no"),
    )
    .values(
        {
            name: bindparam(f"b_{name}", type_=stock_count_lines.c[name].type)
            for name in ("system_qty", "counted_qty", "counted_by", "counted_at", "first_qty")
        }
        | {"recount": False}
    )
)
"""One counted line of a session, as the rows of an ``executemany``."""


def _central_stream_qty(connection: Connection, count: StockCount, entry: CountEntry) -> Decimal:
    """What central's own stream of the site holds at the entry's key: events an edge
    never sees (earlier count adjustments, central documents), to add to its balance."""
    total = connection.execute(
        select(type_coerce(func.sum(central_event_rows.c.qty), MicroUnits)).where(
            central_event_rows.c.site_id == count.site_id,
            central_event_rows.c.location == entry.location,
            central_event_rows.c.item == entry.item_code,
            (central_event_rows.c.lot == entry.lot)
            if entry.lot
            else central_event_rows.c.lot.is_(None),
        )
    ).scalar_one_or_none()
    return _ZERO if total is None else Decimal(total)


_NEW = CountLine(0, "", "", None, "", _ZERO, None, None, None, False, None, None)
"""A placeholder for a line entered twice in one request: the second entry updates it."""


def _base_uom(connection: Connection, where: str, item_code: str) -> str:
    uom = connection.execute(
        select(items.c.uom).where(items.c.item_code == item_code)
    ).scalar_one_or_none()
    if uom is None:
        raise InvalidError(f"{where}.item_code: item {item_code!r} does not exist")
    return str(uom)


def _submit(connection: Connection, count: StockCount, order: CountCommand) -> dict[str, Any]:
    missing = [line for line in count.lines if line.counted_qty is None or line.recount]
    if missing:
        named = ", ".join(
            f"{line.location} {line.item_code}{' lot ' + line.lot if line.lot else ''}"
            for line in missing[:5]
        )
        raise ConflictError(
            f"stock count {count.count_id}: {len(missing)} line(s) not counted yet "
            f"(a zero is a count): {named}"
        )
    again = [
        line.line_no
        for line in count.lines
        if line.first_qty is None
        and line.variance
        and abs(line.variance) > (line.system_qty or _ZERO) * order.recount_percent / _HUNDRED
    ]
    if again:
        connection.execute(
            update(stock_count_lines)
            .where(
                stock_count_lines.c.count_id == count.count_id,
                stock_count_lines.c.line_no.in_(again),
            )
            .values(recount=True)
        )
        return {"status": CountStatus.COUNTING.value, "recount": again}
    return {"status": CountStatus.REVIEW.value, "recount": []}


def _approve(
    connection: Connection,
    count: StockCount,
    actor: str,
    now: datetime,
    projections: Projections | None,
) -> dict[str, Any]:
    counters = {line.counted_by for line in count.lines if line.counted_by}
    if actor in counters:
        raise ForbiddenError(
            f"{actor} counted lines of stock count {count.count_id} and may not approve its "
            "variances (segregation of duties): another person with the approve action must"
        )
    differ = [(line, variance) for line in count.lines if (variance := line.variance)]
    expiries = lot_expiries(connection, ((line.item_code, line.lot) for line, _ in differ))
    moves = [
        Movement(
            kind=EventKind.ADJUSTMENT,
            item=line.item_code,
            location=line.location,
            qty=variance,
            uom=line.uom,
            lot=line.lot,
            expiry=expiries.get((line.item_code, line.lot)) if line.lot else None,
            doc_type=STOCK_COUNT,
            doc_id=count.count_id,
            doc_line=line.line_no,
        )
        for line, variance in differ
    ]
    central_events.book(
        connection,
        site_id=count.site_id,
        movements=moves,
        actor=actor,
        ref=count.count_id,
        now=now,
        projections=projections,
        occurred_at=utc(count.snapshot_at),
    )
    return {
        "status": CountStatus.POSTED.value,
        "adjustments": [{"line_no": move.doc_line, "qty": str(move.qty)} for move in moves],
    }


def count_command(
    connection: Connection, order: CountCommand, verb: str, *, projections: Projections | None
) -> StockCount:
    """``count`` (enter quantities), ``submit``, ``approve`` or ``cancel``."""
    command = order.command
    with (
        document_write(
            connection, action=f"stock_count.{verb}", audit=command.audit, claim=command.claim
        ) as written,
        _feed_for(connection, order, verb, written.now) as writer,
    ):
        now = written.now
        count = _locked(connection, command, now)
        values: dict[str, Any] = {}
        changed: list[int] = []  # the lines this command changed
        if verb == "count":
            _require(count, verb, CountStatus.COUNTING)
            outcome, changed = _enter(connection, count, order, now)
        elif verb == "submit":
            _require(count, verb, CountStatus.COUNTING)
            outcome = _submit(connection, count, order)
            changed = outcome["recount"]
            values["status"] = outcome["status"]
        elif verb == "approve":
            _require(count, verb, CountStatus.REVIEW)
            outcome = _approve(connection, count, command.actor, now, projections)
            values |= {
                "status": outcome["status"],
                "approved_by": command.actor,
                "approved_at": now,
            }
        else:
            _require(count, verb, CountStatus.COUNTING, CountStatus.REVIEW)
            outcome = {"status": CountStatus.CANCELLED.value, "reason": command.reason}
            values["status"] = outcome["status"]
        connection.execute(
            update(stock_counts)
            .where(stock_counts.c.count_id == count.count_id)
            .values(version=stock_counts.c.version + 1, updated_at=now, **values)
        )
        found = _read_again(connection, count, changed)
        if writer is not None:
            _publish(writer, found, was=count.status)
        written.doc_id, written.site_id = found.count_id, found.site_id
        written.before = {"status": count.status.value, "version": count.version}
        written.after = {**outcome, "version": found.version}
    return found


@contextmanager
def _feed_for(
    connection: Connection, order: CountCommand, verb: str, now: datetime
) -> Iterator[FeedWriter | None]:
    """The feed writer for the verbs that change what the site's counters see (a submit
    may mark recounts; the others end ``counting``), and for entries that find stock the
    session has no line for (the new line goes to the edge's copy of the session); None
    for other entries, which the feed's lock would otherwise serialise with every
    master-data write. Taken before the session and its site's stream are locked, the
    order every feed writer keeps."""
    if verb == "count" and not _finds_stock(connection, order):
        yield None
        return
    with feed_writer(connection, changed_at=now) as writer:
        yield writer


_KEYS_PER_QUERY = 500
"""Entries looked up per query by :func:`_finds_stock` (three bound values each)."""


def _finds_stock(connection: Connection, order: CountCommand) -> bool:
    """Whether an entry names a (location, item, lot) the session has no line for: found
    stock, which makes a line. Read before any lock; lines are only ever added while a
    session counts, so a key held now is held when the entry is taken, and a key missing
    now at worst takes the feed's lock for nothing (another request added it meanwhile)."""
    wanted = {(each.location, each.item_code, each.lot or NO_LOT) for each in order.entries}
    key = tuple_(
        stock_count_lines.c.location, stock_count_lines.c.item_code, stock_count_lines.c.lot
    )
    keys = sorted(wanted)
    held: set[tuple[str, str, str]] = set()
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        rows = connection.execute(
            select(
                stock_count_lines.c.location,
                stock_count_lines.c.item_code,
                stock_count_lines.c.lot,
            ).where(
                stock_count_lines.c.count_id == order.command.doc_id,
                key.in_(keys[start : start + _KEYS_PER_QUERY]),
            )
        )
        held.update((row.location, row.item_code, row.lot) for row in rows)
    return bool(wanted - held)


def enter_from_site(
    connection: Connection, batch: CountEntryBatch, *, audit: AuditContext
) -> list[EntryVerdict]:
    """Take an edge's count entries, each id once, in the order sent (the last entry of a
    line wins, as at the edge). An entry the session cannot take (not this site's, no
    longer counting, a location outside its range...) is ``refused`` with the reason and
    settled too: sending it again would change nothing. One transaction, one audit entry."""
    site_id = batch.site_id
    verdicts: list[EntryVerdict] = []
    with document_write(connection, action="stock_count.count", audit=audit) as written:
        now = written.now
        central_events.lock_site(connection, site_id, now=now)
        ids = [entry.entry_id for entry in batch.entries]
        known: dict[str, Any] = {
            row.entry_id: row
            for row in connection.execute(
                select(stock_count_entries).where(stock_count_entries.c.entry_id.in_(ids))
            )
        }
        sessions: dict[str, StockCount | None] = {}
        taken: dict[str, int] = defaultdict(int)
        for entry in batch.entries:
            if (row := known.get(entry.entry_id)) is not None:
                verdicts.append(_verdict(entry.entry_id, row.refused))
                continue
            if entry.count_id not in sessions:
                sessions[entry.count_id] = _read(connection, entry.count_id, lock=True)
            count = sessions[entry.count_id]
            refused = _refusal(count, site_id)
            if refused is None and count is not None:
                order = CountCommand(
                    command=DocCommand(
                        doc_id=count.count_id,
                        actor=entry.counted_by,
                        audit=audit,
                        visible=frozenset({site_id}),
                        if_match=None,
                    ),
                    entries=[
                        CountEntry(
                            location=entry.location,
                            item_code=entry.item_code,
                            qty=entry.qty,
                            lot=entry.lot,
                            edge_system_qty=entry.system_qty,
                            counted_by=entry.counted_by,
                            counted_at=entry.counted_at,
                        )
                    ],
                )
                key = (entry.location, entry.item_code, entry.lot or None)
                try:
                    _enter(connection, count, order, now)
                except InvalidError as invalid:
                    refused = str(invalid).removeprefix("entries[0].")[:300]
                else:
                    taken[count.count_id] += 1
                    if not any(
                        (line.location, line.item_code, line.lot) == key for line in count.lines
                    ):  # found stock made a line: read the session's line numbers again
                        sessions[entry.count_id] = _read(connection, count.count_id)
            connection.execute(
                insert(stock_count_entries).values(
                    entry_id=entry.entry_id,
                    site_id=site_id,
                    count_id=entry.count_id if count is not None else None,
                    refused=refused,
                    received_at=now,
                )
            )
            known[entry.entry_id] = _Settled(refused)  # a copy later in this batch
            verdicts.append(_verdict(entry.entry_id, refused))
        if taken:
            connection.execute(
                update(stock_counts)
                .where(stock_counts.c.count_id.in_(list(taken)))
                .values(version=stock_counts.c.version + 1, updated_at=now)
            )
        written.doc_id, written.site_id = ",".join(sorted(taken))[:64] or "-", site_id
        written.after = {
            "entries": len(batch.entries),
            "taken": dict(taken),
            "refused": sum(1 for each in verdicts if each.refused is not None),
        }
    return verdicts


@dataclass(frozen=True, slots=True)
class EntryVerdict:
    """An uploaded entry settled: taken (``refused`` None) or refused and why."""

    entry_id: str
    refused: str | None


@dataclass(frozen=True, slots=True)
class _Settled:
    refused: str | None


def _refusal(count: StockCount | None, site_id: str) -> str | None:
    if count is None or count.site_id != site_id:
        return "no such stock count at this site"
    if count.status is not CountStatus.COUNTING:
        return f"stock count {count.count_id} is {count.status.value}: it takes no more counts"
    return None


def _verdict(entry_id: str, refused: str | None) -> EntryVerdict:
    return EntryVerdict(entry_id, refused)
