"""The console's catalogues: every message of every page translated, and in step with the code.

The messages are extracted from the templates and the Python of ``central_api/web`` the
way ``pybabel extract`` does (same mapping file, same keywords), so a string added to a
page without a translation fails here rather than showing English to a zh-CN user.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from central_api.web import i18n
from central_api.web.render import environment, gettext_for

REPO = Path(__file__).parents[2]
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}


def extracted() -> set[str]:
    mapping_file = REPO / "central_api/web/babel.cfg"
    with mapping_file.open() as config:
        method_map, options_map = parse_mapping_cfg(config, filename=str(mapping_file))
    found: set[str] = set()
    for _name, _line, message, _comments, _context in extract_from_dir(
        REPO, method_map, options_map, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(locale: str) -> dict[str, tuple[str, bool]]:
    held: dict[str, tuple[str, bool]] = {}
    for path in i18n.po_paths(locale):
        with path.open("rb") as source:
            read = read_po(source, locale=locale)
        for message in read:
            if message.id:
                assert str(message.id) not in held, f"{message.id!r} is in two files of {locale}"
                held[str(message.id)] = (str(message.string), message.fuzzy)
    return held


def test_the_catalogues_hold_exactly_the_messages_of_the_code() -> None:
    messages = extracted()
    assert len(messages) > 50
    for locale in ("zh_CN", "en"):
        held = catalogue(locale)
        assert set(held) == messages, (
            f"{locale}: run pybabel extract/update (docs/console.md); "
            f"missing {sorted(messages - set(held))}, stale {sorted(set(held) - messages)}"
        )


def test_every_message_has_a_chinese_translation_with_the_same_placeholders() -> None:
    for message, (translation, fuzzy) in catalogue("zh_CN").items():
        assert translation, f"no zh_CN translation for {message!r}"
        assert not fuzzy, f"the zh_CN translation of {message!r} is marked fuzzy"
        placeholders = sorted(re.findall(r"%\(\w+\)s", message))
        assert sorted(re.findall(r"%\(\w+\)s", translation)) == placeholders, message


def test_a_catalogue_is_read_from_its_po_file_without_a_build_step() -> None:
    assert gettext_for(i18n.ZH_CN)("Items") == "商品"
    assert gettext_for(i18n.EN)("Items") == "Items"
    assert gettext_for(i18n.ZH_CN)("This barcode is already in row %(row)s.", row=2) == (
        "此条码已在第 2 行。"
    )
    page = environment("zh_CN").from_string("{{ _('Sign in') }}|{{ price|money }}")
    assert page.render(price=Decimal("3.5")) == "登录|¥3.50"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("en-US,en;q=0.9", i18n.EN),
        ("zh-CN,zh;q=0.9,en;q=0.8", i18n.ZH_CN),
        ("zh-Hant-TW", i18n.ZH_CN),
        ("fr-FR,fr;q=0.9,en;q=0.5,zh;q=0.4", i18n.EN),
        ("en;q=0.2,zh;q=0.8", i18n.ZH_CN),
        ("de,fr", None),
        ("en;q=nonsense,zh", i18n.ZH_CN),
        ("en;q=0", None),
        ("," * 5000, None),
    ],
)
def test_the_browsers_language(header: str | None, expected: i18n.Language | None) -> None:
    assert i18n.from_accept_language(header) == expected


def test_money_keeps_every_stored_digit() -> None:
    money = environment("en").filters["money"]
    assert money(Decimal("4.125")) == "CN¥4.125"
    assert money(None) == "—"
