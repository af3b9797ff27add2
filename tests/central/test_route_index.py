"""Routing once, through an index (issue 19): the same answers as the walk it replaced.

Central adds its routers flat and matches a request through ``IndexedDispatch`` and
``PathIndex`` (``central_api.api.route_index``); ``CredentialFirst`` looks up its
checker through a ``PathIndex`` too. Each must pick exactly what the linear walk picks,
for every operation of the OpenAPI document and for hostile paths; and the app built
flat must serve the same OpenAPI document, byte for byte, and the same answers (404,
405, redirects, the metrics' route label) as the app built with FastAPI's nested
``include_router``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Match

from central_api.api import route_index
from central_api.api.credential_first import CredentialFirst, _guarded_routes
from central_api.api.route_index import IndexedDispatch, PathIndex, literal_segments
from central_api.core.config import Settings
from central_api.main import create_app
from jxc.paths import METRICS

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

HOSTILE_PATHS = [
    "",
    "/",
    "relative/path",
    "//api/v1/stock",
    "/api//v1/stock",
    "/API/V1/STOCK",
    "/api/v1/stock/../stock",
    "/api/v1",
    "/api/v1/",
    "/api/v1/nowhere",
    "/api/v1/items/a%2Fb",
    "/api/v1/items/a/b",
    "/api/v1/items/货品-１",
    "/api/v1/items/" + "x" * 10_000,
    "/" + "y/" * 5_000,
    "/api/v1/sync/events/",
    "/healthz/",
    "/console",
    "/console/",
    "/console/static/style.css",
    "/console/static",
    "/console/nowhere/at/all",
    "/docs",
    "/openapi.json",
    "/api/v1/customer-returns/%00",
    "/api/v1/receivables/ageing\n",
]


def _database(tmp_path_factory: pytest.TempPathFactory, template: Path, name: str) -> str:
    path = tmp_path_factory.mktemp(name) / "central.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> FastAPI:
    """An app of its own (the shared one must not be compared with a second build)."""
    url = _database(tmp_path_factory, sqlite_template, "route-index")
    return create_app(Settings(database_url=url))


@pytest.fixture(scope="module")
def nested_app(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[FastAPI]:
    """The same app built as FastAPI nests included routers, without the index."""
    url = _database(tmp_path_factory, sqlite_template, "route-nested")
    with pytest.MonkeyPatch.context() as patch:

        def include(app: FastAPI, router: Any, prefix: str = "") -> None:
            app.include_router(router, prefix=prefix)

        patch.setattr(route_index, "include_flat", include)
        patch.setattr(route_index, "index_dispatch", lambda app: None)
        yield create_app(Settings(database_url=url))


def _paths(app: FastAPI) -> list[str]:
    """Each operation's path with its parameters filled (two ways), then the hostile."""
    paths = []
    for template in app.openapi()["paths"]:
        paths.append(re.sub(r"\{[^}]*\}", "X-1", template))
        paths.append(re.sub(r"\{[^}]*\}", "a/b", template) + "/")
    return paths + HOSTILE_PATHS


def _scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
    }


