"""What the edge's station tests share, written once (they used to repeat it per station).

Two kinds of test use it:

* **against the real central** (``test_*_central.py``: picking, transfers, counter,
  returns): a real ledger file (:func:`ledger`, the fixture), the agent's own pusher and
  puller (:func:`sync`, :func:`offline_push`), the usual site (:func:`pill_site`: site
  S01, its locations, a customer, the lot- and expiry-tracked item ``PILL`` with
  :data:`GTIN`), stock received at the edge (:func:`receive`) and what central then
  holds (:func:`stock`);
* **a whole agent in this process, central unreachable** (``test_returns.py``,
  ``test_transfers.py``, ``test_counter.py``, ``test_picking.py``): the site file
  (:func:`offline_site_file`), waiting for the scanners (:func:`wait_connected`), scans
  sent through a scanner twin until the station's display answers
  (:func:`shown_in_turn`), the feed page it pulls (:func:`feed_page`), a scan the
  station refuses (:func:`refused_scan`); and the checks around it: a scanner named by
  two stations is refused (:func:`refuses_a_scanner_in_two`), ``jxc edge ...`` run on
  the ledger file (:func:`cli_json`).

Scans are what the scanner drivers hand a station (:class:`Scanner`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi.testclient import TestClient

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog, Puller
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.scan_station import ScanStation
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.feed import ChangePage
from jxc.paths import ITEMS, PARTNERS, STOCK
from simulators.scanner import GS
from tests.central.test_master_data import location, ok, site
from tests.patience import wait_for

GTIN = "09506000134352"
"""The GTIN of ``PILL``, the item every one of these tests works with."""
TODAY = datetime.now(UTC).date()
OFFLINE = "http://127.0.0.1:9"
"""A central nobody answers at: the edge works offline."""


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


@dataclass(frozen=True, slots=True)
class Scanner:
    """The scans one scanner (``device_id``) hands its station."""

    device_id: str

    def gs1(self, lot: str, expiry: date, count: int = 1) -> Scan:
        """A GS1 carton of ``PILL``: GTIN, lot, expiry and count."""
        data = f"01{GTIN}10{lot}{GS}17{expiry:%y%m%d}37{count}"
        return Scan(self.device_id, data.encode(), data, "]C1", parse_gs1(data), datetime.now(UTC))

    def plain(self, data: str) -> Scan:
        """A plain barcode, a document's number, a location or a command."""
        return Scan(self.device_id, data.encode(), data, None, None, datetime.now(UTC))


Change = tuple[str, str, str, dict[str, Any] | None]
"""One change of the feed: (entity, key, op, data)."""


def feed_page(*changes: Change, start: int = 1, site_id: str = "S01") -> ChangePage:
    """A page of the change feed as central answers a pull: ``changes`` numbered from
    ``start``, the last one the cursor, nothing more to come."""
    return ChangePage.model_validate(
        {
            "site_id": site_id,
            "changes": [
                {"version": n, "entity": entity, "key": key, "op": op, "data": data}
                for n, (entity, key, op, data) in enumerate(changes, start=start)
            ],
            "next_cursor": start + len(changes) - 1,
            "has_more": False,
        }
    )


# --- against the real central -----------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """Site S01's ledger file."""
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


def pill_site(
    client: TestClient,
    locations: Mapping[str, str],
    *,
    customer: bool = True,
    **item: str,
) -> None:
    """Site S01 with ``locations`` (code → kind), the customer ``CUS-1`` (unless not
    ``customer``) and ``PILL`` (lot and expiry tracked, barcode :data:`GTIN`, ``item``'s
    other fields such as ``cost``)."""
    site(client)
    for code, kind in locations.items():
        ok(location(client, code, level="zone", kind=kind))
    if customer:
        ok(client.post(PARTNERS, json={"code": "CUS-1", "is_customer": True, "name": "c1"}), 201)
    body = {
        "name": "药片",
        "uom": "EA",
        "lot_tracked": True,
        "expiry_tracked": True,
        **item,
        "barcodes": [{"barcode": GTIN}],
    }
    ok(client.put(f"{ITEMS}/PILL", json=body))


def receive(
    ledger: Ledger,
    lot: str,
    expiry: date,
    qty: str,
    location: str = "A-01",
    unit_cost: Decimal | None = None,
) -> None:
    """``qty`` EA of ``PILL`` lot ``lot`` received at the edge into ``location``."""
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT,
            item="PILL",
            lot=lot,
            expiry=expiry,
            location=location,
            qty=Decimal(qty),
            uom="EA",
            unit_cost=unit_cost,
        )
    )


