"""Fixtures for the console: central served by uvicorn on loopback, and Debian's Chromium.

The browser tests drive a real central (``uvicorn --factory central_api.main:create_app``
on a free loopback port, SQLite in a temporary folder) with Playwright in the Chromium
Debian packages (``apt-get install chromium``): Playwright's own browser download is not
used. Without Chromium (or the playwright package) the browser tests are skipped with a
loud reason, except under ``CI=true``, where they fail: CI must never go green by skipping
the browser.

Screenshots go to ``var/screenshots`` (or ``JXC_SCREENSHOTS``); the ones in
``docs/screenshots`` are refreshed with ``JXC_SCREENSHOTS=docs/screenshots``.

The database fixtures of ``tests/central`` are re-exported here, so page tests that read
the database run on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from central_api.core.db import create_db_engine, upgrade_database
from tests.central.conftest import (  # noqa: F401 (fixtures, re-exported for tests/web)
    TEST_PASSWORD,
    add_test_user,
    central_app,
    client,
    database_url,
    engine,
    postgres_session,
    sqlite_template,
)
from tests.integration.processes import free_port
from tests.patience import patience_timeout

CHROMIUM = os.environ.get("JXC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-sandbox",
]
REPO = Path(__file__).parents[2]


def _unavailable(reason: str) -> None:
    """Skip loudly on a developer's machine; fail under CI, which must run the browser."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(f"!!! SKIPPED: {reason}. Install it with `apt-get install -y chromium`.")


@dataclass(frozen=True)
class Central:
    url: str
    database_url: str


USERS: dict[str, list[str]] = {
    "boss": ["admin"],
    "clerk": ["warehouse_clerk"],
    "buyer": ["purchaser"],
    "buyer2": ["purchaser"],
    "finance": ["finance"],
}
"""Who the browser tests sign in as; each has :data:`TEST_PASSWORD`."""


@contextmanager
def serve_central(folder: Path, **environment: str) -> Iterator[Central]:
    """A central of its own in ``folder`` (SQLite, the :data:`USERS`), served by uvicorn on a
    loopback port until the block ends; ``environment`` is added to the server's."""
    database = f"sqlite:///{folder / 'central.db'}"
    upgrade_database(database)
    setup = create_db_engine(database)
    try:
        for username, roles in USERS.items():
            add_test_user(setup, username, roles)
    finally:
        setup.dispose()
    port = free_port()
    env = {**os.environ, **environment, "JXC_CENTRAL_DATABASE_URL": database}
    log = (folder / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "central_api.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + patience_timeout(20)
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"central did not come up: {(folder / 'uvicorn.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        yield Central(url=url, database_url=database)
    finally:
        process.terminate()
        try:
            process.wait(timeout=patience_timeout(10))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    """One central for all the browser tests of a pytest process (each xdist worker has its
    own), served by uvicorn on a loopback port.

    Starting uvicorn costs about 2.8 s of CPU (the app's imports), more than most browser
    tests' own work, so it is not paid per module: the modules share this central, and so
    each seeds records under codes of its own (``WH-{width}``, ``WHD-{width}``, ``ST-CNT``
    ...) and leaves each user's language as it found it (zh-CN). A module that needs a
    differently configured server (the guide's) starts one with :func:`serve_central`.
    """
    with serve_central(tmp_path_factory.mktemp("console-central")) as served:
        yield served


class _Chromium:
    """Debian's Chromium, headless, through Playwright's sync API, launched when a test
    first asks for it and stopped when the next test to run does not use it.

    Starting the driver and the browser costs about half a second of CPU, so the browser
    tests that run one after another share a launch. It must not outlive them: the sync
    API keeps an asyncio event loop running in the main thread while it is started, and
    any later test in the same process that calls ``asyncio.run`` (or uses a
    ``TestClient`` portal) then fails with "Already running asyncio in this thread".
    """

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None

    def get(self) -> Any:
        if self._browser is None:
            if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
                _unavailable(f"Chromium is not installed at {CHROMIUM}")
            try:
                from playwright.sync_api import sync_playwright  # noqa: PLC0415
            except ImportError:
                _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
            self._playwright = sync_playwright().start()
            try:
                self._browser = self._playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
            except BaseException:
                self.stop()
                raise
        return self._browser

    def stop(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        try:
            if browser is not None:
                browser.close()
        finally:
            if playwright is not None:
                playwright.stop()


_CHROMIUM = _Chromium()


@pytest.fixture
def browser() -> Any:
    """The shared Chromium (:class:`_Chromium`). The tests stay apart by taking a new
    context each (cookies, storage, viewport, locale are the context's), which is how
    Playwright isolates tests."""
    return _CHROMIUM.get()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """After a test's own teardown (its pages and contexts closed), stop Chromium unless
    the next test here uses it too."""
    result = yield
    if nextitem is None or "browser" not in getattr(nextitem, "fixturenames", ()):
        _CHROMIUM.stop()
    return result


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("JXC_SCREENSHOTS", REPO / "var" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


GUIDE_SOURCES = REPO / "docs" / "guide"
GUIDE_TAGS = {"en": "mkdocs.en.yml", "zh-CN": "mkdocs.zh-CN.yml"}


@pytest.fixture(scope="session")
def built_guide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user guide built as ``make docs`` builds it, once per test run, with
    ``--strict``: a broken internal link, a missing screenshot or a chapter left out of the
    nav fails the build, and so every test that needs the site.

    Under xdist the workers share one build (in the run's temporary folder, which they
    share; a lock lets the first build it while the others wait): a build costs some 12 s
    of CPU, paid by each worker that ran a guide test before. A build that failed leaves no
    ``built`` mark, so the next worker builds again and fails the same way."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "guide"
    with (shared / "guide.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (out / "built").exists():
                shutil.rmtree(out, ignore_errors=True)
                _build_guide(out)
                (out / "built").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


def _build_guide(out: Path) -> None:
    for tag, config in GUIDE_TAGS.items():
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "mkdocs",
                "build",
                "--strict",
                "--quiet",
                "-f",
                str(GUIDE_SOURCES / config),
                "-d",
                str(out / tag),
            ],
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert built.returncode == 0, f"mkdocs build of {tag} failed:\n{built.stderr}"
