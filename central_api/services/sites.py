"""Sites (warehouses, stores, docks) and each site's location tree: zone -> aisle -> bin.

A site's id is the one its edge signs events with (``jxc central site add``); the site
master adds what people need (kind, names). A location is a node of its site's tree: a
zone has no parent, an aisle's parent is a zone, a bin's an aisle. Its ``kind`` says what
stock there is for (storage, receiving, quarantine 待检, damaged, in transit), so a
receiving station knows where quarantined goods go.

Locations reach their own site's edge through the change feed (``site_id`` of the
change is the location's site); a deleted one leaves a tombstone. A location that holds
or held stock, or has locations below it, is not deleted: set it inactive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, insert, select, update

from central_api.core.db import write_transaction
from central_api.errors import ConflictError, InvalidError, NotFoundError
from central_api.models.master import locations, sites
from central_api.models.stock import stock_balances
from central_api.services import idempotency
from central_api.services.audit import AuditContext, record
from central_api.services.feed import feed_writer, read_snapshot
from jxc.feed import ChangeOp, FeedEntity, LocationData

SITE_KINDS = ("warehouse", "store", "dock")
LEVELS = ("zone", "aisle", "bin")
LOCATION_KINDS = ("storage", "receiving", "quarantine", "damaged", "in_transit")
PARENT_LEVEL = {"zone": None, "aisle": "zone", "bin": "aisle"}
MAX_LOCATIONS_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    kind: str
    name: str
    name_en: str
    active: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Location:
    site_id: str
    code: str
    parent: str | None
    level: str
    kind: str
    name: str
    active: bool
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LocationFilter:
    parent: str | None = None
    level: str | None = None
    kind: str | None = None
    active: bool | None = None


class UnknownSiteMasterError(NotFoundError):
    def __init__(self, site_id: str) -> None:
        super().__init__(
            f"site {site_id!r} is not in the site master; add it with PUT /api/v1/sites/{site_id}"
        )


class UnknownLocationError(NotFoundError):
    def __init__(self, site_id: str, code: str) -> None:
        super().__init__(f"site {site_id!r} has no location {code!r}")


class LocationExistsError(ConflictError):
    def __init__(self, site_id: str, code: str) -> None:
        super().__init__(f"site {site_id!r} has a location {code!r} already; change it with PUT")


class LocationInUseError(ConflictError):
    pass


# --- sites ----------------------------------------------------------------------------


def put_site(
    connection: Connection,
    *,
    site_id: str,
    kind: str,
    name: str,
    name_en: str,
    active: bool,
    audit: AuditContext,
    now: datetime | None = None,
) -> tuple[Site, bool]:
    """Create or replace a site's master record; (it, whether it was created)."""
    if kind not in SITE_KINDS:
        raise InvalidError(f"kind: must be one of {', '.join(SITE_KINDS)}")
    now = now or datetime.now(UTC)
    with write_transaction(connection):
        stored = _site(connection, site_id)
        values = {"kind": kind, "name": name, "name_en": name_en, "active": active}
        if stored is None:
            connection.execute(insert(sites).values(site_id=site_id, updated_at=now, **values))
        elif _site_state(stored) != {"site_id": site_id, **values}:
            connection.execute(
                update(sites).where(sites.c.site_id == site_id).values(updated_at=now, **values)
            )
        written = _site(connection, site_id)
        assert written is not None
        record(
            connection,
            audit,
            action="site.create" if stored is None else "site.update",
            resource="site",
            resource_id=site_id,
            site_id=site_id,
            before=None if stored is None else _site_state(stored),
            after=_site_state(written),
            at=now,
        )
        return written, stored is None


def get_site(connection: Connection, site_id: str) -> Site:
    with read_snapshot(connection):
        stored = _site(connection, site_id)
    if stored is None:
        raise UnknownSiteMasterError(site_id)
    return stored


