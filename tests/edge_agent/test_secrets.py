"""The site secret on the edge: every unusable file is one clear error, and never logged.

The token exchange runs against the real central app in-process (as in ``test_push``);
every log record of the process is rendered as the agent's JSON lines and searched for
the secret. The same files against real processes and the status page are in
``tests/integration/test_edge_secrets.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.services.auth import add_site, rotate_site
from edge_agent.auth import SiteSecretError, SiteTokenAuth, check_secret, read_secret
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.ids import uuid7
from tests.central.conftest import central_app
from tests.secret_leaks import BAD_SECRET_FILES, assert_no_leak, json_log


def would_be_secret() -> str:
    """Random URL-safe text of a real secret's length, different every time."""
    return (uuid7().hex + uuid7().hex)[:43]


def receipt() -> EventDraft:
    return EventDraft(kind=EventKind.RECEIPT, item="I", location="D", qty=Decimal(1), uom="EA")


@pytest.fixture
def central(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    with central_app(Settings(database_url=url)) as app, TestClient(app) as client:
        yield client


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


@pytest.mark.parametrize("spoil", sorted(BAD_SECRET_FILES))
def test_every_unusable_secret_file_is_one_error_without_the_secret(
    tmp_path: Path, spoil: str
) -> None:
    secret = would_be_secret()
    path = tmp_path / "S01.secret"
    write, expected = BAD_SECRET_FILES[spoil]
    write(path, secret)
    with json_log() as log, pytest.raises(SiteSecretError) as raised:
        read_secret(path)
    message = str(raised.value)
    assert expected in message
    assert message.startswith(str(path))
    assert "\n" not in message
    assert_no_leak([secret], [message, repr(raised.value), log.getvalue()])


def test_a_good_secret_is_held_where_no_repr_shows_it(tmp_path: Path) -> None:
    secret = would_be_secret()
    path = tmp_path / "S01.secret"
    path.write_bytes(b"\xef\xbb\xbf" + secret.encode() + b"\r\n")  # as an editor saves it
    held = read_secret(path)
    assert isinstance(held, SecretStr)
    assert held.get_secret_value() == secret
    auth = SiteTokenAuth("S01", held)
    assert_no_leak([secret], [repr(held), str(held), repr(vars(auth)), str(vars(auth))])


def test_a_malformed_secret_from_the_environment_is_refused_without_quoting_it() -> None:
    secret = would_be_secret()
    with pytest.raises(SiteSecretError) as raised:
        check_secret(secret + "/", "JXC_SITE_SECRET")
    assert str(raised.value).startswith("JXC_SITE_SECRET: not a site secret")
    assert_no_leak([secret], [str(raised.value)])


@pytest.mark.parametrize("spoil", sorted(BAD_SECRET_FILES))
def test_a_rotated_secret_in_an_unusable_file_is_reported_and_never_logged(
    central: TestClient, ledger: Ledger, tmp_path: Path, spoil: str
) -> None:
    """Central rotated the secret; the operator's new file cannot be used, in each way."""
    secret_file = tmp_path / "S01.secret"
    with central.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        first = add_site(connection, "S01")
        secret_file.write_text(first + "\n")
        central.auth = SiteTokenAuth(
            "S01", read_secret(secret_file), reload=partial(read_secret, secret_file)
        )
        ledger.append(receipt())
        pusher = Pusher(ledger, central, max_backoff_s=0.01)
        assert pusher.push_once() is True
        rotated = rotate_site(connection, "S01")
    secret_file.unlink()
    write, expected = BAD_SECRET_FILES[spoil]
    write(secret_file, rotated)

    with json_log() as log:
        ledger.append(receipt())
        ledger.append(receipt())
        assert pusher.push_once() is False
        assert pusher.push_once() is False

    assert ledger.counts().pending == 2, "every event is kept"
    auth = central.auth
    assert isinstance(auth, SiteTokenAuth)
    assert auth.secret_problem is not None
    assert expected in auth.secret_problem
    assert auth.secret_read_failures == 2
    assert pusher.state.consecutive_failures == 2
    lines = log.getvalue().splitlines()
    assert any(json.loads(line)["msg"] == "the site secret file cannot be used" for line in lines)
    shown = json.dumps({"sync": pusher.state.as_dict(), "credential": auth.as_dict()})
    assert_no_leak([first, rotated], [*lines, shown])

    if secret_file.is_dir():
        secret_file.rmdir()
    secret_file.write_text(rotated + "\n")  # the operator's fix
    assert pusher.push_once() is True
    assert ledger.counts().pending == 0
    assert auth.secret_problem is None
