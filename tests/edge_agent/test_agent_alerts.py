"""What the operator is told: the whole agent in-process, a scanner twin on a real pty.

The agent runs as ``jxc edge run`` builds it (site file, drivers, scheduler, status page);
the tests read its status page over HTTP and its log as JSON lines, as a technician and a
log shipper would. Central is not needed (and not reachable) for any of this.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import load_site_config
from simulators.scanner import ScannerTwin
from tests.patience import patience_timeout
from tests.secret_leaks import json_log

T = TypeVar("T")

WITHIN_S = 30.0
"""Deadline for anything the agent does by itself; generous, so a slow machine passes."""


def eventually(probe: Callable[[], T | None], *, within: float = WITHIN_S, what: str = "") -> T:
    within = patience_timeout(within)
    end = time.monotonic() + within
    last: object = None
    while time.monotonic() < end:
        try:
            value = probe()
        except Exception as exc:  # the page may be busy for a moment
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what} (last: {last!r})")


def status(agent: EdgeAgent) -> dict[str, Any]:
    with urllib.request.urlopen(agent.status_server.url, timeout=WITHIN_S) as answer:
        page: dict[str, Any] = json.load(answer)
    return page


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[ScannerTwin]:
    with ScannerTwin(link=tmp_path / "scanner-1") as running:
        yield running


@pytest.fixture
def site_file(tmp_path: Path, twin: ScannerTwin) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f"""
[site]
id = "S01"
[central]
url = "http://127.0.0.1:9"
timeout_s = 1
[sync]
push_interval_s = 0.2
max_backoff_s = 0.5
[ledger]
path = "edge.db"
[status]
port = 0
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "{twin.link}"
"""
    )
    return path


class Agents:
    """Starts agents on the site file and stops whatever is still running at the end."""

    def __init__(self, site_file: Path) -> None:
        self.site_file = site_file
        self.running: list[EdgeAgent] = []

    def start(self) -> EdgeAgent:
        agent = EdgeAgent(load_site_config(self.site_file))
        agent.start()
        self.running.append(agent)
        eventually(
            lambda: status(agent)["scanners"][0]["state"] == "connected", what="scanner open"
        )
        return agent

    def stop(self, agent: EdgeAgent) -> None:
        self.running.remove(agent)
        agent.stop()


@pytest.fixture
def agents(site_file: Path) -> Iterator[Agents]:
    started = Agents(site_file)
    try:
        yield started
    finally:
        for agent in list(started.running):
            started.stop(agent)


def test_a_crashing_job_is_an_alert_with_its_count_and_last_error(
    agents: Agents, site_file: Path
) -> None:
    """Another process holds the ledger's write lock past the timeout: push crashes."""
    with json_log() as log:
        agent = agents.start()
        holder = sqlite3.connect(
            site_file.parent / "edge.db", isolation_level=None, timeout=patience_timeout(30)
        )
        try:
            holder.execute("BEGIN EXCLUSIVE")
            page = eventually(
                lambda: (p := status(agent))["jobs"].get("push", {}).get("failures") and p,
                what="the push job's failure on the status page",
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        push = page["jobs"]["push"]
        assert push["consecutive_failures"] >= 1
        assert push["last_error"] == "OperationalError: database is locked"
        assert any(
            alert.startswith("job push is failing") and "database is locked" in alert
            for alert in page["alerts"]
        )
        # The lock is gone: the next clean run clears the alert, the count stays.
        page = eventually(
            lambda: (p := status(agent))["jobs"]["push"]["consecutive_failures"] == 0 and p,
            what="a clean push run",
        )
        assert not any(alert.startswith("job push") for alert in page["alerts"])
        assert page["jobs"]["push"]["failures"] >= 1
    entries = [json.loads(line) for line in log.getvalue().splitlines()]
    failed = [e for e in entries if e["msg"] == "job failed" and e["job"] == "push"]
    assert failed, "each crash is a structured log line"
    assert failed[0]["error"] == "OperationalError: database is locked"
    assert "acquire_sender_lease" in failed[0]["where"]


def test_a_scan_refused_for_disk_space_is_said_counted_and_alerted_until_scanned_again(
    agents: Agents, twin: ScannerTwin
) -> None:
    mug, rice = "5901234123457", "09506000134376"
    with json_log() as log:
        agent = agents.start()
        twin.send(mug)
        eventually(lambda: agent.ledger.counts().last_seq == 1, what="the first booking")

        reserve = agent.ledger.free_disk_reserve
        agent.ledger.free_disk_reserve = shutil.disk_usage(agent.ledger.path.parent).free + 2**40
        twin.send(rice)
        twin.send(mug)
        page = eventually(
            lambda: (p := status(agent))["disk"]["scans_refused"]["refused"] == 2 and p,
            what="two refusals on the status page",
        )
        assert agent.ledger.counts().last_seq == 1, "nothing of a refused scan is written"
        assert page["disk"]["scans_refused"]["to_scan_again"] == sorted([rice, mug])
        [alert] = [a for a in page["alerts"] if "NOT booked" in a]
        assert alert.startswith("2 scan(s) NOT booked")
        assert "scan these cartons again" in alert

        agent.ledger.free_disk_reserve = reserve  # space freed; the operator rescans one
        twin.send(rice)
        page = eventually(
            lambda: (p := status(agent))["disk"]["scans_refused"]["to_scan_again"] == [mug] and p,
            what="the rescan settling one refusal",
        )
        assert agent.ledger.counts().last_seq == 2
        assert any(a.startswith("1 scan(s) NOT booked") for a in page["alerts"])
        twin.send(mug)
        page = eventually(
            lambda: (p := status(agent))["disk"]["scans_refused"]["to_scan_again"] == [] and p,
            what="the second rescan settling the other",
        )
        assert agent.ledger.counts().last_seq == 3
        assert not any("NOT booked" in a for a in page["alerts"])
        assert page["disk"]["scans_refused"]["refused"] == 2, "the count stays"

    entries = [json.loads(line) for line in log.getvalue().splitlines()]
    refused = [e for e in entries if e.get("event") == "scan_refused_disk"]
    assert [e["data"] for e in refused] == [rice, mug]
    assert all("scan this carton again" in e["msg"] for e in refused)
    assert all("NOT recorded" in e["reason"] for e in refused)
    assert "nothing lost" not in log.getvalue()


def test_a_restarted_agent_reports_the_gap_and_the_scans_it_could_not_read(
    agents: Agents, twin: ScannerTwin
) -> None:
    first = agents.start()
    twin.send("5901234123457")
    eventually(lambda: first.ledger.counts().last_seq == 1, what="a booking")
    eventually(lambda: first.pusher.state.is_sender, what="the first agent sending")
    agents.stop(first)
    twin.send("WHILE-DOWN-1")
    twin.send("WHILE-DOWN-2")

    with json_log() as log:
        second = agents.start()
        page = status(second)
    assert page["scanners"][0]["errors"]["stale_input"] == 2
    assert page["ledger"]["last_seq"] == 1, "stale lines are not booked"
    previous = page["previous_run"]
    assert previous["previous_agent_seen_at"] is not None
    assert previous["gap_s"] >= 0
    entries = [json.loads(line) for line in log.getvalue().splitlines()]
    [started] = [e for e in entries if e["msg"] == "edge agent started"]
    assert started["previous_agent_seen_at"] == previous["previous_agent_seen_at"]
    [stale] = [e for e in entries if e.get("event") == "stale_input_discarded"]
    assert stale["lines"] == 2
    assert "WHILE-DOWN-1" in stale["samples"][0]
