"""An item create's statements (issue 19): the item is answered from its insert's
``RETURNING`` row instead of being read back, the feed's changes go with the counter's
move, an ``Idempotency-Key`` is stored with the expired ones' delete; each answer and
row the same as before, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.models.feed import change_feed, feed_counter
from central_api.models.items import items
from central_api.models.master import idempotency_keys
from central_api.services import idempotency
from central_api.services.audit import Actor, ActorKind, AuditContext
from central_api.services.categories import put_category
from central_api.services.feed import _MOST_IN_ONE, feed_writer
from central_api.services.items import (
    BarcodeSpec,
    ItemExistsError,
    UnitSpec,
    _item_columns,
    create_item,
    get_item,
    upsert_item,
)
from jxc.feed import ChangeOp, FeedEntity, ItemData

CLERK = AuditContext(Actor(ActorKind.USER, "clerk1"))
AT = datetime(2026, 12, 5, 9, 30, 1, 120_000, tzinfo=UTC)

NEW_ITEMS = [
    pytest.param({}, {}, id="plain"),
    pytest.param(
        {
            "name_en": "Green tea",
            "lot_tracked": True,
            "expiry_tracked": True,
            "shelf_life_days": 365,
            "min_remaining_days": 30,
            "unit_weight": Decimal("0.512345"),
            "weight_tolerance": Decimal("0.02"),
        },
        {
            "cost": Decimal("12.345678"),
            "price": Decimal("19.90"),
            "purchase_price": Decimal("10"),
            "valuation": "fifo",
        },
        id="every field, money, fifo",
    ),
    pytest.param({"active": False, "archived": True}, {"valuation": "moving_average"}, id="off"),
]


@pytest.mark.parametrize(("fields", "money"), NEW_ITEMS)
def test_a_put_create_answers_the_item_as_it_reads_back(
    engine: Engine, fields: dict[str, Any], money: dict[str, Any]
) -> None:
    """The answer (and the audit entry) come from the insert's RETURNING row: the very
    item a read gives, times in another zone included (SQLite keeps the wall time)."""
    valuation = money.pop("valuation", None)
    with engine.connect() as connection:
        made = upsert_item(
            connection=connection,
            item=ItemData(item_code="TEA-1", name="绿茶", uom="pcs", **fields),
            barcodes=None,
            audit=CLERK,
            now=AT.astimezone(timezone(timedelta(hours=8))),
            valuation=valuation,
            **money,
        )
        assert made == get_item(connection=connection, item_code="TEA-1")
        assert made.valuation == (valuation or "moving_average")


def test_a_post_create_answers_the_item_as_it_reads_back(engine: Engine) -> None:
    """A given code and a code the category's rule makes; each read once (is it free?)."""
    with engine.connect() as connection:
        put_category(
            connection,
            code="DRINK",
            parent=None,
            name="饮料",
            name_en="",
            code_prefix="D",
            code_digits=4,
            code_pattern=None,
            audit=CLERK,
        )
        for code in ("COLA", None):
            made = create_item(
                connection=connection,
                item_code=code,
                fields={"name": "可乐", "uom": "pcs", "category": "DRINK"},
                barcodes=None,
                units=None,
                audit=CLERK,
                financial={"price": Decimal("3.50")},
            )
            assert made == get_item(connection=connection, item_code=made.item_code)
        assert made.item_code == "D0001"
        with pytest.raises(ItemExistsError):
            create_item(
                connection=connection,
                item_code="COLA",
                fields={"name": "可乐", "uom": "pcs"},
                barcodes=None,
                units=None,
                audit=CLERK,
            )


def test_a_create_with_barcodes_and_units_answers_the_item_as_it_reads_back(
    engine: Engine,
) -> None:
    with engine.connect() as connection:
        made = create_item(
            connection=connection,
            item_code="COLA",
            fields={"name": "Cola", "uom": "pcs"},
            barcodes=[
                BarcodeSpec(barcode="06901234567892", uom=None, qty_per=None),
                BarcodeSpec(barcode="16901234567899", uom="case", qty_per=None),
            ],
            units=[UnitSpec(uom="case", factor=Decimal(24), of=None)],
            audit=CLERK,
        )
        assert made == get_item(connection=connection, item_code="COLA")
        assert [barcode.qty_per for barcode in made.barcodes] == [Decimal(1), Decimal(24)]
        assert [unit.uom for unit in made.units] == ["case"]


