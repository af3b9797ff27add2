"""Request dependencies as ``Annotated`` aliases, so a route states what it needs once.

The engine and settings hang on ``app.state`` (set by ``create_app``), not in module
globals: two apps in one process, as in the tests, then never share a database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine

from central_api.core.config import Settings
from central_api.errors import SiteForbiddenError, TokenRefusedError
from central_api.services.auth import TokenSigner
from central_api.services.projections import Projections
from jxc.paths import SYNC_TOKEN


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_engine(request: Request) -> Engine:
    return cast(Engine, request.app.state.engine)


def get_connection(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """One pooled connection per request, returned (and rolled back) when it ends.

    Services open their own transactions on it, so a read never holds a write lock and a
    write commits before the response is sent.
    """
    with engine.connect() as connection:
        yield connection


def get_token_signer(request: Request) -> TokenSigner:
    return cast(TokenSigner, request.app.state.token_signer)


def get_projections(request: Request) -> Projections:
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


def get_token_site(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    connection: ConnDep,
    signer: SignerDep,
) -> str:
    """The site the request's bearer token speaks for; 401 without a valid one.

    The connection is the route's own (FastAPI gives one instance per request), so the
    check costs no second pooled connection.
    """
    if credentials is None:
        raise TokenRefusedError(NO_TOKEN_MESSAGE)
    return signer.verify(connection, credentials.credentials)


TokenSiteDep = Annotated[str, Depends(get_token_site)]
"""The authenticated site of a sync request."""


def require_site(token_site: str, requested_site: str) -> None:
    """A site acts only for itself: its own events, its own feed, its own watermark."""
    if token_site != requested_site:
        raise SiteForbiddenError(token_site=token_site, requested_site=requested_site)
