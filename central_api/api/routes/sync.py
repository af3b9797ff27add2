"""``/sync``: where edges push their ledgers, learn how far central holds them, and pull
the master-data changes meant for them.

The edge's protocol, and the one router that spans several areas: the push and its
reports are the ledger's (``services/ingest.py``, ``services/ledger.py``), the changes
the feed's (``services/feed.py``), the token the credentials' (``services/auth.py``).
Its paths are the wire contract's (:mod:`jxc.paths`), which the edge sends to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from central_api.api.admission import Admission
from central_api.api.auditing import request_context
from central_api.api.deps import ConnDep, SignerDep, TokenSiteDep, require_site
from central_api.api.json_body import ValidatedJSONRoute
from central_api.api.permissions import PUBLIC, SITE_ONLY
from central_api.errors import WriteBusyError
from central_api.schemas.sync import (
    ChangePage,
    PushAck,
    PushBatch,
    RefusedEventOut,
    SiteToken,
    SiteTokenRequest,
    SyncAckOut,
    change_page,
    push_ack,
)
from central_api.services import counts
from central_api.services.alerts import raise_short_picks
from central_api.services.audit import Actor, ActorKind, AuditContext
from central_api.services.feed import MAX_PAGE, changes_for_site
from central_api.services.ingest import (
    UNDO_BY_ROLLBACK,
    CarefulPathNeeded,
    ingest_batch,
    merge_push,
)
from central_api.services.ledger import list_refused, site_watermark
from central_api.services.monitoring import record_status
from central_api.services.push_group import PushGroup
from central_api.services.valuation import settle_sites, settling_deferred
from jxc.contract import Int64, SiteId, SiteStatusReport
from jxc.feed import CountEntryAck, CountEntryBatch, CountEntryVerdict
from jxc.paths import (
    SYNC_ACK,
    SYNC_CHANGES,
    SYNC_COUNT_ENTRIES,
    SYNC_EVENTS,
    SYNC_PICK_SHORTS,
    SYNC_REFUSED,
    SYNC_STATUS,
    SYNC_TOKEN,
    below_api_root,
)
from jxc.pick_shorts import PickShortAck, PickShortReport

router = APIRouter(tags=["sync"], route_class=ValidatedJSONRoute)

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid site token; get one from POST /sync/token and retry."},
    403: {"description": "The token is for another site; a site acts only for itself."},
}
_DETAIL: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    409: {"description": "The batch would leave a gap in the site's seq; detail names it."},
    413: {"description": "The body is larger than a push may be; send fewer events."},
    422: {"description": "The batch breaks the wire contract; message names each field."},
    503: {"description": "Central is busy or the database unavailable; retry after Retry-After."},
}


@router.post(
    below_api_root(SYNC_TOKEN),
    dependencies=[PUBLIC],
    responses={401: {"description": "Unknown site, wrong secret, or revoked credential."}},
)
def issue_token(request: SiteTokenRequest, connection: ConnDep, signer: SignerDep) -> SiteToken:
    """Trade a site's secret for a short-lived token for the other sync endpoints."""
    token = signer.issue(connection, request.site_id, request.secret)
    return SiteToken(site_id=request.site_id, access_token=token, expires_in=signer.ttl_s)


