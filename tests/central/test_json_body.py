"""A push's body is validated from its bytes in one pass; a refused body is refused as before."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Body, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from central_api.api import json_body
from central_api.api.routes.sync import router
from jxc.paths import STOCK, SYNC_EVENTS

PUSH = SYNC_EVENTS


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
    assert client.get(STOCK).json()[0]["qty"] == "2"


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


class _Thing(BaseModel):
    name: str


def test_a_body_embedded_under_its_name_takes_the_usual_way() -> None:
    """FastAPI wraps an embedded body in a model of its own; the short way would hand it
    the bare model instead, and every valid request would be refused."""
    things = APIRouter(route_class=json_body.ValidatedJSONRoute)

    @things.post("/plain")
    def plain(thing: _Thing) -> str:
        return thing.name

    @things.post("/embedded")
    def embedded(thing: Annotated[_Thing, Body(embed=True)]) -> str:
        return thing.name

    app = FastAPI()
    app.include_router(things)
    routes = {route.path: route for route in things.routes if isinstance(route, APIRoute)}
    assert routes["/plain"]._body_model() is _Thing  # type: ignore[attr-defined]
    assert routes["/embedded"]._body_model() is None  # type: ignore[attr-defined]
    with TestClient(app) as client:
        assert client.post("/plain", json={"name": "a"}).json() == "a"
        assert client.post("/embedded", json={"thing": {"name": "b"}}).json() == "b"
