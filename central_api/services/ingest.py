"""Merging one pushed batch of a site's ledger into central: exactly-once effect.

The edge delivers at least once, so the same batch may arrive twice, late, or after
central already committed it (a timeout after commit). Everything here serves one rule:
an event changes central's balances once, no matter how often it is pushed.

The whole batch is one transaction:

1. Lock the site's ``site_sync_state`` row (``SELECT ... FOR UPDATE`` on PostgreSQL;
   ``BEGIN IMMEDIATE`` already holds SQLite's write lock). Pushes from one site queue
   here, so two copies of a batch racing each other cannot both insert.
2. Look up the batch's event ids, and the seqs of its range, in one query each.
3. Give every event a verdict: the same id with the same digest is a ``duplicate``; the
   same id with other content, or a new id on a seq already taken, is a ``conflict``; a
   unit of measure other than the balance's is ``invalid``; the rest are inserted.
4. Refuse the whole batch if its new events would start past a gap.
5. Insert the new rows with executemany, add their quantities to the balances with one
   upsert per (site, location, item, lot), and move the watermark up to the highest
   seq held with no gap below it.

Invariant relied on in step 4: after every commit, ``acked_through_seq + 1`` is *not*
held (step 5 advances through every contiguous seq, including ones held above an earlier
hole). So a batch that starts past ``acked_through_seq + 1`` with anything new in it
always leaves a gap.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    String,
    Table,
    any_,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from central_api.db import write_transaction
from central_api.errors import SequenceGapError
from central_api.models import NO_LOT, ledger_events, site_sync_state, stock_balances
from jxc.contract import EventResult, EventStatus, LedgerEvent, PushAck, PushBatch

log = logging.getLogger("central_api.services.ingest")

_TAIL_PAGE = 1000
"""Seqs read per round when the watermark walks past the batch (see _advance_watermark)."""

BalanceKey = tuple[str, str, str]
"""(location, item, lot or NO_LOT) within one site."""


@dataclass(slots=True)
class _Candidate:
    """An event that is new to central, pending the checks that come before insert."""

    index: int
    event: LedgerEvent
    event_id: str
    digest: str
    key: BalanceKey


def ingest_batch(*, connection: Connection, batch: PushBatch, received_at: datetime) -> PushAck:
    """Merge ``batch`` into central in one transaction and say what became of each event.

    ``connection`` must not be inside a transaction: this function opens and commits its
    own, so the caller cannot accidentally widen it. Raises :class:`SequenceGapError`
    (nothing changed) when the batch's new events would leave a hole in the site's ledger.
    """
    site_id = batch.site_id
    events = batch.events
    with write_transaction(connection):
        watermark = _lock_site(connection, site_id=site_id, now=received_at)
        results: list[EventResult | None] = [None] * len(events)
        candidates, held_seqs = _drop_already_held(connection, batch=batch, results=results)

        if candidates and events[0].seq > watermark + 1:
            raise SequenceGapError(
                site_id=site_id, acked_through_seq=watermark, batch_first_seq=events[0].seq
            )

        inserted = _drop_unit_mismatches(
            connection, site_id=site_id, candidates=candidates, results=results
        )
        if inserted:
            _insert_events(connection, site_id=site_id, rows=inserted, received_at=received_at)
            _add_to_balances(connection, site_id=site_id, rows=inserted, received_at=received_at)
            for row in inserted:
                results[row.index] = _verdict(row.event, EventStatus.ACCEPTED)
            watermark = _advance_watermark(
                connection,
                site_id=site_id,
                watermark=watermark,
                held_in_batch=held_seqs | {row.event.seq for row in inserted},
                batch_last_seq=events[-1].seq,
            )
        connection.execute(
            update(site_sync_state)
            .where(site_sync_state.c.site_id == site_id)
            .values(acked_through_seq=watermark, updated_at=received_at)
        )

    final = [result for result in results if result is not None]
    _log_outcome(site_id=site_id, results=final, watermark=watermark)
    return PushAck(
        site_id=site_id, acked_through_seq=watermark, results=final, server_time=received_at
    )


def _lock_site(connection: Connection, *, site_id: str, now: datetime) -> int:
    """Create the site's sync row if this is its first push, lock it, return its watermark.

    ``ON CONFLICT DO NOTHING`` makes the creation race-safe: of two first pushes, one
    inserts and the other waits on that row, then finds it.
    """
    create = (
        _insert_for(connection, site_sync_state)
        .values(site_id=site_id, acked_through_seq=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=[site_sync_state.c.site_id])
    )
    connection.execute(create)
    locked = (
        select(site_sync_state.c.acked_through_seq)
        .where(site_sync_state.c.site_id == site_id)
        .with_for_update()
    )
    return int(connection.execute(locked).scalar_one())


def _drop_already_held(
    connection: Connection, *, batch: PushBatch, results: list[EventResult | None]
) -> tuple[list[_Candidate], set[int]]:
    """Fill in a verdict for every event central already holds.

    Returns the events still to be checked, and the seqs of the batch's range that
    central already holds (by whichever event).
    """
    events = batch.events
    event_ids = [str(event.event_id) for event in events]
    by_id = {
        row.event_id: row
        for row in connection.execute(
            select(
                ledger_events.c.event_id,
                ledger_events.c.site_id,
                ledger_events.c.seq,
                ledger_events.c.content_digest,
            ).where(_one_of(connection, ledger_events.c.event_id, event_ids))
        )
    }
    seq_holders: dict[int, str] = dict(
        connection.execute(
            select(ledger_events.c.seq, ledger_events.c.event_id).where(
                ledger_events.c.site_id == batch.site_id,
                ledger_events.c.seq.between(events[0].seq, events[-1].seq),
            )
        ).all()
    )

    candidates: list[_Candidate] = []
    for index, (event, event_id) in enumerate(zip(events, event_ids, strict=True)):
        digest = event.content_digest()
        held = by_id.get(event_id)
        if held is not None:
            if held.content_digest == digest:
                results[index] = _verdict(event, EventStatus.DUPLICATE)
            else:
                results[index] = _verdict(
                    event,
                    EventStatus.CONFLICT,
                    f"event {event_id} is already held with different content "
                    f"(site {held.site_id}, seq {held.seq})",
                )
            continue
        holder = seq_holders.get(event.seq)
        if holder is not None:
            results[index] = _verdict(
                event,
                EventStatus.CONFLICT,
                f"seq {event.seq} of site {batch.site_id} is already held by event {holder}",
            )
            continue
        key = (event.location, event.item, event.lot or NO_LOT)
        candidates.append(_Candidate(index, event, event_id, digest, key))
    return candidates, set(seq_holders)


def _drop_unit_mismatches(
    connection: Connection,
    *,
    site_id: str,
    candidates: list[_Candidate],
    results: list[EventResult | None],
) -> list[_Candidate]:
    """Refuse events whose unit differs from the one their balance is kept in.

    A balance is one number; adding 3 ``kg`` to 10 ``pcs`` would give 13 of nothing.
    The first event of a key fixes its unit. Nothing converts units yet, so a mismatch
    is ``invalid`` rather than guessed at.
    """
    if not candidates:
        return []
    keys = {row.key for row in candidates}
    # Filter by item only and match the full key here: a row-value IN over thousands of
    # keys costs more to build and parse than the few extra rows it would leave out.
    units: dict[BalanceKey, str] = {}
    for location, item, lot, uom in connection.execute(
        select(
            stock_balances.c.location,
            stock_balances.c.item,
            stock_balances.c.lot,
            stock_balances.c.uom,
        ).where(
            stock_balances.c.site_id == site_id,
            _one_of(connection, stock_balances.c.item, sorted({key[1] for key in keys})),
        )
    ):
        if (location, item, lot) in keys:
            units[(location, item, lot)] = uom
    kept: list[_Candidate] = []
    for row in candidates:
        unit = units.setdefault(row.key, row.event.uom)
        if unit == row.event.uom:
            kept.append(row)
            continue
        location, item, lot = row.key
        results[row.index] = _verdict(
            row.event,
            EventStatus.INVALID,
            f"{item} (lot {lot or 'none'}) at {location} is counted in {unit}, not {row.event.uom}",
        )
    return kept


def _insert_events(
    connection: Connection, *, site_id: str, rows: Sequence[_Candidate], received_at: datetime
) -> None:
    connection.execute(
        insert(ledger_events),
        [
            {
                "event_id": row.event_id,
                "site_id": site_id,
                "seq": row.event.seq,
                "occurred_at": row.event.occurred_at,
                "received_at": received_at,
                "kind": row.event.kind.value,
                "item": row.event.item,
                "lot": row.event.lot,
                "expiry": row.event.expiry,
                "location": row.event.location,
                "qty": row.event.qty,
                "uom": row.event.uom,
                "unit_cost": row.event.unit_cost,
                "ref": row.event.ref,
                "device_id": row.event.device_id,
                "actor": row.event.actor,
                "content_digest": row.digest,
            }
            for row in rows
        ],
    )


def _add_to_balances(
    connection: Connection, *, site_id: str, rows: Iterable[_Candidate], received_at: datetime
) -> None:
    """Add the inserted quantities, summed per key first so each key is written once."""
    deltas: dict[BalanceKey, Decimal] = {}
    units: dict[BalanceKey, str] = {}
    for row in rows:
        deltas[row.key] = deltas.get(row.key, Decimal(0)) + row.event.qty
        units.setdefault(row.key, row.event.uom)
    upsert = _insert_for(connection, stock_balances)
    statement = upsert.on_conflict_do_update(
        index_elements=[
            stock_balances.c.site_id,
            stock_balances.c.location,
            stock_balances.c.item,
            stock_balances.c.lot,
        ],
        set_={
            "qty": stock_balances.c.qty + upsert.excluded.qty,
            "updated_at": upsert.excluded.updated_at,
        },
    )
    connection.execute(
        statement,
        [
            {
                "site_id": site_id,
                "location": location,
                "item": item,
                "lot": lot,
                "uom": units[(location, item, lot)],
                "qty": delta,
                "updated_at": received_at,
            }
            for (location, item, lot), delta in deltas.items()
        ],
    )


def _advance_watermark(
    connection: Connection,
    *,
    site_id: str,
    watermark: int,
    held_in_batch: set[int],
    batch_last_seq: int,
) -> int:
    """The highest seq held with nothing missing below it.

    Within the batch's range the held set answers. Past its end there may be seqs that
    arrived earlier above a hole this batch has just filled, so those are read in pages
    until the first gap; normally that read finds nothing.
    """
    while watermark + 1 in held_in_batch:
        watermark += 1
    if watermark < batch_last_seq:
        return watermark
    while True:
        page = list(
            connection.execute(
                select(ledger_events.c.seq)
                .where(ledger_events.c.site_id == site_id, ledger_events.c.seq > watermark)
                .order_by(ledger_events.c.seq)
                .limit(_TAIL_PAGE)
            ).scalars()
        )
        for seq in page:
            if seq != watermark + 1:
                return watermark
            watermark = seq
        if len(page) < _TAIL_PAGE:
            return watermark


def _verdict(event: LedgerEvent, status: EventStatus, detail: str | None = None) -> EventResult:
    # model_construct: every field comes from an already validated event, and a full
    # batch makes 5000 of these per push.
    return EventResult.model_construct(
        event_id=event.event_id, seq=event.seq, status=status, detail=detail
    )


def _one_of(connection: Connection, column: Column[str], values: list[str]) -> ColumnElement[bool]:
    """``column IN (values)``, as one array parameter on PostgreSQL.

    A batch looks up to 5000 ids at once; as 5000 separate parameters the statement is
    rebuilt and re-parsed on every push, while ``= ANY(:array)`` stays one cached query.
    """
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(String)))
    return column.in_(values)


def _insert_for(connection: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with this database's ``ON CONFLICT`` clause (same SQL, two dialects)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _log_outcome(*, site_id: str, results: list[EventResult], watermark: int) -> None:
    counts = Counter(result.status for result in results)
    extra = {
        "site": site_id,
        "events": len(results),
        "accepted": counts[EventStatus.ACCEPTED],
        "duplicate": counts[EventStatus.DUPLICATE],
        "conflict": counts[EventStatus.CONFLICT],
        "invalid": counts[EventStatus.INVALID],
        "acked_through_seq": watermark,
    }
    refused = [r for r in results if r.status in (EventStatus.CONFLICT, EventStatus.INVALID)]
    if refused:
        extra["first_refusal"] = f"seq {refused[0].seq}: {refused[0].detail}"
        log.warning("push ingested with refused events", extra=extra)
    else:
        log.info("push ingested", extra=extra)
