"""A push's body is validated from its bytes in one pass; a refused body is refused as before."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api.api import json_body
from central_api.api.routes.sync import router

PUSH = "/api/v1/sync/events"


def _no_second_parse(_text: object) -> Any:
    raise AssertionError("a valid body was parsed with json.loads as well")


def test_a_valid_push_is_parsed_once_by_pydantic(
    client: TestClient, site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_body, "json", SimpleNamespace(loads=_no_second_parse))
    bodies: list[str] = []
    parse = json_body._ValidatingRequest.json

    async def spy(request: json_body._ValidatingRequest) -> Any:
        body = await parse(request)
        bodies.append(type(body).__name__)
        return body

    monkeypatch.setattr(json_body._ValidatingRequest, "json", spy)

    answer = client.post(PUSH, json=site.batch([site.event("receipt", "2")]))

    assert answer.status_code == 200, answer.text
    assert bodies == ["PushBatch"], "FastAPI got the validated model, not dicts"
    assert [result["status"] for result in answer.json()["results"]] == ["accepted"]
    assert client.get("/api/v1/stock").json()[0]["qty"] == "2"


def test_a_refused_push_gets_fastapis_own_answer(client: TestClient, site: Any) -> None:
    event = site.event("receipt", "1")
    event["qty"] = 1.5

    answer = client.post(PUSH, json=site.batch([event]))

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "events", 0, "qty"]


def test_a_body_that_is_not_json_is_refused_naming_the_position(client: TestClient) -> None:
    answer = client.post(PUSH, content=b'{"site_id": "S01", "events": [', headers=_JSON)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "json_invalid"


_JSON = {"content-type": "application/json"}


def test_only_routes_with_one_model_body_take_the_short_way() -> None:
    models = {
        route.path: route._body_model()
        for route in router.routes
        if isinstance(route, json_body.ValidatedJSONRoute)
    }
    assert models["/sync/events"].__name__ == "PushBatch"  # type: ignore[union-attr]
    assert models["/sync/ack"] is None
