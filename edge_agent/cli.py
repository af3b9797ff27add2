"""``jxc edge ...``: run a site's agent and look into its ledger.

Imports stay inside the commands: the root CLI loads this module on every ``jxc`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The site's edge agent: devices, local ledger, sync to central.")

SiteFile = Annotated[Path, typer.Option("--config", "-c", help="the site's TOML file")]


@app.command()
def run(
    config: SiteFile,
) -> None:
    """Run the edge agent until SIGTERM or Ctrl-C."""
    import signal  # noqa: PLC0415

    from edge_agent.agent import EdgeAgent  # noqa: PLC0415
    from edge_agent.config import ConfigError, load_site_config  # noqa: PLC0415

    try:
        site = load_site_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    agent = EdgeAgent(site)
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    signal.signal(signal.SIGINT, lambda *_: agent.request_stop())
    agent.start()
    typer.echo(f"edge agent for site {site.site.id}: status at {agent.status_server.url}")
    try:
        agent.wait()
    finally:
        agent.stop()


@app.command()
def status(
    config: SiteFile,
) -> None:
    """Print the ledger's position (last seq, pending, synced) without starting the agent."""
    import json  # noqa: PLC0415

    from edge_agent.config import ConfigError, load_site_config  # noqa: PLC0415
    from edge_agent.ledger import Ledger  # noqa: PLC0415

    try:
        site = load_site_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    ledger = Ledger(site.ledger.path, site_id=site.site.id)
    try:
        counts = ledger.counts()
        typer.echo(
            json.dumps(
                {
                    "site_id": site.site.id,
                    "last_seq": counts.last_seq,
                    "pending": counts.pending,
                    "synced_through": counts.synced_through,
                }
            )
        )
    finally:
        ledger.close()
