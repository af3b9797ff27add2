"""MkDocs hook of the user guide: the console's screenshots become files of the site.

The screenshots live in ``docs/screenshots`` (the browser tests write them, the other
docs show them too), outside each language's ``docs_dir``. Adding them to the site's
files as ``screenshots/<name>.png`` lets a chapter link ``../screenshots/<name>.png``,
which ``mkdocs build --strict`` then checks like any other link: a screenshot that a
chapter names and that is gone fails the build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"


def on_files(files: Files, config: Any) -> Files:
    for shot in sorted(SCREENSHOTS.glob("*.png")):
        files.append(
            File(
                f"screenshots/{shot.name}",
                src_dir=str(SCREENSHOTS.parent),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
