"""The item category tree and each category's coding rule (编码规则).

A category may say how its items' codes are made: ``code_prefix`` plus the next number
of that prefix's sequence, zero-padded to ``code_digits`` (``DRINK`` + 6 digits makes
``DRINK000001``), and/or ``code_pattern``, a mask a hand-given code must match in full:
``#`` a digit, ``@`` a letter, ``*`` a letter or digit, ``?`` any character, anything else
itself (``DR-####`` takes ``DR-0042``). A mask rather than a regular expression: it is
what a person setting up codes writes, and it can never take exponential time to check.
Sites receive each category's place in the tree and its own expiry alert bands through
the change feed (``category``, :func:`publish`; never its names or coding rule), so an
edge judges a lot's expiry by its item's category offline, as central's alerts do. Writes
take the feed's lock first, which also orders them with item writes (a category cannot
vanish under an item being saved, and two parent changes cannot make a cycle together).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update

from central_api.core.db import write_transaction
from central_api.errors import ConflictError, InvalidError, NotFoundError
from central_api.models.items import items
from central_api.models.master import categories
from central_api.models.replenishment import expiry_alert_days
from central_api.services.audit import AuditContext, record
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from jxc.feed import CategoryData, ChangeOp, FeedEntity

PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}$"
MAX_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    parent: str | None
    name: str
    name_en: str
    code_prefix: str | None
    code_digits: int
    code_pattern: str | None
    updated_at: datetime


class UnknownCategoryError(NotFoundError):
    def __init__(self, code: str) -> None:
        super().__init__(f"category {code!r} does not exist")


class CategoryInUseError(ConflictError):
    """A category still used; ``by`` says by what (``items`` or ``categories``), so a page
    can say it in the user's language."""

    def __init__(self, message: str, *, by: str = "items") -> None:
        super().__init__(message)
        self.by = by


def put_category(
    connection: Connection,
    *,
    code: str,
    parent: str | None,
    name: str,
    name_en: str,
    code_prefix: str | None,
    code_digits: int,
    code_pattern: str | None,
    audit: AuditContext,
    now: datetime | None = None,
) -> tuple[Category, bool]:
    """Create or replace a category; (it, whether it was created)."""
    if code_prefix is not None and not re.fullmatch(PREFIX_PATTERN, code_prefix):
        raise InvalidError(
            "code_prefix: 1-16 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
        )
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as writer:
        stored = _read(connection, code)
        if parent is not None:
            _check_parent(connection, code, parent)
        values: dict[str, Any] = {
            "parent_code": parent,
            "name": name,
            "name_en": name_en,
            "code_prefix": code_prefix,
            "code_digits": code_digits,
            "code_pattern": code_pattern,
            "updated_at": now,
        }
        if stored is None:
            connection.execute(insert(categories).values(code=code, **values))
        else:
            connection.execute(update(categories).where(categories.c.code == code).values(**values))
        written = _read(connection, code)
        assert written is not None
        publish(writer, connection, code)
        record(
            connection,
            audit,
            action="category.create" if stored is None else "category.update",
            resource="category",
            resource_id=code,
            before=None if stored is None else _state(stored),
            after=_state(written),
            at=now,
        )
        return written, stored is None


def delete_category(
    connection: Connection, *, code: str, audit: AuditContext, now: datetime | None = None
) -> None:
    """Delete a category no item and no other category refers to."""
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as writer:
        stored = _read(connection, code)
        if stored is None:
            raise UnknownCategoryError(code)
        if connection.execute(select(exists().where(items.c.category_code == code))).scalar():
            raise CategoryInUseError(
                f"category {code!r} has items; move them to another category first"
            )
        if connection.execute(select(exists().where(categories.c.parent_code == code))).scalar():
            raise CategoryInUseError(
                f"category {code!r} has categories below it; move or delete them first",
                by="categories",
            )
        connection.execute(delete(categories).where(categories.c.code == code))
        publish(writer, connection, code)
        record(
            connection,
            audit,
            action="category.delete",
            resource="category",
            resource_id=code,
            before=_state(stored),
            after=None,
            at=now,
        )


