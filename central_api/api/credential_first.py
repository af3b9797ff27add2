"""Check the credential before a body is read, so a stranger cannot make central read one.

FastAPI reads and parses a request's whole body before any dependency runs, the token
check included: anybody who can reach central could make it read and validate up to the
body cap (16 MiB for a push) per request without holding any credential. This middleware
runs first: for a route that needs a credential, a request that brings a body is checked
from its ``Authorization`` header alone, and refused with the route's own 401 before a
byte of the body is read.

Which routes need which credential is read from the routes themselves: a route whose
dependencies include a key of :data:`CREDENTIAL_CHECKS` (at any depth) is checked with
that key's checker, and a route whose access rule refuses anonymous callers
(``Requires(...)``, ``SIGNED_IN``: :attr:`~central_api.api.permissions.Rule.needs_credential`)
with the person-or-site check. A new route is covered without a line here. The route's
own dependency then takes the gate's answer from the request's scope (``state``), where
only central's code writes, instead of reading the credential again: the check ran
moments before, in the same request, on the same headers. A request the gate let
through without an answer (see below) is checked by the dependency as before.

A check that fails for another reason than the credential (the database is down) lets
the request through, so the route answers it as it always has (503).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from central_api.api.deps import NO_TOKEN_MESSAGE, VERIFIED_SITE, get_token_site
from central_api.api.errors import problem
from central_api.api.permissions import Rule
from central_api.api.quoting import excerpt
from central_api.api.route_index import PathIndex, route_path
from central_api.core.db import checking_credentials
from central_api.core.principal import VERIFIED_PRINCIPAL, find_principal
from central_api.errors import (
    ForbiddenError,
    SignInRequiredError,
    TokenRefusedError,
    UnauthorizedError,
)
from central_api.services.auth import TokenSigner

log = logging.getLogger("central_api.api.credential_first")

Checker = Callable[[FastAPI, Request], None]
"""Checks a request's credential for ``app`` from its headers (the body is not read);
raises an :class:`~central_api.errors.UnauthorizedError` (401) or, for a cookie without
its CSRF token, a :class:`~central_api.errors.ForbiddenError` (403) to refuse; on success
leaves what it found in the request's ``state`` for the route's dependency. Runs in a
worker thread."""


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def check_site_token(app: FastAPI, request: Request) -> None:
    """The site-token check of ``get_token_site``, from the header alone."""
    token = _bearer(request)
    if token is None:
        raise TokenRefusedError(NO_TOKEN_MESSAGE)
    signer: TokenSigner = app.state.token_signer
    with checking_credentials(app.state.engine) as connection:
        site_id = signer.verify(connection, token)
    request.scope.setdefault("state", {})[VERIFIED_SITE] = site_id


def check_principal(app: FastAPI, request: Request) -> None:
    """The check of ``get_principal`` for a route that refuses anonymous callers.

    Only the credential: whether its roles allow the route is answered by the route (403),
    which costs the stranger nothing it could not learn by signing in.
    """
    with checking_credentials(app.state.engine) as connection:
        principal = find_principal(request, connection, app.state.token_signer, _bearer(request))
    if principal.is_anonymous:
        raise SignInRequiredError(
            "sign in first: send `Authorization: Bearer <token>` from POST /api/v1/auth/token"
        )
    request.scope.setdefault("state", {})[VERIFIED_PRINCIPAL] = principal


CREDENTIAL_CHECKS: dict[Callable[..., Any], Checker] = {get_token_site: check_site_token}
"""Dependency that demands a credential -> the check of that credential from the headers."""


class CredentialFirst:
    """ASGI middleware: refuse a body-bearing request without a valid credential unread."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._guarded: PathIndex[tuple[Any, Checker]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _brings_body(scope):
            await self.app(scope, receive, send)
            return
        checker = self._checker_for(scope)
        if checker is None:
            await self.app(scope, receive, send)
            return
        try:
            await anyio.to_thread.run_sync(checker, self.fastapi_app, Request(scope))
        except (UnauthorizedError, ForbiddenError) as refusal:
            status = 401 if isinstance(refusal, UnauthorizedError) else 403
            reason = excerpt(str(refusal), 1000)
            log.warning(
                "request refused before its body was read",
                extra={"path": excerpt(scope.get("path", "")), "status": status, "reason": reason},
            )
            headers = {"Connection": "close"}
            if status == 401:
                headers["WWW-Authenticate"] = "Bearer"
            await problem(status, reason, headers=headers)(scope, receive, send)
            return
        except Exception as exc:  # the route answers it itself (a 503, say)
            log.debug("credential not checked ahead", extra={"reason": excerpt(str(exc))})
        await self.app(scope, receive, send)

    def _checker_for(self, scope: Scope) -> Checker | None:
        """The checker of the first guarded route that matches in full, or None.

        Only the guarded routes whose literal path prefix fits are tried
        (:class:`~central_api.api.route_index.PathIndex`), in their order, which finds
        what trying them all finds (tests/central/test_route_index.py): a late route
        paid the walk over all 200-odd before (228-238 us), a path that matches none
        464 us (docs/performance.md, "Routing once, through an index").
        """
        if self._guarded is None:
            self._guarded = PathIndex(
                (_template(context), (context, checker))
                for context, checker in _guarded_routes(self.fastapi_app.routes)
            )
        for route, checker in self._guarded.candidates(route_path(scope)):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return checker
        return None


def _brings_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _guarded_routes(routes: Sequence[BaseRoute]) -> Iterable[tuple[Any, Checker]]:
    """Each route that needs a credential, as the router matches it, with its check.

    ``iter_route_contexts`` is how FastAPI itself walks the routes of included routers
    (for the OpenAPI document): each context matches a request as the router does.
    """
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            checker = _checker_in(route.dependant)
            if checker is not None:
                yield context, checker


def _template(context: Any) -> str | None:
    path = getattr(context, "path", None)
    return path if isinstance(path, str) and path.startswith("/") else None


def _checker_in(dependant: Dependant) -> Checker | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Rule) and dependency.call.needs_credential:
            return check_principal
        if dependency.call in CREDENTIAL_CHECKS:
            return CREDENTIAL_CHECKS[dependency.call]
        found = _checker_in(dependency)
        if found is not None:
            return found
    return None
