"""deploy/: the systemd units pass ``systemd-analyze verify`` and keep their hardening, the
compose file is valid YAML with the services operations.md describes, the example site
files load and name drivers that exist.

Not checked here (no tool on this machine): ``docker compose config`` (the compose plugin
is not installed), ``caddy validate``, a mosquitto dry run. docs/operations.md says so.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; dev dependency

from edge_agent.config import load_site_config

DEPLOY = Path(__file__).parents[2] / "deploy"
UNITS = ("jxc-central.service", "jxc-edge@.service")
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``key -> values`` of a unit's [Service] section (systemd allows a key repeated)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("name", UNITS)
def test_units_restart_and_are_hardened(name: str) -> None:
    service = unit_settings(DEPLOY / "systemd" / name)
    assert service["Restart"][0] in ("on-failure", "always")
    assert service["User"] == ["jxc"], "never root"
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert service["ExecStart"][0].startswith("/opt/jxc/venv/bin/jxc ")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified as installed, with ExecStart pointed at this checkout's jxc (verify wants
    the program to exist); any complaint about our files fails the test."""
    jxc = Path(__file__).parents[2] / ".venv" / "bin" / "jxc"
    if not jxc.exists():
        found = shutil.which("jxc")
        if found is None:
            pytest.skip("no jxc executable to point ExecStart at")
        jxc = Path(found)
    targets = []
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        text = text.replace("/opt/jxc/venv/bin/jxc", str(jxc))
        installed = tmp_path / name.replace("@.", "@DC-01.")
        installed.write_text(text, encoding="utf-8")
        if "@" in name:
            (tmp_path / name).write_text(text, encoding="utf-8")  # the template itself
        targets.append(str(installed))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *targets],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    complaints = [line for line in done.stderr.splitlines() if str(tmp_path) in line]
    assert done.returncode == 0, done.stderr
    assert complaints == []


def test_compose_has_two_replicas_behind_tls_on_one_postgres() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) >= {"postgres", "migrate", "central-1", "central-2", "mosquitto", "proxy"}
    replicas = [services["central-1"], services["central-2"]]
    urls = {replica["environment"]["JXC_CENTRAL_DATABASE_URL"] for replica in replicas}
    assert len(urls) == 1
    assert urls.pop().startswith("postgresql+psycopg://jxc:${POSTGRES_PASSWORD")
    for replica in replicas:
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert replica["read_only"] is True
        assert replica["cap_drop"] == ["ALL"]
    assert services["central-1"]["environment"]["JXC_CENTRAL_BACKUP_DIR"] == "/backups"
    assert "JXC_CENTRAL_BACKUP_DIR" not in services["central-2"]["environment"]
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "no"), name
    assert "443:443" in services["proxy"]["ports"]
    caddy = (DEPLOY / "compose" / "Caddyfile").read_text(encoding="utf-8")
    assert "reverse_proxy central-1:8700 central-2:8700" in caddy
    assert "health_uri /readyz" in caddy
    assert "respond @metrics 404" in caddy
    mosquitto = (DEPLOY / "compose" / "mosquitto.conf").read_text(encoding="utf-8")
    assert "allow_anonymous false" in mosquitto


@pytest.mark.parametrize("name", ["receiving-dock.toml", "store.toml", "example-site.toml"])
def test_example_sites_load_with_known_drivers(name: str) -> None:
    site = load_site_config(DEPLOY / "sites" / name)
    drivers = {entry.name for entry in entry_points(group="jxc.drivers")}
    for _, device in site.devices.all():
        assert device.driver in drivers
    assert site.backup.dir is not None
    if name != "example-site.toml":
        assert site.backup.interval_h > 0
        assert str(site.central.url).startswith("https://")


def test_example_sites_reach_central_and_the_broker_over_tls(tmp_path: Path) -> None:
    """The transport settings the example files show are the ones the code reads: the
    dock names the chain's CA for central, the store's MQTT scanner speaks TLS on 8883
    with a password kept in its own file, and its driver accepts every option as given
    (the files' paths swapped for real ones made here)."""
    from device_drivers.options import config_from_options  # noqa: PLC0415
    from device_drivers.scanners.mqtt_scanner import MqttScannerConfig  # noqa: PLC0415
    from tests.tls_certs import make_ca  # noqa: PLC0415

    dock = load_site_config(DEPLOY / "sites" / "receiving-dock.toml")
    assert dock.central.ca_file == Path("/etc/jxc/chain-ca.pem")
    store = load_site_config(DEPLOY / "sites" / "store.toml")
    (scanner,) = [d for _, d in store.devices.all() if d.driver == "mqtt-scanner"]
    options = scanner.options
    assert options["port"] == 8883
    assert "password" not in options
    assert {"username", "password_file", "tls_ca_file"} <= set(options)
    password = tmp_path / "password"
    password.write_text("a broker password\n")
    real = {
        **options,
        "tls_ca_file": str(make_ca(tmp_path / "pki").cert),
        "password_file": str(password),
    }
    config = config_from_options(MqttScannerConfig, scanner.id, real, driver="mqtt-scanner")
    endpoint = config.endpoint()
    assert endpoint.uses_tls
    assert endpoint.password == "a broker password"
    mosquitto = (DEPLOY / "compose" / "mosquitto.conf").read_text(encoding="utf-8")
    assert "listener 8883" in mosquitto
    assert "password_file" in mosquitto
