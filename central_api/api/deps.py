"""Request dependencies as ``Annotated`` aliases, so a route states what it needs once.

The engine and settings hang on ``app.state`` (set by ``create_app``), not in module
globals: two apps in one process, as in the tests, then never share a database.

A dependency that only reads ``app.state`` is ``async def``: FastAPI runs a plain ``def``
dependency in a worker thread, and each such trip cost a request about as much as a
small query (``docs/performance.md``, "Cost per request").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from central_api.core.config import Settings
from central_api.core.db import checking_credentials
from central_api.core.principal import needs_trip_check, settle_in_trip
from central_api.errors import SiteForbiddenError, TokenRefusedError
from central_api.services.auth import TokenSigner
from central_api.services.projections import Projections
from jxc.paths import SYNC_TOKEN


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_engine(request: Request) -> Engine:
    return cast(Engine, request.app.state.engine)


def get_connection(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """One pooled connection per request, returned (and rolled back) when it ends.

    Services open their own transactions on it, so a read never holds a write lock and a
    write commits before the response is sent.
    """
    with engine.connect() as connection:
        yield connection


T = TypeVar("T")


async def on_connection(request: Request, work: Callable[[Connection], T]) -> T:
    """``work(connection)`` on one pooled connection, in one trip to a worker thread.

    A ``def`` route with ``ConnDep`` pays three trips through the thread pool (open the
    connection, run the route, close it) and a fourth to validate its answer; each costs
    a small request about as much as a query (``docs/performance.md``, "Cost per
    request"). An ``async`` route that hands its whole database work, answer included,
    to this pays one; a user's read marked ``principal_in_trip`` pays one in all, the
    principal's lookup and its access rule included.
    """
    engine = cast(Engine, request.app.state.engine)
    settle = needs_trip_check()

    def run() -> T:
        with engine.connect() as connection:
            if settle:
                # The route is marked principal_in_trip and its rule waits: the lookup
                # and the check, on this connection, before the route's own work.
                settle_in_trip(request, connection)
            return work(connection)

    return await run_in_threadpool(run)


async def get_token_signer(request: Request) -> TokenSigner:
    return cast(TokenSigner, request.app.state.token_signer)


async def get_projections(request: Request) -> Projections:
    return cast(Projections, request.app.state.projections)


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ConnDep = Annotated[Connection, Depends(get_connection)]
SignerDep = Annotated[TokenSigner, Depends(get_token_signer)]
ProjectionsDep = Annotated[Projections, Depends(get_projections)]

NO_TOKEN_MESSAGE = (
    "this endpoint needs `Authorization: Bearer <token>`; a site gets its token "
    f"from POST {SYNC_TOKEN} with its id and secret"
)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="SiteToken",
    description=f"a site token from POST {SYNC_TOKEN}",
)


VERIFIED_SITE = "jxc_verified_site"
"""Key in the ASGI scope's ``state``: the site whose token this request's credential check
(``central_api.api.credential_first``) verified before the body was read."""


async def get_token_site(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The site the request's bearer token speaks for; 401 without a valid one.

    A request with a body had its token checked before the body was read, moments ago in
    this same request (``credential_first``); that check's answer is taken, rather than
    reading the credential row a second time. The scope's state is written only by
    central's own code, and the headers it was checked from cannot change within a
    request. Any other request (a GET) is checked here, in a worker thread.
    """
    if credentials is None:
        raise TokenRefusedError(NO_TOKEN_MESSAGE)
    verified = request.scope.get("state", {}).get(VERIFIED_SITE)
    if verified is not None:
        return cast(str, verified)
    return await run_in_threadpool(verify_site_token, request, credentials.credentials)


def verify_site_token(request: Request, token: str) -> str:
    """The site ``token`` speaks for, checked on a pooled connection of the app's."""
    signer: TokenSigner = request.app.state.token_signer
    with checking_credentials(cast(Engine, request.app.state.engine)) as connection:
        return signer.verify(connection, token)


TokenSiteDep = Annotated[str, Depends(get_token_site)]
"""The authenticated site of a sync request."""


def require_site(token_site: str, requested_site: str) -> None:
    """A site acts only for itself: its own events, its own feed, its own watermark."""
    if token_site != requested_site:
        raise SiteForbiddenError(token_site=token_site, requested_site=requested_site)
