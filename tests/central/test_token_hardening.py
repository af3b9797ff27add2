"""What a copy of the signing key can do: mint tokens that last no longer than central's own;
the database file is its owner's alone; `jxc central rekey` voids every token; the signer
is safe across threads."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

from central_api.cli import app as central_cli
from central_api.core.db import create_db_engine, upgrade_database
from central_api.core.security import EXPIRY_SKEW_S, TOKEN_PREFIX, sign
from central_api.errors import TokenRefusedError
from central_api.models import auth_signing_key
from central_api.services import auth
from central_api.services.auth import TokenSigner, add_site
from jxc.paths import SYNC_EVENTS
from tests.central.conftest import SiteLedger

TTL = 900


def _key(engine: Engine) -> bytes:
    with engine.connect() as connection:
        return bytes.fromhex(connection.execute(select(auth_signing_key.c.key_hex)).scalar_one())


def _minted(key: bytes, site_id: str, expires: int | str, generation: int = 1) -> str:
    """A token made with a stolen key, as central would make it but for the expiry."""
    payload = f"{TOKEN_PREFIX}:{site_id}:{generation}:{expires}"
    return f"{payload}:{sign(key, payload)}"


@pytest.fixture
def anonymous(database_url: str) -> Any:
    from central_api.core.config import Settings  # noqa: PLC0415
    from central_api.main import create_app  # noqa: PLC0415

    central = create_app(Settings(database_url=database_url, token_ttl_s=TTL))
    with TestClient(central) as client:
        with central.state.engine.connect() as connection:
            add_site(connection, "S01")
        yield client


def _push(client: TestClient, token: str) -> int:
    site = SiteLedger("S01")
    answer = client.post(
        SYNC_EVENTS,
        json=site.batch(site.receipts(1)),
        headers={"Authorization": f"Bearer {token}"},
    )
    return answer.status_code


def test_a_minted_fifty_year_token_is_refused(anonymous: TestClient) -> None:
    key = _key(anonymous.app.state.engine)  # type: ignore[attr-defined]
    fifty_years = int(time.time()) + 50 * 365 * 86_400
    answer_status = _push(anonymous, _minted(key, "S01", fifty_years))
    assert answer_status == 401


def test_a_minted_token_within_the_ttl_and_skew_is_what_central_would_issue(
    anonymous: TestClient,
) -> None:
    key = _key(anonymous.app.state.engine)  # type: ignore[attr-defined]
    now = int(time.time())
    assert _push(anonymous, _minted(key, "S01", now + TTL + EXPIRY_SKEW_S - 5)) == 200
    assert _push(anonymous, _minted(key, "S01", now + TTL + EXPIRY_SKEW_S + 30)) == 401


@pytest.mark.parametrize("expires", ["9" * 5000, "0x10", "", "-5", "1e9"])
def test_a_signed_token_with_a_nonsense_expiry_is_a_401(
    anonymous: TestClient, expires: str
) -> None:
    key = _key(anonymous.app.state.engine)  # type: ignore[attr-defined]
    assert _push(anonymous, _minted(key, "S01", expires)) == 401


def test_rekey_voids_every_token_and_edges_get_new_ones(
    anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    central = anonymous.app
    engine: Engine = central.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        secret = auth.rotate_site(connection, "S01")
        old = central.state.token_signer.issue(connection, "S01", secret)  # type: ignore[attr-defined]
    before = _key(engine)
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(central_cli, ["rekey", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert _key(engine) != before
    later = time.monotonic() + auth.KEY_CACHE_S + 1  # every central re-reads it within this
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert _push(anonymous, old) == 401
    answer = anonymous.post("/api/v1/sync/token", json={"site_id": "S01", "secret": secret})
    assert _push(anonymous, answer.json()["access_token"]) == 200


def test_the_database_file_and_its_journals_are_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "var" / "central.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            add_site(connection, "S01")
            connection.execute(text("SELECT 1"))
            files = [path, *path.parent.glob("central.db-*")]
            assert {file.name for file in files} >= {"central.db", "central.db-wal"}
            for file in files:
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    finally:
        engine.dispose()


def test_an_existing_database_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "central.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    create_db_engine(f"sqlite:///{path}").dispose()
    assert "can be read by other users" in caplog.text


def test_the_signer_is_safe_across_threads_while_forged_tokens_force_rereads(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forged tokens re-read the key as often as allowed (here: always) while other threads
    verify good tokens: every good one is accepted, every forged one refused, nothing
    else is ever raised (clearing the cached key under a reader once raised TypeError)."""
    monkeypatch.setattr(auth, "_REREAD_MIN_S", 0.0)
    signer = TokenSigner(engine, ttl_s=TTL)
    with engine.connect() as connection:
        good = signer.issue(connection, "S01", add_site(connection, "S01"))
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    failures: list[BaseException] = []

    def work(token: str, valid: bool) -> None:
        try:
            with engine.connect() as connection:
                for _ in range(60):
                    try:
                        assert signer.verify(connection, token) == "S01"
                        assert valid
                    except TokenRefusedError:
                        assert not valid
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=work, args=(good if n % 2 else forged, bool(n % 2)))
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures[:3]
