"""Reference lists (基础代码): reason codes, payment terms, tax rates, units, label templates.

One table holds every list (``reference_entries``): each entry has a code, names in
Chinese and English, an active flag and the list's own fields (``attrs``, validated by the
list's model in ``central_api.schemas.master`` before they get here). The lists an edge
works with offline (reason codes, units, label templates) go through the change feed to
every site; payment terms and tax rates stay at central. Entries are never deleted
(documents name them): set one inactive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from central_api.core.db import write_transaction
from central_api.errors import NotFoundError
from central_api.models.master import reference_entries
from central_api.services.audit import AuditContext, record
from central_api.services.feed import feed_writer, read_snapshot
from jxc.feed import ChangeOp, FeedEntity, ReferenceData

LISTS = ("reason_codes", "payment_terms", "tax_rates", "units", "label_templates")
EDGE_LISTS = frozenset({"reason_codes", "units", "label_templates"})
"""The lists sites need offline; the others never enter the change feed."""


@dataclass(frozen=True, slots=True)
class Entry:
    list_name: str
    code: str
    name: str
    name_en: str
    attrs: dict[str, Any]
    active: bool
    version: int
    updated_at: datetime


class UnknownEntryError(NotFoundError):
    def __init__(self, list_name: str, code: str) -> None:
        super().__init__(f"{list_name.replace('_', ' ')}: there is no {code!r}")


def put_entry(
    connection: Connection,
    *,
    list_name: str,
    code: str,
    name: str,
    name_en: str,
    attrs: dict[str, Any],
    active: bool,
    audit: AuditContext,
    now: datetime | None = None,
) -> tuple[Entry, bool]:
    """Create or replace an entry; (it, whether it was created)."""
    if list_name not in LISTS:
        raise ValueError(f"no reference list {list_name!r}")
    now = now or datetime.now(UTC)
    data = ReferenceData(
        list=list_name, code=code, name=name, name_en=name_en, attrs=attrs, active=active
    )
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        stored = _read(connection, list_name, code)
        if stored is None or _data(stored) != data:
            version = 0
            if list_name in EDGE_LISTS:
                version = feed.append(
                    entity=FeedEntity.REFERENCE,
                    key=f"{list_name} {code}",
                    op=ChangeOp.UPSERT,
                    data=data.model_dump(mode="json"),
                )
            values = {
                "name": name,
                "name_en": name_en,
                "attrs": _json(attrs),
                "active": active,
                "version": version,
                "updated_at": now,
            }
            if stored is None:
                connection.execute(
                    insert(reference_entries).values(list_name=list_name, code=code, **values)
                )
            else:
                connection.execute(
                    update(reference_entries)
                    .where(
                        reference_entries.c.list_name == list_name,
                        reference_entries.c.code == code,
                    )
                    .values(**values)
                )
        written = _read(connection, list_name, code)
        assert written is not None
        record(
            connection,
            audit,
            action=f"{list_name}.{'create' if stored is None else 'update'}",
            resource=list_name,
            resource_id=code,
            before=None if stored is None else _data(stored).model_dump(mode="json"),
            after=data.model_dump(mode="json"),
            at=now,
        )
        return written, stored is None


def get_entry(connection: Connection, list_name: str, code: str) -> Entry:
    with read_snapshot(connection):
        stored = _read(connection, list_name, code)
    if stored is None:
        raise UnknownEntryError(list_name, code)
    return stored


def list_entries(
    connection: Connection, list_name: str, *, active: bool | None = None
) -> list[Entry]:
    """Every entry of the list, by code: reference lists are short."""
    query = (
        select(reference_entries)
        .where(reference_entries.c.list_name == list_name)
        .order_by(reference_entries.c.code)
    )
    if active is not None:
        query = query.where(reference_entries.c.active == active)
    with read_snapshot(connection):
        return [_row(row) for row in connection.execute(query)]


def _read(connection: Connection, list_name: str, code: str) -> Entry | None:
    row = connection.execute(
        select(reference_entries).where(
            reference_entries.c.list_name == list_name, reference_entries.c.code == code
        )
    ).one_or_none()
    return None if row is None else _row(row)


def _row(row: Any) -> Entry:
    updated = row.updated_at
    return Entry(
        list_name=row.list_name,
        code=row.code,
        name=row.name,
        name_en=row.name_en,
        attrs=json.loads(row.attrs),
        active=row.active,
        version=row.version,
        updated_at=updated.replace(tzinfo=UTC) if updated.tzinfo is None else updated,
    )


def _data(entry: Entry) -> ReferenceData:
    return ReferenceData(
        list=entry.list_name,
        code=entry.code,
        name=entry.name,
        name_en=entry.name_en,
        attrs=entry.attrs,
        active=entry.active,
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
