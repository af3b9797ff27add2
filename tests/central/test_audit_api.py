"""The audit log through the API: what is recorded for each request, and who reads what.

Both databases. Users are made with the default roles (``auditor`` has ``audit.read`` and
the financial group; ``warehouse_clerk`` has neither) plus, where a test needs one, a role
of its own written as an admin would.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from central_api.core.config import Settings
from central_api.core.db import write_transaction
from central_api.models import audit_log
from central_api.models.people import roles
from central_api.services.audit import (
    Actor,
    ActorKind,
    AuditContext,
    is_financial_key,
    record,
    verify_chain,
)
from jxc.paths import API_ROOT, AUDIT, AUDIT_CSV, ITEMS, SYNC_EVENTS
from tests.central.conftest import EverySiteAuth, SiteLedger, central_app, user_token

CLIENT_ADDRESS = "10.1.2.3"


class SyncOnlyAuth(EverySiteAuth):
    """Signs sync requests as their site, and nothing else: each test says who it is."""

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        if request.url.path.startswith(f"{API_ROOT}/sync/"):
            yield from super().auth_flow(request)
        else:
            yield request


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    """The app as a client at CLIENT_ADDRESS sees it (sync requests signed as their site)."""
    with (
        central_app(Settings(database_url=database_url)) as app,
        TestClient(app, client=(CLIENT_ADDRESS, 40_000)) as test_client,
    ):
        test_client.auth = SyncOnlyAuth(app)
        yield test_client


def bearer(engine: Engine, username: str, role_names: list[str], **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(engine, username, role_names, **kwargs)}"}


def add_role(engine: Engine, name: str, actions: str, *, financial: bool) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(roles).values(
                name=name,
                description=name,
                actions=actions,
                financial=financial,
                changed_at=datetime.now(UTC),
            )
        )


def entries(api: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = api.get(AUDIT, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def test_an_item_change_is_recorded_with_who_when_and_from_where(
    api: TestClient, engine: Engine
) -> None:
    buyer = bearer(engine, "buyer", ["purchaser"])
    auditor = bearer(engine, "alice", ["auditor"])

    created = api.put(
        f"{ITEMS}/A-1",
        json={
            "name": "aspirin",
            "uom": "box",
            "barcodes": [{"barcode": "690123"}],
            "cost": "1.20",
        },
        headers={**buyer, "X-Request-ID": "ticket-42"},
    )
    assert created.status_code == 200, created.text
    assert created.headers["X-Request-ID"] == "ticket-42"
    renamed = api.put(f"{ITEMS}/A-1", json={"name": "aspirin 100", "uom": "box"}, headers=buyer)
    assert renamed.status_code == 200, renamed.text
    deactivated = api.post(f"{ITEMS}/A-1/deactivate", headers=buyer)
    assert deactivated.status_code == 200, deactivated.text

    found = entries(api, auditor, resource="item", resource_id="A-1")

    assert [entry["action"] for entry in found] == [
        "item.create",
        "item.update",
        "item.deactivate",
    ]
    first, second, third = found
    assert (first["actor_kind"], first["actor_id"]) == ("user", "buyer")
    assert first["request_id"] == "ticket-42"
    assert first["source"] == CLIENT_ADDRESS
    assert first["before"] is None
    assert first["after"] == {
        "item_code": "A-1",
        "name": "aspirin",
        "uom": "box",
        "active": True,
        "barcodes": {"690123": "1"},
        "units": {},
        "valuation": "moving_average",
        "cost": "1.2",
        "price": None,
        "purchase_price": None,
    }
    assert second["before"]["name"] == "aspirin"
    assert second["after"]["name"] == "aspirin 100"
    assert second["request_id"] == renamed.headers["X-Request-ID"] != "ticket-42"
    assert (third["before"]["active"], third["after"]["active"]) == (True, False)


def test_a_refused_change_leaves_no_entry(api: TestClient, engine: Engine) -> None:
    buyer = bearer(engine, "buyer", ["purchaser"])
    api.put(
        f"{ITEMS}/A",
        json={"name": "a", "uom": "pcs", "barcodes": [{"barcode": "X"}]},
        headers=buyer,
    )

    taken = api.put(
        f"{ITEMS}/B",
        json={"name": "b", "uom": "pcs", "barcodes": [{"barcode": "X"}]},
        headers=buyer,
    )
    assert taken.status_code == 409
    refused = api.put(f"{ITEMS}/C", json={"name": "c", "uom": "pcs"})  # anonymous
    assert refused.status_code == 401

    found = entries(api, bearer(engine, "alice", ["auditor"]))
    assert [(entry["action"], entry["resource_id"]) for entry in found] == [("item.create", "A")]


def test_each_push_is_one_entry_by_its_site(api: TestClient, engine: Engine) -> None:
    site = SiteLedger("S01")
    events = site.receipts(30)
    assert api.post(SYNC_EVENTS, json=site.batch(events[:20])).status_code == 200
    # a replay of the first ten with ten new ones: duplicates and accepted
    assert api.post(SYNC_EVENTS, json=site.batch(events[10:30])).status_code == 200

    found = entries(api, bearer(engine, "alice", ["auditor"]), action="sync.push")

    assert [entry["resource_id"] for entry in found] == ["S01:1-20", "S01:11-30"]
    assert all(
        (entry["actor_kind"], entry["actor_id"], entry["site_id"]) == ("site", "S01", "S01")
        for entry in found
    )
    assert found[0]["after"] == {
        "first_seq": 1,
        "last_seq": 20,
        "events": 20,
        "verdicts": {"accepted": 20},
        "acked_through_seq": 20,
    }
    assert found[1]["after"]["verdicts"] == {"duplicate": 10, "accepted": 10}
    assert found[1]["after"]["acked_through_seq"] == 30
    assert found[0]["source"] == CLIENT_ADDRESS


def test_only_audit_readers_may_read(api: TestClient, engine: Engine) -> None:
    clerk = bearer(engine, "clerk", ["warehouse_clerk"])

    assert api.get(AUDIT).status_code == 401
    assert api.get(AUDIT_CSV).status_code == 401
    denied = api.get(AUDIT, headers=clerk)
    assert denied.status_code == 403
    assert "audit.read" in denied.json()["detail"]
    assert api.get(AUDIT_CSV, headers=clerk).status_code == 403


def _record_financial_change(engine: Engine) -> None:
    with engine.connect() as connection, write_transaction(connection):
        record(
            connection,
            AuditContext(Actor(ActorKind.USER, "buyer")),
            action="item.update",
            resource="item",
            resource_id="A-1",
            before={"name": "a", "cost": Decimal("1.20"), "lines": [{"qty": 1, "price": "2"}]},
            after={"name": "b", "cost": Decimal("1.25"), "lines": [{"qty": 1, "price": "3"}]},
        )


def test_financial_fields_are_absent_for_readers_without_the_group(
    api: TestClient, engine: Engine
) -> None:
    _record_financial_change(engine)
    add_role(engine, "inspector", "audit.read", financial=False)
    inspector = bearer(engine, "ivan", ["inspector"])
    auditor = bearer(engine, "alice", ["auditor"])

    (seen,) = entries(api, inspector)
    assert seen["before"] == {"name": "a", "lines": [{"qty": 1}]}
    assert seen["after"] == {"name": "b", "lines": [{"qty": 1}]}
    (full,) = entries(api, auditor)
    assert full["before"]["cost"] == "1.20"
    assert full["after"]["lines"] == [{"qty": 1, "price": "3"}]

    stripped_csv = api.get(AUDIT_CSV, headers=inspector)
    assert stripped_csv.status_code == 200
    assert "cost" not in stripped_csv.text
    assert "price" not in stripped_csv.text
    (row,) = csv.DictReader(io.StringIO(api.get(AUDIT_CSV, headers=auditor).text))
    assert json.loads(row["after"])["cost"] == "1.25"


def test_a_user_scoped_to_a_site_sees_only_that_sites_entries(
    api: TestClient, engine: Engine
) -> None:
    for site_id in ("S01", "S02"):
        site = SiteLedger(site_id)
        assert api.post(SYNC_EVENTS, json=site.batch(site.receipts(3))).status_code == 200
    buyer = bearer(engine, "buyer", ["purchaser"])
    assert api.put(f"{ITEMS}/A", json={"name": "a", "uom": "pcs"}, headers=buyer).status_code == 200
    add_role(engine, "store_auditor", "audit.read", financial=True)
    scoped = bearer(engine, "sam", ["store_auditor"], sites=["S01"])

    seen = entries(api, scoped)
    assert [(entry["action"], entry["site_id"]) for entry in seen] == [
        ("site.add", "S01"),
        ("sync.push", "S01"),
    ]
    assert entries(api, scoped, site_id="S02") == []
    rows = list(csv.DictReader(io.StringIO(api.get(AUDIT_CSV, headers=scoped).text)))
    assert [row["site_id"] for row in rows] == ["S01", "S01"]
    everything = entries(api, bearer(engine, "alice", ["auditor"]))
    assert [entry["site_id"] for entry in everything] == ["S01", "S01", "S02", "S02", None]


def test_filters_paging_and_csv(api: TestClient, engine: Engine) -> None:
    buyer = bearer(engine, "buyer", ["purchaser"])
    for code in ("A", "B", "=HYPERLINK(1)"):
        response = api.put(f"{ITEMS}/{code}", json={"name": code, "uom": "pcs"}, headers=buyer)
        assert response.status_code == 200, response.text
    auditor = bearer(engine, "alice", ["auditor"])

    first = api.get(AUDIT, headers=auditor, params={"limit": 2}).json()
    assert [entry["resource_id"] for entry in first["entries"]] == ["A", "B"]
    rest = api.get(AUDIT, headers=auditor, params={"after": first["next_after"]}).json()
    assert [entry["resource_id"] for entry in rest["entries"]] == ["=HYPERLINK(1)"]
    assert rest["next_after"] is None
    assert entries(api, auditor, actor_kind="user", actor_id="nobody") == []
    assert len(entries(api, auditor, actor_id="buyer", action="item.create")) == 3
    assert entries(api, auditor, until="2000-01-01T00:00:00") == []
    assert len(entries(api, auditor, since="2000-01-01T00:00:00Z")) == 3
    bad = api.get(AUDIT, headers=auditor, params={"since": "yesterday"})
    assert bad.status_code == 422

    exported = api.get(AUDIT_CSV, headers=auditor)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["resource_id"] for row in rows] == ["A", "B", "'=HYPERLINK(1)"]
    with engine.connect() as connection:
        hashes = connection.execute(select(audit_log.c.hash).order_by(audit_log.c.seq)).scalars()
        assert [row["hash"] for row in rows] == list(hashes)
        assert verify_chain(connection).intact


def test_a_request_id_that_is_not_a_plain_token_is_replaced(
    api: TestClient, engine: Engine
) -> None:
    buyer = bearer(engine, "buyer", ["purchaser"])
    for offered in ("x" * 65, "two words", "=cmd|' /C calc'!A0", ""):
        response = api.put(
            f"{ITEMS}/A",
            json={"name": "a", "uom": "pcs"},
            headers={**buyer, "X-Request-ID": offered},
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] != offered
        assert len(response.headers["X-Request-ID"]) == 36  # a fresh UUID
    ids = [entry["request_id"] for entry in entries(api, bearer(engine, "alice", ["auditor"]))]
    assert len(ids) == 4
    assert all(len(request_id) == 36 for request_id in ids)


@pytest.mark.parametrize(
    ("key", "financial"),
    [
        ("tax_rate", True),
        ("credit_limit", True),
        ("purchase_price", True),
        ("qty", False),
        ("item_code", False),
    ],
)
def test_financial_keys_by_their_words(key: str, financial: bool) -> None:
    """The audit reader drops what the API's financial group hides (a PO line's tax rate)."""
    assert is_financial_key(key) is financial