@router.post(
    below_api_root(SYNC_EVENTS),
    responses=_DETAIL,
    dependencies=[SITE_ONLY],
    response_model=PushAck,
)
async def push_events(batch: PushBatch, token_site: TokenSiteDep, request: Request) -> Response:
    """Merge a contiguous run of one site's ledger; replays change nothing.

    Every event gets a verdict (accepted, duplicate, conflict, invalid). Every seq up to
    ``acked_through_seq`` is settled: held, or refused and recorded (see ``/sync/refused``).
    The edge marks the batch's accepted and duplicate events synced and parks the refused
    ones as dead letters. Each push is one entry in the audit log. A push that cannot
    have the database's write lock within ``JXC_CENTRAL_WRITE_WAIT_S``, or finds
    ``JXC_CENTRAL_MAX_PUSHES_IN_FLIGHT`` pushes in flight for as long, is answered 503
    with ``Retry-After``, nothing changed.
    """
    require_site(token_site, batch.site_id)
    audit = request_context(request, Actor(ActorKind.SITE, token_site))
    received_at = datetime.now(UTC)
    state = request.app.state
    admission: Admission = state.push_admission
    admitted = False
    try:
        # On the event loop, before the trip to a worker thread: a push that waits here
        # holds no thread and no connection, and waits at most the write lock's bound.
        async with admission.admitted():
            admitted = True
            answer, settle = await run_in_threadpool(_push, state, batch, audit, received_at)
    except WriteBusyError:
        state.metrics.busy_pushes.labels(at="write_lock" if admitted else "admission").inc()
        raise
    # Valuation's settling the push queued (a late event's long tail, a transfer's cost
    # for another site) runs once the answer is sent: docs/valuation.md, "A long tail".
    background = BackgroundTask(settle_sites, state.engine, settle) if settle else None
    return Response(answer, media_type="application/json", background=background)


def _push(
    state: Any, batch: PushBatch, audit: AuditContext, received_at: datetime
) -> tuple[bytes, list[str]]:
    """The whole push in one trip to a worker thread: connection, ingest, commit, answer.

    The route is ``async`` and hands everything that touches the database or grows with
    the batch to this one function, where a ``def`` route with its dependencies took
    four or more trips through the thread pool (``docs/performance.md``). The answer is
    serialized here too, so 5,000 results never hold the event loop. On SQLite, pushes
    that wait together are committed together (:mod:`central_api.services.push_group`).
    With the sites whose valuation is to be settled once the answer is sent.
    """
    with settling_deferred() as settle:
        answer = _merge(state, batch, audit, received_at)
    return answer, settle


def _merge(state: Any, batch: PushBatch, audit: AuditContext, received_at: datetime) -> bytes:
    group: PushGroup | None = state.push_group
    if group is not None:
        merge = partial(
            merge_push,
            batch=batch,
            received_at=received_at,
            projections=state.projections,
            audit=audit,
        )
        try:
            # No savepoint of the push's own: the group's transaction (a push alone) or
            # the group's savepoint (a push among others) undoes a missed common path.
            merged = group.run(partial(merge, undo=UNDO_BY_ROLLBACK), events=len(batch.events))
        except CarefulPathNeeded as missed:  # rolled back, nothing stored: merge carefully
            merged = group.run(partial(merge, careful_because=missed.why), events=len(batch.events))
        outcome = merged.committed()
    else:
        engine: Engine = state.engine
        with engine.connect() as connection:
            outcome = ingest_batch(
                connection=connection,
                batch=batch,
                received_at=received_at,
                projections=state.projections,
                audit=audit,
            )
    state.metrics.observe_push(outcome)
    return push_ack(outcome).model_dump_json().encode()


@router.post(
    below_api_root(SYNC_STATUS),
    dependencies=[SITE_ONLY],
    status_code=204,
    responses={
        **_AUTH,
        422: {"description": "The report breaks the wire contract; message names each field."},
    },
)
def report_status(
    report: SiteStatusReport, connection: ConnDep, token_site: TokenSiteDep
) -> Response:
    """Keep the site's latest report of its outbox depth and device states (an older
    report arriving after a newer one is ignored), for the operations alerts.

    A heartbeat, not a change of the business's data: it is not written to the audit
    log (each site sends one a minute); the alerts it leads to are."""
    require_site(token_site, report.site_id)
    record_status(connection, report, received_at=datetime.now(UTC))
    return Response(status_code=204)


@router.get(
    below_api_root(SYNC_ACK),
    dependencies=[SITE_ONLY],
    responses={
        **_AUTH,
        404: {"description": "Central has never received an event from this site."},
    },
)
def read_ack(
    site_id: Annotated[SiteId, Query()], connection: ConnDep, token_site: TokenSiteDep
) -> SyncAckOut:
    """The site's push watermark, for an edge restored from a backup to resume from."""
    require_site(token_site, site_id)
    acked = site_watermark(connection=connection, site_id=site_id)
    return SyncAckOut(site_id=site_id, acked_through_seq=acked)