def test_an_insert_returning_at_the_driver_gives_executes_row(engine: Engine) -> None:
    """RETURNING columns go through their result processors as a SELECT's do."""
    values = {
        "item_code": "A-1",
        "name": "a",
        "uom": "pcs",
        "active": True,
        "version": 1,
        "updated_at": AT,
        "cost": Decimal("1.5"),
        "price": None,
        "purchase_price": None,
        "name_en": "",
        "category_code": None,
        "lot_tracked": True,
        "expiry_tracked": False,
        "serial_tracked": False,
        "shelf_life_days": None,
        "min_remaining_days": None,
        "unit_weight": None,
        "weight_tolerance": None,
        "valuation": "fifo",
        "archived": False,
    }
    statement = insert(items).values(**values).returning(*_item_columns(items))
    with engine.connect() as connection:
        with connection.begin():
            by_execute = tuple(connection.execute(statement).one())
            connection.rollback()
        with connection.begin():
            at_driver = driver.rows(connection, driver.prepare(statement, engine.dialect), {})
            connection.rollback()
    assert at_driver == [by_execute]
    assert isinstance(by_execute[3], bool)
    assert isinstance(by_execute[5], datetime)


def _feed(connection: Connection) -> tuple[list[tuple[Any, ...]], int]:
    rows = connection.execute(select(change_feed).order_by(change_feed.c.version)).all()
    # SQLite gives the stored UTC time without its zone.
    return [(*row[:6], row[6].replace(tzinfo=UTC)) for row in rows], connection.execute(
        select(feed_counter.c.version)
    ).scalar_one()


@pytest.mark.parametrize("count", [1, 2, _MOST_IN_ONE, _MOST_IN_ONE + 1])
def test_the_feeds_changes_and_counter_are_written_whatever_their_number(
    engine: Engine, count: int
) -> None:
    """On PostgreSQL up to _MOST_IN_ONE go in one statement with the counter's move."""
    with engine.connect() as connection:
        for turn in range(2):
            with write_transaction(connection), feed_writer(connection, changed_at=AT) as feed:
                for index in range(count):
                    feed.append(
                        entity=FeedEntity.ITEM,
                        key=f"K{turn}-{index}",
                        op=ChangeOp.DELETE if index % 2 else ChangeOp.UPSERT,
                        data=None if index % 2 else {"item_code": f"K{turn}-{index}", "n": "é"},
                        site_id="S01" if index == 1 else None,
                    )
        with connection.begin():
            rows, counter = _feed(connection)
    assert counter == 2 * count
    assert [row[0] for row in rows] == list(range(1, 2 * count + 1))
    assert rows[0][:5] == (1, None, "item", "K0-0", "upsert")
    assert (json.loads(rows[0][5]), rows[0][6]) == ({"item_code": "K0-0", "n": "é"}, AT)
    if count > 1:
        assert rows[1] == (2, "S01", "item", "K0-1", "delete", None, AT)


def _claim(key: str, body: bytes = b"{}") -> idempotency.IdempotencyClaim:
    return idempotency.IdempotencyClaim.of(
        principal="clerk1", key=key, operation="POST /api/v1/items", body=body
    )


def test_a_key_is_stored_as_expired_ones_go_and_an_expired_key_is_new_again(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    old = now - idempotency.KEY_TTL - timedelta(minutes=1)
    with engine.connect() as connection:
        with write_transaction(connection):
            idempotency.remember(connection, _claim("old-1"), "X-1", now=old)
            idempotency.remember(connection, _claim("old-2"), "X-2", now=old)
        with write_transaction(connection):
            idempotency.check(connection, _claim("new"))  # unknown: no answer
            idempotency.remember(connection, _claim("new"), "X-3", now=now)
        with connection.begin():
            kept = connection.execute(
                select(idempotency_keys.c.key, idempotency_keys.c.resource_id)
            ).all()
        assert [tuple(row) for row in kept] == [("new", "X-3")]
        with write_transaction(connection):
            with pytest.raises(idempotency.IdempotentReplay) as replay:
                idempotency.check(connection, _claim("new"))
            assert replay.value.resource_id == "X-3"
            with pytest.raises(idempotency.IdempotencyKeyReusedError):
                idempotency.check(connection, _claim("new", b"another body"))
        with write_transaction(connection):
            idempotency.remember(connection, _claim("stale"), "X-4", now=old)
        with write_transaction(connection):
            idempotency.check(connection, _claim("stale"))  # expired: forgotten, not replayed
            idempotency.remember(connection, _claim("stale"), "X-5", now=now)
        with connection.begin():
            found = connection.execute(
                select(idempotency_keys.c.resource_id).where(idempotency_keys.c.key == "stale")
            ).scalar_one()
        assert found == "X-5"
