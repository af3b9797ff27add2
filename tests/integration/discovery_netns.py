"""The body of the discovery test, run inside a network namespace of its own.

``tests/integration/test_discovery.py`` starts this module under ``unshare -n`` with only
a loopback interface (multicast on), so every announcement and query stays inside the
namespace. It prints one JSON object of what it saw; the test asserts on it. Kept as one
process that checks several things, since a real central is the expensive part.

Usage: ``python -m tests.integration.discovery_netns WORKDIR``
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from edge_agent.agent import EdgeAgent
from edge_agent.config import load_site_config
from edge_agent.device_cli import app as device_app
from jxc.discovery import (
    CENTRAL_TYPE,
    EDGE_TYPE,
    MQTT_TYPE,
    PRINTER_TYPE,
    Advertisement,
    Browser,
    Found,
    discovery_enabled,
)
from tests.patience import patience_timeout, wait_for

CENTRAL_PORT = 8700  # the namespace is empty: central's default port is free


def _edge_announcements(site_id: str) -> list[dict[str, Any]]:
    """``_jxc-edge._tcp`` announcements seen until one for ``site_id`` arrives."""
    seen: list[Found] = []
    lock = threading.Lock()

    def keep(found: Found) -> None:
        with lock:
            seen.append(found)

    browser = Browser([EDGE_TYPE], keep)
    try:
        wait_for(lambda: any(f.properties.get("site") == site_id for f in seen), 10.0)
    finally:
        browser.close()
    with lock:
        return [f.as_dict() for f in seen]


def _healthz(url: str) -> int:
    with urllib.request.urlopen(f"{url}/healthz", timeout=patience_timeout(5)) as answer:
        return int(answer.status)


class _Keep(logging.Handler):
    """Keeps the records whose message starts with ``prefix``."""

    def __init__(self, into: list[logging.LogRecord], prefix: str) -> None:
        super().__init__()
        self.into, self.prefix = into, prefix

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.into.append(record)


def main(workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"discovery_enabled": discovery_enabled()}
    started = time.monotonic()
    marks: dict[str, float] = {}
    results["marks_s"] = marks  # where the wall time goes, for the report; never asserted
    site_file = workdir / "site.toml"
    # No [central] url: the agent must find central on the network.
    site_file.write_text(
        '[site]\nid = "S07"\nname = "Store 7"\n[ledger]\npath = "edge.db"\n[status]\nport = 0\n'
    )
    # What a dock's printer and the store's broker announce (ty: the printer's model);
    # made first, so their probing overlaps central's start.
    printer = Advertisement(
        PRINTER_TYPE,
        "Zebra ZT411 dock 1",
        9100,
        bind_host="127.0.0.1",
        properties={"ty": "Zebra ZT411"},
    ).start()
    broker = Advertisement(MQTT_TYPE, "store broker", 1883, bind_host="127.0.0.1").start()
    agent = EdgeAgent(load_site_config(site_file))
    agent.start()
    central: subprocess.Popen[bytes] | None = None
    second: Advertisement | None = None
    ignored: list[logging.LogRecord] = []
    logging.getLogger("jxc.discovery").addHandler(_Keep(ignored, "another central"))
    try:
        # Before central runs the agent is still looking, and syncs nothing.
        status = agent.status()
        results["before_central"] = {
            "central": status["central"],
            "central_from": status["central_from"],
        }
        with (workdir / "central.log").open("wb") as central_log:
            central = subprocess.Popen(
                [sys.executable, "-m", "jxc", "central", "serve"],
                env={
                    **os.environ,
                    "JXC_CENTRAL_DATABASE_URL": f"sqlite:///{workdir / 'central.db'}",
                    "JXC_CENTRAL_PORT": str(CENTRAL_PORT),
                    "JXC_CENTRAL_ADVERTISE_NAME": "jxc central under test",
                },
                stdout=central_log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: agent.central_url is not None or central.poll() is not None, 60.0)
        marks["central_found"] = round(time.monotonic() - started, 2)
        # A second central announced after the first was found: ignored, and said so.
        second = Advertisement(
            CENTRAL_TYPE, "jxc central elsewhere", 8799, bind_host="127.0.0.1"
        ).start()
        status = agent.status()
        results["after_central"] = {
            "central": status["central"],
            "central_from": status["central_from"],
        }
        if agent.central_url is not None:
            wait_for(lambda: _answers(agent.central_url), 30.0)
            results["central_healthz"] = _healthz(agent.central_url)
        marks["central_answers"] = round(time.monotonic() - started, 2)
        results["edge_status_port"] = agent.status_server.port
        results["edge_announcements"] = _edge_announcements("S07")

        marks["edge_announcement_seen"] = round(time.monotonic() - started, 2)
        results["simulated_registered"] = printer.wait_registered(
            patience_timeout(10)
        ) and broker.wait_registered(patience_timeout(10))
        marks["simulated_registered"] = round(time.monotonic() - started, 2)
        answer = CliRunner().invoke(device_app, ["discover", "--json", "--wait", "2"])
        results["discover_exit"] = answer.exit_code
        results["discover_rows"] = [
            json.loads(line) for line in answer.stdout.splitlines() if line.startswith("{")
        ]
        marks["discover_done"] = round(time.monotonic() - started, 2)
        wait_for(lambda: ignored, 10.0)
        results["ignored_centrals"] = [record.getMessage() for record in ignored]
        results["central_after_second"] = agent.central_url
    finally:
        for advertisement in (printer, broker, second):
            if advertisement is not None:
                advertisement.close()
        agent.stop()
        if central is not None:
            central.terminate()
            try:
                results["central_exit"] = central.wait(timeout=patience_timeout(20))
            except subprocess.TimeoutExpired:
                central.kill()
                results["central_exit"] = "killed"
        marks["stopped"] = round(time.monotonic() - started, 2)
        results["central_log_tail"] = (workdir / "central.log").read_text()[-2000:]
    return results


def _answers(url: str | None) -> bool:
    try:
        return url is not None and _healthz(url) == 200
    except OSError:
        return False


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
