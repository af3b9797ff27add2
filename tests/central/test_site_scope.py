"""A user limited to some sites sees nothing of the others; so does a site's own token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.central.conftest import SiteLedger, user_token

STOCK = "/api/v1/stock"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stock_at_two_sites(client: TestClient) -> None:
    for site_id in ("S01", "S02"):
        ledger = SiteLedger(site_id)
        pushed = client.post("/api/v1/sync/events", json=ledger.batch(ledger.receipts(3)))
        assert pushed.status_code == 200, pushed.text


def sites_in(answer: list[dict[str, object]]) -> set[object]:
    return {row["site_id"] for row in answer}


def test_a_user_scoped_to_one_site_sees_only_it(client: TestClient) -> None:
    stock_at_two_sites(client)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    token = user_token(engine, "ann", ["store_manager"], sites=["S01"])
    everything = client.get(STOCK, headers=bearer(token))
    assert everything.status_code == 200
    assert sites_in(everything.json()) == {"S01"}
    other = client.get(STOCK, params={"site_id": "S02"}, headers=bearer(token))
    assert other.status_code == 403
    assert other.json()["detail"] == "user:ann may not see site S02: it is outside their sites"
    filtered = client.get(STOCK, params={"site_id": "S01", "item": "ITEM-1"}, headers=bearer(token))
    assert sites_in(filtered.json()) == {"S01"}


def test_a_user_with_several_sites_and_one_without_a_limit(client: TestClient) -> None:
    stock_at_two_sites(client)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    both = user_token(engine, "bo", ["store_manager"], sites=["S01", "S02", "S09"])
    assert sites_in(client.get(STOCK, headers=bearer(both)).json()) == {"S01", "S02"}
    everywhere = user_token(engine, "cy", ["finance"])
    assert sites_in(client.get(STOCK, headers=bearer(everywhere)).json()) == {"S01", "S02"}


def test_a_sites_token_reads_only_its_own_stock(client: TestClient) -> None:
    stock_at_two_sites(client)
    token = client.auth.token_for("S01")  # type: ignore[union-attr]
    own = client.get(STOCK, headers=bearer(token))
    assert own.status_code == 200
    assert sites_in(own.json()) == {"S01"}
    other = client.get(STOCK, params={"site_id": "S02"}, headers=bearer(token))
    assert other.status_code == 403
