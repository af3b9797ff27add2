"""Item cost and price: financial, so absent for roles without the group, never in the feed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.central.conftest import user_token

ITEM = "/api/v1/items/RICE"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_prices_round_trip_exactly_for_an_admin(client: TestClient) -> None:
    body = {"name": "Rice", "uom": "kg", "cost": "3.105", "price": "4.990000"}
    stored = client.put(ITEM, json=body)
    assert stored.status_code == 200, stored.text
    assert stored.json()["cost"] == "3.105"
    assert stored.json()["price"] == "4.990000" or stored.json()["price"] == "4.99"
    # Omitted prices are kept.
    again = client.put(ITEM, json={"name": "Rice, long grain", "uom": "kg"}).json()
    assert (again["cost"], again["name"]) == ("3.105", "Rice, long grain")


def test_a_clerk_sees_the_item_without_any_price(client: TestClient) -> None:
    client.put(ITEM, json={"name": "Rice", "uom": "kg", "cost": "3.10", "price": "4.99"})
    engine = client.app.state.engine  # type: ignore[attr-defined]
    clerk = user_token(engine, "li", ["warehouse_clerk"])
    one = client.get(ITEM, headers=bearer(clerk)).json()
    assert "cost" not in one
    assert "price" not in one
    assert one["name"] == "Rice"
    page = client.get("/api/v1/items", headers=bearer(clerk)).json()
    assert all("cost" not in item and "price" not in item for item in page["items"])
    finance = user_token(engine, "fu", ["finance"])
    assert client.get(ITEM, headers=bearer(finance)).json()["price"] == "4.99"


def test_an_item_without_prices_shows_null_to_those_who_may_see_them(client: TestClient) -> None:
    shown = client.put(ITEM, json={"name": "Rice", "uom": "kg"}).json()
    assert shown["cost"] is None
    assert shown["price"] is None


def test_prices_never_reach_the_sites(client: TestClient) -> None:
    client.put(ITEM, json={"name": "Rice", "uom": "kg", "cost": "3.10", "price": "4.99"})
    client.put(ITEM, json={"name": "Rice", "uom": "kg", "price": "5.49"})
    changes = client.get("/api/v1/sync/changes", params={"site_id": "S01"}).json()["changes"]
    assert len(changes) == 1, "a price change alone is not a change for the sites"
    assert "cost" not in changes[0]["data"]
    assert "price" not in changes[0]["data"]
    site_view = client.get(
        ITEM,
        headers=bearer(client.auth.token_for("S01")),  # type: ignore[union-attr]
    ).json()
    assert "price" not in site_view


def test_a_role_without_the_financial_group_may_not_set_prices(client: TestClient) -> None:
    client.put(
        "/api/v1/roles/stocker",
        json={"actions": ["items.read", "items.write"], "financial": False},
    )
    engine = client.app.state.engine  # type: ignore[attr-defined]
    stocker = user_token(engine, "st", ["stocker"])
    refused = client.put(
        ITEM, json={"name": "Rice", "uom": "kg", "price": "1"}, headers=bearer(stocker)
    )
    assert refused.status_code == 403
    assert "financial" in refused.json()["detail"]
    plain = client.put(ITEM, json={"name": "Rice", "uom": "kg"}, headers=bearer(stocker))
    assert plain.status_code == 200
    assert "price" not in plain.json()


def test_bad_prices_are_422_naming_the_field(client: TestClient) -> None:
    for price, phrase in (("-1", "must not be negative"), (1.5, "price")):
        refused = client.put(ITEM, json={"name": "Rice", "uom": "kg", "price": price})
        assert refused.status_code == 422
        assert phrase in refused.json()["message"]
