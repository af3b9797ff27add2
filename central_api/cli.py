"""``jxc central ...``: run the central service and manage its database.

The root ``jxc`` command imports this module at every start, even for ``jxc --help``, so
only typer is imported here; FastAPI, SQLAlchemy and uvicorn load inside the commands.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from central_api.core.config import Settings
    from jxc.discovery import Advertisement

app = typer.Typer(
    help="Central inventory service: serve the HTTP API, migrate its database.",
    no_args_is_help=True,
    add_completion=False,
)

log = logging.getLogger("central_api.cli")

HTTP_PARSER = "httptools"
EVENT_LOOP = "asyncio" if sys.platform == "win32" else "uvloop"
"""uvicorn's compiled HTTP parser and libuv event loop, named rather than left to "auto".

Without them uvicorn parses HTTP in pure Python (h11) on asyncio's own loop, and central
spent about a quarter more CPU per small request (``docs/performance.md``, "The compiled
HTTP parser and event loop"). Named, a missing package stops the start with uvicorn's
error instead of quietly serving slower. uvloop does not run on Windows."""

KEEP_ALIVE_S = 30
"""How long central keeps an idle HTTP connection open (uvicorn's default is 5 s).

An edge's client (httpx) drops a pooled connection after 5 s idle and reuses it before
that. With the server closing after 5 s as well, a request sent at that instant meets a
connection the server has just closed: "Connection reset by peer" or "Server
disconnected without sending a response", one or two pulls in 6,000 in
``bench/chain.py --seconds`` (docs/performance.md, "The chain at work"). The side that
closes idle connections first must be the client, so the server waits longer.
"""

_DATABASE_URL_HELP = (
    "sqlite:///path.db or postgresql+psycopg://user@host/db [env JXC_CENTRAL_DATABASE_URL]"
)


def _settings(**overrides: Any) -> Any:
    from central_api.core.config import Settings  # noqa: PLC0415

    return Settings(**{name: value for name, value in overrides.items() if value is not None})


_WORKERS_HELP = (
    "server processes, for PostgreSQL only (SQLite has one writer: see docs/performance.md) "
    "[env JXC_CENTRAL_WORKERS]"
)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="address to listen on [env JXC_CENTRAL_HOST]"),
    port: int | None = typer.Option(None, help="port to listen on [env JXC_CENTRAL_PORT]"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    workers: int | None = typer.Option(None, min=1, max=64, help=_WORKERS_HELP),
    *,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="serve HTTPS with this certificate (PEM) [env JXC_CENTRAL_SSL_CERTFILE]"),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="the certificate's key (PEM) [env JXC_CENTRAL_SSL_KEYFILE]"),
    ] = None,
) -> None:
    """Bring the database schema up to date, then serve the API.

    The start-up work (migrations, the first admin) is done once, here; with
    ``--workers N`` uvicorn then starts N processes on the one port, each of which only
    builds the app (``central_api.main.create_worker_app``) from the same settings.
    """
    from central_api.core.db import upgrade_database  # noqa: PLC0415

    try:
        settings = _settings(
            host=host,
            port=port,
            database_url=database_url,
            workers=workers,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
    except ValueError as exc:  # pydantic's ValidationError: a setting that does not fit
        typer.echo(f"error: {_settings_problem(exc)}", err=True)
        raise typer.Exit(2) from None
    refusal = tls_refusal(settings) or workers_refusal(settings.database_url, settings.workers)
    if refusal is not None:
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(2)
    upgrade_database(settings.database_url)
    ensure_first_admin(settings.database_url)
    log.info(
        "central starting",
        extra={
            "host": settings.host,
            "port": settings.port,
            "workers": settings.workers,
            "scheme": "https" if settings.ssl_certfile is not None else "http",
        },
    )
    announcements: list[Advertisement] = []

    def announce() -> None:
        announcement = announce_central(settings)
        if announcement is not None:
            _withdraw_on_signal(announcement)
            announcements.append(announcement)

    try:
        _run(settings, before_serving=announce)
    finally:
        for announcement in announcements:
            announcement.close()


def _withdraw_on_signal(announcement: Advertisement) -> None:
    """Withdraw the announcement when SIGTERM or SIGINT ends the service.

    uvicorn, once shut down, puts back the handlers it found and raises the signal again
    so the process ends as the signal says; the ``finally`` after it never runs. These
    handlers say goodbye on the network (edges drop central at once instead of when the
    record expires), then let the signal end the process as before.
    """
    import signal  # noqa: PLC0415

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def goodbye(number: int, frame: Any, previous: Any = previous) -> None:
            announcement.close()
            signal.signal(number, previous)
            signal.raise_signal(number)

        signal.signal(signum, goodbye)


def announce_central(settings: Settings) -> Advertisement | None:
    """Announce ``_jxc-central._tcp`` for edges without a URL, unless switched off.

    One announcement per ``serve``, made by this parent process whatever the number of
    workers. Its TXT record says how to reach the API: ``scheme``, ``path``, ``version``.
    """
    from jxc import __version__  # noqa: PLC0415
    from jxc.discovery import CENTRAL_TYPE, Advertisement, discovery_enabled  # noqa: PLC0415

    if not settings.advertise or not discovery_enabled():
        return None
    import socket  # noqa: PLC0415

    name = settings.advertise_name or f"jxc central on {socket.gethostname().split('.')[0]}"
    return Advertisement(
        CENTRAL_TYPE,
        name,
        settings.advertise_port or settings.port,
        bind_host=settings.host,
        properties={"scheme": settings.scheme, "path": "/", "version": __version__},
    ).start()


def _run(settings: Settings, before_serving: Callable[[], None]) -> None:
    """Serve until uvicorn is told to stop (SIGTERM, Ctrl-C).

    ``before_serving`` runs once the app is built, just before uvicorn binds the port: an
    edge that hears central's announcement should find it answering.
    """
    import uvicorn  # noqa: PLC0415

    if settings.workers > 1:
        # Worker processes read their settings from the environment, as Settings does:
        # what the command line said is handed down that way. This process only starts
        # and watches them: it never imports the app (about a CPU-second of imports).
        os.environ["JXC_CENTRAL_DATABASE_URL"] = settings.database_url
        os.environ["JXC_LOG_LEVEL"] = logging.getLevelName(logging.getLogger().level)
        before_serving()
        uvicorn.run(
            "central_api.main:create_worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            http=HTTP_PARSER,
            loop=EVENT_LOOP,
            **_tls_options(settings),
        )
        return
    from central_api.core.gc_tuning import tune_for_serving  # noqa: PLC0415
    from central_api.main import create_app  # noqa: PLC0415

    central = create_app(settings)
    tune_for_serving(gen0_threshold=settings.gc_gen0_threshold)
    # log_config=None keeps the JSON logging the root command set up; uvicorn's loggers
    # then propagate to it instead of installing their own handlers. access_log=False:
    # central writes its own access line (MetricsMiddleware, with the request's id, site
    # and user); uvicorn's would be a second line per request saying less.
    before_serving()
    uvicorn.run(
        central,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        http=HTTP_PARSER,
        loop=EVENT_LOOP,
        **_tls_options(settings),
    )


def _tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS arguments: none for plain HTTP."""
    if settings.ssl_certfile is None:
        return {}
    return {
        "ssl_certfile": str(settings.ssl_certfile),
        "ssl_keyfile": None if settings.ssl_keyfile is None else str(settings.ssl_keyfile),
    }


def tls_refusal(settings: Settings) -> str | None:
    """Why central cannot serve TLS with its certificate and key, or None if it can.

    Checked before the database is touched and before uvicorn starts, so a wrong path or
    a key of another certificate is one clear line, not a traceback from inside the
    server. The files' content is never quoted (one of them is a private key).
    """
    if settings.ssl_certfile is None:
        return None
    import ssl  # noqa: PLC0415

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    keyfile = None if settings.ssl_keyfile is None else str(settings.ssl_keyfile)
    try:
        context.load_cert_chain(str(settings.ssl_certfile), keyfile)
    except (OSError, ssl.SSLError) as exc:
        why = (
            exc.reason
            if isinstance(exc, ssl.SSLError) and exc.reason
            else (getattr(exc, "strerror", None) or type(exc).__name__)
        )
        return (
            f"cannot serve TLS with --ssl-certfile {settings.ssl_certfile}"
            f"{'' if keyfile is None else f' and --ssl-keyfile {keyfile}'}: {why}"
        )
    return None


def _settings_problem(exc: Exception) -> str:
    """A settings error in one line, without the values (a setting may be a password)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in errors(include_input=False, include_url=False)
        )
    return type(exc).__name__


def workers_refusal(database_url: str, workers: int) -> str | None:
    """Why ``workers`` processes may not serve ``database_url``, or None if they may.

    SQLite lets one writer in at a time, per database file. In one process, writers queue
    in order for it (``central_api.core.db.WriteGate``); across processes they could only
    poll SQLite's lock, the busy-wait that gave pushes half-second tails, and a second
    process adds no write throughput. Reads would scale, but central's small requests
    are writes as often as not.
    """
    from sqlalchemy import make_url  # noqa: PLC0415

    if workers > 1 and make_url(database_url).get_backend_name() == "sqlite":
        return (
            f"--workers {workers} needs PostgreSQL: SQLite takes one writer at a time, so "
            "central serves it from one process, whose writers queue in order for the lock "
            "(docs/performance.md, 'Why SQLite stays one process')"
        )
    return None


@app.command()
def migrate(
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    revision: str = typer.Option("head", help="Alembic revision to upgrade to"),
) -> None:
    """Bring the database schema up to ``revision`` without serving."""
    from central_api.core.db import upgrade_database  # noqa: PLC0415

    settings = _settings(database_url=database_url)
    upgrade_database(settings.database_url, revision=revision)
    typer.echo(f"database schema is at {revision}")


@app.command()
def rekey(database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP)) -> None:
    """Replace the token signing key: every site token is void, edges fetch new ones.

    Run it after restoring the database from a backup, or whenever a copy of the database
    may have left your hands: the key is in the database, and whoever holds it can sign
    tokens. Site secrets stay valid (central keeps only their hashes).
    """
    from central_api.services.auth import rekey as replace_key  # noqa: PLC0415

    _on_database(database_url, replace_key)
    typer.echo("signing key replaced: every site token issued before is void", err=True)


@app.command()
def backup(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="where backups go [env JXC_CENTRAL_BACKUP_DIR]")
    ] = None,
    keep: Annotated[
        int | None, typer.Option(min=1, help="backups kept [env JXC_CENTRAL_BACKUP_KEEP]")
    ] = None,
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Back the database up (safe while central serves), verify the copy, prune old ones.

    SQLite: SQLite's online backup API; PostgreSQL: ``pg_dump`` (it must be on PATH).
    """
    from central_api.services.backup import backup_database  # noqa: PLC0415
    from jxc.backup import BackupError  # noqa: PLC0415

    settings = _settings(database_url=database_url)
    target = directory or settings.backup_dir
    if target is None:
        typer.echo("error: say where backups go: --dir or JXC_CENTRAL_BACKUP_DIR", err=True)
        raise typer.Exit(2)
    try:
        result = backup_database(settings.database_url, target, keep=keep or settings.backup_keep)
    except (BackupError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result.as_dict()))


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(help="a central-<time>.db or .dump backup")],
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    yes: Annotated[
        bool, typer.Option("--yes", help="do not ask: the database is replaced")
    ] = False,
) -> None:
    """Replace the database with a verified backup (stop central first), then rekey.

    The backup is checked against its manifest before anything changes; afterwards the
    schema is brought up to this central's migrations and the token signing key is
    replaced (every site fetches a new token by itself). Edges then replay what the
    backup lacks: central ingests by event id, so what it already holds is a duplicate.
    """
    from central_api.services.auth import rekey as replace_key  # noqa: PLC0415
    from central_api.services.backup import restore_database  # noqa: PLC0415
    from jxc.backup import BackupError  # noqa: PLC0415

    settings = _settings(database_url=database_url)
    if not yes:
        typer.confirm(
            f"replace the database {_shown(settings.database_url)} with {backup_file}?",
            abort=True,
        )
    try:
        counts = restore_database(settings.database_url, backup_file)
    except (BackupError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _on_database(settings.database_url, replace_key)
    typer.echo(json.dumps({"restored": str(backup_file), "counts": counts}))
    typer.echo("signing key replaced: sites fetch new tokens at their next request", err=True)


def _shown(database_url: str) -> str:
    from sqlalchemy import make_url  # noqa: PLC0415

    return make_url(database_url).render_as_string(hide_password=True)


site_app = typer.Typer(
    help="Site credentials: the secret each edge agent authenticates with.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(site_app, name="site")

_WRITE_TO_HELP = (
    "write the secret to this file (mode 0600, for the site's [central] site_secret_file) "
    "instead of printing it"
)


def _on_database(database_url: str | None, action: Any) -> Any:
    """Run ``action(connection)`` on the (migrated) database; a refusal is a one-line error."""
    from central_api.core.db import create_db_engine, upgrade_database  # noqa: PLC0415
    from central_api.errors import CentralError  # noqa: PLC0415

    settings = _settings(database_url=database_url)
    upgrade_database(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            return action(connection)
    except CentralError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _hand_out(site_id: str, secret: str, secret_file: Path | None) -> None:
    """Show a new secret exactly once: central keeps only its hash."""
    if secret_file is None:
        typer.echo(secret)
        typer.echo(
            f"site {site_id}: this secret is shown once; put it in the site's secret file",
            err=True,
        )
        return
    try:
        _write_private(secret_file, secret + "\n")
    except OSError as exc:
        # Central already holds the new secret's hash: losing the secret now would lock
        # the site out, so it is shown instead.
        typer.echo(secret)
        typer.echo(f"site {site_id}: cannot write {secret_file} ({exc}); secret above", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"site {site_id}: secret written to {secret_file}", err=True)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` so that nobody but the owner can read it, and no reader sees half.

    A temporary file made 0600 from the start, synced, then renamed over ``path``: an edge
    starting at that moment reads the old secret or the new one, never a mix, and an
    existing file's looser mode is not inherited.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
            sink.write(text)
            sink.flush()
            os.fsync(sink.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@site_app.command("add")
def site_add(
    site_id: str = typer.Argument(..., help="the site's id, as in its site file's [site] id"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    secret_file: Annotated[Path | None, typer.Option(help=_WRITE_TO_HELP)] = None,
) -> None:
    """Give a site its credential and hand out the secret once."""
    from central_api.services.auth import add_site  # noqa: PLC0415

    secret = _on_database(database_url, lambda connection: add_site(connection, site_id))
    _hand_out(site_id, secret, secret_file)


@site_app.command("rotate")
def site_rotate(
    site_id: str = typer.Argument(..., help="the site whose secret is replaced"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    secret_file: Annotated[Path | None, typer.Option(help=_WRITE_TO_HELP)] = None,
) -> None:
    """Replace a site's secret; its tokens stop working at their next request."""
    from central_api.services.auth import rotate_site  # noqa: PLC0415

    secret = _on_database(database_url, lambda connection: rotate_site(connection, site_id))
    _hand_out(site_id, secret, secret_file)


@site_app.command("revoke")
def site_revoke(
    site_id: str = typer.Argument(..., help="the site to lock out until it is rotated"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Refuse a site from its next request on (a stolen box, a closed store)."""
    from central_api.services.auth import revoke_site  # noqa: PLC0415

    _on_database(database_url, lambda connection: revoke_site(connection, site_id))
    typer.echo(f"site {site_id}: revoked", err=True)


@site_app.command("list")
def site_list(
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="one JSON array, for scripts"),
) -> None:
    """Every site with a credential and whether it may sync."""
    from central_api.services.auth import list_sites  # noqa: PLC0415

    sites = _on_database(database_url, list_sites)
    rows = [
        {
            "site_id": site.site_id,
            "generation": site.generation,
            "revoked": site.revoked,
            "created_at": site.created_at.isoformat(),
            "changed_at": site.changed_at.isoformat(),
        }
        for site in sites
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        typer.echo(f"{row['site_id']}\t{state}\tgeneration {row['generation']}")


user_app = typer.Typer(
    help="People who sign in to central: add, change password, disable, enable, list.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(user_app, name="user")

_PASSWORD_STDIN_HELP = "read the password from the first line of stdin instead of a prompt"  # noqa: S105


def _read_password(from_stdin: bool) -> str:
    """A password from a prompt (typed twice) or stdin; there is never a default one."""
    import sys  # noqa: PLC0415

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        typer.echo("error: an empty password is not a password", err=True)
        raise typer.Exit(1)
    return str(password)


@user_app.command("add")
def user_add(
    username: str = typer.Argument(..., help="the name the user signs in with"),
    role: Annotated[
        list[str] | None, typer.Option("--role", help="a role to grant (repeatable)")
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="limit the user to this site (repeatable); none: all"),
    ] = None,
    password_stdin: bool = typer.Option(False, "--password-stdin", help=_PASSWORD_STDIN_HELP),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Add a user with a password typed at the prompt (or read from stdin)."""
    from central_api.services.people import create_user  # noqa: PLC0415

    password = _read_password(password_stdin)
    user = _on_database(
        database_url,
        lambda connection: create_user(
            connection, username=username, password=password, role_names=role or [], sites=site
        ),
    )
    typer.echo(f"user {user.username}: added with roles {', '.join(user.roles) or 'none'}")


@user_app.command("passwd")
def user_passwd(
    username: str = typer.Argument(..., help="whose password to set"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=_PASSWORD_STDIN_HELP),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Set a user's password; their sessions end."""
    from central_api.services.people import update_user  # noqa: PLC0415

    password = _read_password(password_stdin)
    _on_database(
        database_url, lambda connection: update_user(connection, username, password=password)
    )
    typer.echo(f"user {username}: password changed; their sessions have ended")


@user_app.command("disable")
def user_disable(
    username: str = typer.Argument(..., help="who may no longer sign in"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Refuse a user from their next request on."""
    from central_api.services.people import update_user  # noqa: PLC0415

    _on_database(database_url, lambda connection: update_user(connection, username, disabled=True))
    typer.echo(f"user {username}: disabled")


@user_app.command("enable")
def user_enable(
    username: str = typer.Argument(..., help="who may sign in again"),
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Let a disabled user sign in again (their old sessions stay ended)."""
    from central_api.services.people import update_user  # noqa: PLC0415

    _on_database(database_url, lambda connection: update_user(connection, username, disabled=False))
    typer.echo(f"user {username}: enabled")


@user_app.command("list")
def user_list(
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="one JSON array, for scripts"),
) -> None:
    """Every user with their roles, sites and whether they may sign in."""
    from central_api.services.people import list_users  # noqa: PLC0415

    users = _on_database(database_url, list_users)
    rows = [
        {
            "username": user.username,
            "roles": user.roles,
            "sites": user.sites,
            "disabled": user.disabled,
        }
        for user in users
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        state = "disabled" if row["disabled"] else "enabled"
        sites = ",".join(row["sites"]) if row["sites"] else "all sites"
        typer.echo(f"{row['username']}\t{state}\t{','.join(row['roles']) or '-'}\t{sites}")


def ensure_first_admin(database_url: str) -> None:
    """On a central without users, make the first admin, never with a default password.

    ``JXC_CENTRAL_ADMIN_PASSWORD`` (and ``JXC_CENTRAL_ADMIN_USER``, default ``admin``) make
    it unattended; at a terminal the password is asked for; otherwise central starts and
    says how to add one (sites sync meanwhile; nobody can sign in).
    """
    import sys  # noqa: PLC0415

    from central_api.core.db import create_db_engine  # noqa: PLC0415
    from central_api.services.people import count_users, create_user  # noqa: PLC0415

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            if count_users(connection):
                return
            username = os.environ.get("JXC_CENTRAL_ADMIN_USER", "admin")
            password = os.environ.get("JXC_CENTRAL_ADMIN_PASSWORD")
            if not password and sys.stdin.isatty():
                typer.echo(f"central has no users yet: choose a password for {username!r}")
                password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
            if not password:
                log.warning(
                    "central has no users: add the first admin with "
                    "`jxc central user add admin --role admin`, or start with "
                    "JXC_CENTRAL_ADMIN_PASSWORD set"
                )
                return
            create_user(connection, username=username, password=str(password), role_names=["admin"])
            log.info("first admin created", extra={"username": username})
    finally:
        engine.dispose()


audit_app = typer.Typer(
    help="The audit log: every change, who made it and from where, as a hash chain.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Walk the whole chain; name the first edited, deleted or reordered entry (exit 1).

    Prints the head's seq and hash when the chain is intact: keep them elsewhere and
    compare with a later run, to catch a forger who rewrote the chain from some entry on.
    """
    from central_api.services.audit import verify_chain  # noqa: PLC0415

    report = _on_database(database_url, verify_chain)
    if not report.intact:
        typer.echo(
            f"audit log BROKEN at entry {report.broken_at}: {report.reason} "
            f"({report.entries} entries read)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"audit log intact: {report.entries} entries, head {report.head_seq} {report.head_hash}"
    )


@app.command("check")
def check_command(
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
    repair: bool = typer.Option(
        False,
        help="after reporting, rebuild every stored valuation from the ledger and drop "
        "the stock snapshots that differ from it",
    ),
) -> None:
    """Prove stock balances and values equal what the ledger sums to (exit 1 if not).

    Recomputes every balance per (site, location, item, lot), every (site, item)'s
    valuation and every stock snapshot (the balances at a month's start) from scratch,
    and names each stored figure that differs. ``--repair``
    then rebuilds the valuation and drops the snapshots of each (site, item) with a wrong
    one (its reads fall back to the ledger; balances are ingest's and are only reported).
    """
    from datetime import UTC, datetime  # noqa: PLC0415

    from central_api.core.db import write_transaction  # noqa: PLC0415
    from central_api.services import snapshots  # noqa: PLC0415
    from central_api.services.valuation import check, rebuild  # noqa: PLC0415

    def run(connection: Any) -> list[Any]:
        found = check(connection) + snapshots.check(connection)
        connection.rollback()
        if repair:
            with write_transaction(connection):
                rebuild(connection, at=datetime.now(UTC))
            with write_transaction(connection):
                snapshots.repair(connection)
        return found

    differences = _on_database(database_url, run)
    for difference in differences:
        typer.echo(str(difference), err=True)
    if differences:
        typer.echo(f"{len(differences)} difference(s) from the ledger", err=True)
        raise typer.Exit(1)
    typer.echo("balances and values equal the ledger")


_IMPORT_KINDS = ("items", "partners", "locations", "opening_stock")
_EXPORT_KINDS = ("items", "partners", "locations")


def _format_of(path: Path, given: str | None) -> str:
    fmt = given or path.suffix.lower().lstrip(".")
    if fmt not in ("csv", "xlsx"):
        typer.echo(f"error: say --format csv or xlsx for {path.name}", err=True)
        raise typer.Exit(2)
    return fmt


@app.command("import")
def import_command(
    kind: Annotated[str, typer.Argument(help="items, partners, locations or opening_stock")],
    file: Annotated[
        Path, typer.Argument(help="a .csv or .xlsx file; its first row names the columns")
    ],
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or xlsx (default: from the suffix)")
    ] = None,
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Import master data or opening stock: the whole file or, if any row is bad, nothing
    (errors listed)."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415

    from central_api.api.routes.imports import ROW_MODELS  # noqa: PLC0415
    from central_api.services.audit import system_context  # noqa: PLC0415
    from central_api.services.imports import ImportRefusedError, import_file  # noqa: PLC0415
    from central_api.services.projections import built_in_projections  # noqa: PLC0415

    if kind not in _IMPORT_KINDS:
        typer.echo(f"error: kind must be one of {', '.join(_IMPORT_KINDS)}", err=True)
        raise typer.Exit(2)
    fmt = _format_of(file, file_format)
    data = file.read_bytes()
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                label = "checking rows" if phase == "check" else "writing"
                tasks[phase] = bar.add_task(label, total=total)
            bar.update(tasks[phase], completed=done)

        def run(connection: Any) -> Any:
            try:
                return import_file(
                    connection,
                    kind=kind,
                    data=data,
                    fmt=fmt,
                    audit=system_context(f"cli:import {kind}"),
                    models=ROW_MODELS,
                    progress=progress,
                    projections=built_in_projections(),
                )
            except ImportRefusedError as refused:
                return refused

        outcome = _on_database(database_url, run)
    if isinstance(outcome, ImportRefusedError):
        console.print(
            f"[red]{file.name} refused, nothing imported[/red]: {len(outcome.errors)} error(s)"
        )
        for error in outcome.errors:
            console.print(f"  row {error.row}, {error.column}: {error.reason}")
        raise typer.Exit(1)
    typer.echo(
        f"{kind}: {outcome.rows} rows, {outcome.created} created, {outcome.updated} updated, "
        f"{outcome.unchanged} unchanged"
    )


@app.command("export")
def export_command(
    kind: Annotated[str, typer.Argument(help="items, partners or locations")],
    file: Annotated[Path, typer.Argument(help="the .csv or .xlsx file to write")],
    file_format: Annotated[str | None, typer.Option("--format", help="csv or xlsx")] = None,
    database_url: str | None = typer.Option(None, help=_DATABASE_URL_HELP),
) -> None:
    """Export master data in the columns ``import`` reads (financial columns included)."""
    from central_api.services.imports import export_rows, write_table  # noqa: PLC0415

    if kind not in _EXPORT_KINDS:
        typer.echo(f"error: kind must be one of {', '.join(_EXPORT_KINDS)}", err=True)
        raise typer.Exit(2)
    fmt = _format_of(file, file_format)
    header, rows = _on_database(
        database_url, lambda connection: export_rows(connection, kind, financial=True)
    )
    file.write_bytes(write_table(header, rows, fmt))
    typer.echo(f"{kind}: {len(rows)} rows written to {file}")
