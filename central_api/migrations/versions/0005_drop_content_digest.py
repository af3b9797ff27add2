"""Central no longer stores each event's content digest.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Ingest told a harmless replay from a conflicting one by comparing a stored SHA-256 of the
event's canonical form. Hashing every pushed event cost more than inserting it, for a
comparison needed only when an id comes back, which is rare. Central now rebuilds a held
event from its stored columns and compares it with the pushed one (see
``central_api.services.ingest``), so the column has no reader left.

The downgrade puts the column back and fills it from the stored columns, the way the
contract defines the digest, so an older central finds every row as it wrote them. Two
limits: it hashes with the contract of the code that runs it (a field added to the
contract later means revisiting this), and an amount an older central received as
``"-0"`` is stored as 0 and now hashed as ``"0"`` (the contract spells every zero ``0``
since), so that one event's replay would look like a conflict to the older central.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE = 5000


def upgrade() -> None:
    with op.batch_alter_table("ledger_events") as batch:
        batch.drop_column("content_digest")


def downgrade() -> None:
    from jxc.contract import DOCUMENT_FIELDS, LedgerEvent  # noqa: PLC0415 - the digest's definition

    # The fields the table held at this revision: the document reference came with 0010.
    fields = [name for name in LedgerEvent.model_fields if name not in DOCUMENT_FIELDS]
    op.add_column("ledger_events", sa.Column("content_digest", sa.String(64), nullable=True))
    connection = op.get_bind()
    ledger = sa.table(
        "ledger_events",
        *(sa.column(name) for name in fields),
        sa.column("content_digest"),
    )
    # Untyped columns give the driver's values: amounts counted in millionths, and on
    # SQLite the time as text without its offset (central always stores UTC).
    amounts = {"qty", "unit_cost"}
    after = ""
    while True:
        page = connection.execute(
            sa.select(*(ledger.c[name] for name in fields))
            .where(ledger.c.event_id > after)
            .order_by(ledger.c.event_id)
            .limit(_PAGE)
        ).all()
        if not page:
            break
        updates = []
        for row in page:
            values = dict(row._mapping)
            for name in amounts:
                if values[name] is not None:
                    values[name] = _from_micro_units(int(values[name]))
            occurred_at = values["occurred_at"]
            if isinstance(occurred_at, str):
                values["occurred_at"] = occurred_at.replace(" ", "T") + "Z"
            elif occurred_at.tzinfo is None:
                values["occurred_at"] = occurred_at.replace(tzinfo=UTC)
            event = LedgerEvent.model_validate(values)
            updates.append({"id": values["event_id"], "digest": event.content_digest()})
        connection.execute(
            ledger.update()
            .where(ledger.c.event_id == sa.bindparam("id"))
            .values(content_digest=sa.bindparam("digest")),
            updates,
        )
        after = page[-1].event_id
    with op.batch_alter_table("ledger_events") as batch:
        batch.alter_column("content_digest", existing_type=sa.String(64), nullable=False)


def _from_micro_units(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"
