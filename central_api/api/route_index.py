"""Match a request against central's routes once, through an index (issue 19).

FastAPI from 0.12x keeps an included router as a branch (``_IncludedRouter``): the app's
loop matched a request through ``api_router`` and its thirty-odd routers, and the branch
then matched it again to handle it, so a route of a router included late paid the walk
over every route before it two or three times (317-330 us of CPU for
``GET /api/v1/receivables/ageing``; docs/performance.md, "Routing once, through an
index"). Two pieces take that away, both through FastAPI's and Starlette's public API:

* :func:`include_flat` adds a router's routes to the app's own router as plain routes
  (``add_api_route``, as if declared on the app), so the app's loop matches each with
  its own regex and nothing matches it again;
* :class:`IndexedDispatch`, put first in the app's routes by :func:`index_dispatch`,
  answers the loop's question for every route after it at once: it tries only the
  routes whose literal path prefix fits the request (:class:`PathIndex`), in the app's
  order, and hands the request to the one the loop would have picked.

The routes stay in ``app.routes`` as they were, so the OpenAPI document, the access
rules (``guard_routes``), the metrics' route label and ``url_path_for`` read them as
before. :class:`PathIndex` also serves ``CredentialFirst``'s lookup.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, Router, WebSocketRoute
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

DEPTH = 3
"""Path segments an index key holds at most: ``/api/v1/<resource>`` and
``/console/<page>/<part>`` tell central's routes apart at three."""

_CHOSEN = "central.route_index.chosen"
"""Scope key: the route :class:`IndexedDispatch` matched, for its ``handle``."""


def route_path(scope: Scope) -> str:
    """The path a route's regex is matched against: the request's below its root path.

    What Starlette's routes match (``starlette._utils.get_route_path``, private there,
    so said again here); the index must key on the same string.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


def literal_segments(template: str) -> tuple[str, ...]:
    """The segments of a route template before the first one with a parameter.

    A route's regex is its template with each ``{...}`` made a group, anchored at both
    ends, so any path it matches begins with these segments, each followed by ``/``
    (or the path's end, for a template with no parameter).
    """
    segments = template.split("/")[1:]
    literal: list[str] = []
    for segment in segments:
        if "{" in segment:
            break
        literal.append(segment)
    return tuple(literal)


class PathIndex(Generic[T]):
    """Entries bucketed by their template's first literal segments, for one lookup.

    ``candidates(path)`` gives, in the order the entries were given, every entry whose
    template could match ``path``: those whose literal segments (at most
    :data:`DEPTH`) begin the path's segments, and those without a template (anything
    but a plain route: a mount, a host) or whose parameter comes first, which are
    tried for every path. Trying the candidates in order therefore finds what trying
    all entries in order finds.
    """

    def __init__(self, entries: Iterable[tuple[str | None, T]]) -> None:
        buckets: dict[tuple[str, ...], list[tuple[int, T]]] = {(): []}
        for position, (template, entry) in enumerate(entries):
            key = literal_segments(template)[:DEPTH] if template is not None else ()
            buckets.setdefault(key, []).append((position, entry))
        self._merged: dict[tuple[str, ...], list[T]] = {}
        for key in buckets:
            found = [
                pair for length in range(len(key) + 1) for pair in buckets.get(key[:length], [])
            ]
            self._merged[key] = [entry for _, entry in sorted(found, key=lambda pair: pair[0])]

    def candidates(self, path: str) -> list[T]:
        """The entries that could match ``path``, in their order."""
        key = tuple(path.split("/")[1 : DEPTH + 1]) if path.startswith("/") else ()
        merged = self._merged
        for length in range(len(key), 0, -1):
            found = merged.get(key[:length])
            if found is not None:
                return found
        return merged[()]


def _template(route: Any) -> str | None:
    """The path template a route's regex was made from, or None to try it always."""
    if isinstance(route, (Route, WebSocketRoute)):
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path.startswith("/") else None
    return None


