"""What the benchmarks share: the console, the machine they ran on, report tables, and the
end of a run (load and memory, the report, ``--json``).

Not a package: ``bench/sync.py`` and ``bench/devices.py`` are run as scripts, so this
module is found next to them (``from common import ...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import Field, asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import Progress, ProgressColumn
from rich.table import Table as RichTable

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=max(Console().width, 120))


class Report(Protocol):
    """A report dataclass with the machine it ran on."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    machine: dict[str, Any]


R = TypeVar("R", bound=Report)


def cli(doc: str | None) -> typer.Typer:
    """The script's command line; its help is the first paragraph of ``doc``."""
    return typer.Typer(add_completion=False, help=doc.split("\n\n")[0] if doc else None)


def progress_bars(*columns: str | ProgressColumn) -> Progress:
    """Progress lines on the console that stay once done."""
    return Progress(*columns, console=console, transient=False)


def machine_info(
    *, runtime: Mapping[str, Any] | None = None, libraries: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """CPUs, Python and ``runtime`` (what comes with it), the platform, ``libraries``, and
    the load average now."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        **(runtime or {}),
        "platform": platform.platform(),
        **(libraries or {}),
        "loadavg_at_start": os.getloadavg(),
    }


def table(title: str, headings: Iterable[str], *, left: Collection[str] = ()) -> RichTable:
    """A report table: its columns right-aligned, but for those named in ``left``."""
    made = RichTable(title=title)
    for heading in headings:
        made.add_column(heading, justify="left" if heading in left else "right")
    return made


def finish(report: R, print_report: Callable[[R], None], json_out: Path | None) -> None:
    """The end of a run: load and peak memory into ``report.machine``, the report printed,
    then the load at start and end, and the report written to ``json_out`` if given."""
    report.machine["loadavg_at_end"] = os.getloadavg()
    report.machine["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print_report(report)
    console.print(
        f"load average {report.machine['loadavg_at_start']} at start, "
        f"{report.machine['loadavg_at_end']} at end (2 cores: others' work shows here); "
        f"peak RSS {report.machine['peak_rss_mb']} MB"
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(asdict(report), indent=2) + "\n")


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """A server process a bench started: where it answers, and its pid (for its CPU)."""

    base: str
    pid: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[Server]:
    """Run ``argv`` (``{port}`` replaced by a free port) until it answers ``/healthz``;
    stop it (SIGTERM, then SIGKILL) at the end of the block."""
    from jxc.paths import HEALTH  # noqa: PLC0415

    port = _free_port()
    argv = [part.replace("{port}", str(port)) for part in argv]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {process.returncode}: {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}{HEALTH}", timeout=1).status_code in (200, 404):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not answer within 60 s: {log_path}")
                time.sleep(0.2)
            yield Server(base, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def central_server(
    url: str,
    workers: int,
    log_path: Path,
    *,
    group_commit: bool = True,
    settings: dict[str, str] | None = None,
) -> contextlib.AbstractContextManager[Server]:
    """``jxc central serve`` (``BENCH_JXC`` names another ``jxc``) on ``url``, with
    ``settings`` (``JXC_CENTRAL_*`` variables) on top of this process's environment."""
    jxc = os.environ.get("BENCH_JXC") or str(Path(sys.executable).with_name("jxc"))
    argv = [jxc, "central", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    env = {**os.environ, "JXC_CENTRAL_DATABASE_URL": url}
    env["JXC_CENTRAL_GROUP_COMMIT"] = "true" if group_commit else "false"
    env.update(settings or {})
    return server(argv, env, log_path)


def process_tree_cpu_s(pid: int, *, children: bool = True) -> float:
    """User plus system CPU seconds of ``pid`` and (unless told not to) its live children
    (a server and its workers), from ``/proc``; 0 for a process that is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stats = Path("/proc").glob("[0-9]*/stat") if children else [Path(f"/proc/{pid}/stat")]
    for stat in stats:
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(stat.parent.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``<prefix>_<pid>`` as a SQLAlchemy URL, on the server of
    ``JXC_TEST_POSTGRES_URL`` (the test server by default); dropped at the end."""
    import psycopg  # noqa: PLC0415

    admin_url = os.environ.get("JXC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
