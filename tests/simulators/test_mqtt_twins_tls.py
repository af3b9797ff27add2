"""The MQTT twins log in as the site file (or the command line) says: TLS and an account.

``jxc sim site`` on a site file whose MQTT devices have ``username``, ``password_file``
(relative to the site file) and ``tls_ca_file`` brings twins that reach the TLS +
password broker, and the drivers of the same site file hear them; ``jxc sim
mqtt-scanner`` takes the same settings as options and says ``mqtts://``. Neither prints
the password.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.registry import open_scale, open_scanner
from edge_agent.config import load_site_config
from tests.device_drivers.driver_helpers import read_until_it_works
from tests.mqtt_broker import MQTT_USER, SecureBroker, eventually, secure_mqtt_broker_fixture
from tests.patience import patience_timeout
from tests.secret_leaks import assert_no_leak
from tests.simulators.sim_process import SimProcess
from tests.simulators.test_sim_site import endpoints, write_site

__all__ = ["secure_mqtt_broker_fixture"]  # a fixture used by name below

pytestmark = pytest.mark.timeout(90)


def test_a_simulated_site_speaks_tls_with_its_account(tmp_path: Path, secure: SecureBroker) -> None:
    shutil.copy(secure.password_file, tmp_path / "mqtt.password")
    shutil.copy(secure.ca.cert, tmp_path / "broker-ca.pem")
    port = secure.broker.port
    login = (
        f'username = "{MQTT_USER}"\npassword_file = "mqtt.password"\n'
        'tls_ca_file = "broker-ca.pem"\nreconnect_max_delay = 0.4\n'
    )
    site = write_site(
        tmp_path,
        f"""
[[devices.scanners]]
id = "tls-scan"
driver = "mqtt-scanner"
port = {port}
{login}
[[devices.scales]]
id = "tls-scale"
driver = "mqtt-scale"
port = {port}
{login}
""",
    )
    config = load_site_config(site)
    scanner_section, scale_section = config.devices.scanners[0], config.devices.scales[0]
    with SimProcess("site", "--config", str(site)) as sim:
        assert endpoints(sim, 2) == {
            "tls-scan": f"mqtts://127.0.0.1:{port}/jxc/scanners/tls-scan/scan",
            "tls-scale": f"mqtts://127.0.0.1:{port}/jxc/scales/tls-scale/weight",
        }
        scanner = open_scanner("mqtt-scanner", "tls-scan", scanner_section.options)
        scale = open_scale("mqtt-scale", "tls-scale", scale_section.options)
        try:
            eventually(lambda: scanner.status().state == "connected", within=10, what="up")
            sim.send("tls-scan CARTON-7")
            scan = scanner.read_scan(patience_timeout(10))
            assert scan is not None
            assert scan.data == "CARTON-7"
            sim.send("tls-scale weight 3.125")
            eventually(
                lambda: read_until_it_works(scale, 10, stable=0.5, pause=0).net == Decimal("3.125"),
                within=15,
                what="the typed weight over TLS",
            )
        finally:
            scanner.close()
            scale.close()
        assert sim.terminate() == 0
        assert_no_leak([secure.password], [sim.stderr])


def test_the_mqtt_scanner_command_takes_the_account_and_ca(
    tmp_path: Path, secure: SecureBroker
) -> None:
    port = secure.broker.port
    args = ["--port", str(port), "--device-id", "cli-scan", "--username", MQTT_USER]
    args += ["--password-file", str(secure.password_file), "--tls-ca-file", str(secure.ca.cert)]
    scanner = open_scanner(
        "mqtt-scanner",
        "cli-scan",
        {
            "port": port,
            "username": MQTT_USER,
            "password_file": str(secure.password_file),
            "tls_ca_file": str(secure.ca.cert),
        },
    )
    try:
        eventually(lambda: scanner.status().state == "connected", within=10, what="up")
        with SimProcess("mqtt-scanner", *args) as sim:
            assert sim.line() == f"device: mqtts://127.0.0.1:{port}/jxc/scanners/cli-scan/scan"
            sim.send("CARTON-9")
            scan = scanner.read_scan(patience_timeout(10))
            assert scan is not None
            assert scan.data == "CARTON-9"
            assert sim.terminate() == 0
            assert_no_leak([secure.password], [sim.stderr])
    finally:
        scanner.close()
