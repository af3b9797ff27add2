"""The station chapters of the user guide, served by the edge's status page offline.

A person at the dock, the picking station or the counter needs the guide most when the
site cannot reach central, which is also when central's ``/guide`` is out of reach. So
the edge renders the station chapters (:data:`jxc.guide.STATION_CHAPTERS`) itself, from
the guide's Markdown sources, at ``/guide/<tag>/<chapter>.html`` on its status port (the
same paths as central's built guide, so a link works on both). Python-Markdown renders
them; the page is plain HTML with one small inline style sheet: nothing to fetch.

Other chapters are at central; asking the edge for one says so rather than guessing.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Final

import markdown

from jxc import guide

SCREENSHOT: Final = re.compile(r"^[A-Za-z0-9._-]+\.png$")
_LINK: Final = re.compile(r'href="([^":#]+)\.md(#[^"]*)?"')

_STYLE: Final = (
    "body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;margin:0 auto;"
    "max-width:760px;padding:12px;line-height:1.5;font-size:17px}img{max-width:100%;"
    "height:auto;border:1px solid #ccc}table{border-collapse:collapse;display:block;"
    "overflow-x:auto}td,th{border:1px solid #ccc;padding:4px 6px}code{background:#f2f2f2}"
    "nav a{margin-right:12px}"
)


def page(path: str) -> tuple[int, bytes, str]:
    """(status, body, content type) for ``/guide/<tag>/<rest>`` at the edge."""
    parts = path.removeprefix(guide.GUIDE_ROOT).strip("/").split("/", 1)
    tag = guide.tag_for(parts[0] if parts[0] else None)
    rest = parts[1] if len(parts) > 1 else ""
    if rest.startswith("screenshots/"):
        return _screenshot(rest.removeprefix("screenshots/"))
    chapter = rest.removesuffix(".html") or guide.INDEX
    if chapter == guide.INDEX:
        return 200, _index(tag).encode(), "text/html; charset=utf-8"
    if chapter not in guide.STATION_CHAPTERS:
        body = _wrap(
            tag,
            "jxc",
            "<p>This chapter is in the guide at central (<code>/guide/</code>); the edge "
            "keeps only the station chapters. 本章在总部的培训手册中（<code>/guide/</code>），"
            "边缘端只提供站点章节。</p>",
        )
        return 404, body.encode(), "text/html; charset=utf-8"
    source = guide.chapter_source(tag, chapter)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError:
        body = _wrap(
            tag, "jxc", f"<p>The guide's sources are not at {html.escape(str(source))}.</p>"
        )
        return 404, body.encode(), "text/html; charset=utf-8"
    rendered = markdown.markdown(text, extensions=["tables", "attr_list", "admonition", "toc"])
    rendered = _LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', rendered)
    title = text.splitlines()[0].lstrip("# ").strip() if text else chapter
    return 200, _wrap(tag, title, rendered).encode(), "text/html; charset=utf-8"


def _index(tag: str) -> str:
    links = []
    for chapter in guide.STATION_CHAPTERS:
        try:
            first = guide.chapter_source(tag, chapter).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        title = first[0].lstrip("# ").strip() if first else chapter
        links.append(f'<li><a href="{chapter}.html">{html.escape(title)}</a></li>')
    return _wrap(tag, "jxc", f"<ul>{''.join(links)}</ul>")


def _wrap(tag: str, title: str, body: str) -> str:
    other = "en" if guide.tag_for(tag) == "zh-CN" else "zh-CN"
    return (
        f'<!doctype html><html lang="{guide.tag_for(tag)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<nav><a href="{guide.GUIDE_ROOT}/{guide.tag_for(tag)}/index.html">jxc</a>'
        f'<a href="{guide.GUIDE_ROOT}/{other}/index.html" lang="{other}">'
        f"{'English' if other == 'en' else '简体中文'}</a></nav>{body}</body></html>"
    )


def _screenshot(name: str) -> tuple[int, bytes, str]:
    """A screenshot a chapter shows, from ``docs/screenshots`` beside the sources."""
    if not SCREENSHOT.match(name):
        return 404, b"no such screenshot", "text/plain; charset=utf-8"
    shot: Path = guide.source_root().parent / "screenshots" / name
    try:
        return 200, shot.read_bytes(), "image/png"
    except OSError:
        return 404, b"no such screenshot", "text/plain; charset=utf-8"