class IndexedDispatch(BaseRoute):
    """The first of the app's routes: matches a request against all the others at once.

    Starlette's loop takes the first route that matches in full, else the first that
    matches but for the method (405). This route makes that same pick among the routes
    after it, trying only :class:`PathIndex`'s candidates, says it matches in full (so
    the loop stops here, for a 405 too) and hands the request to the route picked. The
    index is made again when the number of routes changes, so a route added after it
    was made is still found.

    A request no route matches is taken too (:meth:`_unmatched`): the loop would
    otherwise try every route after this one again, and once more with the trailing
    slash changed, only to answer the router's 404 (about 340 us of CPU for each
    hostile or mistyped path). It is answered as the router answers it, a
    ``redirect_slashes`` redirect found through the index, else the router's default.
    It is not a route of the API: no path, no schema, no name to build a URL for.
    """

    def __init__(self, router: Router) -> None:
        self._router = router
        self._routes = router.routes
        self._index: PathIndex[BaseRoute] | None = None
        self._size = -1

    def _built(self) -> PathIndex[BaseRoute]:
        if self._index is None or self._size != len(self._routes):
            others = [route for route in self._routes if route is not self]
            self._index = PathIndex((_template(route), route) for route in others)
            self._size = len(self._routes)
        return self._index

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self._built().candidates(route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {**child_scope, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is not None:
            # Said in full: the loop would otherwise go on through every route after
            # this one looking for a full match that the candidates showed is not there.
            route, child_scope = partial
            return Match.FULL, {**child_scope, _CHOSEN: route}
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        return Match.FULL, {_CHOSEN: None}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute | None = scope.pop(_CHOSEN)
        if route is None:
            await self._unmatched(scope, receive, send)
            return
        await route.handle(scope, receive, send)

    async def _unmatched(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What Starlette's ``Router.app`` does after its loop found no route."""
        if scope.get("route") is self:
            del scope["route"]  # matched nothing: no route for the metrics' label
        path = route_path(scope)
        if scope["type"] == "http" and self._router.redirect_slashes and path != "/":
            other = dict(scope)
            other["path"] = scope["path"].rstrip("/") if path.endswith("/") else scope["path"] + "/"
            for route in self._built().candidates(route_path(other)):
                if route.matches(other)[0] is not Match.NONE:
                    await RedirectResponse(url=str(URL(scope=other)))(scope, receive, send)
                    return
        await self._router.default(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)


def index_dispatch(app: FastAPI) -> None:
    """Put an :class:`IndexedDispatch` first in ``app``'s routes (once)."""
    routes = app.router.routes
    if not any(isinstance(route, IndexedDispatch) for route in routes):
        routes.insert(0, IndexedDispatch(app.router))


_NOT_COPIED = frozenset({"self", "path", "endpoint", "dependency_overrides_provider"})
"""``APIRoute`` arguments :func:`include_flat` gives itself rather than copy."""


@functools.cache
def _route_arguments() -> Sequence[str]:
    """Read once per process: ``include_flat`` copies some 440 routes at start-up."""
    parameters = inspect.signature(APIRoute.__init__).parameters
    return tuple(name for name in parameters if name not in _NOT_COPIED)


def include_flat(app: FastAPI, router: APIRouter, prefix: str = "") -> None:
    """Add ``router``'s routes to ``app``'s own router, each a plain route at
    ``prefix`` + its path, where ``app.include_router`` would nest the router.

    Each route is made anew by ``app.router.add_api_route`` (so the app's dependency
    overrides reach it, as they reach an included router's) from the route as its router
    made it, which already holds the router's prefix, tags, dependencies and responses.
    Every argument of ``APIRoute`` is read back from the attribute of the same name, as
    FastAPI's own include does; an argument a later FastAPI adds without such an
    attribute stops central at start rather than being dropped.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(
                f"include_flat takes routers of plain API routes; {router.prefix!r} has "
                f"{type(route).__name__} {getattr(route, 'path', '')!r}"
            )
        arguments: dict[str, Any] = {}
        for name in _route_arguments():
            if not hasattr(route, name):
                raise TypeError(f"APIRoute takes {name!r} but its routes have no such attribute")
            arguments[name] = getattr(route, name)
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            route_class_override=type(route),
            **arguments,
        )
