"""A refusal quotes what it refused as a short excerpt that always encodes."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from central_api.api.quoting import MAX_EXCERPT, excerpt, quote
from jxc.paths import ITEMS, SYNC_EVENTS

_JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=True),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=200,
)


@given(_JSON_LIKE)
def test_any_value_quotes_as_bounded_strict_utf8_json(value: Any) -> None:
    text = json.dumps(quote(value), ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # no lone surrogate survives
    assert len(text) < 20_000


@given(st.text(max_size=5000))
def test_an_excerpt_is_one_short_encodable_line(text: str) -> None:
    shown = excerpt(text)
    shown.encode("utf-8")
    assert "\n" not in shown
    assert "\r" not in shown
    assert len(shown) <= MAX_EXCERPT * 6 + 40  # every character escaped, plus the count


def test_an_integer_python_will_not_spell_is_quoted_by_its_size() -> None:
    assert "digits" in quote(10**10_000)


def test_a_lone_surrogate_in_a_refused_body_is_a_422_not_a_500(client: TestClient) -> None:
    # The first 500: the handler could not encode the input it echoed.
    answer = client.put(
        f"{ITEMS}/A",
        content=b'{"name": "x\\ud800", "uom": "EA"}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["input"] == "x\\ud800"


def test_a_refused_long_value_is_answered_as_an_excerpt(client: TestClient) -> None:
    huge = "A" * 500_000
    answer = client.put(f"{ITEMS}/A", json={"name": huge, "uom": "EA"})
    assert answer.status_code == 422
    assert len(answer.content) < 5_000
    assert answer.json()["detail"][0]["input"].endswith("(500000 characters in all)")


def test_a_refused_key_is_quoted_too(client: TestClient) -> None:
    answer = client.put(f"{ITEMS}/A", json={"name": "x", "uom": "EA", "k\x00" * 3000: 1})
    assert answer.status_code == 422
    assert len(answer.content) < 5_000


def test_a_batch_refused_everywhere_lists_a_bounded_number_of_errors(
    client: TestClient,
) -> None:
    events = [{"seq": 2**70 + n} for n in range(2000)]
    answer = client.post(SYNC_EVENTS, json={"site_id": "S01", "events": events})
    assert answer.status_code == 422
    body = answer.json()
    assert len(body["detail"]) <= 100
    assert "more" in body["message"]


def test_a_refused_secret_is_never_quoted_back(client: TestClient) -> None:
    almost = "s" * 40 + "!"  # a secret with one stray character: still most of a secret
    answer = client.post("/api/v1/sync/token", json={"site_id": "S01", "secret": almost})
    assert answer.status_code == 422
    assert "s" * 12 not in answer.text
    whole = client.post("/api/v1/sync/token", json=[{"site_id": "S01", "secret": almost}])
    assert whole.status_code == 422
    assert "s" * 12 not in whole.text
