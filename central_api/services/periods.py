"""Period close (月结): months finance has signed off, and what happens to what comes late.

DOMAIN.md: "after closing a period, no event may be dated inside it without a role that
allows it; a late edge event for a closed period becomes an exception". So:

* **A lock date.** Closed months form a prefix of time (only the month after the last
  closed one may be closed, only the last closed one reopened), so "closed through" is one
  instant: the start of the month after the last closed one. A month may be closed only
  once it has ended; closing is installation-wide (the value snapshot covers every site),
  so a user limited to some sites may not close.
* **Central documents are refused** (409) when dated before the lock date, unless the
  booking user holds ``period.post_closed``: :func:`refuse_closed`, called by
  ``central_events.book`` for a booking with its own date (a count's adjustments dated at
  its snapshot; everything else is dated now, which is never closed).
* **Edge facts are never refused.** An edge event dated before the lock date that reaches
  central after the close is stored, balanced and valued like any other (it happened);
  the :func:`project` projection raises one ``closed_period`` exception per push into the
  alerts inbox, naming the site, the seqs and the months, for finance to resolve (reopen
  and redo the month's figures, or accept the difference).
* **The signed-off figures stay.** Closing stores each site's stock value at the month's
  end as valuation saw it then (``period_close_values``); a late event moves valuation but
  not the snapshot, so the difference is visible (``GET /periods`` shows both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Connection, func, insert, select, update

from central_api.core import driver
from central_api.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from central_api.models.periods import period_close_values, period_closes
from central_api.models.valuation import valuation_entries
from central_api.services.audit import AuditContext
from central_api.services.documents import check_version, document_write, utc
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.projections import AcceptedEvents

NAME: Final = "periods"
SOURCE: Final = "period"
KIND: Final = "closed_period"
CLOSED: Final = "closed"
REOPENED: Final = "reopened"
# Years 1900-2199: a month of books lies in a business's lifetime, and the bound keeps every
# period's start and its next month's start inside what a datetime can hold (year 0 cannot
# be one; 9999-12 has no next month), so a path like 0000-01 is a 422, not a 500.
PERIOD_PATTERN: Final = r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])$"
_PERIOD = re.compile(PERIOD_PATTERN)


@dataclass(frozen=True, slots=True)
class SiteValue:
    """A site's stock value at the month's end when it closed; ``value_now`` (read on one
    month only) what valuation says now, so a late event's effect shows."""

    site_id: str
    value: Decimal
    items: int
    value_now: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Period:
    """One month ever closed; ``values`` only for a reader with the financial group."""

    period: str
    status: str
    closed_by: str
    closed_at: datetime
    reopened_by: str | None
    reopened_at: datetime | None
    reason: str | None
    version: int
    values: list[SiteValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Periods:
    closed_through: str | None
    """The last closed month (``YYYY-MM``), or None: nothing is closed."""
    next_to_close: str
    """The month a close would close now (the one after the last closed, else last month)."""
    periods: list[Period]


def check_period(period: str) -> str:
    if not _PERIOD.match(period):
        raise InvalidError(f"period: {period!r} is not a month written YYYY-MM (years 1900-2199)")
    return period


def start_of(period: str) -> datetime:
    """The first instant of the month ``YYYY-MM`` (UTC)."""
    year, month = (int(part) for part in check_period(period).split("-"))
    return datetime(year, month, 1, tzinfo=UTC)


def next_period(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_period(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"


def period_of(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def last_closed(connection: Connection) -> str | None:
    """The last closed month, or None (months are closed in order, so the latest)."""
    # At the driver (central_api.core.driver): every push asks.
    ((found,),) = driver.rows(connection, driver.prepared(_LAST_CLOSED, connection.dialect), {})
    return None if found is None else str(found)


# Built once: every push asks (periods.project), and building it cost more than running it
# (docs/performance.md, "Cost per request: pushes and item creates").
_LAST_CLOSED = select(func.max(period_closes.c.period)).where(period_closes.c.status == CLOSED)


def closed_through(connection: Connection) -> datetime | None:
    """The lock date: events dated before it fall in a closed month (None: none closed)."""
    last = last_closed(connection)
    return None if last is None else start_of(next_period(last))


def refuse_closed(connection: Connection, occurred_at: datetime, *, actor: str) -> None:
    """Refuse (409) a central booking dated inside a closed month unless ``actor`` may."""
    lock = closed_through(connection)
    if lock is None or occurred_at.astimezone(UTC) >= lock:
        return
    from central_api.services.people import user_may  # noqa: PLC0415 - people imports more

    if not user_may(connection, actor, "period.post_closed"):
        raise ConflictError(
            f"the booking is dated {occurred_at.astimezone(UTC):%Y-%m-%d}, inside the closed "
            f"period {period_of(occurred_at)} (closed through {previous_period(period_of(lock))});"
            " a user with period.post_closed may book it, or the month may be reopened"
        )


def _values(connection: Connection, period: str) -> dict[str, list[SiteValue]]:
    query = select(period_close_values).order_by(period_close_values.c.site_id)
    if period:
        query = query.where(period_close_values.c.period == period)
    found: dict[str, list[SiteValue]] = {}
    for row in connection.execute(query):
        found.setdefault(row.period, []).append(SiteValue(row.site_id, row.value, row.items))
    return found


def _period(row: Any, values: list[SiteValue]) -> Period:
    return Period(
        period=row.period,
        status=row.status,
        closed_by=row.closed_by,
        closed_at=utc(row.closed_at) or row.closed_at,
        reopened_by=row.reopened_by,
        reopened_at=utc(row.reopened_at),
        reason=row.reason,
        version=row.version,
        values=values,
    )


def list_periods(
    connection: Connection, *, financial: bool, visible: frozenset[str] | None, now: datetime
) -> Periods:
    """Every month ever closed, newest first; site values of the reader's sites only."""
    values = _values(connection, "") if financial else {}
    rows = connection.execute(select(period_closes).order_by(period_closes.c.period.desc())).all()
    last = last_closed(connection)
    return Periods(
        closed_through=last,
        next_to_close=next_period(last) if last else previous_period(period_of(now)),
        periods=[
            _period(
                row,
                [
                    value
                    for value in values.get(row.period, [])
                    if visible is None or value.site_id in visible
                ],
            )
            for row in rows
        ],
    )


def get_period(
    connection: Connection, period: str, *, financial: bool, visible: frozenset[str] | None
) -> Period:
    row = connection.execute(
        select(period_closes).where(period_closes.c.period == check_period(period))
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"period {period} was never closed")
    values: list[SiteValue] = []
    if financial:
        _settled(connection)
        closed = {value.site_id: value for value in _values(connection, period).get(period, [])}
        now = values_at_end(connection, period)
        values = [
            SiteValue(
                site,
                closed[site].value if site in closed else Decimal(0),
                closed[site].items if site in closed else 0,
                now.get(site, (Decimal(0), 0))[0],
            )
            for site in sorted(set(closed) | set(now))
            if visible is None or site in visible
        ]
    return _period(row, values)


def _settled(connection: Connection) -> None:
    """Valuation's pending re-valuations settled before its values are read
    (``docs/valuation.md``, "A long tail"); imported here, as valuation imports ingest,
    which imports this module."""
    from central_api.services.valuation import settle_for_reading  # noqa: PLC0415

    settle_for_reading(connection)


def values_at_end(connection: Connection, period: str) -> dict[str, tuple[Decimal, int]]:
    """Each site's stock value at the month's end as valuation says now, and how many items
    it held: the running value after the last movement of each (site, item) dated before
    the next month began."""
    entries = valuation_entries.c
    ranked = (
        select(
            entries.site_id,
            entries.qty_after,
            entries.value_after,
            func.row_number()
            .over(
                partition_by=(entries.site_id, entries.item),
                order_by=(entries.occurred_at.desc(), entries.event_id.desc()),
            )
            .label("rank"),
        )
        .where(entries.occurred_at < start_of(next_period(period)))
        .subquery()
    )
    totals: dict[str, tuple[Decimal, int]] = {}
    for row in connection.execute(select(ranked).where(ranked.c.rank == 1)):
        value, count = totals.get(row.site_id, (Decimal(0), 0))
        totals[row.site_id] = (value + row.value_after, count + (row.qty_after != 0))
    return totals


def _snapshot(connection: Connection, period: str, now: datetime) -> None:
    totals = values_at_end(connection, period)
    connection.execute(period_close_values.delete().where(period_close_values.c.period == period))
    if totals:
        connection.execute(
            insert(period_close_values),
            [
                {"period": period, "site_id": site, "value": value, "items": count, "taken_at": now}
                for site, (value, count) in sorted(totals.items())
            ],
        )


def close_period(
    connection: Connection,
    period: str,
    *,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> str:
    """Close ``period``: it must have ended and follow the last closed month."""
    check_period(period)
    if visible is not None:
        raise ForbiddenError(
            "closing a month covers every site; your roles are limited to some sites"
        )
    _settled(connection)  # the values it keeps: none stale
    with document_write(connection, action="period.close", audit=audit, claim=claim) as written:
        now = written.now
        if start_of(next_period(period)) > now:
            raise ConflictError(f"period {period} has not ended yet; a month closes after it ends")
        last = last_closed(connection)
        if last is not None and period != next_period(last):
            wanted = next_period(last)
            raise ConflictError(
                f"period {period} cannot be closed: months close in order and the next one "
                f"to close is {wanted}" + (" (reopen later months first)" if period <= last else "")
            )
        row = connection.execute(
            select(period_closes).where(period_closes.c.period == period).with_for_update()
        ).one_or_none()
        values = {
            "status": CLOSED,
            "closed_by": actor[:100],
            "closed_at": now,
            "reopened_by": None,
            "reopened_at": None,
            "reason": None,
        }
        if row is None:
            connection.execute(insert(period_closes).values(period=period, version=1, **values))
        else:
            connection.execute(
                update(period_closes)
                .where(period_closes.c.period == period)
                .values(version=row.version + 1, **values)
            )
        _snapshot(connection, period, now)
        written.doc_id = period
        written.before = None if row is None else {"status": row.status}
        written.after = {"status": CLOSED}
    return period


def reopen_period(
    connection: Connection,
    period: str,
    *,
    reason: str,
    actor: str,
    if_match: str | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> str:
    """Reopen the last closed month, saying why (the snapshot is kept until it closes again)."""
    check_period(period)
    if not reason.strip():
        raise InvalidError("reason: say why the month is reopened")
    with document_write(connection, action="period.reopen", audit=audit, claim=claim) as written:
        row = connection.execute(
            select(period_closes).where(period_closes.c.period == period).with_for_update()
        ).one_or_none()
        if row is None or row.status != CLOSED:
            raise ConflictError(f"period {period} is not closed")
        check_version("period", period, row.version, if_match)
        last = last_closed(connection)
        if last != period:
            raise ConflictError(
                f"period {period} cannot be reopened while {last} is closed: reopen {last} first"
            )
        connection.execute(
            update(period_closes)
            .where(period_closes.c.period == period)
            .values(
                status=REOPENED,
                reopened_by=actor[:100],
                reopened_at=written.now,
                reason=reason.strip()[:1000],
                version=row.version + 1,
            )
        )
        written.doc_id = period
        written.before, written.after = {"status": CLOSED}, {"status": REOPENED, "reason": reason}
    return period


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """One ``closed_period`` exception per push that brings edge events dated inside a
    closed month (central's own bookings were checked before they existed)."""
    if accepted.central:
        return
    lock = closed_through(connection)
    if lock is None:
        return
    late = [event for event in accepted.events if event.occurred_at.astimezone(UTC) < lock]
    if not late:
        return
    from central_api.services import alerts  # noqa: PLC0415 - alerts imports this module's peers

    months = sorted({period_of(event.occurred_at) for event in late})
    first, last = late[0].seq, late[-1].seq
    items = sorted({event.item for event in late})
    alerts.raise_exceptions(
        connection,
        [
            {
                "kind": KIND,
                "source": SOURCE,
                "source_id": f"{accepted.site_id}/{first}-{last}"[:64],
                "site_id": accepted.site_id,
                "item_code": items[0] if len(items) == 1 else "",
                "qty": Decimal(len(late)),
                "detail": (
                    f"{len(late)} event(s) of {accepted.site_id} (seq {first}–{last}) dated in "
                    f"the closed period {', '.join(months)} arrived on "
                    f"{accepted.received_at.astimezone(UTC):%Y-%m-%d}: stored and valued; the "
                    f"closing values of {months[0]} no longer match"
                )[:1000],
                "since_at": min(event.occurred_at for event in late),
            }
        ],
        accepted.received_at,
    )
