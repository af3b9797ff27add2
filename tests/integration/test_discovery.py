"""Zeroconf discovery, end to end, inside a network namespace the test creates.

Multicast DNS is sent to every host on a network, so these checks never run on this
machine's interfaces: the body (``tests/integration/discovery_netns.py``) runs under
``unshare -n`` (as root) or ``unshare -rn`` (a user namespace otherwise) with only a
loopback interface, made multicast-capable. Everything it announces and hears stays in
there. Where namespaces cannot be made the test says so loudly: it fails under CI
(``CI=true``) and skips elsewhere.

One process checks it all, since a real central is the costly part:

* an edge with no ``[central] url`` keeps looking while there is no central, then finds
  the one ``jxc central serve`` announces (``_jxc-central._tcp``) and reaches it; a second
  central announced later is ignored, with a warning;
* the edge announces ``_jxc-edge._tcp`` with its site id and its status page's port;
* ``jxc device discover`` lists an announced label printer and MQTT broker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge_agent.agent import EdgeAgent
from edge_agent.config import load_site_config
from edge_agent.device_cli import app as device_app
from tests.patience import patience_timeout, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_UP = 'ip link set lo up && ip link set lo multicast on && exec "$0" "$@"'


def _namespace_prefix() -> tuple[list[str] | None, str]:
    """The command that runs a program in a new network namespace with loopback up."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return None, f"{' and '.join(missing)} not installed (util-linux, iproute2)"
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    prefix = [*unshare, "sh", "-c", LOOPBACK_UP]
    probe = subprocess.run(
        [*prefix, "ip", "-o", "link", "show", "lo"],
        capture_output=True,
        text=True,
        timeout=patience_timeout(10),
        check=False,
    )
    if probe.returncode != 0 or "MULTICAST" not in probe.stdout:
        return None, f"{' '.join(unshare)} did not give a loopback with multicast: {probe.stderr}"
    return prefix, ""


def _in_namespace(workdir: Path) -> dict[str, Any]:
    prefix, why_not = _namespace_prefix()
    if prefix is None:
        message = f"zeroconf tests need a network namespace of their own: {why_not}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    answer = subprocess.run(
        [*prefix, sys.executable, "-m", "tests.integration.discovery_netns", str(workdir)],
        cwd=ROOT,
        env={**os.environ, "JXC_DISCOVERY": "on", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=patience_timeout(120),
        check=False,
    )
    assert answer.returncode == 0, f"namespace body failed:\n{answer.stderr[-4000:]}"
    return dict(json.loads(answer.stdout.strip().splitlines()[-1]))


def test_discovery_in_a_network_namespace(tmp_path: Path) -> None:
    seen = _in_namespace(tmp_path)
    log_tail = seen["central_log_tail"]
    assert seen["discovery_enabled"] is True

    # Central is found only once it runs: before, the edge keeps looking.
    assert seen["before_central"] == {"central": None, "central_from": "not found yet"}
    central = "http://127.0.0.1:8700"
    assert seen["after_central"] == {"central": central, "central_from": "discovery"}, log_tail
    assert seen["central_healthz"] == 200
    # A second central announced later is ignored (and logged): the first one stays.
    assert seen["central_after_second"] == central
    assert seen["ignored_centrals"] == ["another central is announced on the network; ignored"], (
        seen["ignored_centrals"]
    )
    # Stopped by SIGTERM, central says goodbye on the network, then ends as the signal says.
    assert seen["central_exit"] == -15, log_tail
    assert '"msg": "announcement withdrawn"' in log_tail, log_tail

    # The edge announces itself with its site id, at its status page's port.
    mine = [a for a in seen["edge_announcements"] if a["properties"].get("site") == "S07"]
    assert len(mine) == 1, seen["edge_announcements"]
    assert mine[0]["port"] == seen["edge_status_port"]
    assert mine[0]["name"] == "jxc edge S07"
    assert mine[0]["properties"]["name"] == "Store 7"
    assert mine[0]["address"] == "127.0.0.1"

    # `jxc device discover` lists the printer and the broker with host, port and name.
    assert seen["simulated_registered"] is True
    assert seen["discover_exit"] == 0
    rows = {row["kind"]: row for row in seen["discover_rows"]}
    assert sorted(rows) == ["mqtt-broker", "printer"], seen["discover_rows"]
    assert rows["printer"]["name"] == "Zebra ZT411 dock 1"
    assert rows["printer"]["port"] == 9100
    assert rows["printer"]["model"] == "Zebra ZT411"
    assert rows["mqtt-broker"]["name"] == "store broker"
    assert rows["mqtt-broker"]["port"] == 1883
    for row in rows.values():
        assert row["address"] == "127.0.0.1"
        assert row["host"].endswith(".local")


def test_discovery_off_means_no_central_and_no_sync(tmp_path: Path) -> None:
    """Without a URL and with discovery off (as in every other test) the agent runs and
    syncs nothing, and `jxc device discover` refuses; nothing touches the network."""
    assert os.environ["JXC_DISCOVERY"] == "off"  # set for the whole suite in conftest
    site_file = tmp_path / "site.toml"
    site_file.write_text('[site]\nid = "S08"\n[ledger]\npath = "edge.db"\n[status]\nport = 0\n')
    agent = EdgeAgent(load_site_config(site_file))
    agent.start()
    try:
        assert wait_for(lambda: agent.status()["jobs"].get("push", {}).get("runs"), 10.0)
        status = agent.status()
        assert status["central"] is None
        assert status["central_from"] == "not found yet"
        assert agent.finder is None
        assert agent.announcement is None
        # The push job ran and did not try central: no failure, no error.
        assert status["sync"]["consecutive_failures"] == 0
        assert status["sync"]["last_error"] is None
    finally:
        agent.stop()
    answer = CliRunner().invoke(device_app, ["discover", "--json"])
    assert answer.exit_code == 1
    assert "discovery is off here (JXC_DISCOVERY=off)" in answer.stderr