@router.get(
    below_api_root(SYNC_REFUSED),
    dependencies=[SITE_ONLY],
    responses={
        **_AUTH,
        404: {"description": "Central has never received an event from this site."},
    },
)
def read_refused(
    site_id: Annotated[SiteId, Query()],
    connection: ConnDep,
    token_site: TokenSiteDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[RefusedEventOut]:
    """The site's events central refused (conflict or invalid), oldest seq first.

    Each one's seq is settled, so the events after it went on; the edge holds it as a dead
    letter until someone fixes the cause and runs ``jxc edge outbox requeue``.
    """
    require_site(token_site, site_id)
    refused = list_refused(connection=connection, site_id=site_id, limit=limit)
    return [RefusedEventOut.model_validate(event) for event in refused]


@router.get(
    below_api_root(SYNC_CHANGES),
    dependencies=[SITE_ONLY],
    responses={
        **_AUTH,
        409: {"description": "The cursor is past the end of central's feed; detail says why."},
        422: {"description": "A query parameter is invalid; message names it."},
    },
)
def read_changes(
    connection: ConnDep,
    token_site: TokenSiteDep,
    site_id: Annotated[SiteId, Query()],
    cursor: Annotated[Int64, Query(description="next_cursor of the last page applied")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
) -> ChangePage:
    """The site's master-data changes after ``cursor``, oldest first.

    Store the page's changes and its ``next_cursor`` in one transaction, then ask again
    while ``has_more``. A change carries the entity's full state (or a tombstone), so
    applying a page twice is harmless.
    """
    require_site(token_site, site_id)
    page = changes_for_site(connection=connection, site_id=site_id, cursor=cursor, limit=limit)
    return change_page(page)


@router.post(
    below_api_root(SYNC_PICK_SHORTS),
    dependencies=[SITE_ONLY],
    responses={**_AUTH, 422: {"description": "The report breaks the wire contract."}},
)
def report_short_picks(
    report: PickShortReport, connection: ConnDep, token_site: TokenSiteDep
) -> PickShortAck:
    """Order lines the site's pickers ended short: each becomes a ``short_pick`` alert in
    the inbox and on the order's page, once per ``short_id`` (a resend is answered the
    same way and raises nothing)."""
    require_site(token_site, report.site_id)
    held = raise_short_picks(connection, report.site_id, report.shorts, at=datetime.now(UTC))
    return PickShortAck(raised=held.raised, known=held.known, dropped=held.dropped)


@router.post(
    below_api_root(SYNC_COUNT_ENTRIES),
    dependencies=[SITE_ONLY],
    responses={
        **_AUTH,
        422: {"description": "The batch breaks the wire contract; message names each field."},
    },
)
def push_count_entries(
    batch: CountEntryBatch, connection: ConnDep, token_site: TokenSiteDep, request: Request
) -> CountEntryAck:
    """Take the stock count entries the site's counters made at its edge.

    Entries are not movements, so they do not ride the event stream. Each ``entry_id`` is
    taken once; a replay is answered as the first time. Each entry is ``taken`` (its line
    counted, by the edge's operator, against the edge's own balance) or ``refused`` with
    the reason (the session ended, a location outside its range...); both are settled.
    One audit entry (``stock_count.count``, attributed to the site) per upload.
    """
    require_site(token_site, batch.site_id)
    audit = request_context(request, Actor(ActorKind.SITE, token_site))
    settled = counts.enter_from_site(connection, batch, audit=audit)
    return CountEntryAck(
        site_id=batch.site_id,
        results=[
            CountEntryVerdict(entry_id=each.entry_id, verdict="taken")
            if each.refused is None
            else CountEntryVerdict(entry_id=each.entry_id, verdict="refused", reason=each.refused)
            for each in settled
        ],
    )