def list_sites(connection: Connection, *, visible: frozenset[str] | None) -> list[Site]:
    """Every site the caller may see (``visible`` None: all), by id."""
    query = select(sites).order_by(sites.c.site_id)
    if visible is not None:
        query = query.where(sites.c.site_id.in_(sorted(visible)))
    with read_snapshot(connection):
        return [_site_row(row) for row in connection.execute(query)]


def _site(connection: Connection, site_id: str) -> Site | None:
    row = connection.execute(select(sites).where(sites.c.site_id == site_id)).one_or_none()
    return None if row is None else _site_row(row)


def _site_row(row: Any) -> Site:
    return Site(
        site_id=row.site_id,
        kind=row.kind,
        name=row.name,
        name_en=row.name_en,
        active=row.active,
        updated_at=_utc(row.updated_at),
    )


def _site_state(site: Site) -> dict[str, Any]:
    return {
        "site_id": site.site_id,
        "kind": site.kind,
        "name": site.name,
        "name_en": site.name_en,
        "active": site.active,
    }


# --- locations ------------------------------------------------------------------------


def put_location(
    connection: Connection,
    *,
    site_id: str,
    data: LocationData,
    audit: AuditContext,
    create_only: bool = False,
    claim: idempotency.IdempotencyClaim | None = None,
    now: datetime | None = None,
) -> tuple[Location, bool]:
    """Create or replace one location of ``site_id``; (it, whether it was created).

    With ``create_only`` an existing code is refused (:class:`LocationExistsError`).
    """
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        idempotency.check(connection, claim)
        if _site(connection, site_id) is None:
            raise UnknownSiteMasterError(site_id)
        stored = _location(connection, site_id, data.code)
        if stored is not None and create_only:
            raise LocationExistsError(site_id, data.code)
        _check_tree(connection, site_id, data, stored)
        if stored is None or _as_data(stored) != data:
            version = feed.append(
                entity=FeedEntity.LOCATION,
                key=data.code,
                op=ChangeOp.UPSERT,
                data=data.model_dump(mode="json"),
                site_id=site_id,
            )
            values = {
                "parent_code": data.parent,
                "level": data.level,
                "kind": data.kind,
                "name": data.name,
                "active": data.active,
                "version": version,
                "updated_at": now,
            }
            if stored is None:
                connection.execute(
                    insert(locations).values(site_id=site_id, code=data.code, **values)
                )
            else:
                connection.execute(
                    update(locations)
                    .where(locations.c.site_id == site_id, locations.c.code == data.code)
                    .values(**values)
                )
        written = _location(connection, site_id, data.code)
        assert written is not None
        idempotency.remember(connection, claim, f"{site_id} {data.code}", now=now)
        record(
            connection,
            audit,
            action="location.create" if stored is None else "location.update",
            resource="location",
            resource_id=f"{site_id}/{data.code}",
            site_id=site_id,
            before=None if stored is None else _as_data(stored).model_dump(mode="json"),
            after=data.model_dump(mode="json"),
            at=now,
        )
        return written, stored is None


def delete_location(
    connection: Connection,
    *,
    site_id: str,
    code: str,
    audit: AuditContext,
    now: datetime | None = None,
) -> None:
    """Delete a location that never held stock and has nothing below it."""
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        stored = _location(connection, site_id, code)
        if stored is None:
            raise UnknownLocationError(site_id, code)
        below = connection.execute(
            select(exists().where(locations.c.site_id == site_id, locations.c.parent_code == code))
        ).scalar()
        if below:
            raise LocationInUseError(
                f"location {code!r} of site {site_id!r} has locations below it; delete or "
                "move them first"
            )
        held = connection.execute(
            select(
                exists().where(
                    and_(stock_balances.c.site_id == site_id, stock_balances.c.location == code)
                )
            )
        ).scalar()
        if held:
            raise LocationInUseError(
                f"location {code!r} of site {site_id!r} has held stock, and the ledger names "
                "it; set it inactive instead"
            )
        feed.append(
            entity=FeedEntity.LOCATION, key=code, op=ChangeOp.DELETE, data=None, site_id=site_id
        )
        connection.execute(
            delete(locations).where(locations.c.site_id == site_id, locations.c.code == code)
        )
        record(
            connection,
            audit,
            action="location.delete",
            resource="location",
            resource_id=f"{site_id}/{code}",
            site_id=site_id,
            before=_as_data(stored).model_dump(mode="json"),
            after=None,
            at=now,
        )


