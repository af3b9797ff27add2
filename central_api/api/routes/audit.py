"""``/api/v1/audit``: the audit log for auditors (``audit.read``), as pages or one CSV.

A user limited to some sites sees only the entries about those sites (``site_id``);
central-wide entries (item master changes, users) are for unscoped auditors. A reader
without the financial field group gets every entry with the financial keys of
``before`` and ``after`` removed, in the JSON and in the CSV alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from central_api.api.deps import ConnDep, EngineDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal
from central_api.schemas.audit import AuditEntryOut, AuditPageOut
from central_api.services.audit import (
    MAX_AUDIT_PAGE,
    AuditEntry,
    AuditFilter,
    canonical_json,
    iter_entries,
    list_entries,
    without_financial,
)
from jxc.paths import AUDIT, AUDIT_CSV, below_api_root

router = APIRouter(tags=["audit"])

AuditReader = Annotated[Principal, Requires("audit.read")]


class AuditQuery(BaseModel):
    """The filters both routes take; every one left out matches everything."""

    model_config = ConfigDict(extra="forbid")

    actor_kind: str | None = Field(None, max_length=16, description="user, site, system, anonymous")
    actor_id: str | None = Field(None, max_length=64, description="user name, site id or command")
    action: str | None = Field(None, max_length=64, description="item.update, sync.push, ...")
    resource: str | None = Field(None, max_length=64, description="item, sync_batch, ...")
    resource_id: str | None = Field(None, max_length=256, description="item code, batch range")
    site_id: str | None = Field(None, max_length=32, description="the site the entries concern")
    since: datetime | None = Field(None, description="from this time on (UTC if no offset)")
    until: datetime | None = Field(None, description="before this time (UTC if no offset)")

    def chosen(self, principal: Principal) -> AuditFilter:
        """The filter for ``principal``: what was asked, within the sites it may see."""
        return AuditFilter(
            actor_kind=self.actor_kind,
            actor_id=self.actor_id,
            action=self.action,
            resource=self.resource,
            resource_id=self.resource_id,
            site_id=self.site_id,
            since=_aware(self.since),
            until=_aware(self.until),
            sites=principal.sites,
        )


class AuditPageQuery(AuditQuery):
    after: int | None = Field(
        None, ge=0, le=2**63 - 1, description="next_after of the previous page"
    )
    limit: int = Field(100, ge=1, le=MAX_AUDIT_PAGE)


def _aware(moment: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC, the log's own zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get(below_api_root(AUDIT))
def read_audit(
    principal: AuditReader,
    connection: ConnDep,
    query: Annotated[AuditPageQuery, Query()],
) -> AuditPageOut:
    """Entries matching every filter given, oldest first, a page at a time."""
    page = list_entries(
        connection=connection,
        chosen=query.chosen(principal),
        after=query.after,
        limit=query.limit,
    )
    return AuditPageOut(
        entries=[_out(_as_seen(entry, principal)) for entry in page.entries],
        next_after=page.next_after,
    )


_CSV_COLUMNS = (
    "seq",
    "at",
    "actor_kind",
    "actor_id",
    "site_id",
    "action",
    "resource",
    "resource_id",
    "before",
    "after",
    "request_id",
    "source",
    "prev_hash",
    "hash",
)


@router.get(
    below_api_root(AUDIT_CSV),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one row per entry"}},
)
def export_audit(
    principal: AuditReader,
    engine: EngineDep,
    query: Annotated[AuditQuery, Query()],
) -> StreamingResponse:
    """Every entry matching the filters as CSV (UTF-8), oldest first; before and after as
    JSON text. Streamed a page at a time, so a long log costs no memory at central."""
    chosen = query.chosen(principal)

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(_CSV_COLUMNS)
        # Its own connection: the request's is returned to the pool before the body is sent.
        with engine.connect() as connection:
            for entry in iter_entries(connection=connection, chosen=chosen):
                writer.writerow(_csv_row(_as_seen(entry, principal)))
                if buffer.tell() > 64_000:
                    yield _drain(buffer)
        yield _drain(buffer)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


def _as_seen(entry: AuditEntry, principal: Principal) -> AuditEntry:
    return entry if principal.financial else without_financial(entry)


def _out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut.model_validate(entry, from_attributes=True)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_row(entry: AuditEntry) -> list[str]:
    values: dict[str, Any] = {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "before": "" if entry.before is None else canonical_json(entry.before),
        "after": "" if entry.after is None else canonical_json(entry.after),
    }
    return [
        _cell(values[column] if column in values else getattr(entry, column))
        for column in _CSV_COLUMNS
    ]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a value that starts like a formula (an item
    named ``=HYPERLINK(...)``) gets a leading apostrophe, so opening the export runs nothing."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text
