"""The floor of ``bench/requests.py``: a bare FastAPI app doing each request's SQL, no more.

What the machine can do for one request of each kind, so that central's figures read as
a ratio to it: no credential, no audit entry, no request id, no body cap, no middleware,
no dedupe of events, only the statements that store or read the data itself, on the same
database with the same engine settings (``create_db_engine``: WAL and ``synchronous=FULL``
on SQLite, and the same ``BEGIN IMMEDIATE`` and write line, so that concurrent writers
wait rather than fail), and the plain way of writing a FastAPI app: ``def`` routes, a
pydantic body, a returned dict.

Writes go to tables of its own (``floor_*``, made by :func:`create_floor_tables`); reads
read central's own tables, which the bench fills. Served by uvicorn as
``uvicorn --factory floor_app:create_app`` with ``FLOOR_DATABASE_URL`` set.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Connection, Engine, text

from central_api.core.db import create_db_engine, write_transaction

_TABLES = (
    """CREATE TABLE IF NOT EXISTS floor_sync (
        site_id VARCHAR(32) PRIMARY KEY, acked_through_seq BIGINT NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS floor_events (
        event_id VARCHAR(36) PRIMARY KEY, site_id VARCHAR(32) NOT NULL, seq BIGINT NOT NULL,
        occurred_at TIMESTAMP NOT NULL, received_at TIMESTAMP NOT NULL,
        kind VARCHAR(16) NOT NULL, item VARCHAR(64) NOT NULL, lot VARCHAR(40),
        expiry DATE, location VARCHAR(64) NOT NULL, qty BIGINT NOT NULL,
        uom VARCHAR(16) NOT NULL, unit_cost BIGINT, ref VARCHAR(128),
        device_id VARCHAR(64), actor VARCHAR(64), UNIQUE (site_id, seq))""",
    """CREATE TABLE IF NOT EXISTS floor_balances (
        site_id VARCHAR(32) NOT NULL, location VARCHAR(64) NOT NULL,
        item VARCHAR(64) NOT NULL, lot VARCHAR(40) NOT NULL, uom VARCHAR(16) NOT NULL,
        qty BIGINT NOT NULL, updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (site_id, location, item, lot))""",
    """CREATE TABLE IF NOT EXISTS floor_items (
        item_code VARCHAR(64) PRIMARY KEY, name VARCHAR(200) NOT NULL,
        uom VARCHAR(16) NOT NULL, active BOOLEAN NOT NULL, updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS floor_feed (
        version INTEGER PRIMARY KEY, entity VARCHAR(16) NOT NULL, entity_key VARCHAR(64)
        NOT NULL, data TEXT NOT NULL, changed_at TIMESTAMP NOT NULL)""",
)


def create_floor_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        for statement in _TABLES:
            connection.exec_driver_sql(statement)


class FloorEvent(BaseModel):
    event_id: str
    site_id: str
    seq: int
    occurred_at: datetime
    kind: str
    item: str
    lot: str | None = None
    expiry: date | None = None
    location: str
    qty: Decimal
    uom: str
    unit_cost: Decimal | None = None
    ref: str | None = None
    device_id: str | None = None
    actor: str | None = None


class FloorBatch(BaseModel):
    contract_version: int
    site_id: str
    events: list[FloorEvent]


class FloorItem(BaseModel):
    name: str
    uom: str
    active: bool = True


_INSERT_EVENT = text(
    "INSERT INTO floor_events (event_id, site_id, seq, occurred_at, received_at, kind, item, "
    "lot, expiry, location, qty, uom, unit_cost, ref, device_id, actor) VALUES (:event_id, "
    ":site_id, :seq, :occurred_at, :received_at, :kind, :item, :lot, :expiry, :location, "
    ":qty, :uom, :unit_cost, :ref, :device_id, :actor)"
)
_UPSERT_BALANCE = text(
    "INSERT INTO floor_balances (site_id, location, item, lot, uom, qty, updated_at) "
    "VALUES (:site_id, :location, :item, :lot, :uom, :qty, :now) "
    "ON CONFLICT (site_id, location, item, lot) DO UPDATE SET "
    "qty = floor_balances.qty + excluded.qty, updated_at = excluded.updated_at"
)
_STOCK = (
    "SELECT site_id, location, item, lot, uom, qty FROM stock_balances WHERE site_id = :site_id"
)
_ORDER = " ORDER BY site_id, location, item, lot"


def _micro(value: Decimal | None) -> int | None:
    return None if value is None else int(value.scaleb(6))


def _rows(connection: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(text(sql), params)]


def create_app() -> FastAPI:
    engine = create_db_engine(os.environ["FLOOR_DATABASE_URL"])
    app = FastAPI(title="floor")

    @app.post("/push")
    def push(batch: FloorBatch) -> dict[str, Any]:
        now = datetime.now(UTC)
        rows = [
            {**event.model_dump(), "qty": _micro(event.qty), "unit_cost": _micro(event.unit_cost)}
            for event in batch.events
        ]
        sums: dict[tuple[str, str, str, str], int] = {}
        for row in rows:
            key = (row["location"], row["item"], row["lot"] or "", row["uom"])
            sums[key] = sums.get(key, 0) + row["qty"]
        with engine.connect() as connection, write_transaction(connection):
            connection.execute(
                text(
                    "INSERT INTO floor_sync VALUES (:site_id, 0, :now) "
                    "ON CONFLICT (site_id) DO NOTHING"
                ),
                {"site_id": batch.site_id, "now": now},
            )
            lock = " FOR UPDATE" if connection.dialect.name == "postgresql" else ""
            connection.execute(
                text(f"SELECT acked_through_seq FROM floor_sync WHERE site_id = :s{lock}"),
                {"s": batch.site_id},
            ).scalar_one()
            connection.execute(_INSERT_EVENT, [{**row, "received_at": now} for row in rows])
            connection.execute(
                _UPSERT_BALANCE,
                [
                    {"site_id": batch.site_id, "location": location, "item": item, "lot": lot}
                    | {"uom": uom, "qty": qty, "now": now}
                    for (location, item, lot, uom), qty in sums.items()
                ],
            )
            last = batch.events[-1].seq
            connection.execute(
                text(
                    "UPDATE floor_sync SET acked_through_seq = :seq, updated_at = :now "
                    "WHERE site_id = :s"
                ),
                {"seq": last, "now": now, "s": batch.site_id},
            )
        return {"site_id": batch.site_id, "acked_through_seq": last}

    @app.get("/stock")
    def stock(site_id: str, item: str | None = None) -> list[dict[str, Any]]:
        with engine.connect() as connection:
            if item is None:
                return _rows(connection, _STOCK + _ORDER, site_id=site_id)
            return _rows(
                connection, _STOCK + " AND item = :item" + _ORDER, site_id=site_id, item=item
            )

    @app.put("/items/{item_code}")
    def put_item(item_code: str, body: FloorItem) -> dict[str, Any]:
        now = datetime.now(UTC)
        with engine.connect() as connection, write_transaction(connection):
            connection.execute(
                text(
                    "INSERT INTO floor_items VALUES (:code, :name, :uom, :active, :now) "
                    "ON CONFLICT (item_code) DO UPDATE SET name = excluded.name, "
                    "uom = excluded.uom, active = excluded.active, updated_at = excluded.updated_at"
                ),
                {"code": item_code, **body.model_dump(), "now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO floor_feed (version, entity, entity_key, data, changed_at) "
                    "SELECT COALESCE(MAX(version), 0) + 1, 'item', :code, :data, :now "
                    "FROM floor_feed"
                ),
                {"code": item_code, "data": body.model_dump_json(), "now": now},
            )
        return {"item_code": item_code, **body.model_dump()}

    @app.get("/items")
    def items_page(limit: int = 50) -> dict[str, Any]:
        with engine.connect() as connection:
            found = _rows(
                connection,
                "SELECT item_code, name, uom, active FROM items ORDER BY item_code LIMIT :n",
                n=limit,
            )
            codes = [row["item_code"] for row in found]
            barcodes = _rows(
                connection,
                "SELECT barcode, item_code, qty_per FROM item_barcodes WHERE item_code >= :first "
                "AND item_code <= :last ORDER BY item_code, barcode",
                first=codes[0] if codes else "",
                last=codes[-1] if codes else "",
            )
        return {"items": found, "barcodes": barcodes}

    @app.get("/items/{item_code}")
    def one_item(item_code: str) -> dict[str, Any]:
        with engine.connect() as connection:
            found = _rows(
                connection,
                "SELECT item_code, name, uom, active FROM items WHERE item_code = :code",
                code=item_code,
            )
            barcodes = _rows(
                connection,
                "SELECT barcode, qty_per FROM item_barcodes WHERE item_code = :code "
                "ORDER BY barcode",
                code=item_code,
            )
        return {**found[0], "barcodes": barcodes}

    return app
