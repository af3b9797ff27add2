"""Alembic environment of the central database.

:func:`central_api.core.db.upgrade_database` hands in an open connection, already inside the
transaction (and, on PostgreSQL, the advisory lock) it wants the upgrade to run in. When
Alembic's own command line is used instead, the URL comes from ``sqlalchemy.url`` or
``JXC_CENTRAL_DATABASE_URL`` and the engine is made the same way the service makes it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from central_api.models import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    handed_in = context.config.attributes.get("connection")
    if isinstance(handed_in, Connection):
        _run(handed_in)
        return

    from central_api.core.config import Settings  # noqa: PLC0415
    from central_api.core.db import create_db_engine, write_transaction  # noqa: PLC0415

    url = context.config.get_main_option("sqlalchemy.url") or Settings().database_url
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection, write_transaction(connection):
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("central migrations run online only: use `jxc central migrate`")
_run_online()