def publish(writer: FeedWriter, connection: Connection, code: str) -> None:
    """Category ``code`` as sites hold it (its parent and its own expiry bands, read as
    they are now in the writer's transaction), or its tombstone once it is gone. Every
    site gets it: a category is not a site's."""
    parent = connection.execute(
        select(categories.c.parent_code).where(categories.c.code == code)
    ).one_or_none()
    if parent is None:
        writer.append(entity=FeedEntity.CATEGORY, key=code, op=ChangeOp.DELETE, data=None)
        return
    days = connection.execute(
        select(expiry_alert_days.c.days).where(expiry_alert_days.c.category_code == code)
    ).scalar_one_or_none()
    data = CategoryData(
        code=code,
        parent=parent.parent_code,
        expiry_days=None if days is None else [int(day) for day in str(days).split(",")],
    )
    writer.append(
        entity=FeedEntity.CATEGORY, key=code, op=ChangeOp.UPSERT, data=data.model_dump(mode="json")
    )


_MASK = {"#": "[0-9]", "@": "[A-Za-z]", "*": "[A-Za-z0-9]", "?": "."}


def mask_matches(mask: str, code: str) -> bool:
    """Whether ``code`` matches coding mask ``mask`` in full (see the module docstring)."""
    pattern = "".join(_MASK.get(char, re.escape(char)) for char in mask)
    return re.fullmatch(pattern, code, flags=re.DOTALL) is not None


def get_category(connection: Connection, code: str) -> Category:
    with read_snapshot(connection):
        stored = _read(connection, code)
    if stored is None:
        raise UnknownCategoryError(code)
    return stored


def list_categories(connection: Connection, *, parent: str | None = None) -> list[Category]:
    """Every category (or those right below ``parent``), by code: the tree is small."""
    query = select(categories).order_by(categories.c.code)
    if parent is not None:
        query = query.where(categories.c.parent_code == parent)
    with read_snapshot(connection):
        return [_row(row) for row in connection.execute(query)]


def _check_parent(connection: Connection, code: str, parent: str) -> None:
    """The parent exists and the category is not (and would not become) its own ancestor."""
    parents: dict[str, str | None] = {
        row.code: row.parent_code
        for row in connection.execute(select(categories.c.code, categories.c.parent_code))
    }
    if parent not in parents:
        raise InvalidError(f"parent: category {parent!r} does not exist")
    trail = [code]
    current: str | None = parent
    while current is not None:
        if current in trail:
            raise InvalidError(
                f"parent: {parent!r} is below {code!r}; the tree would go round in a circle"
            )
        trail.append(current)
        if len(trail) > MAX_DEPTH + 1:
            raise InvalidError(f"parent: the tree may be at most {MAX_DEPTH} levels deep")
        current = parents.get(current)


def _read(connection: Connection, code: str) -> Category | None:
    row = connection.execute(select(categories).where(categories.c.code == code)).one_or_none()
    return None if row is None else _row(row)


def _row(row: Any) -> Category:
    updated = row.updated_at
    return Category(
        code=row.code,
        parent=row.parent_code,
        name=row.name,
        name_en=row.name_en,
        code_prefix=row.code_prefix,
        code_digits=row.code_digits,
        code_pattern=row.code_pattern,
        updated_at=updated.replace(tzinfo=UTC) if updated.tzinfo is None else updated,
    )


def _state(category: Category) -> dict[str, Any]:
    return {
        "code": category.code,
        "parent": category.parent,
        "name": category.name,
        "name_en": category.name_en,
        "code_prefix": category.code_prefix,
        "code_digits": category.code_digits,
        "code_pattern": category.code_pattern,
    }
