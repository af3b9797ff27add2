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
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import Field, asdict
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

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