def pull(catalog: Catalog, client: httpx.Client | TestClient, site_id: str = "S01") -> None:
    """Pull the feed to its end, as the agent's job does."""
    puller = Puller(catalog, client, site_id=site_id)
    while puller.pull_once():
        pass
    assert puller.last_error is None


def sync(pusher: Pusher, catalog: Catalog, site_id: str = "S01") -> None:
    """Push the ledger, then pull the feed, as the agent's jobs do (one pusher per ledger
    all along: it holds the ledger's sender lease)."""
    pusher.run()
    assert pusher.ledger.counts().pending == 0
    pull(catalog, pusher.client, site_id)


def offline_push(ledger: Ledger) -> int:
    """The pusher's run while central is unreachable: nothing leaves the ledger. Returns
    how many events wait."""
    pending = ledger.counts().pending
    Pusher(ledger, httpx.Client(base_url=OFFLINE, timeout=0.2)).run()
    assert ledger.counts().pending == pending
    return pending


def stock(central: TestClient, site_id: str = "S01") -> dict[tuple[str, str | None], Decimal]:
    """Central's stock of ``PILL`` at ``site_id`` per (location, lot), zeros left out."""
    rows = ok(central.get(STOCK, params={"site_id": site_id, "item": "PILL"}))
    return {
        (row["location"], row["lot"]): Decimal(row["qty"]) for row in rows if Decimal(row["qty"])
    }


# --- a whole agent, central unreachable ------------------------------------------------------


def offline_site_file(
    tmp_path: Path, station: str, scanners: Mapping[str, object], extra: str = ""
) -> Path:
    """Site S01's file: central unreachable, ledger ``edge.db``, the status page on any
    port, ``station`` (the station's own TOML section), a serial-line scanner per entry
    of ``scanners`` (id → its pty), then ``extra`` (printers...)."""
    devices = "".join(
        f'[[devices.scanners]]\nid = "{device}"\ndriver = "serial-line"\nport = "{port}"\n'
        for device, port in scanners.items()
    )
    path = tmp_path / "site.toml"
    path.write_text(
        f"""
[site]
id = "S01"
[central]
url = "{OFFLINE}"
timeout_s = 1
[ledger]
path = "edge.db"
[status]
port = 0
{station.strip()}
{devices}{extra.lstrip()}"""
    )
    return path


class _Agent(Protocol):
    def status(self) -> dict[str, Any]: ...


class _Twin(Protocol):
    def send(self, data: str, symbology: str | None = None) -> None: ...


class _Station(Protocol):
    @property
    def display(self) -> str: ...


def wait_connected(agent: _Agent) -> None:
    """Every scanner of the agent is connected."""
    assert wait_for(lambda: all(s["state"] == "connected" for s in agent.status()["scanners"]), 10)


def shown_in_turn(
    twin: _Twin, station: _Station, steps: Iterable[tuple[str, str | None, str]]
) -> None:
    """Send each ``(data, symbology, shown)`` through the scanner twin and wait until the
    station's display line starts with ``shown``."""
    for data, symbology, shown in steps:
        twin.send(data, symbology)

        def answered(expected: str = shown) -> bool:
            return station.display.startswith(expected)

        assert wait_for(answered, 10), station.display


def refused_scan(station: ScanStation, scan: Scan, *words: str) -> None:
    """The station refuses ``scan`` with its own refusal (:attr:`ScanStation.refusal`),
    naming each of ``words``, and shows it on its display line."""
    with pytest.raises(station.refusal) as caught:
        station.on_scan(scan)
    for word in words:
        assert word in str(caught.value), str(caught.value)
    assert station.display == str(caught.value)


def refuses_a_scanner_in_two(first: str, second: str) -> None:
    """A site file naming one scanner in ``[first]`` and ``[second]`` is refused."""
    from pydantic import ValidationError  # noqa: PLC0415

    from edge_agent.config import SiteConfig  # noqa: PLC0415

    with pytest.raises(ValidationError, match=rf"both \[{first}\] and \[{second}\]"):
        SiteConfig.model_validate(
            {
                "site": {"id": "S01"},
                first: {"scanners": ["s1"]},
                second: {"scanners": ["s1"]},
                "devices": {"scanners": [{"id": "s1", "driver": "serial-line", "port": "/x"}]},
            }
        )


def cli_json(tmp_path: Path, ledger: Ledger, *command: str) -> Any:
    """``jxc edge <command> -c site.toml`` on ``ledger``'s file: exit 0, its JSON."""
    from typer.testing import CliRunner  # noqa: PLC0415

    from edge_agent.cli import app  # noqa: PLC0415

    site_file = tmp_path / "site.toml"
    site_file.write_text(f'[site]\nid = "S01"\n[ledger]\npath = "{ledger.path}"\n')
    result = CliRunner().invoke(app, [*command, "-c", str(site_file)])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)
