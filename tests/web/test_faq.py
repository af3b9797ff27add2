"""The guide's FAQ against the messages the code can show: every kind of refusal central
answers, every headline of the console's refusal page and every reason a station's
display gives has an entry in English and in Chinese, with the status it is answered
with; and the FAQ names nothing the code does not have.

The catalogue is read from the code itself, so a new refusal class (or a renamed one)
fails here until the FAQ says what it means and what to do:

* central: every subclass of :class:`~central_api.errors.CentralError` (services raise
  these; the API answers each with its base's status, ``refusal_status``), by class name;
* the console: every status with a headline of its own (``central_api.web._HEADLINES``),
  and 500, as ``http-<status>``;
* the edge: every subclass of :class:`~edge_agent.stations.errors.StationError` (a
  station's display line), as ``edge-<class name>``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import central_api
import edge_agent
from central_api.api.errors import refusal_status
from central_api.errors import CentralError
from central_api.web import _HEADLINES
from edge_agent.stations.errors import StationError

GUIDE = Path(__file__).parents[2] / "docs" / "guide"
FAQ = {"en": GUIDE / "en" / "faq.md", "zh": GUIDE / "zh" / "faq.md"}
STATION = "station"
ENTRY = re.compile(
    r"^### (?P<title>.+?) \{#(?P<code>[A-Za-z0-9-]+)\}\n\n`(?P<named>[^`]+)` · (?P<status>.+)$",
    re.M,
)
BODY = {"en": ("**What it means:**", "**What to do:**"), "zh": ("**含义：**", "**处理：**")}
STATION_WORDS = {"en": "station display", "zh": "作业站显示"}


def _import_all(package: object) -> None:
    """Import every module of ``package`` (not migrations), so every class is defined."""
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    for module in pkgutil.walk_packages(path, prefix):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)


SHIPPED: tuple[str, ...] = ("central_api.", "edge_agent.", "jxc.", "device_drivers.")
"""Packages whose refusals users meet. A test module may define its own subclass (a
projection's refusal in test_projections.py); when it ran earlier in the same worker, it
is a subclass too, and must not count."""


def _subclasses(base: type) -> Iterator[type]:
    for sub in base.__subclasses__():
        if sub.__module__.startswith(SHIPPED):
            yield sub
        yield from _subclasses(sub)


def catalogue() -> dict[str, str]:
    """Every user-visible message kind: its code and the status it is answered with."""
    _import_all(central_api)
    _import_all(edge_agent)
    found: dict[str, str] = {}
    refusals = set(_subclasses(CentralError))
    for refusal in refusals:
        code = refusal.__name__
        assert code not in found, f"two refusals are named {code}: the FAQ cannot tell them apart"
        found[code] = str(refusal_status(refusal))
    for status in (*_HEADLINES, 500):
        found[f"http-{status}"] = str(status)
    for station in set(_subclasses(StationError)):
        found[f"edge-{station.__name__}"] = STATION
    return found


def faq_entries(language: str) -> dict[str, tuple[str, str]]:
    """Code -> (its status as the FAQ gives it, the entry's text)."""
    text = FAQ[language].read_text(encoding="utf-8")
    matches = list(ENTRY.finditer(text))
    entries: dict[str, tuple[str, str]] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        code = match["code"]
        assert code not in entries, f"{language}: {code} has two entries"
        assert match["named"] == code, f"{language}: the entry {code} names {match['named']}"
        status = match["status"].strip()
        status = STATION if status == STATION_WORDS[language] else status.removeprefix("HTTP ")
        entries[code] = (status, text[match.end() : end])
    headings = re.findall(r"^### .*$", text, re.M)
    assert len(headings) == len(entries), f"{language}: a ### heading is not an entry"
    return entries


@pytest.fixture(scope="module")
def known() -> dict[str, str]:
    return catalogue()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_message_kind_has_an_faq_entry_and_the_faq_names_no_other(
    known: dict[str, str], language: str
) -> None:
    entries = faq_entries(language)
    missing = sorted(set(known) - set(entries))
    stale = sorted(set(entries) - set(known))
    assert not missing, f"{FAQ[language]}: add an entry for {missing}"
    assert not stale, f"{FAQ[language]}: no such message in the code: {stale}"
    for code, (status, body) in entries.items():
        assert status == known[code], f"{language}: {code} is answered {known[code]}, not {status}"
        means, do = BODY[language]
        assert means in body, f"{language}: {code} does not say what it means"
        assert do in body, f"{language}: {code} does not say what to do"


def test_both_languages_hold_the_entries_in_the_same_order() -> None:
    assert list(faq_entries("en")) == list(faq_entries("zh"))


def test_the_catalogue_holds_the_kinds_users_meet() -> None:
    """A guard on the catalogue itself: if it read nothing, the check above would pass."""
    found = catalogue()
    for code in ("UnknownItemError", "StaleVersionError", "http-403", "edge-PickRefusedError"):
        assert code in found
    assert found["StaleVersionError"] == "412"
    assert len(found) > 60
