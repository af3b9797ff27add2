"""Two central processes on one PostgreSQL, fifty edges at once: every event exactly once.

Central keeps no state between requests, so ``jxc central serve --workers 2`` must give
exactly what one process gives. Fifty edges, each a real :class:`~edge_agent.ledger.Ledger`
(its own SQLite file) with the agent's own :class:`~edge_agent.sync.Pusher` and token
auth, run in threads and push to the two workers at once; each of them also:

* posts one batch **twice at the same instant** on two connections (the same push racing
  into the two workers: the site's row lock must let one in and make the other's events
  duplicates);
* **replays** events central already acknowledged, the way a restored ledger does
  (``Ledger.rewind``), then sends new ones behind them in the same batches;
* posts an acknowledged batch **again** (an answer lost on the way back).

Then: every edge's outbox is empty without a dead letter; every answer central gave,
over all pushes, called each event ``accepted`` exactly once; central holds each event
once; its balances are the sums of the edges' events; its valuation checks against a
valuation from scratch; and the same ledgers, rewound and pushed to a single-process
central on another database, give the same balances and the same valuation, entry for
entry. Both workers did part of the work (their CPU time, read from ``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from central_api.core.config import Settings
from central_api.core.db import create_db_engine, upgrade_database
from central_api.models import (
    ledger_events,
    site_sync_state,
    stock_balances,
    valuation_entries,
    valuation_state,
)
from central_api.services.auth import add_site
from central_api.services.valuation import check
from edge_agent.auth import SiteTokenAuth
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc.contract import EventKind, EventStatus, LedgerEvent, PushAck
from jxc.paths import HEALTH, SYNC_EVENTS
from tests.central.conftest import (  # noqa: F401 (postgres_session is a fixture)
    central_app,
    fresh_postgres_database,
    postgres_session,
)
from tests.integration.processes import eventually, get_json, spawn, stop
from tests.patience import patience_timeout, wait_for
from tests.ports import free_port

EDGES = 50
JSON = {"content-type": "application/json"}
ITEMS = ("ITEM-1", "ITEM-2", "ITEM-3")

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _draft(site_no: int, n: int) -> EventDraft:
    """A receipt with its cost, or an issue (sometimes beyond what is on hand)."""
    item = ITEMS[(site_no + n) % len(ITEMS)]
    if n % 3 == 2:
        qty = Decimal(-(n % 4 + 1))
        return EventDraft(
            kind=EventKind.ISSUE, item=item, location="A-01", qty=qty, uom="EA", lot="L1"
        )
    return EventDraft(
        kind=EventKind.RECEIPT,
        item=item,
        location="A-01",
        qty=Decimal(n % 5 + 1),
        uom="EA",
        lot="L1",
        unit_cost=Decimal(f"{site_no % 7 + 1}.{n % 10}5"),
    )


class Answers:
    """Every push answer central gave, per event: how often it said each status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.busy = 0

    def hook(self, response: httpx.Response) -> None:
        if response.request.url.path != SYNC_EVENTS:
            return
        response.read()
        with self._lock:
            if response.status_code == 503:
                self.busy += 1
            if response.status_code != 200:
                return
            for result in PushAck.model_validate_json(response.content).results:
                self.statuses[str(result.event_id)][result.status.value] += 1


_TLS = ssl.create_default_context()


class Edge:
    """One site: its ledger file, its pusher, its clients to central."""

    def __init__(self, root: Path, site_no: int, secret: str, base: str, answers: Answers) -> None:
        self.site_no = site_no
        self.site_id = f"S{site_no:02d}"
        self.ledger = Ledger(root / f"{self.site_id}.db", site_id=self.site_id)
        auth = SiteTokenAuth(self.site_id, secret)
        options: dict[str, Any] = {
            "base_url": base,
            "auth": auth,
            "timeout": patience_timeout(10),
            "event_hooks": {"response": [answers.hook]},
            "verify": _TLS,  # plain HTTP here; one context instead of one per client
        }
        self.client = httpx.Client(**options)
        # A second connection of the same site, for the racing duplicate.
        self.racer = httpx.Client(**options)
        self.pusher = Pusher(self.ledger, self.client, batch_size=3, max_backoff_s=2)
        self.appended = 0

    def append(self, count: int) -> None:
        for _ in range(count):
            self.appended += 1
            self.ledger.append(_draft(self.site_no, self.appended))

    def drain(self, pusher: Pusher | None = None) -> None:
        """Run the pusher until the outbox is empty (a busy 503 means waiting its turn)."""
        pusher = pusher or self.pusher

        def empty() -> bool:
            pusher.run()
            return self.ledger.counts().pending == 0

        assert wait_for(empty, 30), f"{self.site_id}: {pusher.state.last_error}"

    def race(self) -> None:
        """Post the pending batch on both connections at once; then drain."""
        body = self.pusher._batch_json(self.ledger.pending_bodies(10))
        start = threading.Barrier(2)

        def post(client: httpx.Client) -> None:
            start.wait(timeout=patience_timeout(10))
            # Whatever the answer (a busy 503 included), the drain below delivers the rest.
            with contextlib.suppress(httpx.HTTPError):
                client.post(SYNC_EVENTS, content=body, headers=JSON)

        other = threading.Thread(target=post, args=(self.racer,))
        other.start()
        post(self.client)
        other.join()
        self.drain()

    def run(self) -> None:
        self.append(5)
        first = self.pusher._batch_json(self.ledger.pending_bodies(3))
        self.drain()  # two batches: seqs 1-3, 4-5
        self.append(4)
        self.race()  # seqs 6-9, twice at once
        self.ledger.rewind(2)  # central's acks for 3-9 "forgotten": replayed...
        self.append(3)  # ...with 10-12 new behind them
        self.drain()
        # A lost answer's batch, sent again (again after a busy 503, as the edge would).
        answers: list[httpx.Response] = []

        def replayed() -> bool:
            answers.append(self.client.post(SYNC_EVENTS, content=first, headers=JSON))
            return answers[-1].status_code == 200

        assert wait_for(replayed, 30, interval_s=1.0), answers[-1].text

    def close(self) -> None:
        self.client.close()
        self.racer.close()
        self.ledger.close()


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a live process, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_pids(log: Path) -> list[int]:
    """The pids uvicorn's workers announced (``Started server process [PID]``)."""
    pids = []
    for line in log.read_text().splitlines():
        if "Started server process [" in line:
            pids.append(int(line.split("Started server process [", 1)[1].split("]", 1)[0]))
    return pids


