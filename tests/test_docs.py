"""The documentation: the site builds in strict mode with every page, and the measured numbers
live once, in benchmarks/results/*.json, whose generated tables the pages include."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::([^"]+))?"$', re.M)  # a file, or one section of it


def _nav_pages() -> list[str]:
    """Every page of mkdocs.yml's nav, as a path under docs/."""

    def walk(entries) -> list[str]:
        pages = []
        for entry in entries:
            value = entry if isinstance(entry, str) else next(iter(entry.values()))
            pages += walk(value) if isinstance(value, list) else [value]
        return pages

    # mkdocs.yml has no custom YAML tags, so the safe loader reads it.
    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_the_site_builds_in_strict_mode_with_every_page(tmp_path):
    assert importlib.util.find_spec("mkdocs") and importlib.util.find_spec("mkdocstrings_handlers"), (
        "the docs builders are missing: pip install -e '.[test]' (the test extra installs them)")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in _nav_pages():
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), f"{page} was not built"
    # The API reference is rendered from the docstrings, not left as a bare directive.
    reference = (site / "reference" / "pipeline" / "index.html").read_text()
    assert 'id="maskgit.pipeline.MaskGIT.generate"' in reference and ":::" not in reference
    # The included tables are in the pages, numbers and all.
    speed = (site / "speed" / "index.html").read_text()
    assert "--8&lt;--" not in speed and "vs reference" in speed


def test_every_page_is_in_the_nav_and_the_site_has_the_pages_the_issue_lists():
    pages = set(_nav_pages())
    on_disk = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert pages == on_disk
    assert {"index.md", "cli.md", "python.md", "samplers.md", "studio.md", "training.md", "evaluation.md", "speed.md",
            "parity.md", "limits.md", "layout.md", "experiments.md", "changelog.md"} <= pages
    assert any(page.startswith("reference/") for page in pages)


def test_every_results_table_is_included_by_a_page():
    included = {match for path in DOCS.rglob("*.md") for match in INCLUDE.findall(path.read_text())}
    files = {name for name, _ in included}
    for table in sorted(RESULTS.glob("*.md")):
        name = str(table.relative_to(ROOT))
        assert name in files, f"no page includes {name}"
        # A table with sections (recorded tables) is included section by section: each one somewhere.
        sections = set(re.findall(r"\[start:([\w-]+)\]", table.read_text()))
        assert sections <= {section for file, section in included if file == name}, f"{name}: a section no page includes"
