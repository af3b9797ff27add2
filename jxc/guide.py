"""The user guide (培训手册): where its sources are, its languages, its station chapters.

The guide is Markdown under ``docs/guide/<dir>/`` (one directory per language, the same
chapter files in each), built into a static site by ``make docs`` (MkDocs, see
``docs/guide/README.md``) and served by central at ``/guide/<tag>/``. Central's console
and the edge's status page both link into it, so what both need to agree on lives here,
in the core that neither of them owns: the language tags (the console's own, ``zh-CN``
and ``en``), the chapter paths, and which chapters a site's station needs offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

GUIDE_ROOT: Final = "/guide"
"""Where central serves the built guide, and the edge its station chapters."""

SOURCE_DIRS: Final[dict[str, str]] = {"zh-CN": "zh", "en": "en"}
"""Console language tag → the guide's source directory under ``docs/guide``."""

DEFAULT_TAG: Final = "zh-CN"

INDEX: Final = "index"
STATION_CHAPTERS: Final[tuple[str, ...]] = (
    "tasks/receive",
    "tasks/pick",
    "tasks/transfer",
    "tasks/return",
    "tasks/count",
    "tasks/counter",
    "tasks/commission",
    "tasks/offline-recovery",
)
"""Chapters a person at a site's station needs while central is out of reach: the edge's
status page serves these from the sources (``edge_agent.status_page``)."""


def source_root() -> Path:
    """The guide's Markdown sources: ``JXC_GUIDE_SOURCES`` if set, else ``docs/guide`` of
    the checkout this package runs from (an editable install, as ``make`` makes)."""
    configured = os.environ.get("JXC_GUIDE_SOURCES")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "docs" / "guide"


def tag_for(tag: str | None) -> str:
    """A guide language for any tag a browser or the console gives (``zh``, ``EN``...)."""
    if tag:
        primary = tag.strip().lower()
        for known in SOURCE_DIRS:
            if primary == known.lower() or primary.split("-")[0] == known.lower().split("-")[0]:
                return known
    return DEFAULT_TAG


def chapter_url(tag: str, chapter: str, anchor: str = "") -> str:
    """The built guide's URL of ``chapter`` (``tasks/receive``) in language ``tag``.

    The site is built without directory URLs, so a page is ``<chapter>.html`` (the same
    links work from a copied folder) and the index is ``index.html``.
    """
    page = "index.html" if chapter == INDEX else f"{chapter}.html"
    return f"{GUIDE_ROOT}/{tag_for(tag)}/{page}" + (f"#{anchor}" if anchor else "")


def chapter_source(tag: str, chapter: str) -> Path:
    """The Markdown file of ``chapter`` in language ``tag``."""
    return source_root() / SOURCE_DIRS[tag_for(tag)] / f"{chapter}.md"
