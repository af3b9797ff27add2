"""Master data (issue 13): item attributes, categories and coding rules, units, per-site
levels, partners, sites and locations, reference lists, idempotency keys; new grants.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Existing items keep every value they had; the new columns start empty (or false, or the
moving average). Existing barcodes are classified by their digits (a GTIN of 8, 12, 13 or
14 digits, else internal); their check digits are not re-verified here, only new ones are.

The new actions are *added* to the default roles that still exist, whatever an admin did
to their grants since: a role keeps what it had and gains what its job needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "purchaser": "partners.read partners.write locations.read reference.read items.import "
    "partners.import",
    "sales": "partners.read locations.read reference.read",
    "warehouse_clerk": "locations.read reference.read",
    "store_manager": "locations.read locations.write reference.read locations.import",
    "finance": "partners.read partners.write locations.read reference.read reference.write "
    "partners.import",
    "auditor": "partners.read locations.read reference.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already."""

_GTIN_KINDS = {8: "ean8", 12: "upca", 13: "ean13", 14: "gtin14"}


def upgrade() -> None:
    now = datetime.now(UTC)
    op.create_table(
        "categories",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("parent_code", sa.String(32), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("code_prefix", sa.String(16), nullable=True),
        sa.Column("code_digits", sa.Integer(), nullable=False),
        sa.Column("code_pattern", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"], ["categories.code"], name="fk_categories_parent_code_categories"
        ),
        sa.PrimaryKeyConstraint("code", name="pk_categories"),
    )
    op.create_index("ix_categories_parent_code", "categories", ["parent_code"])
    op.create_table(
        "code_sequences",
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name="pk_code_sequences"),
    )
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("purchase_price", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("name_en", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("category_code", sa.String(32), nullable=True))
        for flag in ("lot_tracked", "expiry_tracked", "serial_tracked"):
            batch.add_column(
                sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.false())
            )
        batch.add_column(sa.Column("shelf_life_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("min_remaining_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("unit_weight", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("weight_tolerance", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("valuation", sa.String(16), nullable=False, server_default="moving_average")
        )
        batch.add_column(
            sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_foreign_key(
            "fk_items_category_code_categories", "categories", ["category_code"], ["code"]
        )
        batch.create_index("ix_items_category_code", ["category_code"])
    with op.batch_alter_table("item_barcodes") as batch:
        batch.add_column(sa.Column("uom", sa.String(16), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="internal"))
    barcodes = sa.table("item_barcodes", sa.column("barcode", sa.String), sa.column("kind"))
    connection = op.get_bind()
    for (code,) in connection.execute(sa.select(barcodes.c.barcode)).all():
        kind = _GTIN_KINDS.get(len(code)) if code.isascii() and code.isdigit() else None
        if kind is not None:
            connection.execute(
                sa.update(barcodes).where(barcodes.c.barcode == code).values(kind=kind)
            )
    op.create_table(
        "item_units",
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("factor", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_code"], ["items.item_code"], name="fk_item_units_item_code_items"
        ),
        sa.PrimaryKeyConstraint("item_code", "uom", name="pk_item_units"),
    )
    op.create_table(
        "item_site_levels",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("safety_stock", sa.BigInteger(), nullable=False),
        sa.Column("reorder_point", sa.BigInteger(), nullable=False),
        sa.Column("reorder_qty", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_code"], ["items.item_code"], name="fk_item_site_levels_item_code_items"
        ),
        sa.PrimaryKeyConstraint("site_id", "item_code", name="pk_item_site_levels"),
    )
    op.create_index("ix_item_site_levels_item_code", "item_site_levels", ["item_code"])
    op.create_table(
        "partners",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("is_supplier", sa.Boolean(), nullable=False),
        sa.Column("is_customer", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("tax_id", sa.String(64), nullable=False),
        sa.Column("contact", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(64), nullable=False),
        sa.Column("email", sa.String(200), nullable=False),
        sa.Column("address", sa.String(400), nullable=False),
        sa.Column("payment_terms", sa.String(32), nullable=True),
        sa.Column("lead_time_days", sa.Integer(), nullable=True),
        sa.Column("credit_limit", sa.BigInteger(), nullable=True),
        sa.Column("price_list", sa.String(32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_partners"),
    )
    op.create_table(
        "sites",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_sites"),
    )
    op.create_table(
        "locations",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("parent_code", sa.String(64), nullable=True),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.site_id"], name="fk_locations_site_id_sites"),
        sa.ForeignKeyConstraint(
            ["site_id", "parent_code"],
            ["locations.site_id", "locations.code"],
            name="fk_locations_parent",
        ),
        sa.PrimaryKeyConstraint("site_id", "code", name="pk_locations"),
    )
    op.create_index("ix_locations_site_id_parent_code", "locations", ["site_id", "parent_code"])
    op.create_table(
        "reference_entries",
        sa.Column("list_name", sa.String(32), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("list_name", "code", name="pk_reference_entries"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(100), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("idempotency_keys")
    op.drop_table("reference_entries")
    op.drop_table("locations")
    op.drop_table("sites")
    op.drop_table("partners")
    op.drop_table("item_site_levels")
    op.drop_table("item_units")
    with op.batch_alter_table("item_barcodes") as batch:
        batch.drop_column("kind")
        batch.drop_column("uom")
    with op.batch_alter_table("items") as batch:
        batch.drop_index("ix_items_category_code")
        batch.drop_constraint("fk_items_category_code_categories", type_="foreignkey")
        for column in (
            "archived",
            "valuation",
            "weight_tolerance",
            "unit_weight",
            "min_remaining_days",
            "shelf_life_days",
            "serial_tracked",
            "expiry_tracked",
            "lot_tracked",
            "category_code",
            "name_en",
            "purchase_price",
        ):
            batch.drop_column(column)
    op.drop_table("code_sequences")
    op.drop_table("categories")
