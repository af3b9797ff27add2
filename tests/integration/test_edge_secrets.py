"""The site secret against real processes: ``jxc edge run``, ``jxc central serve``, a scanner.

Whatever the secret file holds, the edge agent's log (every JSON line it wrote) and its
status page never show the secret or a would-be secret; a start with an unusable file
ends in one line saying why; a running agent whose rotated secret file cannot be used
keeps recording, counts the failures and raises an alert, and sends everything once the
file is fixed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.processes import Site, Zygote, eventually, get_json
from tests.patience import patience_timeout
from tests.secret_leaks import BAD_SECRET_FILES, Writer, assert_no_leak

pytestmark = pytest.mark.integration


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold, as they do for a site's user.

    As root, file modes are ignored; dropping the capabilities that override them (the
    process stays root otherwise) makes a mode-000 file unreadable for real.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "running as root needs setpriv (util-linux) for this test"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def _unreadable(path: Path, secret: str) -> None:
    path.write_text(secret + "\n")
    path.chmod(0)


SECRET_FILES: dict[str, tuple[Writer, str]] = {
    **BAD_SECRET_FILES,
    "unreadable": (_unreadable, "Permission denied"),
}


def clear(path: Path) -> None:
    if path.is_dir():
        path.rmdir()
    elif path.exists():
        path.chmod(0o600)
        path.unlink()


def spoil(path: Path, how: str, secret: str) -> None:
    clear(path)
    write, _ = SECRET_FILES[how]
    write(path, secret)


@pytest.mark.parametrize("how", sorted(SECRET_FILES))
def test_a_start_with_an_unusable_secret_file_says_why_in_one_line(
    tmp_path: Path, how: str
) -> None:
    secret = "Zq" + os.urandom(32).hex()[:41]
    secret_file = tmp_path / "S01.secret"
    spoil(secret_file, how, secret)
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        '[site]\nid = "S01"\n[central]\nurl = "http://127.0.0.1:9"\n'
        'site_secret_file = "S01.secret"\n[ledger]\npath = "edge.db"\n[status]\nport = 0\n'
    )
    done = subprocess.run(
        [
            *unprivileged(),
            sys.executable,
            "-m",
            "jxc",
            "edge",
            "run",
            "--config",
            str(site_file),
            "--status-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=patience_timeout(120),
        check=False,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {secret_file}: ")
    assert SECRET_FILES[how][1] in lines[0]
    assert "Traceback" not in done.stderr
    assert_no_leak([secret], [done.stdout, done.stderr])


def rotate(site: Site) -> str:
    """Rotate the site's secret at central as an operator does; the new secret."""
    handed_out = site.root / "rotated.secret"
    site.run_cli(
        [
            "central",
            "site",
            "rotate",
            site.site_id,
            "--database-url",
            f"sqlite:///{site.central_db}",
            "--secret-file",
            str(handed_out),
        ],
        site.root / "site-rotate.log",
    )
    return handed_out.read_text().strip()


@pytest.fixture
def site(tmp_path: Path, zygote: Zygote) -> Iterator[Site]:
    # The pull at the product's interval (10 s, not Site's 0.2 s): the pull reads the
    # secret file too, and a pull's failure is not the push's (``consecutive_failures``),
    # which is what each round below must find after it sees the read failure counted.
    running = Site(
        tmp_path,
        edge_wrapper=unprivileged(),
        sync={"max_backoff_s": 0.5, "pull_interval_s": 10},
        zygote=zygote,
    )
    try:
        running.start_central()
        running.start_scanner()
        running.start_edge()
        yield running
    finally:
        running.stop_all()


def secret_alert(page: dict[str, Any]) -> str | None:
    alerts = [a for a in page["alerts"] if a.startswith("the site secret file cannot be used")]
    return alerts[0] if alerts else None


def test_a_running_agent_with_an_unusable_rotated_secret_keeps_everything_and_says_so(
    site: Site,
) -> None:
    secrets = [site.secret_file.read_text().strip()]
    pages: list[str] = []
    site.scan("CARTON-0")
    eventually(lambda: site.edge_status()["ledger"]["synced_through"] == 1, what="first sync")

    for n, how in enumerate(sorted(SECRET_FILES), start=1):
        rotated = rotate(site)
        secrets.append(rotated)
        spoil(site.secret_file, how, rotated)
        failures_before = site.edge_status()["credential"]["secret_read_failures"]
        site.scan(f"CARTON-{n}")  # something to send: the push meets the refusal
        page = eventually(
            lambda before=failures_before, n=n: (
                (p := site.edge_status())["credential"]["secret_read_failures"] > before
                and p["ledger"]["last_seq"] == n + 1
                and p
            ),
            what=f"the {how} secret file reported",
        )
        alert = secret_alert(page)
        assert alert is not None, page["alerts"]
        assert SECRET_FILES[how][1] in alert
        assert page["sync"]["consecutive_failures"] >= 1
        assert page["ledger"]["pending"] >= 1
        pages.append(str(get_json(site.edge_url)))

    clear(site.secret_file)
    site.secret_file.write_text(secrets[-1] + "\n")  # the operator's fix
    count = len(SECRET_FILES) + 1
    page = eventually(
        lambda: (p := site.edge_status())["ledger"]["synced_through"] == count and p,
        within=60,
        what="every event sent once the file is fixed",
    )
    assert page["ledger"]["pending"] == 0
    assert secret_alert(page) is None
    pages.append(str(page))

    log = (site.root / "edge.log").read_text()
    assert "the site secret file cannot be used" in log
    assert_no_leak(secrets, [log, *pages])
