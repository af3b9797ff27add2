"""``jxc central user ...`` and the first admin at ``serve``: never a default password."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from central_api.cli import app, ensure_first_admin
from central_api.core.db import create_db_engine
from central_api.services.people import count_users, list_users, sign_in


def run(database_url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--database-url", database_url], input=stdin)
    return result.exit_code, result.output


def test_user_add_list_disable_enable_passwd(database_url: str) -> None:
    code, out = run(
        database_url, "user", "add", "li", "--role", "sales", "--site", "S01",
        "--password-stdin", stdin="first password\n",
    )  # fmt: skip
    assert code == 0, out
    assert "user li: added with roles sales" in out
    code, out = run(database_url, "user", "list", "--json")
    listed = json.loads(out.strip().splitlines()[-1])
    assert listed == [{"username": "li", "roles": ["sales"], "sites": ["S01"], "disabled": False}]
    assert run(database_url, "user", "disable", "li")[0] == 0
    assert json.loads(run(database_url, "user", "list", "--json")[1].splitlines()[-1])[0][
        "disabled"
    ]
    assert run(database_url, "user", "enable", "li")[0] == 0
    code, out = run(database_url, "user", "passwd", "li", "--password-stdin", stdin="second one\n")
    assert code == 0, out
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            issued = sign_in(
                connection,
                username="li",
                password="second one",
                address="cli-test",
                kind="bearer",
                ttl_s=60,
            )
        assert issued.identity.roles == ("sales",)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "stdin", "phrase"),
    [
        (("user", "add", "li", "--role", "cashier", "--password-stdin"), "long enough\n", "role"),
        (("user", "add", "li", "--password-stdin"), "\n", "empty password"),
        (("user", "add", "li", "--password-stdin"), "short\n", "8 to 256"),
        (("user", "disable", "ghost"), None, "does not exist"),
    ],
)
def test_bad_commands_say_why(
    database_url: str, args: tuple[str, ...], stdin: str | None, phrase: str
) -> None:
    code, out = run(database_url, *args, stdin=stdin)
    assert code == 1
    assert phrase in out


def test_the_first_admin_comes_from_the_environment_only(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_db_engine(database_url)
    try:
        monkeypatch.delenv("JXC_CENTRAL_ADMIN_PASSWORD", raising=False)
        ensure_first_admin(database_url)  # stdin is not a terminal under pytest
        with engine.connect() as connection:
            assert count_users(connection) == 0, "no default password, so no default admin"
        monkeypatch.setenv("JXC_CENTRAL_ADMIN_PASSWORD", "chosen at deploy")
        monkeypatch.setenv("JXC_CENTRAL_ADMIN_USER", "root")
        ensure_first_admin(database_url)
        ensure_first_admin(database_url)  # only when there is nobody
        with engine.connect() as connection:
            users = list_users(connection)
        assert [(user.username, user.roles) for user in users] == [("root", ["admin"])]
    finally:
        engine.dispose()
