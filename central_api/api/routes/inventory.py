"""Inventory control at central: other receipts and issues, write-offs, transfers, counts.

Every route checks its action, the caller's site scope (another site's document is a 404,
asking for another site a 403), takes ``Idempotency-Key`` on every create and command and
``If-Match`` on commands (412 when stale), answers one document with its ``ETag``, and
leaves an audit entry. Values at cost are absent for a role without the financial group.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import (
    ERRORS,
    After,
    CallerDep,
    IfMatch,
    Limit,
    answer,
    projections,
    replaying,
)
from central_api.api.idempotency import IdempotencyDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.schemas.inventory import (
    AccuracyOut,
    CancelIn,
    CountEntriesIn,
    CountIn,
    CountOut,
    CountPage,
    CountStatusText,
    DecideIn,
    InTransitOut,
    MoveIn,
    ResolveIn,
    SheetOut,
    StockDocStatusText,
    StockDocumentIn,
    StockDocumentOut,
    StockDocumentPage,
    TransferExceptionOut,
    TransferIn,
    TransferOut,
    TransferPage,
    TransferStatusText,
)
from central_api.services import counts, reports, transfers
from central_api.services import inventory as service
from central_api.services.documents import DocCommand
from jxc.contract import Code, SiteId
from jxc.paths import (
    COUNT_ACCURACY,
    OTHER_ISSUES,
    OTHER_RECEIPTS,
    STOCK_COUNTS,
    STOCK_IN_TRANSIT,
    TRANSFER_EXCEPTIONS,
    TRANSFERS,
    WRITE_OFFS,
    below_api_root,
)

DocId = Annotated[Code, Path(description="the document's id, e.g. WO000003")]


# --- other receipts, other issues, write-offs: one frame -----------------------------------


def _stock_document_router(
    path: str, kind: service.StockDocKind, action: str, tag: str, summary: str
) -> APIRouter:
    router = APIRouter(prefix=below_api_root(path), tags=[tag])
    name = kind.value

    def out(found: service.StockDocument, response: Response) -> StockDocumentOut:
        return answer(response, found, StockDocumentOut)

    def read_all(
        *,
        connection: ConnDep,
        principal: PrincipalDep,
        site_id: Annotated[SiteId | None, Query()] = None,
        status: Annotated[StockDocStatusText | None, Query()] = None,
        after: After = None,
        limit: Limit = 100,
    ) -> StockDocumentPage:
        found, next_after = service.list_documents(
            connection,
            kind,
            site_id=site_id,
            status=None if status is None else service.StockDocStatus(status),
            visible=principal.sites,
            after=after,
            limit=limit,
        )
        return StockDocumentPage(
            documents=[StockDocumentOut.model_validate(each) for each in found],
            next_after=next_after,
        )

    def create(
        *,
        body: StockDocumentIn,
        request: Request,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
        claim: IdempotencyDep,
        settings: SettingsDep,
        response: Response,
    ) -> StockDocumentOut:
        new = service.NewStockDocument(
            kind=kind,
            site_id=body.site_id,
            reason_code=body.reason_code,
            note=body.note,
            lines=[
                service.StockLineInput(
                    item_code=line.item_code,
                    qty=line.qty,
                    uom=line.uom,
                    location=line.location,
                    lot=line.lot,
                    expiry=line.expiry,
                )
                for line in body.lines
            ],
        )
        found = replaying(
            response,
            lambda: service.create_document(
                connection,
                new,
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                projections=projections(request),
                approval_value=settings.write_off_approval_value,
                claim=claim,
            ),
            lambda doc_id: service.get_document(connection, kind, doc_id),
        )
        return out(found, response)

    def read_one(
        doc_id: DocId, connection: ConnDep, principal: PrincipalDep, response: Response
    ) -> StockDocumentOut:
        return out(
            service.get_document(connection, kind, doc_id, visible=principal.sites), response
        )

    read_all.__name__ = f"read_{name}s"
    create.__name__ = f"add_{name}"
    create.__doc__ = summary
    read_one.__name__ = f"read_{name}"
    router.get("", dependencies=[Requires(f"{action}.read")], responses=ERRORS)(read_all)
    router.post(
        "",
        dependencies=[Requires(f"{action}.create")],
        responses=ERRORS,
        status_code=status.HTTP_201_CREATED,
    )(create)
    router.get("/{doc_id}", dependencies=[Requires(f"{action}.read")], responses=ERRORS)(read_one)
    if kind is service.StockDocKind.WRITE_OFF:
        for verb, text in (
            ("approve", "A pending write-off approved (not by its creator): booked now."),
            ("reject", "A pending write-off refused: nothing is booked."),
        ):
            router.post(
                f"/{{doc_id}}/{verb}",
                dependencies=[Requires("write_off.approve")],
                responses=ERRORS,
            )(_decide_route(verb, text))
    return router


def _decide_route(verb: str, summary: str) -> Callable[..., Any]:
    def command(
        *, doc_id: DocId, body: DecideIn, request: Request, call: CallerDep
    ) -> StockDocumentOut:
        order = call.command(DocCommand, body.reason, doc_id=doc_id)
        return call.run(
            lambda: service.decide_write_off(
                call.connection, order, verb, projections=projections(request)
            ),
            lambda connection, found_id: service.get_document(
                connection, service.StockDocKind.WRITE_OFF, found_id
            ),
            StockDocumentOut,
        )

    command.__name__ = f"{verb}_write_off"
    command.__doc__ = summary
    return command


other_receipts_router = _stock_document_router(
    OTHER_RECEIPTS,
    service.StockDocKind.OTHER_RECEIPT,
    "other_movement",
    "other receipts",
    "Goods in without a purchase order (其它入库: found, gift, sample), booked at once.",
)
other_issues_router = _stock_document_router(
    OTHER_ISSUES,
    service.StockDocKind.OTHER_ISSUE,
    "other_movement",
    "other issues",
    "Goods out without a sales order (其它出库: internal use), booked at once; never "
    "an expired lot.",
)
write_offs_router = _stock_document_router(
    WRITE_OFFS,
    service.StockDocKind.WRITE_OFF,
    "write_off",
    "write-offs",
    "Goods scrapped (报损) with a reason: booked at once up to the value threshold, "
    "otherwise pending until someone else approves.",
)


# --- transfers ---------------------------------------------------------------------------------

transfers_router = APIRouter(prefix=below_api_root(TRANSFERS), tags=["transfers"])
TransferId = Annotated[Code, Path(description="the transfer's id, e.g. TR000003")]


def _transfer_out(found: transfers.Transfer, response: Response) -> TransferOut:
    return answer(response, found, TransferOut)


@transfers_router.get("", dependencies=[Requires("transfer.read")], responses=ERRORS)
def read_transfers(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId | None, Query(description="either end")] = None,
    status: Annotated[TransferStatusText | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> TransferPage:
    """Transfer orders from or to the caller's sites, by id."""
    found, next_after = transfers.list_transfers(
        connection,
        site_id=site_id,
        status=None if status is None else transfers.TransferStatus(status),
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return TransferPage(
        transfers=[TransferOut.model_validate(each) for each in found], next_after=next_after
    )


@transfers_router.post(
    "",
    dependencies=[Requires("transfer.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_transfer(
    *,
    body: TransferIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> TransferOut:
    """A draft transfer order (调拨单) from one of the caller's sites to another site."""
    found = replaying(
        response,
        lambda: transfers.create_transfer(
            connection,
            from_site=body.from_site,
            to_site=body.to_site,
            note=body.note,
            lines=_transfer_lines(body),
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda found_id: transfers.get_transfer(connection, found_id),
    )
    return _transfer_out(found, response)


def _transfer_lines(body: TransferIn) -> list[transfers.TransferLineInput]:
    return [
        transfers.TransferLineInput(item_code=line.item_code, qty=line.qty, uom=line.uom)
        for line in body.lines
    ]


@transfers_router.put(
    "/{transfer_id}", dependencies=[Requires("transfer.create")], responses=ERRORS
)
def write_transfer(
    *,
    transfer_id: TransferId,
    body: TransferIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
    if_match: IfMatch = None,
) -> TransferOut:
    """Replace a draft transfer's ends, note and lines (the same body as a create). Only
    a draft: once approved it is a 409 (cancel it and make another). Send the ETag you
    read as If-Match (412 when it changed since)."""
    found = replaying(
        response,
        lambda: transfers.update_transfer(
            connection,
            transfer_id=transfer_id,
            from_site=body.from_site,
            to_site=body.to_site,
            note=body.note,
            lines=_transfer_lines(body),
            visible=principal.sites,
            if_match=if_match,
            audit=audit,
            claim=claim,
        ),
        lambda found_id: transfers.get_transfer(connection, found_id),
    )
    return _transfer_out(found, response)


@transfers_router.get("/{transfer_id}", dependencies=[Requires("transfer.read")], responses=ERRORS)
def read_transfer(
    transfer_id: TransferId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> TransferOut:
    return _transfer_out(
        transfers.get_transfer(connection, transfer_id, visible=principal.sites), response
    )


def _transfer_command(verb: str, summary: str, body_type: type[MoveIn] | type[CancelIn]) -> None:
    def command(
        *, transfer_id: TransferId, body: MoveIn, request: Request, call: CallerDep
    ) -> TransferOut:
        picks = [
            transfers.Pick(line_no=each.line_no, location=each.location, lot=each.lot, qty=each.qty)
            for each in getattr(body, "lines", [])
        ]
        order = transfers.MoveCommand(
            command=call.command(DocCommand, getattr(body, "reason", None), doc_id=transfer_id),
            picks=picks,
        )
        return call.run(
            lambda: transfers.move_transfer(
                call.connection, order, verb, projections=projections(request)
            ),
            transfers.get_transfer,
            TransferOut,
        )

    command.__name__ = f"{verb}_transfer"
    command.__annotations__["body"] = body_type  # cancel and approve take a reason only
    command.__doc__ = summary
    transfers_router.post(
        f"/{{transfer_id}}/{verb}",
        dependencies=[Requires(f"transfer.{verb}")],
        responses=ERRORS,
    )(command)


_transfer_command("approve", "A draft transfer approved (not by its creator).", CancelIn)
_transfer_command("cancel", "A draft or approved transfer cancelled; nothing shipped.", CancelIn)
_transfer_command(
    "ship",
    "What leaves the sending site, per line, location and lot: transfer_out events there; "
    "the goods are in transit. Never an expired lot.",
    MoveIn,
)
_transfer_command(
    "receive",
    "What arrived at the receiving site, per line, location and lot: transfer_in events "
    "there; every difference from what left becomes an exception with both quantities.",
    MoveIn,
)


exceptions_router = APIRouter(prefix=below_api_root(TRANSFER_EXCEPTIONS), tags=["transfers"])


@exceptions_router.get("", dependencies=[Requires("transfer.read")], responses=ERRORS)
def read_transfer_exceptions(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    transfer_id: Annotated[Code | None, Query()] = None,
    status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query(description="either end")] = None,
) -> list[TransferExceptionOut]:
    """Differences on arrival (short, over, wrong lot), oldest first, at most 1000."""
    return [
        TransferExceptionOut.model_validate(each)
        for each in transfers.list_exceptions(
            connection,
            transfer_id=transfer_id,
            status=status,
            site_id=site_id,
            visible=principal.sites,
        )
    ]


@exceptions_router.post(
    "/{exception_id}/resolve",
    dependencies=[Requires("transfer_exception.resolve")],
    responses=ERRORS,
)
def resolve_transfer_exception(
    *,
    exception_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: ResolveIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
    lost: Annotated[bool, Query(description="a short arrival: the missing goods are lost")] = False,
) -> TransferExceptionOut:
    """Close an arrival exception with what was found out."""
    found = replaying(
        response,
        lambda: transfers.resolve_exception(
            connection,
            exception_id,
            resolution=body.resolution,
            lost=lost,
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda found_id: transfers.get_exception(
            connection, int(found_id), visible=principal.sites
        ),
    )
    return TransferExceptionOut.model_validate(found)


in_transit_router = APIRouter(prefix=below_api_root(STOCK_IN_TRANSIT), tags=["stock"])


@in_transit_router.get("", dependencies=[Requires("transfer.read")], responses=ERRORS)
def read_in_transit(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId | None, Query(description="either end")] = None,
    item: Annotated[Code | None, Query()] = None,
) -> list[InTransitOut]:
    """Goods in transit (shipped, not yet received) per transfer, line and lot."""
    return [
        InTransitOut.model_validate(each)
        for each in transfers.in_transit(
            connection, site_id=site_id, item_code=item, visible=principal.sites
        )
    ]


# --- stock counts --------------------------------------------------------------------------------

counts_router = APIRouter(prefix=below_api_root(STOCK_COUNTS), tags=["stock counts"])
CountId = Annotated[Code, Path(description="the count session's id, e.g. SC000003")]


def _count_out(found: counts.StockCount, response: Response) -> CountOut:
    return answer(response, found, CountOut)


def _sheet_out(found: counts.StockCount, response: Response) -> SheetOut:
    """The counter's view: no expected or system quantity, no variance."""
    response.headers["ETag"] = f'"{found.version}"'
    return SheetOut.model_validate(
        {
            "count_id": found.count_id,
            "site_id": found.site_id,
            "status": found.status.value,
            "version": found.version,
            "lines": [vars_of_line(line) for line in found.lines],
        }
    )


def vars_of_line(line: counts.CountLine) -> dict[str, Any]:
    return {
        "line_no": line.line_no,
        "location": line.location,
        "item_code": line.item_code,
        "lot": line.lot,
        "uom": line.uom,
        "counted_qty": line.counted_qty,
        "recount": line.recount,
    }


@counts_router.get(
    below_api_root(COUNT_ACCURACY).removeprefix(below_api_root(STOCK_COUNTS)),
    dependencies=[Requires("stock_count.read")],
    responses=ERRORS,
)
def read_count_accuracy(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="snapshot from (UTC if no offset)")] = None,
    until: Annotated[datetime | None, Query(description="snapshot before")] = None,
) -> list[AccuracyOut]:
    """Count accuracy per site over posted sessions (those whose snapshot falls in
    ``since``..``until`` when given): lines counted right / lines counted; for a role with
    the financial group also value-weighted (value of the lines counted right / value
    counted, at each session's snapshot cost)."""
    return [
        AccuracyOut.model_validate(counts.accuracy_row(each))
        for each in counts.accuracy(
            connection,
            site_id=site_id,
            since=reports.checked_moment(since, "since"),
            until=reports.checked_moment(until, "until"),
            visible=principal.sites,
            financial=principal.financial,
        )
    ]


@counts_router.get("", dependencies=[Requires("stock_count.read")], responses=ERRORS)
def read_counts(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId | None, Query()] = None,
    status: Annotated[CountStatusText | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> CountPage:
    """Count sessions with expected quantities and variances (reviewers)."""
    found, next_after = counts.list_counts(
        connection,
        site_id=site_id,
        status=None if status is None else counts.CountStatus(status),
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return CountPage(
        counts=[CountOut.model_validate(each) for each in found], next_after=next_after
    )


@counts_router.post(
    "",
    dependencies=[Requires("stock_count.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_count(
    *,
    body: CountIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> CountOut:
    """Open a count session (盘点): the site's (or the location range's) balances now are
    its snapshot."""
    found = replaying(
        response,
        lambda: counts.open_count(
            connection,
            site_id=body.site_id,
            location_from=body.location_from,
            location_to=body.location_to,
            note=body.note,
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda found_id: counts.get_count(connection, found_id),
    )
    return _count_out(found, response)


@counts_router.get("/{count_id}", dependencies=[Requires("stock_count.read")], responses=ERRORS)
def read_count(
    count_id: CountId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> CountOut:
    return _count_out(counts.get_count(connection, count_id, visible=principal.sites), response)


@counts_router.get(
    "/{count_id}/sheet", dependencies=[Requires("stock_count.count")], responses=ERRORS
)
def read_count_sheet(
    count_id: CountId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> SheetOut:
    """The counter's sheet: where and what to count, never how many are expected."""
    return _sheet_out(counts.get_count(connection, count_id, visible=principal.sites), response)


def _count_route(verb: str, action: str, summary: str, *, blind: bool) -> None:
    def command(
        *,
        count_id: CountId,
        body: CountEntriesIn,
        request: Request,
        call: CallerDep,
        settings: SettingsDep,
    ) -> Any:
        order = counts.CountCommand(
            command=call.command(DocCommand, getattr(body, "reason", None), doc_id=count_id),
            entries=[
                counts.CountEntry(
                    location=each.location, item_code=each.item_code, lot=each.lot, qty=each.qty
                )
                for each in getattr(body, "entries", [])
            ],
            recount_percent=settings.count_recount_percent,
        )
        found = replaying(
            call.response,
            lambda: counts.count_command(
                call.connection, order, verb, projections=projections(request)
            ),
            lambda found_id: counts.get_count(call.connection, found_id),
        )
        return _sheet_out(found, call.response) if blind else _count_out(found, call.response)

    command.__name__ = f"{verb}_stock_count"
    command.__doc__ = summary
    command.__annotations__["body"] = CountEntriesIn if verb == "count" else CancelIn
    command.__annotations__["return"] = SheetOut if blind else CountOut
    counts_router.post(
        f"/{{count_id}}/{'counts' if verb == 'count' else verb}",
        dependencies=[Requires(action)],
        responses=ERRORS,
    )(command)


_count_route(
    "count",
    "stock_count.count",
    "Counted quantities (in the item's base unit) by location, item and lot; answered "
    "with the blind sheet.",
    blind=True,
)
_count_route(
    "submit",
    "stock_count.count",
    "Counting done: lines beyond the recount threshold are marked for a second count, "
    "else the session goes to review. Answered with the blind sheet.",
    blind=True,
)
_count_route(
    "approve",
    "stock_count.approve",
    "Variances approved (not by a counter of the session): adjustments booked, dated at "
    "the snapshot.",
    blind=False,
)
_count_route("cancel", "stock_count.create", "The session dropped; nothing is booked.", blind=False)

routers = [
    other_receipts_router,
    other_issues_router,
    write_offs_router,
    in_transit_router,
    transfers_router,
    exceptions_router,
    counts_router,
]
