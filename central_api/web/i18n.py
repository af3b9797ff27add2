"""The console's languages: message catalogues read at start, and each request's choice.

The catalogues are gettext ``.po`` files in ``central_api/web/locale/<locale>/LC_MESSAGES/
console.po``, kept in the repository as text. They are compiled in memory when central
starts (Babel reads the ``.po`` and writes the ``.mo`` into a buffer), so a fresh
``pip install -e .`` works with no build step and nothing compiled is committed. English is
the source language: its catalogue may leave a message untranslated, which then shows
its msgid.

A request's language is, in order: the signed-in user's own choice (``users.language``,
set from the switch or the profile page, or by an admin), the ``jxc_lang`` cookie the
switch sets before sign-in, the browser's ``Accept-Language``, and zh-CN (most users read
the console in Chinese first). The user's choice comes first so that it follows them
from one device to the next, and a shared warehouse phone speaks to each user in theirs.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.requests import HTTPConnection

LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "console"

LANG_COOKIE: Final = "jxc_lang"
"""The language the user picked with the switch; it outlives the session (one year)."""


@dataclass(frozen=True, slots=True)
class Language:
    """One language of the console."""

    tag: str
    """The BCP 47 tag pages use (``<html lang>``, the cookie, the switch's links)."""
    locale: str
    """The Babel/gettext locale of its catalogue and of date and number formats."""
    label: str
    """Its own name, as the switch shows it whatever the page's language."""


ZH_CN: Final = Language(tag="zh-CN", locale="zh_CN", label="简体中文")
EN: Final = Language(tag="en", locale="en", label="English")
LANGUAGES: Final[tuple[Language, ...]] = (ZH_CN, EN)
DEFAULT: Final = ZH_CN
_BY_TAG: Final = {language.tag.lower(): language for language in LANGUAGES}


def by_tag(tag: str | None) -> Language | None:
    """The console language for a tag the switch or cookie gave, if it is one."""
    return None if tag is None else _BY_TAG.get(tag.strip().lower())


def _from_browser_tag(tag: str) -> Language | None:
    """Map any tag a browser sends to a console language: ``zh``, ``zh-Hans-CN`` -> zh-CN."""
    primary = tag.strip().lower().split("-")[0]
    if primary == "zh":
        return ZH_CN
    if primary == "en":
        return EN
    return None


def from_accept_language(header: str | None) -> Language | None:
    """The console language the browser prefers most, by its ``q`` values; None if none fits.

    A header longer than any browser sends, or a malformed entry, is read as far as it
    makes sense: the choice of a language must never fail a request.
    """
    if not header:
        return None
    ranked: list[tuple[float, int, Language]] = []
    for position, entry in enumerate(header[:1000].split(",")[:50]):
        tag, _, params = entry.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        language = _from_browser_tag(tag)
        if language is not None and 0 < weight <= 1:
            ranked.append((-weight, position, language))
    return min(ranked, key=lambda entry: (entry[0], entry[1]))[2] if ranked else None


def language_of(connection: HTTPConnection) -> Language:
    """The language a request's page is shown in (see the module doc)."""
    principal = getattr(connection.state, "principal", None)
    return (
        by_tag(getattr(principal, "language", None))
        or by_tag(connection.cookies.get(LANG_COOKIE))
        or from_accept_language(connection.headers.get("accept-language"))
        or DEFAULT
    )


def po_path(locale: str) -> Path:
    """The main catalogue of ``locale``: where ``pybabel update`` writes."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def po_paths(locale: str) -> list[Path]:
    """Every catalogue file of ``locale``: the main one, then ``console-<part>.po`` by name.

    A module's pages may keep their messages in a file of their own, so that work on two
    modules at once does not edit the same file (two branches appending to one ``.po``
    always conflict at its end). A message must be in one file only (a test checks).
    """
    main = po_path(locale)
    return [main, *sorted(main.parent.glob(f"{DOMAIN}-*.po"))]


@functools.cache
def translations(locale: str) -> Translations:
    """The compiled catalogue of ``locale`` (read once per process), all its files merged."""
    catalog = None
    for path in po_paths(locale):
        with path.open("rb") as source:
            part = read_po(source, locale=locale, domain=DOMAIN)
        if catalog is None:
            catalog = part
            continue
        for message in part:
            if message.id:
                catalog[message.id] = message
    assert catalog is not None
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


@functools.cache
def babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)
