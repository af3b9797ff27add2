"""Request dependencies as ``Annotated`` aliases, so a route states what it needs once.

The engine and settings hang on ``app.state`` (set by ``create_app``), not in module
globals: two apps in one process, as in the tests, then never share a database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from central_api.core.config import Settings


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


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ConnDep = Annotated[Connection, Depends(get_connection)]
