"""The agent's ``/readyz``, ``/metrics`` and scheduled backups, the whole agent in-process
(scanner twin on a real pty, central unreachable: the edge works without it)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.agent import EdgeAgent
from edge_agent.config import load_site_config
from edge_agent.ledger import SCHEMA_VERSION, EventDraft
from jxc.backup import read_manifest
from jxc.contract import EventKind
from simulators.scanner import ScannerTwin
from tests.edge_agent.test_agent_alerts import WITHIN_S, eventually


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[EdgeAgent]:
    with ScannerTwin(link=tmp_path / "scanner-1") as twin:
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
[backup]
interval_h = 0.0003
keep = 2
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "{twin.link}"
""",
            encoding="utf-8",
        )
        running = EdgeAgent(load_site_config(path))
        running.start()
        try:
            yield running
        finally:
            running.stop()


def page(agent: EdgeAgent, name: str) -> tuple[int, str]:
    url = agent.status_server.url.replace("/healthz", name)
    try:
        with urllib.request.urlopen(url, timeout=WITHIN_S) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def metrics(agent: EdgeAgent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = page(agent, "/metrics")
    assert code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_readiness_and_scheduled_backups(agent: EdgeAgent, tmp_path: Path) -> None:
    for _ in range(2):
        agent.ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT, item="X", location="DOCK", qty=Decimal("1.5"), uom="EA"
            )
        )
    scanner = ("device", "scanner-1"), ("kind", "scanner")  # labels sorted by name
    found = eventually(
        lambda: (
            (m := metrics(agent)).get(("jxc_edge_device_state", (*scanner, ("state", "connected"))))
            and m
        ),
        what="the scanner connected in /metrics",
    )
    site = (("site", "S01"),)
    assert found[("jxc_edge_outbox_depth", site)] == 2
    assert found[("jxc_edge_ledger_last_seq", site)] == 2
    assert found[("jxc_edge_device_state", (*scanner, ("state", "disconnected")))] == 0
    assert found[("jxc_edge_disk_free_bytes", site)] > 0
    assert found[("process_resident_memory_bytes", ())] > 0
    failed = eventually(
        lambda: metrics(agent).get(("jxc_edge_push_failures", site)),
        what="central unreachable counted",
    )
    assert failed >= 1

    code, _ = page(agent, "/readyz")
    assert code == 200
    with agent.ledger.transaction() as conn:
        conn.execute("PRAGMA user_version = 999")
    code, body = page(agent, "/readyz")
    assert code == 503
    assert "ledger schema 999" in body
    with agent.ledger.transaction() as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    assert page(agent, "/readyz")[0] == 200
    backups = tmp_path / "backups"
    made = eventually(
        lambda: sorted(backups.glob("ledger-S01-*.db")), what="a backup by the scheduler"
    )
    assert read_manifest(made[-1])["counts"]["events"] == 2
    assert agent.jobs.as_dict()["backup"]["runs"] >= 1
