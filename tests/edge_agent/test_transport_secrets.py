"""Transport secrets on a running edge agent: the MQTT password and the TLS key files.

An agent with an MQTT scanner on a TLS + password broker (password in a file), an MQTT
scale whose password (inline in the site file) the broker refuses, and central over
HTTPS with a client certificate. It books a scan from the good scanner, counts the
refused scale as an ``auth`` error, and neither password, nor the text of any key file,
appears in any log line, ``/healthz`` (the status page) or ``/metrics``.
Also here: the TLS settings of the link to central, from the site file or environment,
and the edge's client certificate presented to a server that wants one.
"""

from __future__ import annotations

import secrets
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from edge_agent.agent import EdgeAgent
from edge_agent.config import load_site_config
from edge_agent.transport import (
    CA_FILE_ENV,
    CLIENT_CERT_ENV,
    CLIENT_KEY_ENV,
    CentralTlsError,
    central_client,
    central_tls,
    describe_transport_error,
)
from simulators.mqtt_devices import MqttScannerTwin
from tests.mqtt_broker import MQTT_USER, SecureBroker, eventually, secure_mqtt_broker_fixture
from tests.patience import patience_timeout
from tests.ports import free_port
from tests.secret_leaks import assert_no_leak, json_log, pem_body
from tests.tls_certs import TestCa, make_ca

__all__ = ["secure_mqtt_broker_fixture"]  # a fixture used by name below


def _page(agent: EdgeAgent, name: str) -> str:
    url = agent.status_server.url.replace("/healthz", name)
    with urllib.request.urlopen(url, timeout=patience_timeout(5)) as answer:
        return str(answer.read().decode())


@pytest.fixture
def agent_files(tmp_path: Path, secure: SecureBroker) -> tuple[Path, str, TestCa]:
    """A site file for the agent, the wrong password in it, and central's CA."""
    central_ca = make_ca(tmp_path / "pki", "chain-ca")
    client = central_ca.issue("edge-S01", server=False)
    wrong = secrets.token_urlsafe(24)
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        f"""
[site]
id = "S01"
[central]
url = "https://127.0.0.1:9"
timeout_s = 1
ca_file = "pki/chain-ca.crt"
client_cert_file = "{client.cert}"
client_key_file = "{client.key}"
[sync]
push_interval_s = 0.2
max_backoff_s = 0.5
[ledger]
path = "edge.db"
[status]
port = 0
[[devices.scanners]]
id = "scan-tls"
driver = "mqtt-scanner"
port = {secure.broker.port}
username = "{MQTT_USER}"
password_file = "{secure.password_file}"
tls_ca_file = "{secure.ca.cert}"
reconnect_max_delay = 0.4
[[devices.scales]]
id = "scale-wrong"
driver = "mqtt-scale"
port = {secure.broker.port}
username = "{MQTT_USER}"
password = "{wrong}"
tls_ca_file = "{secure.ca.cert}"
reconnect_max_delay = 0.4
""",
        encoding="utf-8",
    )
    return site_file, wrong, central_ca


@pytest.mark.timeout(90)
def test_no_transport_secret_is_logged_or_shown(
    agent_files: tuple[Path, str, TestCa], secure: SecureBroker
) -> None:
    site_file, wrong, central_ca = agent_files
    config = load_site_config(site_file)
    assert config.central.ca_file == central_ca.cert  # relative to the site file
    key_file = config.central.client_key_file
    assert key_file is not None
    pages: list[str] = []
    with json_log() as logs:
        agent = EdgeAgent(config)
        agent.start()
        try:
            eventually(
                lambda: agent.status()["scanners"][0]["state"] == "connected",
                within=15,
                what="the TLS scanner connected",
            )
            with MqttScannerTwin("scan-tls", port=secure.broker.port, login=secure.login()) as twin:
                assert twin.wait_connected(patience_timeout(10))
                twin.scan("CARTON-TLS-1")
                eventually(
                    lambda: agent.status()["ledger"]["last_seq"] == 1,
                    within=15,
                    what="the scan booked",
                )
            eventually(
                lambda: agent.status()["scales"][0]["errors"].get("auth") == 1,
                within=15,
                what="the refused scale counted",
            )
            scale = agent.status()["scales"][0]
            assert scale["state"] == "disconnected"
            assert "check username and password" in scale["last_error"]
            eventually(
                lambda: agent.status()["sync"]["consecutive_failures"] >= 1,
                within=15,
                what="a push tried (central is not there)",
            )
            pages += [_page(agent, "/healthz"), _page(agent, "/metrics")]
        finally:
            agent.stop()
    text = logs.getvalue()
    assert "mqtts://127.0.0.1" in text
    assert_no_leak([secure.password, wrong, pem_body(key_file)], [text, *pages])


