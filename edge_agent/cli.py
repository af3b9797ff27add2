"""``jxc edge ...``: run a site's agent and look into its ledger.

Imports stay inside the commands: the root CLI loads this module on every ``jxc`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edge_agent.config import SiteConfig
    from edge_agent.ledger import Ledger

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
    from edge_agent.auth import SiteSecretError  # noqa: PLC0415
    from edge_agent.ledger import LedgerError  # noqa: PLC0415
    from edge_agent.transport import CentralTlsError  # noqa: PLC0415

    site = load_or_exit(config)
    if status_port is not None:
        site.status.port = status_port
    try:
        agent = EdgeAgent(site)
    except (SiteSecretError, LedgerError, CentralTlsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
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

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
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
                    "dead_letters": counts.dead,
                    "sender": lease[0] if lease else None,
                }
            )
        )
    finally:
        ledger.close()


@app.command()
def backup(
    config: SiteFile,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="override [backup] dir of the site file")
    ] = None,
    keep: Annotated[
        int | None, typer.Option(min=1, help="override [backup] keep: backups kept")
    ] = None,
) -> None:
    """Back the ledger up (safe while the agent runs), verify the copy, prune old ones."""
    import json  # noqa: PLC0415

    from edge_agent.backup import backup_ledger  # noqa: PLC0415
    from jxc.backup import BackupError  # noqa: PLC0415

    site = load_or_exit(config)
    try:
        result = backup_ledger(site, directory=directory, keep=keep)
    except (BackupError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result.as_dict()))


@app.command()
def restore(
    config: SiteFile,
    backup_file: Annotated[Path, typer.Argument(help="a ledger-<site>-<time>.db backup")],
    force: Annotated[
        bool, typer.Option("--force", help="restore even below what central already holds")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="do not ask central how far it holds the site")
    ] = False,
) -> None:
    """Replace the ledger with a backup (stop the agent first).

    Asks central how far it holds the site's events, unless --offline: a backup older
    than that would hand out seqs central already has, and is refused without --force.
    """
    import json  # noqa: PLC0415

    from edge_agent.backup import restore_ledger  # noqa: PLC0415
    from jxc.backup import BackupError  # noqa: PLC0415

    site = load_or_exit(config)
    holds = None if offline else _central_watermark(site)
    try:
        counts = restore_ledger(site, backup_file, central_holds_through=holds, force=force)
    except (BackupError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"restored": str(backup_file), "counts": counts}))


def _central_watermark(site: SiteConfig) -> int | None:
    """How far central holds the site's ledger, or None (said on stderr) if unknown."""
    import httpx  # noqa: PLC0415

    from edge_agent.agent import site_auth  # noqa: PLC0415
    from edge_agent.auth import SiteSecretError  # noqa: PLC0415
    from edge_agent.transport import (  # noqa: PLC0415
        CentralTlsError,
        central_client,
        describe_transport_error,
    )
    from jxc.paths import SYNC_ACK  # noqa: PLC0415

    base_url = central_url_or_discover(site)
    if base_url is None:
        typer.echo(
            "warning: cannot ask central how far it holds the site: no [central] url and "
            "no central answered on the network",
            err=True,
        )
        return None
    try:
        with central_client(site, base_url=base_url, auth=site_auth(site)) as client:
            answer = client.get(SYNC_ACK, params={"site_id": site.site.id})
    except httpx.HTTPError as exc:
        typer.echo(
            "warning: cannot ask central how far it holds the site: "
            f"{describe_transport_error(exc)}",
            err=True,
        )
        return None
    except (SiteSecretError, CentralTlsError) as exc:
        typer.echo(f"warning: cannot ask central how far it holds the site: {exc}", err=True)
        return None
    if answer.status_code == 404:
        return 0
    if answer.status_code != 200:
        typer.echo(f"warning: central answered {answer.status_code} for the watermark", err=True)
        return None
    return int(answer.json()["acked_through_seq"])


