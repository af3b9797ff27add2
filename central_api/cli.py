"""``jxc central ...``: run the central service and manage its database.

The root ``jxc`` command imports this module at every start, even for ``jxc --help``, so
only typer is imported here; FastAPI, SQLAlchemy and uvicorn load inside the commands.
"""

from __future__ import annotations

import logging
from typing import Any

import typer

app = typer.Typer(
    help="Central inventory service: serve the HTTP API, migrate its database.",
    no_args_is_help=True,
    add_completion=False,
)

log = logging.getLogger("central_api.cli")

_DATABASE_URL_HELP = (
    "sqlite:///path.db or postgresql+psycopg://user@host/db [env JXC_CENTRAL_DATABASE_URL]"
)


def _settings(**overrides: Any) -> Any:
    from central_api.core.config import Settings  # noqa: PLC0415

    return Settings(**{name: value for name, value in overrides.items() if value is not None})


@app.command()
def serve(
    host: str | None = typer.Option(None, help="address to listen on [env JXC_CENTRAL_HOST]"),
    port: int | None = typer.Option(None, help="port to listen on [env JXC_CENTRAL_PORT]"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Bring the database schema up to date, then serve the API."""
    import uvicorn  # noqa: PLC0415

    from central_api.db import upgrade_database  # noqa: PLC0415
    from central_api.main import create_app  # noqa: PLC0415

    settings = _settings(host=host, port=port, database_url=database_url)
    upgrade_database(settings.database_url)
    log.info("central starting", extra={"host": settings.host, "port": settings.port})
    # log_config=None keeps the JSON logging the root command set up; uvicorn's loggers
    # then propagate to it instead of installing their own handlers.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


@app.command()
def migrate(
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    revision: str = typer.Option("head", help="Alembic revision to upgrade to"),
) -> None:
    """Bring the database schema up to ``revision`` without serving."""
    from central_api.db import upgrade_database  # noqa: PLC0415

    settings = _settings(database_url=database_url)
    upgrade_database(settings.database_url, revision=revision)
    typer.echo(f"database schema is at {revision}")
