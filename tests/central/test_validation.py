"""A malformed push is a 422 that names the field plainly, never a 500, and changes nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api.api.errors import describe_validation_errors, field_path
from jxc.paths import STOCK, SYNC_ACK, SYNC_EVENTS

PUSH = SYNC_EVENTS


def refused(client: TestClient, body: Any) -> dict[str, Any]:
    response = client.post(PUSH, json=body)
    assert response.status_code == 422, response.text
    answer: dict[str, Any] = response.json()
    assert isinstance(answer["detail"], list), "detail stays FastAPI's list for programs"
    assert client.get(STOCK).json() == [], "a refused batch must change nothing"
    return answer


def test_float_qty_is_refused_naming_the_field(client: TestClient, site: Any) -> None:
    event = site.event("receipt", "1")
    event["qty"] = 1.5

    answer = refused(client, site.batch([event]))

    assert "body.events[0].qty: must be an exact decimal written as a string" in answer["message"]
    assert answer["detail"][0]["loc"] == ["body", "events", 0, "qty"]


def test_missing_field_is_refused_naming_the_field(client: TestClient, site: Any) -> None:
    good = site.event("receipt", "1")
    broken = site.event("receipt", "1")
    del broken["uom"]

    answer = refused(client, site.batch([good, broken]))

    assert answer["message"] == "body.events[1].uom: Field required"


def test_wrong_sign_for_the_kind_is_refused(client: TestClient, site: Any) -> None:
    answer = refused(client, site.batch([site.event("sale", "2")]))

    assert answer["message"] == "body.events[0]: qty of a sale must be negative, got 2"


def test_event_id_that_is_not_uuid7_is_refused(client: TestClient, site: Any) -> None:
    event = site.event("receipt", "1")
    event["event_id"] = str(uuid.uuid4())

    answer = refused(client, site.batch([event]))

    assert answer["message"].startswith("body.events[0].event_id: must be a UUIDv7")


def test_more_than_six_decimal_places_is_refused(client: TestClient, site: Any) -> None:
    answer = refused(client, site.batch([site.event("receipt", "0.0000001")]))

    assert answer["message"] == "body.events[0].qty: has more than 6 decimal places"


def test_events_of_another_site_are_refused(client: TestClient, site: Any, other_site: Any) -> None:
    answer = refused(client, site.batch([other_site.event("receipt", "1")]))

    assert "events[0].site_id is 'S02', but the batch is for site 'S01'" in answer["message"]


def test_non_contiguous_batch_is_refused(client: TestClient, site: Any) -> None:
    first = site.event("receipt", "1")
    site.seq += 1
    third = site.event("receipt", "1")

    answer = refused(client, site.batch([first, third]))

    assert "events[1].seq is 3, expected 2" in answer["message"]


def test_unknown_contract_version_is_refused(client: TestClient, site: Any) -> None:
    answer = refused(client, {**site.batch([site.event()]), "contract_version": 2})

    assert answer["message"].startswith("body.contract_version:")


def test_empty_batch_is_refused(client: TestClient, site: Any) -> None:
    answer = refused(client, site.batch([]))

    assert answer["message"].startswith("body.events:")


def test_body_that_is_not_json_is_refused(client: TestClient) -> None:
    response = client.post(
        PUSH,
        content=b'{"site_id": "S01", "events": [',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["message"].startswith("body: not valid JSON at character")


def test_bad_query_parameter_is_refused_naming_it(client: TestClient) -> None:
    response = client.get(SYNC_ACK)

    assert response.status_code == 422
    assert response.json()["message"] == "query.site_id: Field required"


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "events", 0, "qty"), "body.events[0].qty"),
        (("body",), "body"),
        (("query", "site_id"), "query.site_id"),
        (("body", "events", 12, "ref", 3), "body.events[12].ref[3]"),
    ],
)
def test_field_path_reads_like_the_json(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path


def test_a_long_list_of_errors_is_cut_short() -> None:
    errors = [{"loc": ("body", "events", n, "qty"), "msg": "bad"} for n in range(25)]

    message = describe_validation_errors(errors)

    assert message.count("bad") == 10
    assert message.endswith("... and 15 more")


@pytest.mark.parametrize("spelling", ["INFINITY", "-Infinity", "NaN", "sNaN"])
def test_a_non_finite_amount_is_a_422_never_a_500(
    client: TestClient, site: Any, spelling: str
) -> None:
    """Found by schemathesis: the 422 echoed the refused value, which JSON cannot carry."""
    item = client.put(
        "/api/v1/items/RICE",
        json={"name": "Rice", "uom": "kg", "barcodes": [{"barcode": "1", "qty_per": spelling}]},
    )
    assert item.status_code == 422
    assert item.json()["message"].startswith("body.barcodes[0].qty_per:")
    event = site.event(qty=spelling)
    pushed = client.post(PUSH, json=site.batch([event]))
    assert pushed.status_code == 422
    assert "body.events[0].qty" in pushed.json()["message"]


def test_bare_json_nan_and_infinity_literals_are_a_422(client: TestClient, site: Any) -> None:
    body = json.dumps(site.batch([site.event()])).replace('"qty": "1"', '"qty": NaN')
    response = client.post(PUSH, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "qty" in response.json()["message"]
