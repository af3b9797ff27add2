"""The ``jxc`` command line.

Each part of the project contributes its command group through the ``jxc.commands`` entry
point group (see ``pyproject.toml``). The core therefore never imports the edge agent or
the central service, and a third-party package can add ``jxc <its-name> ...`` the same way.
Command modules must stay cheap to import: heavy imports belong inside the commands.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Annotated

import typer

from jxc import __version__

app = typer.Typer(
    name="jxc",
    help="jxc 进销存: edge agents, central inventory service, device simulators.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(
    log_level: Annotated[
        str, typer.Option(envvar="JXC_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    ] = "INFO",
) -> None:
    from jxc.logs import configure_logging  # noqa: PLC0415 - keep --help fast

    configure_logging(log_level)


@app.command()
def version() -> None:
    """Print the jxc version and the wire contract version."""
    from jxc.contract import CONTRACT_VERSION  # noqa: PLC0415

    typer.echo(f"jxc {__version__} (wire contract v{CONTRACT_VERSION})")


@app.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="run the scenario, print, and exit")] = False,
    workdir: Annotated[
        str, typer.Option(help="where the demo keeps its databases and logs")
    ] = "var/demo",
) -> None:
    """Start central, a simulated site and an edge agent; scan; show the stock."""
    from jxc.demo import run_demo  # noqa: PLC0415

    raise typer.Exit(run_demo(once=once, workdir=workdir))


def _add_plugin_groups() -> None:
    for entry in entry_points(group="jxc.commands"):
        try:
            group = entry.load()
        except Exception:  # a broken plugin must not take the whole CLI down
            logging.getLogger("jxc.cli").exception("cannot load command group %r", entry.name)
            continue
        app.add_typer(group, name=entry.name)


_add_plugin_groups()


def main() -> None:
    """Console-script entry point."""
    app()
