"""Edge to central over HTTPS with the chain's own CA, against real processes.

``jxc central serve --ssl-certfile/--ssl-keyfile`` on loopback with a certificate from a
CA made in the test. An edge that does not trust that CA (none configured, or another
CA's bundle) sends nothing, says plainly that central's certificate is not trusted and
what to set, and keeps every event; the same ledger under an edge given the CA bundle
sends them all, once, and pulls the change feed over the same link.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.transport import CA_FILE_ENV
from tests.integration.processes import Site, Zygote, eventually, stop
from tests.patience import patience_timeout
from tests.secret_leaks import assert_no_leak, pem_body
from tests.tls_certs import TestCa, make_ca

pytestmark = pytest.mark.integration


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return make_ca(tmp_path / "pki", "chain-ca")


@pytest.fixture
def site(tmp_path: Path, ca: TestCa, zygote: Zygote) -> Iterator[Site]:
    server = ca.issue("central", server=True)
    running = Site(
        tmp_path / "site",
        central_tls=(ca.cert, server.cert, server.key),
        sync={"max_backoff_s": 0.5, "pull_interval_s": 0.5},
        zygote=zygote,
    )
    running.root.mkdir()
    try:
        running.start_central()
        running.start_scanner()
        yield running
    finally:
        running.stop_all()


def _untrusted(site: Site, how: str, count: int) -> dict[str, Any]:
    """The edge's status once it has failed to push ``count`` events a few times over."""
    return eventually(
        lambda: (
            (page := site.edge_status())["ledger"]["pending"] == count
            and page["sync"]["consecutive_failures"] >= 2
            and page
        ),
        what=f"pushes refused ({how})",
    )


def test_an_edge_pushes_over_https_only_with_the_ca_bundle_and_loses_nothing_before(
    site: Site, ca: TestCa, tmp_path: Path
) -> None:
    assert site.central_url.startswith("https://")

    # 1. No CA configured: the public trust store does not know the chain's CA.
    site.start_edge()
    site.scan("CARTON-1")
    site.scan("CARTON-2")
    page = _untrusted(site, "no CA bundle", 2)
    error = page["sync"]["last_error"]
    assert "central's TLS certificate is not trusted" in error
    assert "[central] ca_file" in error
    assert page["master_data"]["last_success_at"] is None
    assert "not trusted" in (page["master_data"]["last_error"] or "")
    stop(site.procs.pop("edge"))

    # 2. Another CA's bundle, from the environment: refused the same way.
    stranger = make_ca(tmp_path / "other-pki", "other-ca")
    site.env = {CA_FILE_ENV: str(stranger.cert)}
    site.start_edge()
    site.scan("CARTON-3")
    page = _untrusted(site, "another CA's bundle", 3)
    assert "not trusted" in page["sync"]["last_error"]
    stop(site.procs.pop("edge"))
    assert site.central_rows("SELECT count(*) FROM ledger_events") == [(0,)]

    # 3. The chain's CA bundle in the site file: everything recorded so far goes, once.
    site.env = {}
    site.central_extra = f'ca_file = "{ca.cert}"'
    site.start_edge()
    site.scan("CARTON-4")
    page = eventually(
        lambda: (p := site.edge_status())["ledger"]["synced_through"] == 4 and p,
        what="every event pushed over HTTPS",
    )
    assert page["ledger"]["pending"] == 0
    assert page["central"].startswith("https://")
    assert site.central_rows("SELECT count(*), count(DISTINCT event_id) FROM ledger_events") == [
        (4, 4)
    ]
    eventually(
        lambda: site.edge_status()["master_data"]["last_success_at"],
        what="the change feed pulled over HTTPS",
    )

    log = (site.root / "edge.log").read_text()
    assert "central's TLS certificate is not trusted" in log
    secret = site.secret_file.read_text().strip()
    assert_no_leak([secret], [log, str(page)])


def _edge_run(site_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jxc", "edge", "run", "--config", str(site_file)],
        capture_output=True,
        text=True,
        timeout=patience_timeout(120),
        check=False,
        env={**os.environ, **env},
    )


def test_an_unusable_ca_bundle_or_client_key_stops_the_start_in_one_line(
    tmp_path: Path, ca: TestCa
) -> None:
    client = ca.issue("edge-S01", server=False)
    other = ca.issue("someone-else", server=False)
    site_file = tmp_path / "site.toml"
    base = (
        '[site]\nid = "S01"\n[ledger]\npath = "edge.db"\n[status]\nport = 0\n'
        '[central]\nurl = "https://127.0.0.1:9"\n'
    )
    site_file.write_text(base + 'ca_file = "no-such-bundle.pem"\n')
    done = _edge_run(site_file, {})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: cannot use the CA bundle")
    assert str(tmp_path / "no-such-bundle.pem") in done.stderr

    # A certificate with another's key: named, the key's text never shown.
    site_file.write_text(
        base + f'ca_file = "{ca.cert}"\nclient_cert_file = "{other.cert}"\n'
        f'client_key_file = "{client.key}"\n'
    )
    done = _edge_run(site_file, {})
    assert done.returncode == 2, done.stderr
    assert "cannot use the client certificate" in done.stderr
    key_body = pem_body(client.key)
    assert_no_leak([key_body], [done.stdout, done.stderr])


def test_central_refuses_to_serve_tls_with_a_key_of_another_certificate(
    tmp_path: Path, ca: TestCa
) -> None:
    server = ca.issue("central", server=True)
    other = ca.issue("other", server=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jxc",
            "central",
            "serve",
            "--port",
            "9",
            "--database-url",
            f"sqlite:///{tmp_path / 'central.db'}",
            "--ssl-certfile",
            str(server.cert),
            "--ssl-keyfile",
            str(other.key),
        ],
        capture_output=True,
        text=True,
        timeout=patience_timeout(120),
        check=False,
        env={**os.environ, "JXC_DISCOVERY": "off"},
    )
    assert done.returncode == 2, done.stderr
    assert "cannot serve TLS with --ssl-certfile" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "central.db").exists()  # refused before the database
    key_body = pem_body(other.key)
    assert_no_leak([key_body], [done.stdout, done.stderr])