# -- the link to central: which TLS settings win ------------------------------------------


def _site(tmp_path: Path, central: str = "") -> Path:
    path = tmp_path / "site.toml"
    path.write_text(f'[site]\nid = "S01"\n[central]\nurl = "https://central.example"\n{central}')
    return path


def test_no_tls_setting_is_the_default_trust_store(tmp_path: Path) -> None:
    assert central_tls(load_site_config(_site(tmp_path))) is True


def test_the_environment_wins_over_the_site_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = make_ca(tmp_path / "pki")
    config = load_site_config(_site(tmp_path, 'ca_file = "missing.pem"\n'))
    with pytest.raises(CentralTlsError, match=r"missing\.pem \(from the site file\)"):
        central_tls(config)
    monkeypatch.setenv(CA_FILE_ENV, str(ca.cert))
    assert isinstance(central_tls(config), ssl.SSLContext)
    monkeypatch.setenv(CA_FILE_ENV, str(tmp_path / "gone.pem"))
    with pytest.raises(CentralTlsError, match=f"from {CA_FILE_ENV}"):
        central_tls(config)


def test_a_client_certificate_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = make_ca(tmp_path / "pki")
    client = ca.issue("edge", server=False)
    config = load_site_config(_site(tmp_path))
    monkeypatch.setenv(CLIENT_KEY_ENV, str(client.key))
    with pytest.raises(CentralTlsError, match="no client certificate"):
        central_tls(config)
    monkeypatch.setenv(CLIENT_CERT_ENV, str(client.cert))
    assert isinstance(central_tls(config), ssl.SSLContext)  # the default trust store
    monkeypatch.setenv(CA_FILE_ENV, str(ca.cert))
    assert isinstance(central_tls(config), ssl.SSLContext)


def test_an_untrusted_certificate_is_said_in_an_operator_s_words() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "unable to get local issuer certificate"
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.__cause__ = cause
    said = describe_transport_error(error)
    assert said.startswith("central's TLS certificate is not trusted")
    assert "unable to get local issuer certificate" in said
    assert CA_FILE_ENV in said
    plain = describe_transport_error(httpx.ConnectError("All connection attempts failed"))
    assert plain == "ConnectError: All connection attempts failed"


@pytest.fixture
def _tidy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (CA_FILE_ENV, CLIENT_CERT_ENV, CLIENT_KEY_ENV):
        monkeypatch.delenv(name, raising=False)


pytestmark = pytest.mark.usefixtures("_tidy_env")


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: 200 ``hello`` to whoever got through the handshake."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def mutual_tls_server(tmp_path: Path) -> Iterator[tuple[str, TestCa]]:
    """A uvicorn on loopback that serves TLS and wants a client certificate from its CA,
    as a reverse proxy configured for mutual TLS does."""
    ca = make_ca(tmp_path / "mtls-pki", "proxy-ca")
    server_files = ca.issue("proxy", server=True)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            _hello,
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(server_files.cert),
            ssl_keyfile=str(server_files.key),
            ssl_ca_certs=str(ca.cert),
            ssl_cert_reqs=ssl.CERT_REQUIRED,
            lifespan="off",
            log_config=None,
        )
    )
    thread = threading.Thread(target=server.run, name="mtls-server", daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, within=10, what="the TLS server up")
        yield f"https://127.0.0.1:{port}", ca
    finally:
        server.should_exit = True
        thread.join(timeout=patience_timeout(10))


def test_the_edge_presents_its_certificate_to_a_proxy_that_wants_one(
    tmp_path: Path, mutual_tls_server: tuple[str, TestCa]
) -> None:
    url, ca = mutual_tls_server
    client_files = ca.issue("edge-S01", server=False)
    without = load_site_config(_site(tmp_path, f'ca_file = "{ca.cert}"\n'))
    with (
        central_client(without, base_url=url, auth=None) as client,
        pytest.raises(httpx.HTTPError),
    ):
        client.get("/")
    with_cert = load_site_config(
        _site(
            tmp_path,
            f'ca_file = "{ca.cert}"\nclient_cert_file = "{client_files.cert}"\n'
            f'client_key_file = "{client_files.key}"\n',
        )
    )
    with central_client(with_cert, base_url=url, auth=None) as client:
        answer = client.get("/")
    assert answer.status_code == 200
    assert answer.text == "hello"
