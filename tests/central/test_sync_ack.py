"""``GET /api/v1/sync/ack``: an edge restored from a backup finds where central stands."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from jxc.paths import SYNC_ACK, SYNC_EVENTS
from tests.central.conftest import problem

ACK = SYNC_ACK


def test_ack_reports_the_watermark_of_a_site(
    client: TestClient, site: Any, other_site: Any
) -> None:
    client.post(SYNC_EVENTS, json=site.batch(site.receipts(3)))
    client.post(SYNC_EVENTS, json=other_site.batch(other_site.receipts(1)))

    response = client.get(ACK, params={"site_id": "S01"})

    assert response.status_code == 200
    assert response.json() == {"site_id": "S01", "acked_through_seq": 3}


def test_ack_of_a_site_central_never_heard_from_is_404(client: TestClient) -> None:
    response = client.get(ACK, params={"site_id": "S99"})

    assert response.status_code == 404
    assert response.json() == problem(
        404, "site S99: central has never received an event from this site"
    )


def test_ack_moves_past_a_refused_event(client: TestClient, site: Any) -> None:
    first = site.event("receipt", "1")
    refused = site.event("receipt", "1", uom="kg")
    client.post(SYNC_EVENTS, json=site.batch([first]))
    client.post(SYNC_EVENTS, json=site.batch([refused, site.event("receipt", "1")]))

    assert client.get(ACK, params={"site_id": "S01"}).json()["acked_through_seq"] == 3
