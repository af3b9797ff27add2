"""``jxc edge ...``: run a site's agent and look into its ledger.

Imports stay inside the commands: the root CLI loads this module on every ``jxc`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edge_agent.config import SiteConfig

app = typer.Typer(help="The site's edge agent: devices, local ledger, sync to central.")

SiteFile = Annotated[Path, typer.Option("--config", "-c", help="the site's TOML file")]


@app.command()
def run(
    config: SiteFile,
    status_port: Annotated[
        int | None, typer.Option(help="override [status] port (0 = any free port)")
    ] = None,
) -> None:
    """Run the edge agent until SIGTERM or Ctrl-C."""
    import signal  # noqa: PLC0415

    from edge_agent.agent import EdgeAgent  # noqa: PLC0415

    site = _load(config)
    if status_port is not None:
        site.status.port = status_port
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

    from edge_agent.ledger import Ledger  # noqa: PLC0415

    site = _load(config)
    ledger = Ledger(site.ledger.path, site_id=site.site.id)
    try:
        counts = ledger.counts()
        lease = ledger.sender_lease()
        typer.echo(
            json.dumps(
                {
                    "site_id": site.site.id,
                    "last_seq": counts.last_seq,
                    "pending": counts.pending,
                    "synced_through": counts.synced_through,
                    "sender": lease[0] if lease else None,
                }
            )
        )
    finally:
        ledger.close()


outbox = typer.Typer(help="Look into the outbox: what has not reached central yet.")
app.add_typer(outbox, name="outbox")


@outbox.command("list")
def outbox_list(
    config: SiteFile,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 50,
) -> None:
    """List the oldest unsynced events, one JSON object per line."""
    from edge_agent.ledger import Ledger  # noqa: PLC0415

    site = _load(config)
    ledger = Ledger(site.ledger.path, site_id=site.site.id)
    try:
        for pending in ledger.pending_bodies(limit):
            typer.echo(pending.body)
    finally:
        ledger.close()


@outbox.command("show")
def outbox_show(
    config: SiteFile,
    seq: Annotated[int, typer.Argument(min=1, help="the event's seq")],
) -> None:
    """Show one event of the ledger and whether it reached central."""
    import json  # noqa: PLC0415

    from edge_agent.ledger import Ledger  # noqa: PLC0415

    site = _load(config)
    ledger = Ledger(site.ledger.path, site_id=site.site.id)
    try:
        found = ledger.event(seq)
    finally:
        ledger.close()
    if found is None:
        typer.echo(f"error: site {site.site.id} has no event with seq {seq}", err=True)
        raise typer.Exit(1)
    event, synced_at = found
    typer.echo(json.dumps({**event.model_dump(mode="json"), "synced_at": synced_at}, indent=2))


def _load(config: Path) -> SiteConfig:
    from edge_agent.config import ConfigError, load_site_config  # noqa: PLC0415

    try:
        return load_site_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
