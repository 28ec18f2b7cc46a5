"""The package's import graph (read by tools/layout.py): no cycle between its modules, lazy imports
included, and the layers of the house: a part imports only parts of its own layer or of lower ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]

#: The layers of the package, lowest first: the one statement of the layer rule. A part is a
#: subpackage of maskgit or one of its top-level modules ("maskgit" is the package's __init__, the
#: public API). Data flows image → tokenizer → ids → transformer and sampler → ids → tokenizer →
#: image; the layers say who may know whom: sampling knows no model and no file, the file formats
#: know no model class (the pipeline-folder index names a sampler), the models read and write
#: themselves through the file formats, and the library (the pipeline, the names of models, a
#: generation run) builds on all of them, under the applications and the command line.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("foundation", frozenset({"_allocation", "io", "devices", "distributed", "class_names", "validation",
                              "config_base", "configs", "imageio"})),
    ("data", frozenset({"data", "inputs"})),
    ("sampling", frozenset({"sampling"})),
    ("checkpoints", frozenset({"checkpoints"})),
    ("models", frozenset({"models"})),
    ("library", frozenset({"registry", "pipeline", "runs", "maskgit"})),
    ("applications", frozenset({"training", "evaluation", "web"})),
    ("command line", frozenset({"cli", "__main__"})),
)

layout = load_script(ROOT / "tools" / "layout.py")


@pytest.fixture(scope="module")
def graph():
    return layout.import_graph()


def _layer(part: str) -> int:
    for number, (_, parts) in enumerate(LAYERS):
        if part in parts:
            return number
    raise AssertionError(f"part {part!r} has no layer: add it to LAYERS in tests/test_imports.py")


def test_no_module_imports_itself_round_a_circle(graph):
    assert layout.find_cycle(graph) is None, f"import cycle: {' -> '.join(layout.find_cycle(graph))}"


def test_no_part_imports_itself_round_a_circle(graph):
    parts = layout.collapse(graph)
    assert layout.find_cycle(parts) is None, f"import cycle between parts: {' -> '.join(layout.find_cycle(parts))}"


def test_lower_layers_never_import_higher_ones(graph):
    parts = {layout.part_of(module) for module in graph}
    layered = [part for _, members in LAYERS for part in members]
    assert len(layered) == len(set(layered)), "a part in two layers"
    assert not set(layered) - parts, f"LAYERS names parts that do not exist: {sorted(set(layered) - parts)}"
    for part in sorted(parts):
        _layer(part)  # every part has a layer
    upward = [
        f"{module} ({LAYERS[_layer(layout.part_of(module))][0]}) imports {target} ({LAYERS[_layer(layout.part_of(target))][0]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _layer(layout.part_of(target)) > _layer(layout.part_of(module))
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_the_models_and_sampling_know_nothing_above_them(graph):
    # The rule said in words, for the two parts every other stands on.
    above = {"pipeline", "registry", "cli", "web", "training", "evaluation"}
    for module, targets in graph.items():
        if layout.part_of(module) in ("models", "sampling"):
            assert not {layout.part_of(t) for t in targets} & above, module


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return layout.find_modules(root, "pkg")


def test_the_graph_sees_lazy_relative_and_package_imports(tmp_path):
    modules = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.api import run\n",
        "pkg/api.py": "def run():\n    from .low import helper  # lazy and relative\n    return helper\n",
        "pkg/low.py": "import os\n",
        "pkg/sub/__init__.py": "from . import leaf\n",
        "pkg/sub/leaf.py": "from ..low import *\n",
        "pkg/user.py": "import pkg.sub.leaf\n",
    })
    graph = layout.import_graph(modules)
    assert graph == {
        "pkg": {"pkg.api"},
        "pkg.api": {"pkg.low"},
        "pkg.low": set(),
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.low"},
        # Importing pkg.sub.leaf runs pkg/sub/__init__.py first.
        "pkg.user": {"pkg.sub", "pkg.sub.leaf"},
    }
    assert layout.find_cycle(graph) is None
    assert layout.floors(layout.collapse(graph, key=lambda m: m)) == {
        "pkg.low": 0, "pkg.api": 1, "pkg": 2, "pkg.sub.leaf": 1, "pkg.sub": 2, "pkg.user": 3}


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    modules = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    if True:\n        import pkg.c\n",
        "pkg/c.py": "def g():\n    from pkg.a import x\n",
    })
    graph = layout.import_graph(modules)
    assert layout.find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert layout.circles(graph) == [{"pkg.a", "pkg.b", "pkg.c"}]
    floors = layout.floors(graph)
    assert floors["pkg.a"] == floors["pkg.b"] == floors["pkg.c"] == 0


def test_a_module_that_takes_a_name_from_its_own_package_depends_on_its_init(tmp_path):
    # The package's __init__ imports the command lazily; the command takes a name from the
    # package: a cycle. Taking it from a module of its own instead breaks it.
    files = {
        "pkg/__init__.py": "",
        "pkg/cli/__init__.py": "class CLIError(Exception):\n    pass\n\ndef run():\n    from pkg.cli import generate\n",
        "pkg/cli/generate.py": "from pkg.cli import CLIError\n",
    }
    graph = layout.import_graph(_write(tmp_path / "a", files))
    assert layout.find_cycle(graph) == ["pkg.cli", "pkg.cli.generate", "pkg.cli"]
    files.update({"pkg/cli/errors.py": "class CLIError(Exception):\n    pass\n",
                  "pkg/cli/__init__.py": "from pkg.cli.errors import CLIError\n\ndef run():\n    from pkg.cli import generate\n",
                  "pkg/cli/generate.py": "from pkg.cli.errors import CLIError\n"})
    graph = layout.import_graph(_write(tmp_path / "b", files))
    assert graph["pkg.cli.generate"] == {"pkg.cli.errors"} and layout.find_cycle(graph) is None


def test_the_tool_draws_the_parts_on_their_floors(tmp_path, capsys):
    _write(tmp_path, {
        "maskgit/__init__.py": "from maskgit.top import x\n",
        "maskgit/top.py": "from maskgit.models.net import y\n",
        "maskgit/models/__init__.py": "",
        "maskgit/models/net.py": "from maskgit import base\n",
        "maskgit/base.py": "\n\n\n",
    })
    assert layout.main(["--source", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("```mermaid\nflowchart TB\n")
    assert "n_top --> n_models" in out and "n_models --> n_base" in out
    assert "| 3 | `maskgit` | 1 | top |" in out
    assert "| 0 | `base` | 3 | — |" in out
    assert "| 1 | `models` | 1 | base |" in out and "Import cycle" not in out
    # Circles are named: between parts (their arrows in red), and inside one part.
    _write(tmp_path, {"maskgit/base.py": "from maskgit.models.net import y\n",
                      "maskgit/cli/__init__.py": "E = 1\n\ndef run():\n    from maskgit.cli import command\n",
                      "maskgit/cli/command.py": "from maskgit.cli import E\n"})
    assert layout.main(["--source", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "**Import cycle** between base, models (the red arrows)." in out and "linkStyle" in out
    assert "**Import cycle** inside `cli`: maskgit.cli, maskgit.cli.command." in out


def test_the_layout_page_is_given_the_tools_drawing_of_this_code():
    hooks = load_script(ROOT / "tools" / "mkdocs_hooks.py")
    page = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    assert hooks.MARKER in page.split("\n")
    built = hooks.on_page_markdown(page)
    assert hooks.MARKER not in built
    assert layout.render(layout.find_modules(), per_module=False) in built
    assert "n_pipeline --> n_sampling" in built  # an arrow of today's house
