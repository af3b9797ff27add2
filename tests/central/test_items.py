"""``/api/v1/items``: the item master, each write mirrored into the change feed.

Runs on SQLite and PostgreSQL. The feed is read back through its own route, so every
test here also checks what an edge would be sent.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from jxc.paths import ITEMS, SYNC_CHANGES
from tests.central.conftest import problem

CHANGES = SYNC_CHANGES


def item_url(item_code: str, *rest: str) -> str:
    return "/".join([ITEMS, *(quote(part, safe="") for part in (item_code, *rest))])


def put(client: TestClient, item_code: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.put(item_url(item_code), json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def feed(client: TestClient, cursor: int = 0, site_id: str = "S01") -> list[dict[str, Any]]:
    """Every change after ``cursor`` as (version, entity, key, op, data) dicts."""
    response = client.get(CHANGES, params={"site_id": site_id, "cursor": cursor, "limit": 5000})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["has_more"] is False
    changes: list[dict[str, Any]] = page["changes"]
    return changes


def brief(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(change["entity"], change["key"], change["op"]) for change in changes]


COLA = {
    "name": "Cola 330ml",
    "uom": "pcs",
    "barcodes": [
        {"barcode": "06901234567892", "qty_per": "1"},
        {"barcode": "16901234567899", "qty_per": "24"},
    ],
}


def test_put_creates_the_item_and_its_changes(client: TestClient) -> None:
    stored = put(client, "COLA", COLA)

    assert stored["item_code"] == "COLA"
    assert (stored["name"], stored["uom"], stored["active"]) == ("Cola 330ml", "pcs", True)
    assert stored["version"] == 1
    assert [(b["barcode"], b["qty_per"], b["version"]) for b in stored["barcodes"]] == [
        ("06901234567892", "1", 2),
        ("16901234567899", "24", 3),
    ]
    changes = feed(client)
    assert [change["version"] for change in changes] == [1, 2, 3]
    assert changes[0]["data"] == {
        "item_code": "COLA",
        "name": "Cola 330ml",
        "uom": "pcs",
        "active": True,
    }
    assert changes[2]["data"] == {
        "barcode": "16901234567899",
        "item_code": "COLA",
        "qty_per": "24",
    }
    assert client.get(item_url("COLA")).json() == stored


def test_an_identical_put_changes_nothing(client: TestClient) -> None:
    first = put(client, "COLA", COLA)
    # The same values spelled differently are the same content.
    respelled = {
        **COLA,
        "active": True,
        "barcodes": [
            {"barcode": "16901234567899", "qty_per": "24.000"},
            {"barcode": "06901234567892"},
        ],
    }

    again = put(client, "COLA", COLA)
    once_more = put(client, "COLA", respelled)

    assert again == first
    assert once_more == first
    assert len(feed(client)) == 3


def test_changing_the_barcode_set_sends_upserts_and_tombstones(client: TestClient) -> None:
    put(client, "COLA", COLA)

    stored = put(
        client,
        "COLA",
        {
            **COLA,
            "barcodes": [
                {"barcode": "16901234567899", "qty_per": "12"},  # changed
                {"barcode": "26901234567896", "qty_per": "6"},  # new
            ],
        },
    )

    assert brief(feed(client, cursor=3)) == [
        ("barcode", "06901234567892", "delete"),
        ("barcode", "16901234567899", "upsert"),
        ("barcode", "26901234567896", "upsert"),
    ]
    tombstone = feed(client, cursor=3)[0]
    assert tombstone["data"] is None
    assert stored["version"] == 1, "the item itself did not change"
    assert [(b["barcode"], b["qty_per"]) for b in stored["barcodes"]] == [
        ("16901234567899", "12"),
        ("26901234567896", "6"),
    ]


def test_omitted_barcodes_are_kept_and_an_empty_list_removes_them(client: TestClient) -> None:
    put(client, "COLA", COLA)

    renamed = put(client, "COLA", {"name": "Cola 0.33 l", "uom": "pcs"})
    emptied = put(client, "COLA", {"name": "Cola 0.33 l", "uom": "pcs", "barcodes": []})

    assert len(renamed["barcodes"]) == 2
    assert renamed["version"] == 4
    assert emptied["barcodes"] == []
    assert brief(feed(client, cursor=3)) == [
        ("item", "COLA", "upsert"),
        ("barcode", "06901234567892", "delete"),
        ("barcode", "16901234567899", "delete"),
    ]


def test_a_barcode_of_another_item_is_refused_with_409(client: TestClient) -> None:
    put(client, "COLA", COLA)

    response = client.put(
        item_url("FANTA"),
        json={"name": "Fanta", "uom": "pcs", "barcodes": [{"barcode": "16901234567899"}]},
    )

    assert response.status_code == 409
    assert response.json() == problem(
        409,
        "barcode '16901234567899' already belongs to item 'COLA': "
        "delete it there before assigning it to item 'FANTA'",
    )
    assert client.get(item_url("FANTA")).status_code == 404, "nothing of the PUT was kept"
    assert len(feed(client)) == 3
    # The refused write gave its versions back: the next change is 4, not 5 or 6.
    assert put(client, "FANTA", {"name": "Fanta", "uom": "pcs"})["version"] == 4


def test_moving_a_barcode_takes_a_delete_first(client: TestClient) -> None:
    put(client, "COLA", COLA)
    response = client.delete(item_url("COLA", "barcodes", "16901234567899"))
    assert response.status_code == 200, response.text

    fanta = put(
        client,
        "FANTA",
        {"name": "Fanta", "uom": "pcs", "barcodes": [{"barcode": "16901234567899"}]},
    )

    assert [b["barcode"] for b in response.json()["barcodes"]] == ["06901234567892"]
    assert [b["barcode"] for b in fanta["barcodes"]] == ["16901234567899"]
    assert brief(feed(client, cursor=3)) == [
        ("barcode", "16901234567899", "delete"),
        ("item", "FANTA", "upsert"),
        ("barcode", "16901234567899", "upsert"),
    ]


def test_deleting_a_barcode_that_is_not_the_items_is_404(client: TestClient) -> None:
    put(client, "COLA", COLA)
    put(client, "FANTA", {"name": "Fanta", "uom": "pcs"})

    of_other = client.delete(item_url("FANTA", "barcodes", "06901234567892"))
    unknown = client.delete(item_url("COLA", "barcodes", "999"))
    no_item = client.delete(item_url("NOPE", "barcodes", "06901234567892"))

    assert (of_other.status_code, of_other.json()) == (
        404,
        problem(404, "barcode '06901234567892' belongs to item 'COLA', not to item 'FANTA'"),
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        problem(404, "barcode '999' is not assigned to any item"),
    )
    assert (no_item.status_code, no_item.json()) == (
        404,
        problem(404, "item 'NOPE' does not exist"),
    )
    assert len(feed(client)) == 4


def test_deactivating_keeps_the_item_and_sends_it_once(client: TestClient) -> None:
    put(client, "COLA", COLA)

    first = client.post(item_url("COLA", "deactivate"))
    again = client.post(item_url("COLA", "deactivate"))
    unknown = client.post(item_url("NOPE", "deactivate"))

    assert first.status_code == again.status_code == 200
    assert first.json()["active"] is False
    assert len(first.json()["barcodes"]) == 2, "barcodes stay with a deactivated item"
    assert again.json() == first.json()
    assert unknown.status_code == 404
    changes = feed(client, cursor=3)
    assert brief(changes) == [("item", "COLA", "upsert")]
    assert changes[0]["data"]["active"] is False
    revived = put(client, "COLA", COLA)
    assert (revived["active"], revived["version"]) == (True, 5)


def test_unknown_item_is_404_with_a_message(client: TestClient) -> None:
    response = client.get(item_url("NOPE"))

    assert response.status_code == 404
    assert response.json() == problem(404, "item 'NOPE' does not exist")


def test_codes_with_a_slash_and_unicode_round_trip(client: TestClient) -> None:
    stored = put(
        client,
        "可乐/330",
        {"name": "可口可乐", "uom": "瓶", "barcodes": [{"barcode": "GS1/01/123"}]},
    )
    deleted = client.delete(item_url("可乐/330", "barcodes", "GS1/01/123"))

    assert stored["item_code"] == "可乐/330"
    assert client.get(item_url("可乐/330")).json()["name"] == "可口可乐"
    assert deleted.status_code == 200, deleted.text
    assert brief(feed(client))[-1] == ("barcode", "GS1/01/123", "delete")


def test_items_are_listed_in_pages(client: TestClient) -> None:
    codes = [f"ITEM-{n:02d}" for n in range(7)]
    for code in reversed(codes):
        put(client, code, {"name": code, "uom": "pcs", "barcodes": [{"barcode": f"B{code}"}]})

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if after is not None:
            params["after"] = after
        response = client.get(ITEMS, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        seen += [item["item_code"] for item in page["items"]]
        assert all(len(item["barcodes"]) == 1 for item in page["items"])
        after = page["next_after"]
        if after is None:
            break

    assert seen == codes
    assert pages == 3
    assert client.get(ITEMS).json()["next_after"] is None
    from_start = client.get(ITEMS, params={"after": "", "limit": 1}).json()
    assert [item["item_code"] for item in from_start["items"]] == ["ITEM-00"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"uom": "pcs"}, "body.name: Field required"),
        ({"name": "X"}, "body.uom: Field required"),
        ({"name": "", "uom": "pcs"}, "body.name: String should have at least 1 character"),
        ({"name": "X" * 201, "uom": "pcs"}, "body.name: String should have at most 200"),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "1", "qty_per": 1.5}]},
            "body.barcodes[0].qty_per: must be an exact decimal written as a string",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "1", "qty_per": "0"}]},
            "body.barcodes[0].qty_per: must be positive",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "1", "qty_per": "-2"}]},
            "body.barcodes[0].qty_per: must be positive",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "1", "qty_per": "0.0000001"}]},
            "body.barcodes[0].qty_per: has more than 6 decimal places",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "1", "qty_per": "abc"}]},
            "body.barcodes[0].qty_per: 'abc' is not a decimal number",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "12 34"}]},
            "body.barcodes[0].barcode: String should match pattern",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"barcode": "1"}, {"barcode": "1"}]},
            "body.barcodes: barcodes[1]: barcode '1' is listed twice",
        ),
        (
            {"name": "X", "uom": "pcs", "barcodes": [{"qty_per": "1"}]},
            "body.barcodes[0].barcode: Field required",
        ),
        (
            {"item_code": "X", "name": "X", "uom": "pcs"},
            "body.item_code: Extra inputs are not permitted",
        ),
        ({"name": "X", "uom": "pcs", "barcodes": "123"}, "body.barcodes: Input should be"),
        ([], "body: Input should be a valid dictionary"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: TestClient, body: Any, message: str
) -> None:
    response = client.put(item_url("X"), json=body)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(message), response.json()["message"]
    assert client.get(ITEMS).json()["items"] == [], "a refused PUT must change nothing"


def test_an_item_code_too_long_is_422_naming_it(client: TestClient) -> None:
    response = client.put(item_url("X" * 65), json={"name": "X", "uom": "pcs"})

    assert response.status_code == 422
    assert response.json()["message"].startswith("path.item_code: String should have at most 64")


def test_bad_list_parameters_are_422_naming_them(client: TestClient) -> None:
    too_small = client.get(ITEMS, params={"limit": 0})
    too_large = client.get(ITEMS, params={"limit": 1001})

    assert too_small.status_code == too_large.status_code == 422
    assert too_small.json()["message"].startswith("query.limit:")
    assert too_large.json()["message"].startswith("query.limit:")