def _walk(routes: list[BaseRoute], scope: dict[str, Any]) -> tuple[Match, Any, dict[str, Any]]:
    """Starlette's loop: the first route that matches in full, else the first partial."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return match, route, child
        if match is Match.PARTIAL and partial is None:
            partial = (match, route, child)
    return partial or (Match.NONE, None, {})


def test_the_app_holds_plain_routes_behind_the_index(app: FastAPI) -> None:
    first, *others = app.router.routes
    assert isinstance(first, IndexedDispatch)
    assert not any(isinstance(route, IndexedDispatch) for route in others)
    # Nothing nested: a FastAPI that nests differently, or a router added with
    # include_router, shows here (and would be matched twice again).
    assert {type(route).__name__ for route in others} <= {
        "APIRoute",
        "ValidatedJSONRoute",
        "Route",
        "Mount",
    }
    assert sum(isinstance(route, APIRoute) for route in others) > 300


@pytest.mark.parametrize("root_path", ["", "/jxc"])
def test_the_dispatch_index_picks_what_the_walk_picks(app: FastAPI, root_path: str) -> None:
    index, *others = app.router.routes
    assert isinstance(index, IndexedDispatch)
    differ = []
    for path in _paths(app):
        for method in METHODS:
            match, route, child = _walk(others, _scope(method, path, root_path))
            # The index says "full" for every pick, so that the loop stops at it: for a
            # partial match (405) and for none (answered as the router answers no
            # match: test_the_flat_app_answers_as_the_nested_one), not walked again.
            match = Match.FULL
            indexed, indexed_child = index.matches(_scope(method, path, root_path))
            chosen = indexed_child.pop(route_index._CHOSEN, None)
            if (indexed, chosen, indexed_child) != (match, route, child):
                differ.append(f"{method} {path[:80]}: {indexed} {chosen} != {match} {route}")
    assert not differ, "\n".join(differ[:20])


def test_credential_first_finds_the_walks_checker(app: FastAPI) -> None:
    gate = CredentialFirst(app, fastapi_app=app)
    guarded = list(_guarded_routes(app.routes))
    assert len(guarded) > 200
    differ = []
    checked = 0
    for path in _paths(app):
        for method in METHODS:
            scope = _scope(method, path)
            expected = next(
                (check for context, check in guarded if context.matches(scope)[0] is Match.FULL),
                None,
            )
            checked += expected is not None
            if gate._checker_for(_scope(method, path)) is not expected:
                differ.append(f"{method} {path[:80]}")
    assert not differ, "\n".join(differ[:20])
    assert checked > 200  # the walk did find checkers: the comparison is not all None


def test_the_index_buckets_by_literal_prefix() -> None:
    assert literal_segments("/api/v1/items/{code:path}") == ("api", "v1", "items")
    assert literal_segments("/api/v1/stock") == ("api", "v1", "stock")
    assert literal_segments("/{anything}") == ()
    assert literal_segments("/files/img-{n}.png") == ("files",)
    index = PathIndex(
        [
            ("/api/v1/items/{code}", "item"),
            (None, "mount"),
            ("/api/v1/items", "items"),
            ("/{page}", "page"),
            ("/api/v1/stock", "stock"),
            ("/api/v1/items/{code}/stock", "item stock"),
        ]
    )
    # A superset, in order: "items" cannot match ".../A", but shares its bucket.
    assert index.candidates("/api/v1/items/A") == ["item", "mount", "items", "page", "item stock"]
    assert index.candidates("/api/v1/items") == index.candidates("/api/v1/items/A")
    assert index.candidates("/api/v1/stock/x") == ["mount", "page", "stock"]
    assert index.candidates("/other") == ["mount", "page"]
    assert index.candidates("no-slash") == ["mount", "page"]


def test_the_openapi_document_is_byte_identical_to_the_nested_apps(
    app: FastAPI, nested_app: FastAPI
) -> None:
    assert any(type(route).__name__ == "_IncludedRouter" for route in nested_app.routes)
    assert json.dumps(app.openapi()) == json.dumps(nested_app.openapi())


def _requests(app: FastAPI) -> list[tuple[str, str]]:
    """GET and DELETE of each operation's path (the trailing-slash kind for a third of
    them: redirect_slashes) and of the hostile paths a client can send."""
    wanted = []
    for number, path in enumerate(_paths(app)):
        if number % 6 == 1 or len(path) > 300 or not path.startswith("/") or "\n" in path:
            continue
        wanted += [("GET", path), ("DELETE", path)]
    return wanted


def _answers(app: FastAPI, requests: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    answers = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path in requests:
            answer = client.request(method, path, follow_redirects=False)
            answers.append(
                (
                    method,
                    path,
                    answer.status_code,
                    answer.headers.get("location"),
                    answer.headers.get("allow"),
                    b"" if path == METRICS else answer.content,  # its figures move
                )
            )
    return answers


def _labels(app: FastAPI) -> list[tuple[str, ...]]:
    """The metrics' request counter's labels (method, route template, status) so far."""
    found = []
    for family in app.state.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "jxc_http_requests_total":
                found.append((*tuple(sorted(sample.labels.items())), str(sample.value)))
    return sorted(found)


def test_the_flat_app_answers_as_the_nested_one(app: FastAPI, nested_app: FastAPI) -> None:
    """404, 405 with its Allow, redirect_slashes' 307, 401s, the console's pages and
    static files; and the metrics' route label of each: the same from both apps."""
    requests = _requests(app)
    flat = _answers(app, requests)
    nested = _answers(nested_app, requests)
    differ = [f"{a[:5]} != {b[:5]}" for a, b in zip(flat, nested, strict=True) if a != b]
    assert not differ, "\n".join(differ[:20])
    statuses = {answer[2] for answer in flat}
    assert {307, 401, 404, 405} <= statuses, statuses
    labels = _labels(app)
    assert labels == _labels(nested_app)
    assert any("/api/v1/items/{item_code" in str(label) for label in labels), labels[:5]
    assert ("route", "<unmatched>") in [label[1] for label in labels]
