"""Real jxc processes for integration tests, started through the same CLI a user runs."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from jxc import paths
from tests.patience import patience_timeout
from tests.ports import free_port

T = TypeVar("T")


ADMIN_USER = "it-admin"
ADMIN_PASSWORD = "integration only"
_admin_tokens: dict[str, str] = {}


def admin_headers(url: str) -> dict[str, str]:
    """A bearer header of the test central's first admin (made at serve from the env)."""
    parts = urllib.parse.urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    if base not in _admin_tokens:
        form = urllib.parse.urlencode({"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        request = urllib.request.Request(
            f"{base}{paths.API_ROOT}/auth/token",
            data=form.encode(),
            method="POST",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            _admin_tokens[base] = json.load(response)["access_token"]
    return {"Authorization": f"Bearer {_admin_tokens[base]}"}


def get_json(url: str, *, ca_file: Path | None = None) -> Any:
    """GET ``url``; central's API (not /healthz) as the test central's admin.

    ``ca_file`` is the CA bundle to trust for an ``https://`` central with its own CA.
    """
    path = urllib.parse.urlsplit(url).path
    headers = admin_headers(url) if path.startswith(f"{paths.API_ROOT}/") else {}
    request = urllib.request.Request(url, headers=headers)
    context = None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(request, timeout=patience_timeout(2), context=context) as response:
        return json.load(response)


def eventually(probe: Callable[[], T | None], *, within: float = 30.0, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy; bounded, with a clear failure."""
    within = patience_timeout(within)
    end = time.monotonic() + within
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            value = probe()
        except Exception as exc:  # the process may still be starting
            last_error = exc
        else:
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out after {within} s waiting for {what} (last error: {last_error})"
    )


def spawn(
    args: list[str], log: Path, *, wrapper: list[str] | None = None, **kwargs: Any
) -> subprocess.Popen[Any]:
    """``jxc ARGS`` as a process logging to ``log``; ``wrapper`` is a command to run it under."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        return subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "jxc", *args],
            stderr=sink,
            stdout=kwargs.pop("stdout", subprocess.DEVNULL),
            **kwargs,
        )


class ForkedProcess:
    """A child of the :class:`Zygote`, with the part of ``Popen`` that :class:`Site` uses."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: Any = None
        self.stdout: Any = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.poll(self.pid)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.02)
        return code


def _open_fifos(proc: ForkedProcess, stdin: Path, stdout: Path) -> tuple[Any, Any]:
    """Our ends of a child's stdin and stdout FIFOs, in the order the child opens them.

    The child opens its stdin first, and an open for writing without a reader fails at
    once (``ENXIO``) rather than blocking: so a child that dies before its open is a
    clear failure, not a test hung on ``open``. Once it has a reader, the child's very
    next step is opening its stdout, which our blocking open for reading then meets.
    """
    end = time.monotonic() + patience_timeout(10)
    while True:
        try:
            writer = os.open(stdin, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            code = proc.poll()
            if code is not None or time.monotonic() > end:
                raise AssertionError(f"pid {proc.pid} never opened {stdin} (exit {code})") from exc
            time.sleep(0.005)
    os.set_blocking(writer, True)
    reader = os.open(stdout, os.O_RDONLY)
    return open(writer, "w", encoding="utf-8"), open(reader, encoding="utf-8")


class Zygote:
    """``tests/integration/zygote.py``: forks ``jxc`` processes with central already imported.

    For tests that restart a process dozens of times (the chaos tests): each start is a
    real process running the same command line, minus about two CPU-seconds of imports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("zygote.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline()
        assert ready == "ready\n", f"the zygote did not start: {ready!r}"

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            answer: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return answer

    def spawn(
        self, args: list[str], log: Path, env: dict[str, str], *, pipes: bool = False
    ) -> ForkedProcess:
        """Fork ``jxc ARGS``; with ``pipes``, its stdin and stdout are the returned
        process's ``stdin`` and ``stdout`` (text, as ``Popen(..., text=True)`` gives):
        two FIFOs beside ``log``, since the zygote cannot hand its children our pipes."""
        log.parent.mkdir(parents=True, exist_ok=True)
        request: dict[str, Any] = {"spawn": args, "log": str(log), "env": env, "cwd": os.getcwd()}
        fifos = (log.with_suffix(".stdin"), log.with_suffix(".stdout"))
        if pipes:
            for fifo in fifos:
                fifo.unlink(missing_ok=True)
                os.mkfifo(fifo)
            request.update(stdin=str(fifos[0]), stdout=str(fifos[1]))
        answer = self._ask(request)
        proc = ForkedProcess(self, int(answer["pid"]))
        if pipes:
            proc.stdin, proc.stdout = _open_fifos(proc, *fifos)
        return proc

    def poll(self, pid: int) -> int | None:
        code: int | None = self._ask({"poll": pid})["returncode"]
        return code

    def close(self) -> None:
        """Kill what is left of its children, then end the zygote."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=patience_timeout(30))
        self._proc.stdout.close()


def stop(proc: subprocess.Popen[Any] | ForkedProcess) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=patience_timeout(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@dataclass
class Site:
    """Central, a scanner twin and an edge agent, in one temporary folder."""

    root: Path
    site_id: str = "S01"
    procs: dict[str, subprocess.Popen[Any] | ForkedProcess] = field(default_factory=dict)
    central_port: int = field(default_factory=free_port)
    edge_port: int = field(default_factory=free_port)
    sync: dict[str, float] = field(default_factory=dict)
    """Overrides of the site file's [sync] section."""
    push_via: str | None = None
    """Send the edge's pushes to this URL (a fault proxy) instead of central itself."""
    status_ports: dict[str, int] = field(default_factory=dict)
    scanner_section: str = 'driver = "serial-line"\nport = "dev/scanner-1"'
    """The driver and options of the site's one scanner."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the edge agent (e.g. PYTHONPATH for a plugin)."""
    edge_wrapper: list[str] = field(default_factory=list)
    """A command the edge agent runs under (e.g. one that drops privileges)."""
    database_url: str | None = None
    """Central's database (a PostgreSQL URL); by default a SQLite file in ``root``."""
    receiving_extra: str = ""
    """More lines of the site file's [receiving] section (its scale, its printer)."""
    devices_extra: str = ""
    """More device sections at the end of the site file ([[devices.scales]], ...)."""
    central_tls: tuple[Path, Path, Path] | None = None
    """(CA bundle, certificate, key): central serves HTTPS with the certificate
    (``--ssl-certfile/--ssl-keyfile``); the test's own probes trust the CA bundle."""
    central_extra: str = ""
    """More lines of the site file's [central] section (``ca_file``, ...)."""
    zygote: Zygote | None = None
    """Fork central and edge agents from this, imports done (tests that restart them often)."""

    def _spawn(
        self, args: list[str], log: Path, env: dict[str, str], wrapper: list[str] | None = None
    ) -> subprocess.Popen[Any] | ForkedProcess:
        # The zygote's children share its sys.path, fixed when it started: a process that
        # needs another PYTHONPATH (a plugin's) is started afresh.
        same_path = env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")
        if self.zygote is not None and not wrapper and same_path:
            return self.zygote.spawn(args, log, env)
        return spawn(args, log, env=env, wrapper=wrapper)

    @property
    def central_url(self) -> str:
        scheme = "http" if self.central_tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.central_port}"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}/healthz"

    @property
    def central_db(self) -> Path:
        return self.root / "central.db"

    @property
    def central_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.central_db}"

    def central_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of central's database, whichever kind it is."""
        if self.database_url is None:
            return rows(self.central_db, sql)
        engine = create_engine(self.database_url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql))]
        finally:
            engine.dispose()

    @property
    def edge_db(self) -> Path:
        return self.root / "edge.db"

    def start_central(self) -> None:
        tls: list[str] = []
        ca_file = None
        if self.central_tls is not None:
            ca_file, cert, key = self.central_tls
            tls = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        self.procs["central"] = self._spawn(
            [
                "central",
                "serve",
                "--port",
                str(self.central_port),
                "--database-url",
                self.central_database_url,
                *tls,
            ],
            self.root / "central.log",
            env={
                **os.environ,
                "JXC_CENTRAL_ADMIN_USER": ADMIN_USER,
                "JXC_CENTRAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
        )
        eventually(
            lambda: get_json(f"{self.central_url}{paths.HEALTH}", ca_file=ca_file),
            what="central /healthz",
        )

    def start_scanner(self) -> None:
        link = self.root / "dev" / "scanner-1"
        link.parent.mkdir(exist_ok=True)
        args = ["sim", "scanner", "--link", str(link)]
        log = self.root / "scanner.log"
        proc: subprocess.Popen[Any] | ForkedProcess
        if self.zygote is not None:  # a fresh interpreter spent ~1 s importing the CLI
            proc = self.zygote.spawn(args, log, dict(os.environ), pipes=True)
        else:
            proc = spawn(args, log, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs["scanner"] = proc
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("device:")
        eventually(link.exists, what="scanner link")

    @property
    def secret_file(self) -> Path:
        return self.root / "site.secret"

    def register_site(self) -> None:
        """Give the site its credential at central, once, as an operator would."""
        if self.secret_file.exists():
            return
        self.run_cli(
            [
                "central",
                "site",
                "add",
                self.site_id,
                "--database-url",
                self.central_database_url,
                "--secret-file",
                str(self.secret_file),
            ],
            self.root / "site-add.log",
        )

    def run_cli(self, args: list[str], log: Path) -> None:
        """``jxc ARGS`` run to its end as an operator runs it; it must exit 0 (its log in
        ``log``, shown if not).

        Through the zygote if the site has one: the same command through the same CLI,
        forked with its imports done. A fresh ``python -m jxc`` spent 0.6 CPU-s, and 2-4 s
        of a busy machine's wall, importing before it wrote one row.
        """
        if self.zygote is not None:
            code = self.zygote.spawn(args, log, dict(os.environ)).wait(patience_timeout(60))
            assert code == 0, f"jxc {' '.join(args)}: exit {code}\n{log.read_text()}"
            return
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            done = subprocess.run(
                [sys.executable, "-m", "jxc", *args],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                timeout=patience_timeout(60),
                check=False,
            )
        assert done.returncode == 0, (
            f"jxc {' '.join(args)}: exit {done.returncode}\n{log.read_text()}"
        )

    def write_site_file(self) -> Path:
        self.register_site()
        path = self.root / "site.toml"
        # The pull as often as the push: a test that makes a document at central waits for
        # it at the edge, and at the production default (10 s) each such wait took up to
        # ten seconds of nothing (a PO's lines, a pick list: most of test_po_receiving's
        # and test_sales_picking's time). What a pull brings is the same at any interval.
        sync = {
            "push_interval_s": 0.2,
            "pull_interval_s": 0.2,
            "batch_size": 7,
            "max_backoff_s": 1,
            **self.sync,
        }
        sync_lines = "\n".join(f"{key} = {value}" for key, value in sync.items())
        path.write_text(
            f"""
[site]
id = "{self.site_id}"
[central]
url = "{self.push_via or self.central_url}"
timeout_s = 5
site_secret_file = "{self.secret_file.name}"
{self.central_extra}
[sync]
{sync_lines}
[ledger]
path = "edge.db"
[status]
port = {self.edge_port}
[receiving]
location = "DOCK-1"
{self.receiving_extra}
[[devices.scanners]]
id = "scanner-1"
{self.scanner_section}
{self.devices_extra}
"""
        )
        return path

    def start_edge(self, name: str = "edge", *, wait_for_scanner: bool = True) -> None:
        port = self.edge_port if name == "edge" else free_port()
        self.procs[name] = self._spawn(
            [
                "edge",
                "run",
                "--config",
                str(self.write_site_file()),
                "--status-port",
                str(port),
            ],
            self.root / f"{name}.log",
            wrapper=self.edge_wrapper,
            env={**os.environ, **self.env},
        )
        self.status_ports[name] = port
        if wait_for_scanner:
            eventually(
                lambda: self.edge_status(name)["scanners"][0]["state"] == "connected",
                what=f"{name} with its scanner connected",
            )
        else:
            eventually(lambda: self.edge_status(name), what=f"{name} /healthz")

    def kill(self, name: str) -> None:
        """``kill -9``: no cleanup, no goodbye, as a power cut would."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def kill_edge(self) -> None:
        self.kill("edge")

    def edge_status(self, name: str = "edge") -> dict[str, Any]:
        port = self.status_ports.get(name, self.edge_port)
        status: dict[str, Any] = get_json(f"http://127.0.0.1:{port}/healthz")
        return status

    def scan(self, line: str) -> None:
        stdin = self.procs["scanner"].stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def stop_all(self) -> None:
        for name in sorted(self.procs, key=lambda n: n == "central"):  # central last
            stop(self.procs.pop(name))


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read a database file of another process (read-only, so we never take its lock)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=patience_timeout(5))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
