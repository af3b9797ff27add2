"""An item unit with a tab once reached the edge and made every scan of the item refused.

Now: such text is refused at the door (422, both databases), rows stored before are
repaired by migration 0008 with the repair sent to sites, and the feed never sends an
item the edge's contract refuses even if one is found in the database later.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from central_api.core.db import create_db_engine, upgrade_database
from central_api.models.feed import change_feed, feed_counter
from central_api.models.items import items
from central_api.services.feed import changes_for_site
from jxc.feed import ItemData
from jxc.paths import ITEMS, SYNC_CHANGES
from tests.central.test_migrations import scratch_url  # noqa: F401 - a fixture

BROKEN = [("A", "tab\tin name", "E\tA"), ("B", "line\nbreak", "\x7f"), ("C", "fine", "EA")]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "uom": "E\tA"},
        {"name": "x\x00y", "uom": "EA"},
        {"name": "x", "uom": "E\x00"},
        {"name": "two\nlines", "uom": "EA"},
    ],
    ids=["tab-in-unit", "nul-in-name", "nul-in-unit", "newline-in-name"],
)
def test_text_the_event_contract_refuses_is_refused_in_the_item_master(
    client: TestClient, body: dict[str, Any]
) -> None:
    answer = client.put(f"{ITEMS}/A", json=body)
    assert answer.status_code == 422
    assert client.get(f"{ITEMS}/A").status_code == 404


def _store_broken(engine: Engine) -> int:
    """Write items as an older central did, with their feed entries; the last version."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        version = connection.execute(select(feed_counter.c.version)).scalar_one()
        for code, name, uom in BROKEN:
            version += 1
            data = {"item_code": code, "name": name, "uom": uom, "active": True}
            connection.execute(
                insert(change_feed).values(
                    version=version,
                    site_id=None,
                    entity="item",
                    entity_key=code,
                    op="upsert",
                    data=json.dumps(data, sort_keys=True, separators=(",", ":")),
                    changed_at=now,
                )
            )
            connection.execute(
                insert(items).values(
                    item_code=code, name=name, uom=uom, active=True, version=version, updated_at=now
                )
            )
        connection.execute(update(feed_counter).values(version=version))
    return version


def test_migration_0008_repairs_stored_items_and_tells_the_sites(scratch_url: str) -> None:  # noqa: F811
    upgrade_database(scratch_url, revision="0007")
    engine = create_db_engine(scratch_url)
    try:
        last = _store_broken(engine)
        upgrade_database(scratch_url)
        with engine.connect() as connection:
            stored = {
                row.item_code: (row.name, row.uom) for row in connection.execute(select(items))
            }
            assert stored == {
                "A": ("tab in name", "E A"),
                "B": ("line break", "EA"),
                "C": ("fine", "EA"),
            }
            page = changes_for_site(connection=connection, site_id="S01", cursor=0, limit=100)
        # Every entry a site can read is one its contract takes, old ones included ...
        for change in page.changes:
            ItemData.model_validate(change.data)
        # ... and the two repaired items come again under new versions.
        repaired = [change for change in page.changes if change.version > last]
        assert [change.key for change in repaired] == ["A", "B"]
        assert page.next_cursor == last + 2
    finally:
        engine.dispose()


def test_the_feed_sends_a_broken_stored_item_repaired(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    _store_broken(engine)  # as if written behind central's back, after the migration
    answer = client.get(SYNC_CHANGES, params={"site_id": "S01"})
    assert answer.status_code == 200
    for change in answer.json()["changes"]:
        ItemData.model_validate(change["data"])
    assert "sent repaired" in caplog.text
