"""MQTT devices through a broker that wants TLS and a password (issue 18, transport security).

One Mosquitto per module with a TLS-only listener (a CA, server certificate and key made
here), a password file and ``allow_anonymous false``. A scanner and a scale over that
broker deliver as over a plain one; a wrong password, a broker certificate from another
CA or no credentials at all are counted errors in the device's state, retried on the
bounded backoff, and never a scan. The password shows up in no log line, status or repr.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.mqtt import read_password_file
from device_drivers.scales.errors import ScaleMotionError, ScaleTimeoutError, ScaleUnavailableError
from device_drivers.scales.mqtt_scale import MqttScale, MqttScaleConfig, create_mqtt_scale
from device_drivers.scanners.mqtt_scanner import (
    MqttScanner,
    MqttScannerConfig,
    create_mqtt_scanner,
)
from simulators.mqtt_devices import BrokerLogin, MqttScaleTwin, MqttScannerTwin
from tests.device_drivers.driver_helpers import read_until_it_works
from tests.mqtt_broker import (
    MQTT_USER,
    SecureBroker,
    eventually,
    secure_mqtt_broker_fixture,
)
from tests.patience import patience_timeout
from tests.secret_leaks import BAD_SECRET_FILES, assert_no_leak, json_log, pem_body
from tests.tls_certs import make_ca

__all__ = ["secure_mqtt_broker_fixture"]  # a fixture used by name below

USER = MQTT_USER
GTIN_LINE = "]C1" + "0109506000134352" + "10LOT7"


@pytest.fixture
def device_id() -> str:
    return f"dev-{uuid.uuid4().hex[:8]}"


def _options(secure: SecureBroker, **more: object) -> dict[str, object]:
    return {
        "port": secure.broker.port,
        "username": USER,
        "password_file": str(secure.password_file),
        "tls_ca_file": str(secure.ca.cert),
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.4,
        **more,
    }


@pytest.mark.timeout(60)
def test_a_scanner_over_tls_with_a_password_delivers_its_reads(
    secure: SecureBroker, device_id: str
) -> None:
    with json_log() as logs:
        scanner = create_mqtt_scanner(device_id, _options(secure))
        assert isinstance(scanner, MqttScanner)
        try:
            eventually(lambda: scanner.status().state == "connected", within=10, what="up")
            with MqttScannerTwin(device_id, port=secure.broker.port, login=secure.login()) as twin:
                assert twin.wait_connected(patience_timeout(10))
                twin.scan("0109506000134352" + "10LOT7", "]C1")
                scan = scanner.read_scan(patience_timeout(10))
                assert scan is not None
                assert scan.gs1 is not None
                assert scan.data == "0109506000134352" + "10LOT7"
            status = scanner.status()
            assert status.scans == 1
            assert status.errors.get("auth", 0) == 0
            assert status.errors.get("tls", 0) == 0
            config_text = repr(scanner.config) + repr(scanner.config.endpoint())
        finally:
            scanner.close()
    assert "mqtts://127.0.0.1" in logs.getvalue()
    assert_no_leak(
        [secure.password],
        [logs.getvalue(), json.dumps(asdict(status), default=str), config_text],
    )


@pytest.mark.timeout(60)
def test_a_scale_over_tls_with_a_password_gives_its_weight(
    secure: SecureBroker, device_id: str
) -> None:
    scale = create_mqtt_scale(device_id, _options(secure))
    assert isinstance(scale, MqttScale)
    twin = MqttScaleTwin(
        device_id, port=secure.broker.port, weight=Decimal("7.250"), login=secure.login()
    )
    try:
        assert twin.wait_connected(patience_timeout(10))
        reading = read_until_it_works(
            scale,
            10,
            stable=0.5,
            retry_on=(ScaleMotionError, ScaleTimeoutError, ScaleUnavailableError),
            pause=0,
        )
        assert reading.net == Decimal("7.250")
        assert reading.stable
        assert scale.status().state == "connected"
    finally:
        twin.close()
        scale.close()


@pytest.mark.timeout(60)
def test_a_wrong_password_is_a_counted_auth_error_retried_on_a_bounded_backoff(
    secure: SecureBroker, device_id: str, tmp_path: Path
) -> None:
    wrong = secrets.token_urlsafe(24)
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(wrong)
    refused_before = secure.refusals()
    with json_log() as logs:
        scanner = create_mqtt_scanner(device_id, _options(secure, password_file=str(wrong_file)))
        try:
            # Several refused attempts, seen by the broker: the driver keeps trying...
            eventually(lambda: secure.refusals() >= refused_before + 4, within=20, what="retries")
            status = scanner.status()
            assert status.state == "disconnected"
            # ...but it is one outage, counted once, under its own reason.
            assert status.errors["auth"] == 1
            assert status.errors["io"] == 0
            assert status.last_error is not None
            assert "refused the session" in status.last_error
            assert "check username and password" in status.last_error
            assert scanner.read_scan(0.05) is None
            # The backoff has grown to its cap and stays there: no hammering the broker.
            health = scanner._health  # the backoff is not public
            assert health._retry_delay == pytest.approx(0.4)
        finally:
            scanner.close()
    assert '"reason": "auth"' in logs.getvalue()
    assert_no_leak([wrong, secure.password], [logs.getvalue(), repr(status)])


@pytest.mark.timeout(60)
def test_a_broker_certificate_from_another_ca_is_a_tls_error(
    secure: SecureBroker, device_id: str, tmp_path: Path
) -> None:
    stranger = make_ca(tmp_path / "other-pki", "other-ca")
    scanner = create_mqtt_scanner(device_id, _options(secure, tls_ca_file=str(stranger.cert)))
    try:
        eventually(lambda: scanner.status().errors.get("tls", 0) == 1, within=10, what="tls")
        status = scanner.status()
        assert status.state == "disconnected"
        assert status.last_error is not None
        assert "does not trust" in status.last_error
        assert "tls_ca_file" in status.last_error
    finally:
        scanner.close()


@pytest.mark.timeout(60)
def test_no_credentials_at_all_is_an_auth_error_saying_none_are_set(
    secure: SecureBroker, device_id: str
) -> None:
    options = _options(secure)
    del options["username"], options["password_file"]
    scanner = create_mqtt_scanner(device_id, options)
    try:
        eventually(lambda: scanner.status().errors.get("auth", 0) == 1, within=10, what="auth")
        assert "none are set" in (scanner.status().last_error or "")
    finally:
        scanner.close()


@pytest.mark.timeout(60)
def test_a_broker_that_wants_a_client_certificate_gets_the_device_s(
    secure: SecureBroker, device_id: str, tmp_path: Path
) -> None:
    gateway = secure.ca.issue(f"gw-{device_id}", server=False)
    with_cert = _options(
        secure,
        port=secure.mtls_port,
        tls_cert_file=str(gateway.cert),
        tls_key_file=str(gateway.key),
    )
    scanner = create_mqtt_scanner(device_id, with_cert)
    bare = create_mqtt_scanner(f"{device_id}-bare", _options(secure, port=secure.mtls_port))
    try:
        eventually(lambda: scanner.status().state == "connected", within=10, what="up")
        with MqttScannerTwin(
            device_id,
            port=secure.mtls_port,
            login=BrokerLogin(
                username=USER,
                password=secure.password,
                tls_ca_file=secure.ca.cert,
                tls_cert_file=gateway.cert,
                tls_key_file=gateway.key,
            ),
        ) as twin:
            assert twin.wait_connected(patience_timeout(10))
            twin.scan("CARTON-MTLS")
            scan = scanner.read_scan(patience_timeout(10))
            assert scan is not None
            assert scan.data == "CARTON-MTLS"
        # Without a certificate the broker ends the handshake: never up, counted.
        eventually(lambda: bare.status().errors["tls"] >= 1, within=10, what="bare refused")
        status = bare.status()
        assert status.state == "disconnected"
        assert status.scans == 0
        assert "client certificate (tls_cert_file)" in (status.last_error or "")
    finally:
        scanner.close()
        bare.close()


# -- configuration, no broker needed -----------------------------------------------------


def test_tls_files_are_checked_at_start_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(DeviceConfigError, match=r"tls_ca_file .*no-such-ca\.pem"):
        MqttScannerConfig(device_id="s1", tls_ca_file=missing)
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is no certificate\n")
    with pytest.raises(DeviceConfigError, match="tls_ca_file"):
        MqttScaleConfig(device_id="s1", tls_ca_file=not_pem)
    with pytest.raises(DeviceConfigError, match="go together"):
        MqttScannerConfig(device_id="s1", tls_cert_file=not_pem)


def test_a_client_certificate_is_loaded_and_its_key_never_quoted(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    client = ca.issue("scanner-gw", server=False)
    config = MqttScannerConfig(
        device_id="s1", tls_ca_file=ca.cert, tls_cert_file=client.cert, tls_key_file=client.key
    )
    assert config.endpoint().uses_tls
    other = ca.issue("other", server=False)
    with pytest.raises(DeviceConfigError) as refused:
        MqttScannerConfig(
            device_id="s1", tls_ca_file=ca.cert, tls_cert_file=other.cert, tls_key_file=client.key
        )
    assert_no_leak([pem_body(client.key)], [str(refused.value)])


_STILL_A_PASSWORD = {"space-inside", "toml-line", "too-long", "trailing-junk"}
"""Spoilt site secret files that are still one line of text, and so a usable password."""


@pytest.mark.parametrize("spoil", sorted(set(BAD_SECRET_FILES) - _STILL_A_PASSWORD))
def test_a_bad_password_file_is_refused_without_quoting_it(tmp_path: Path, spoil: str) -> None:
    """Every unusable password file is a start-up error naming the file, never its text."""
    secret = secrets.token_urlsafe(32)
    path = tmp_path / "password"
    writer, _ = BAD_SECRET_FILES[spoil]
    writer(path, secret)
    with pytest.raises(DeviceConfigError) as refused:
        read_password_file("s1", path)
    assert str(path) in str(refused.value)
    assert_no_leak([secret], [str(refused.value)])


@pytest.mark.parametrize("spoil", sorted(_STILL_A_PASSWORD))
def test_a_password_file_holds_any_one_line(tmp_path: Path, spoil: str) -> None:
    path = tmp_path / "password"
    BAD_SECRET_FILES[spoil][0](path, secrets.token_urlsafe(32))
    assert read_password_file("s1", path) == path.read_text().removesuffix("\n")


def test_a_password_is_never_in_a_repr_or_a_type_error(tmp_path: Path) -> None:
    password = secrets.token_urlsafe(24)
    config = MqttScannerConfig(device_id="s1", username="u", password=password)
    assert_no_leak([password], [repr(config), repr(config.endpoint())])
    with pytest.raises(DeviceConfigError) as refused:
        create_mqtt_scanner("s1", {"username": "u", "password": 918273645546372819})
    assert "918273645546372819" not in str(refused.value)
    both = tmp_path / "pw"
    both.write_text(password)
    with pytest.raises(DeviceConfigError, match="not both"):
        create_mqtt_scanner("s1", {"username": "u", "password": "x", "password_file": str(both)})