def central_url_or_discover(site: SiteConfig) -> str | None:
    """The site file's central URL, or the first central discovery finds within
    ``[central] timeout_s`` (None if discovery is off or nothing answered)."""
    from jxc.discovery import CentralFinder, discovery_enabled  # noqa: PLC0415

    if site.central.url is not None:
        return str(site.central.url).rstrip("/")
    if not discovery_enabled():
        return None
    finder = CentralFinder()
    try:
        return finder.wait(site.central.timeout_s)
    finally:
        finder.close()


outbox = typer.Typer(help="Look into the outbox: what has not reached central yet.")
app.add_typer(outbox, name="outbox")


@outbox.command("list")
def outbox_list(
    config: SiteFile,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 50,
) -> None:
    """List the oldest unsynced events, one JSON object per line."""
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        for pending in ledger.pending_bodies(limit, contiguous=False):
            typer.echo(pending.body)
    finally:
        ledger.close()


@outbox.command("dead")
def outbox_dead(
    config: SiteFile,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 1000,
) -> None:
    """List the dead letters: events central refused, with its reason, one JSON per line."""
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        for letter in ledger.dead_letters(limit):
            typer.echo(json.dumps(dataclasses.asdict(letter), ensure_ascii=False))
    finally:
        ledger.close()


@outbox.command("requeue")
def outbox_requeue(
    config: SiteFile,
    seqs: Annotated[
        list[int] | None, typer.Argument(min=1, help="seqs of dead letters to send again")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="requeue every dead letter")] = False,
) -> None:
    """Send dead letters again, unchanged, once the cause of the refusal is fixed at central.

    The running agent picks them up at its next push; if central refuses again, they come
    back as dead letters.
    """
    if bool(seqs) == all_:
        typer.echo("error: name the seqs to requeue, or give --all", err=True)
        raise typer.Exit(2)
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        done = ledger.requeue(None if all_ else seqs)
    finally:
        ledger.close()
    missing = sorted(set(seqs or ()) - set(done))
    typer.echo(f"requeued {len(done)} event(s): {' '.join(map(str, done)) or '-'}")
    if missing:
        typer.echo(
            f"error: not dead letters of site {site.site.id}: {' '.join(map(str, missing))}",
            err=True,
        )
        raise typer.Exit(1)


@outbox.command("show")
def outbox_show(
    config: SiteFile,
    seq: Annotated[int, typer.Argument(min=1, help="the event's seq")],
) -> None:
    """Show one event of the ledger, whether it reached central, and why not if refused."""
    import json  # noqa: PLC0415

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        found = ledger.event(seq)
        dead = ledger.dead_letter(seq)
    finally:
        ledger.close()
    if found is None:
        typer.echo(f"error: site {site.site.id} has no event with seq {seq}", err=True)
        raise typer.Exit(1)
    event, synced_at = found
    refused = None if dead is None else {"status": dead.status, "detail": dead.detail}
    body = {**event.model_dump(mode="json"), "synced_at": synced_at, "refused": refused}
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


counter = typer.Typer(help="The store's counter: what the tills took, from the ledger alone.")
app.add_typer(counter, name="counter")


