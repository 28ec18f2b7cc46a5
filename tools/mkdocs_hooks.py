"""MkDocs hooks (mkdocs.yml ``hooks:``): pieces of pages drawn from the code when the site is built.

The layout page's drawing of the house changes with every commit that adds a line of source, so it is
not committed: a line ``<!-- house -->`` on a page becomes ``tools/layout.py``'s drawing of the
checkout being built.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MARKER = "<!-- house -->"


def _layout():
    path = Path(__file__).with_name("layout.py")
    spec = importlib.util.spec_from_file_location("maskgit_tools_layout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, **_) -> str:
    """Replace each line that is exactly the marker with the drawing of today's package."""
    if MARKER not in markdown:
        return markdown
    layout = _layout()
    drawing = layout.render(layout.find_modules(), per_module=False)
    return "\n".join(drawing if line.strip() == MARKER else line for line in markdown.split("\n"))