def _rows(engine: Engine, query: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def _all_but(table: Any, *left_out: str) -> Any:
    """Every column of ``table`` but the times of writing, in primary-key order."""
    columns = [column for column in table.c if column.name not in left_out]
    order = list(table.primary_key.columns) or columns
    return select(*columns).order_by(*order)


BALANCES = _all_but(stock_balances, "updated_at")
STATES = _all_but(valuation_state, "updated_at")
ENTRIES = _all_but(valuation_entries)


@pytest.fixture
def two_databases(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases: the two workers' and the single process's."""
    request.getfixturevalue("postgres_session")  # skips loudly, or fails in CI
    with (
        fresh_postgres_database("jxc_it_chain") as two,
        fresh_postgres_database("jxc_it_chain_one") as one,
    ):
        yield two.render_as_string(hide_password=False), one.render_as_string(hide_password=False)


def test_fifty_edges_through_two_workers_exactly_once(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    url, reference_url = two_databases
    port = free_port()
    log = tmp_path / "central.log"
    server = spawn(
        ["central", "serve", "--port", str(port), "--workers", "2", "--database-url", url],
        log,
        env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    answers = Answers()
    with ExitStack() as stack:
        stack.callback(stop, server)
        eventually(
            lambda: log.read_text().count("Application startup complete") == 2,
            what="two central workers",
        )
        get_json(f"{base}{HEALTH}")
        engine = create_db_engine(url)
        stack.callback(engine.dispose)
        with engine.connect() as connection:
            secrets = {n: add_site(connection, f"S{n:02d}") for n in range(1, EDGES + 1)}
        edges = [Edge(tmp_path, n, secrets[n], base, answers) for n in secrets]
        for edge in edges:
            stack.callback(edge.close)
        workers = _worker_pids(log)
        assert len(workers) == 2, log.read_text()
        cpu_before = [_cpu_s(pid) for pid in workers]

        with ThreadPoolExecutor(max_workers=EDGES) as pool:
            for done in [pool.submit(edge.run) for edge in edges]:
                done.result()

        cpu_used = [_cpu_s(pid) - before for pid, before in zip(workers, cpu_before, strict=True)]
        # Both processes served: neither did (nearly) all of the work.
        assert min(cpu_used) > 0.05 * sum(cpu_used), cpu_used

        # At the edges: everything settled, nothing refused.
        events: dict[str, LedgerEvent] = {}
        for edge in edges:
            counts = edge.ledger.counts()
            assert (counts.pending, counts.dead, counts.synced_through) == (0, 0, 12), counts
            events.update((str(event.event_id), event) for event in edge.ledger.events())
        assert len(events) == EDGES * 12

        # On the wire: every event accepted in exactly one answer, a duplicate in the rest.
        assert set(answers.statuses) == set(events)
        for event_id, said in answers.statuses.items():
            assert said["accepted"] == 1, (event_id, said)
            assert set(said) <= {EventStatus.ACCEPTED.value, EventStatus.DUPLICATE.value}
            if events[event_id].seq <= 9:  # replayed by the rewind or the lost answer's batch
                assert said["duplicate"] >= 1, (event_id, said)

        # At central: each event once, the watermarks, the balances are the events' sums.
        held = _rows(
            engine, select(ledger_events.c.event_id, ledger_events.c.site_id, ledger_events.c.seq)
        )
        assert sorted(held) == sorted(
            (event_id, event.site_id, event.seq) for event_id, event in events.items()
        )
        marks = _rows(
            engine, select(site_sync_state.c.site_id, site_sync_state.c.acked_through_seq)
        )
        assert sorted(marks) == [(edge.site_id, 12) for edge in edges]
        sums: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        for event in events.values():
            sums[(event.site_id, event.location, event.item, event.lot or "")] += event.qty
        balances = _rows(engine, BALANCES)
        assert {row[:4]: row[5] for row in balances} == sums
        with engine.connect() as connection:
            assert check(connection) == []  # balances and values against the ledger, afresh

        # The same ledgers, pushed to one central process on a database of its own.
        upgrade_database(reference_url)
        reference_engine = create_db_engine(reference_url)
        stack.callback(reference_engine.dispose)
        with (
            central_app(Settings(database_url=reference_url)) as app,
            TestClient(app) as reference,
            app.state.engine.connect() as connection,
        ):
            for edge in edges:
                reference.auth = SiteTokenAuth(edge.site_id, add_site(connection, edge.site_id))
                edge.ledger.rewind(0)
                edge.drain(Pusher(edge.ledger, reference, batch_size=500, max_backoff_s=2))
        assert _rows(reference_engine, BALANCES) == balances
        assert _rows(reference_engine, STATES) == _rows(engine, STATES)
        assert _rows(reference_engine, ENTRIES) == _rows(engine, ENTRIES)
        assert len(_rows(engine, ENTRIES)) == EDGES * 12
