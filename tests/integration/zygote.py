"""A fork server for ``jxc`` processes that a test restarts many times.

The chaos tests kill -9 central (and the edge agent) some fifty times each and start it
again. Every start of ``python -m jxc central serve`` spent about 1.8 CPU-s importing
central (FastAPI building some 380 routes' dependants as the modules are decorated) before
it did anything the test is about: what is under test is what a process that dies at a
random instant leaves behind, and what the next one makes of it, not the import.

This process imports what ``jxc central serve`` and ``jxc edge run`` import, once, then
forks a child per start. Each child is a real process of its own (own pid, own SQLite
connections and sockets, killed by a real SIGKILL) that runs the same command line
through the same CLI entry point (``jxc.cli.main``) from the top, settings, migrations
check, app and all; only the imports are inherited, and central's routes (below). The
zygote itself must stay single-threaded for ``fork`` to be safe, so it opens nothing and
starts no thread.

Central's routes are built once, here, too: ``create_app`` spent another 0.4-0.6 CPU-s
per start with FastAPI building every route's dependencies for the new app. A child's
``central_api.main.create_app`` hands back that app instead, given the child's database
through :func:`~central_api.main.attach_database`, which makes everything an app keeps per
database (engine, write gate, push group, token signer, projections, settings); it is
what the test suite's shared app does for every test (``tests/central/conftest.py``,
``_SharedApp``). Settings that differ from the prebuilt app's beyond the database and the
address get a fresh ``create_app``, as before. The app is built on an in-memory database
URL that is never connected to, so the zygote still opens nothing.

The protocol is one JSON object a line on stdin, one answer a line on stdout:
``{"spawn": [args], "log": path, "env": {...}, "cwd": path}`` → ``{"pid": n}`` (with
``"stdin"`` and ``"stdout"``: FIFOs to use for them instead of /dev/null);
``{"poll": pid}`` → ``{"returncode": code or null}`` (a child's code is reaped once,
then remembered). End of stdin: the zygote kills whatever children remain and exits.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

PRELOAD = (
    "jxc.cli",
    "jxc.logs",
    "central_api.cli",
    "central_api.core.db",
    "central_api.core.gc_tuning",
    "central_api.main",
    "uvicorn",
    "edge_agent.cli",
    "edge_agent.agent",
)


_CENTRAL: Any = None
"""Central's app with its routes built (``create_app``), inherited by every child."""

_PER_START = {"database_url", "host", "port", "ssl_certfile", "ssl_keyfile"}
"""Settings a start may change and still be given the prebuilt app: ``create_app`` reads
none of them (the database is attached per child; the address and TLS are uvicorn's)."""


def _preload() -> None:
    import importlib  # noqa: PLC0415

    for name in PRELOAD:
        importlib.import_module(name)
    global _CENTRAL  # noqa: PLW0603 - built once, before any fork
    from central_api.core.config import Settings  # noqa: PLC0415
    from central_api.main import create_app  # noqa: PLC0415

    _CENTRAL = create_app(Settings(database_url="sqlite://"))
    # What every start then runs first: ``upgrade_database``, whose first call in a process
    # imports alembic's commands, its runtime and SQLAlchemy's DDL compilers (some 45 ms
    # of a restart's CPU). Run once here on an in-memory database, gone at ``dispose``.
    from central_api.core.db import upgrade_database  # noqa: PLC0415

    upgrade_database("sqlite://")
    if threading.active_count() != 1:  # fork would copy a lock some thread holds
        raise RuntimeError(f"the zygote must stay single-threaded: {threading.enumerate()}")
    # Out of the collector's sight before the first fork (what ``gc.freeze`` is for): a
    # child's collection would otherwise walk every object the zygote made, touching (so
    # copying) every page of it. Central's ``tune_for_serving`` runs a full collection
    # at each start: 0.12 CPU-s on a quiet machine, 0.4-0.7 s of wall on a busy one, before
    # it served; with the imports frozen here it has only the child's own objects to walk.
    # Production's central freezes the same imports at start (``tune_for_serving``).
    gc.collect()
    gc.freeze()


def _child(
    args: list[str],
    log: str,
    env: dict[str, str],
    cwd: str,
    stdin: str | None = None,
    stdout: str | None = None,
) -> None:
    """Become ``python -m jxc ARGS`` in this forked process; never returns.

    ``stdin`` and ``stdout``, when given, are FIFOs the test holds the other ends of
    (``Zygote.spawn``): opened in that order, the first waiting for the test's writer, the
    second for its reader.
    """
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        source = os.open(stdin, os.O_RDONLY) if stdin else null
        target = os.open(stdout, os.O_WRONLY) if stdout else null
        os.dup2(source, 0)
        os.dup2(target, 1)
        os.dup2(sink, 2)
        for fd in {null, sink, source, target}:
            os.close(fd)
        # sys.stdout and sys.stderr still write to descriptors 1 and 2, now /dev/null and
        # the log, buffered as in any Python process (stderr by line: a test reads the log
        # while the process runs). stdin may hold read-ahead commands: a fresh one.
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptor
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["jxc", *args]
        _lend_the_prebuilt_app()
        from jxc.cli import main  # noqa: PLC0415 - preloaded: only looked up

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a child must never fall back into the zygote's loop
        import traceback  # noqa: PLC0415

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _lend_the_prebuilt_app() -> None:
    """Make this child's ``create_app`` hand back :data:`_CENTRAL` on the child's database.

    The CLI looks ``create_app`` up in ``central_api.main`` when it starts serving, so the
    swap takes effect there. The app is given out once: a second call builds a fresh one.
    """
    import central_api.main as central_main  # noqa: PLC0415 - preloaded
    from central_api.core.config import Settings  # noqa: PLC0415

    build = central_main.create_app
    lent: list[Any] = []

    def create_app(settings: Settings | None = None) -> Any:
        settings = settings if settings is not None else Settings()
        prebuilt = _CENTRAL.state.settings
        if lent or settings.model_dump(exclude=_PER_START) != prebuilt.model_dump(
            exclude=_PER_START
        ):
            return build(settings)
        central_main.attach_database(_CENTRAL, settings)
        lent.append(_CENTRAL)
        logging.getLogger("tests.zygote").info("central's routes built by the test zygote")
        return _CENTRAL

    central_main.create_app = create_app  # type: ignore[assignment]


def _serve() -> None:
    children: dict[int, int | None] = {}
    while line := sys.stdin.readline():
        request: dict[str, Any] = json.loads(line)
        if "spawn" in request:
            pid = os.fork()
            if pid == 0:
                _child(
                    request["spawn"],
                    request["log"],
                    request["env"],
                    request["cwd"],
                    request.get("stdin"),
                    request.get("stdout"),
                )
            children[pid] = None
            answer: dict[str, Any] = {"pid": pid}
        else:
            pid = int(request["poll"])
            if children.get(pid) is None:
                done, status = os.waitpid(pid, 0 if request.get("block") else os.WNOHANG)
                if done:
                    children[pid] = os.waitstatus_to_exitcode(status)
            answer = {"returncode": children[pid]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for pid, code in children.items():
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    _preload()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    _serve()
