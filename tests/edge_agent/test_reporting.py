"""The agent reports its outbox and devices to central: the whole agent in-process with a
scanner twin on a real pty, and a stand-in central on loopback that records each status
report (and refuses pushes, so events wait in the outbox). Unplugging the scanner shows in
the next reports as ``disconnected``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import load_site_config
from jxc.paths import SYNC_STATUS
from simulators.scanner import ScannerTwin
from tests.edge_agent.test_agent_alerts import eventually


class StandIn(ThreadingHTTPServer):
    daemon_threads = True  # a kept-alive connection must not hold up the shutdown
    block_on_close = False
    reports: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == SYNC_STATUS:
            self.server.reports.append(json.loads(body))
            self.send_response(204)
        else:
            self.send_response(503)  # a push: central busy, the events stay queued
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def central() -> Iterator[StandIn]:
    server = StandIn(("127.0.0.1", 0), _Handler)
    server.reports = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_agent_reports_its_outbox_and_a_scanner_unplugged(
    tmp_path: Path, central: StandIn
) -> None:
    with ScannerTwin(link=tmp_path / "scanner-1") as twin:
        site = tmp_path / "site.toml"
        site.write_text(
            f"""
[site]
id = "S01"
[central]
url = "http://127.0.0.1:{central.server_address[1]}"
timeout_s = 2
[sync]
push_interval_s = 0.2
max_backoff_s = 0.5
status_interval_s = 0.2
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
        agent = EdgeAgent(load_site_config(site))
        agent.start()
        try:
            eventually(
                lambda: any(
                    r["devices"]
                    == [
                        {
                            "kind": "scanner",
                            "device_id": "scanner-1",
                            "state": "connected",
                            "last_error": None,
                        }
                    ]
                    for r in central.reports
                ),
                what="a report with the scanner connected",
            )
            twin.send("UNKNOWN-1")
            eventually(
                lambda: any(r["outbox_depth"] >= 1 for r in central.reports),
                what="a report of the scan waiting in the outbox",
            )
            twin.close()
            report = eventually(
                lambda: next(
                    (
                        r
                        for r in reversed(central.reports)
                        if r["devices"] and r["devices"][0]["state"] == "disconnected"
                    ),
                    None,
                ),
                what="a report with the scanner disconnected",
            )
        finally:
            agent.stop()
    assert report["site_id"] == "S01"
    assert report["contract_version"] == 1
    assert report["reported_at"].endswith("Z")