@counter.command("totals")
def counter_totals(
    config: SiteFile,
    day: Annotated[
        str | None, typer.Option(help="the day (UTC), YYYY-MM-DD; default today")
    ] = None,
) -> None:
    """The day's takings per payment method, net of refunds, as one JSON object: read from
    the ledger file, so it answers with central down (and with the agent stopped)."""
    import json  # noqa: PLC0415
    from datetime import UTC, date, datetime  # noqa: PLC0415

    from edge_agent.stations.counter import day_totals  # noqa: PLC0415

    try:
        wanted = date.fromisoformat(day) if day else datetime.now(UTC).date()
    except ValueError:
        typer.echo(f"error: --day {day!r} is no date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        totals = day_totals(ledger, wanted)
    finally:
        ledger.close()
    shown = {
        "site_id": site.site.id,
        "day": totals.day.isoformat(),
        "sales": totals.sales,
        "refunds": totals.refunds,
        "by_payment": {method: format(v, "f") for method, v in totals.by_payment.items()},
        "net": format(totals.net, "f"),
    }
    typer.echo(json.dumps(shown, ensure_ascii=False))


@app.command()
def transfers(config: SiteFile) -> None:
    """The site's transfer orders as the feed last said, with this site's side (send or
    receive), per line what is scanned here and whether the side is done: one JSON object,
    read from the ledger file (works with central down and the agent stopped)."""
    import json  # noqa: PLC0415
    from decimal import Decimal  # noqa: PLC0415

    from edge_agent.catalog import Catalog  # noqa: PLC0415
    from edge_agent.stations.transfers import Direction, TransferStation  # noqa: PLC0415

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        station = TransferStation(ledger, Catalog(ledger))
        shown = []
        for transfer in station.catalog.transfers():
            side: Direction = "out" if transfer.from_site == site.site.id else "in"
            scans = station.scans(transfer.transfer_id, side)
            shown.append(
                {
                    "transfer_id": transfer.transfer_id,
                    "side": "send" if side == "out" else "receive",
                    "other_site": transfer.to_site if side == "out" else transfer.from_site,
                    "done": station.is_done(transfer.transfer_id, side),
                    "lines": [
                        {
                            "line_no": line.line_no,
                            "item": line.item_code,
                            "qty": format(line.qty, "f"),
                            "scanned": format(
                                sum(
                                    (s.qty for s in scans if s.line_no == line.line_no), Decimal(0)
                                ),
                                "f",
                            ),
                            "uom": line.uom,
                        }
                        for line in transfer.lines
                    ],
                }
            )
    finally:
        ledger.close()
    typer.echo(json.dumps({"site_id": site.site.id, "transfers": shown}, ensure_ascii=False))


@app.command()
def returns(config: SiteFile) -> None:
    """The site's authorised customer returns as the feed last said, per line what was
    authorised and what this site received: one JSON object, read from the ledger file
    (works with central down and the agent stopped)."""
    import json  # noqa: PLC0415

    from edge_agent.catalog import Catalog  # noqa: PLC0415
    from edge_agent.stations.returns import ReturnsStation  # noqa: PLC0415

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        station = ReturnsStation(ledger, Catalog(ledger), location=site.returns.location)
        shown = [
            {
                "return_id": rma.return_id,
                "so_id": rma.so_id,
                "customer": rma.customer,
                "lines": [
                    {
                        "line_no": line.line_no,
                        "item": line.item,
                        "authorised": format(line.authorised, "f"),
                        "received": format(line.received, "f"),
                        "uom": line.uom,
                    }
                    for line in station.lines(rma)
                ],
            }
            for rma in station.catalog.customer_returns()
        ]
    finally:
        ledger.close()
    typer.echo(json.dumps({"site_id": site.site.id, "returns": shown}, ensure_ascii=False))


@app.command("write-off")
def write_off(
    config: SiteFile,
    *,
    item: Annotated[str, typer.Option(help="the item's code")],
    qty: Annotated[str, typer.Option(help="how much, an exact decimal")],
    location: Annotated[str, typer.Option(help="where the goods were")],
    reason: Annotated[str, typer.Option(help="a write-off reason code (damaged, expired...)")],
    uom: Annotated[
        str | None, typer.Option(help="the unit of --qty; default the base unit")
    ] = None,
    lot: Annotated[str | None, typer.Option(help="the lot, if the goods carry one")] = None,
    by: Annotated[str | None, typer.Option(help="who found it (the event's actor)")] = None,
) -> None:
    """Record damage on the spot: a scrap event in the site's ledger at once, offline or
    not, under the site's next write-off number; central applies its approval threshold
    when the event arrives. Prints the booked event as JSON."""
    import json  # noqa: PLC0415
    from decimal import Decimal, InvalidOperation  # noqa: PLC0415

    from edge_agent.catalog import Catalog  # noqa: PLC0415
    from edge_agent.stations.write_off import (  # noqa: PLC0415
        WriteOff,
        WriteOffRefusedError,
        record_write_off,
    )

    try:
        amount = Decimal(qty)
    except InvalidOperation:
        typer.echo(f"error: --qty {qty!r} is no decimal number", err=True)
        raise typer.Exit(2) from None
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        wanted = WriteOff(item, amount, location, reason, uom=uom, lot=lot, actor=by)
        event = record_write_off(ledger, Catalog(ledger), wanted, device_id="cli")
    except WriteOffRefusedError as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(1) from None
    finally:
        ledger.close()
    typer.echo(json.dumps(event.model_dump(mode="json"), ensure_ascii=False))


count = typer.Typer(help="Stock counts (盘点) at this site: open sessions, entering counts.")
app.add_typer(count, name="count")


@count.command("list")
def count_list(config: SiteFile) -> None:
    """The site's open count sessions as the feed last said, each line with what was
    entered here (the count that stands) and whether central has taken it. Blind: no
    expected or system quantity. One JSON object, from the ledger file alone."""
    import json  # noqa: PLC0415

    from edge_agent.catalog import Catalog  # noqa: PLC0415
    from edge_agent.stations.counts import entries  # noqa: PLC0415

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        shown = []
        for session in Catalog(ledger).count_sessions():
            counted = entries(ledger, session.count_id)
            lines = [
                {
                    "location": line.location,
                    "item": line.item_code,
                    "lot": line.lot,
                    "uom": line.uom,
                    "recount": line.recount,
                }
                for line in session.lines
            ]
            shown.append(
                {
                    "count_id": session.count_id,
                    "range": [session.location_from, session.location_to],
                    "lines": lines,
                    "counted": [
                        {
                            "location": e.location,
                            "item": e.item,
                            "lot": e.lot,
                            "qty": format(e.qty, "f"),
                            "uom": e.uom,
                            "by": e.counted_by,
                            "central": e.verdict or "not uploaded yet",
                        }
                        for e in counted
                    ],
                }
            )
    finally:
        ledger.close()
    typer.echo(json.dumps({"site_id": site.site.id, "counts": shown}, ensure_ascii=False))


@count.command("enter")
def count_enter(
    config: SiteFile,
    *,
    session: Annotated[str, typer.Option("--count", help="the count session (SC000001)")],
    location: Annotated[str, typer.Option(help="where the goods were counted")],
    item: Annotated[str, typer.Option(help="the item's code")],
    qty: Annotated[str, typer.Option(help="what was found, an exact decimal (0 is a count)")],
    uom: Annotated[
        str | None, typer.Option(help="the unit of --qty; default the base unit")
    ] = None,
    lot: Annotated[str | None, typer.Option(help="the lot, if the goods carry one")] = None,
    by: Annotated[str | None, typer.Option(help="who counted (the entry's counted_by)")] = None,
) -> None:
    """Keep one count in the ledger file at once, offline or not; the agent uploads it.
    Entering a key again replaces its count (last wins). Prints the entry as JSON."""
    import json  # noqa: PLC0415
    from decimal import Decimal, InvalidOperation  # noqa: PLC0415

    from edge_agent.catalog import Catalog  # noqa: PLC0415
    from edge_agent.stations.counts import CountRefusedError, record_count  # noqa: PLC0415

    try:
        amount = Decimal(qty)
    except InvalidOperation:
        typer.echo(f"error: --qty {qty!r} is no decimal number", err=True)
        raise typer.Exit(2) from None
    if not amount.is_finite():
        typer.echo(f"error: --qty {qty!r} is no decimal number", err=True)
        raise typer.Exit(2)
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        entry = record_count(
            ledger, Catalog(ledger), count_id=session, location=location, item=item,
            qty=amount, lot=lot, uom=uom, counted_by=by, device_id="cli",
        )  # fmt: skip
    except CountRefusedError as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(1) from None
    finally:
        ledger.close()
    shown = {
        "entry_id": entry.entry_id,
        "count_id": entry.count_id,
        "location": entry.location,
        "item": entry.item,
        "lot": entry.lot,
        "qty": format(entry.qty, "f"),
        "uom": entry.uom,
        "counted_by": entry.counted_by,
    }
    typer.echo(json.dumps(shown, ensure_ascii=False))


labels = typer.Typer(help="The labels the station owes, has printed, or could not print.")
app.add_typer(labels, name="labels")


@labels.command("list")
def labels_list(
    config: SiteFile,
    state: Annotated[
        str | None, typer.Option(help="only pending, printed, delivered or failed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 1000,
) -> None:
    """The label queue, one JSON object per line, oldest first."""
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415

    if state not in (None, "pending", "printed", "delivered", "failed"):
        typer.echo(
            f"error: --state must be pending, printed, delivered or failed: {state}", err=True
        )
        raise typer.Exit(2)
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        for record in ledger.labels(state, limit):  # type: ignore[arg-type]
            typer.echo(json.dumps(dataclasses.asdict(record), ensure_ascii=False))
    finally:
        ledger.close()


@labels.command("reprint")
def labels_reprint(
    config: SiteFile,
    seqs: Annotated[list[int], typer.Argument(min=1, help="seqs of the bookings to relabel")],
) -> None:
    """Print the labels of these bookings once more (the running agent prints them)."""
    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        done = ledger.reprint_labels(seqs)
    finally:
        ledger.close()
    typer.echo(f"reprint queued for {len(done)} label(s): {' '.join(map(str, done)) or '-'}")
    missing = sorted(set(seqs) - set(done))
    if missing:
        typer.echo(f"error: no label was owed for seq {' '.join(map(str, missing))}", err=True)
        raise typer.Exit(1)


@app.command()
def receive(
    config: SiteFile,
) -> None:
    """Show the site's open PO lines (ordered, received here) and what was received today."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from edge_agent.catalog import Catalog  # noqa: PLC0415

    site = load_or_exit(config)
    ledger = open_ledger_or_exit(site)
    try:
        catalog = Catalog(ledger)
        lines = catalog.open_lines()
        today = catalog.received_on(datetime.now(UTC).date())
    finally:
        ledger.close()
    console = Console(width=160)
    open_table = Table(title=f"Open PO lines at {site.site.id}")
    for column in (
        "PO",
        "line",
        "supplier",
        "item",
        "ordered",
        "received",
        "open",
        "complete at",
        "uom",
        "state",
    ):
        open_table.add_column(column)
    for line in lines:
        open_table.add_row(
            line.po_id,
            str(line.line_no),
            line.supplier,
            line.item_code,
            str(line.qty),
            str(line.received),
            str(line.remaining),
            format(line.floor.normalize(), "f"),
            line.uom,
            line.state.value,
        )
    console.print(open_table)
    today_table = Table(title="Received today (UTC)")
    for column in ("seq", "item", "qty", "uom", "lot", "location", "PO line", "note"):
        today_table.add_column(column)
    for row in today:
        today_table.add_row(
            str(row.seq),
            row.item,
            str(row.qty),
            row.uom,
            row.lot or "",
            row.location,
            f"{row.po_id}/{row.line_no}" if row.po_id else "",
            row.ref or "",
        )
    console.print(today_table)


def load_or_exit(config: Path) -> SiteConfig:
    """The site file, or exit 2 with what is wrong in it (shared by ``jxc device``)."""
    from edge_agent.config import ConfigError, load_site_config  # noqa: PLC0415

    try:
        return load_site_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def open_ledger_or_exit(site: SiteConfig) -> Ledger:
    """The site's ledger (upgraded to this jxc's schema), or exit 2 saying why it cannot open."""
    from edge_agent.ledger import Ledger, LedgerError  # noqa: PLC0415

    try:
        return Ledger(site.ledger.path, site_id=site.site.id)
    except LedgerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