def get_location(connection: Connection, site_id: str, code: str) -> Location:
    with read_snapshot(connection):
        stored = _location(connection, site_id, code)
    if stored is None:
        raise UnknownLocationError(site_id, code)
    return stored


def list_locations(
    connection: Connection,
    *,
    site_id: str,
    after: str | None,
    limit: int,
    filters: LocationFilter | None = None,
) -> tuple[list[Location], str | None]:
    """A page of ``site_id``'s locations after code ``after``, in code order."""
    if not 1 <= limit <= MAX_LOCATIONS_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_LOCATIONS_PAGE}, got {limit}")
    query = (
        select(locations)
        .where(locations.c.site_id == site_id)
        .order_by(locations.c.code)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(locations.c.code > after)
    chosen = filters or LocationFilter()
    if chosen.parent is not None:
        query = query.where(locations.c.parent_code == chosen.parent)
    if chosen.level is not None:
        query = query.where(locations.c.level == chosen.level)
    if chosen.kind is not None:
        query = query.where(locations.c.kind == chosen.kind)
    if chosen.active is not None:
        query = query.where(locations.c.active == chosen.active)
    with read_snapshot(connection):
        if _site(connection, site_id) is None:
            raise UnknownSiteMasterError(site_id)
        found = [_location_row(row) for row in connection.execute(query)]
    page = found[:limit]
    return page, (page[-1].code if len(found) > limit else None)


def _check_tree(
    connection: Connection, site_id: str, data: LocationData, stored: Location | None
) -> None:
    wanted_parent_level = PARENT_LEVEL[data.level]
    if wanted_parent_level is None:
        if data.parent is not None:
            raise InvalidError("parent: a zone is the top of the tree and has no parent")
    else:
        if data.parent is None:
            raise InvalidError(f"parent: a {data.level} needs a {wanted_parent_level} as parent")
        parent = _location(connection, site_id, data.parent)
        if parent is None:
            raise InvalidError(f"parent: site {site_id!r} has no location {data.parent!r}")
        if parent.level != wanted_parent_level:
            raise InvalidError(
                f"parent: {data.parent!r} is a {parent.level}; a {data.level}'s parent is a "
                f"{wanted_parent_level}"
            )
    if stored is not None and stored.level != data.level:
        below = connection.execute(
            select(
                exists().where(locations.c.site_id == site_id, locations.c.parent_code == data.code)
            )
        ).scalar()
        if below:
            raise InvalidError(
                f"level: {data.code!r} has locations below it, so it stays a {stored.level}"
            )


def _location(connection: Connection, site_id: str, code: str) -> Location | None:
    row = connection.execute(
        select(locations).where(locations.c.site_id == site_id, locations.c.code == code)
    ).one_or_none()
    return None if row is None else _location_row(row)


def _location_row(row: Any) -> Location:
    return Location(
        site_id=row.site_id,
        code=row.code,
        parent=row.parent_code,
        level=row.level,
        kind=row.kind,
        name=row.name,
        active=row.active,
        version=row.version,
        updated_at=_utc(row.updated_at),
    )


def _as_data(location: Location) -> LocationData:
    return LocationData.model_validate(
        {
            "code": location.code,
            "parent": location.parent,
            "level": location.level,
            "kind": location.kind,
            "name": location.name,
            "active": location.active,
        }
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
