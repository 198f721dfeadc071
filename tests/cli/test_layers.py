"""The tree is the architecture: each sub-package imports only the layers below it, and importing
flowviz changes nothing process-wide. Each check runs in a fresh interpreter, so earlier tests'
imports cannot hide a violation."""

import json
import subprocess
import sys

import pytest
from tiny import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from import_graph import imports_of  # noqa: E402  (the same reading the note's import graph uses)

# what each layer may import of flowviz (besides itself): the one direction of the README's Layout
ALLOWED = {
    "core": set(),
    "training": {"core"},
    "runfiles": {"core", "training"},
    "serve": {"core", "training", "runfiles"},
    "plots": {"core", "training"},
    "ui": {"core", "training", "runfiles", "serve", "plots"},
}


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys, json; {stmt}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", ["flowviz.core", "flowviz.training"])
def test_core_and_training_load_no_streamlit_plotly_or_serving(package):
    mods = _loaded_after(
        f"import {package}; import {package}.model"
        if package == "flowviz.core"
        else f"import {package}.train, {package}.sweep, {package}.analysis, {package}.batch"
    )
    bad = sorted(
        m
        for m in mods
        if m.split(".")[0] in ("streamlit", "plotly") or m.startswith(("flowviz.serve", "flowviz.ui", "flowviz.plots"))
    )
    assert not bad, bad


def test_import_flowviz_loads_no_ui_and_changes_no_process_setting():
    code = """
import json, sys
import torch
before = (torch.get_num_threads(), torch.is_grad_enabled(), torch.get_default_dtype(), sys.getrecursionlimit())
import flowviz
public = [getattr(flowviz, name) for name in flowviz.__all__]  # each name's module imported (PEP 562)
after = (torch.get_num_threads(), torch.is_grad_enabled(), torch.get_default_dtype(), sys.getrecursionlimit())
print(json.dumps({"same": before == after, "mods": sorted(sys.modules)}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["same"]
    assert not [m for m in res["mods"] if m.startswith(("streamlit", "plotly", "flowviz.serve", "flowviz.ui"))]
    # the malloc tuning lives in flowviz.serve.work.process, called by workers, the server and the CLI only
    src = "\n".join(p.read_text() for p in (ROOT / "flowviz").rglob("*.py") if p.name != "process.py")
    assert "mallopt" not in src


def test_import_flowviz_alone_imports_no_torch_and_every_public_name_resolves():
    """The public names are imported on first use, so the command line's argument checks need no torch."""
    mods = _loaded_after("import flowviz")
    assert "torch" not in mods and not [m for m in mods if m.startswith("flowviz.")], sorted(mods)
    code = (
        "import flowviz; from flowviz import *; "
        "print(sorted(n for n in flowviz.__all__ if getattr(flowviz, n) is not globals()[n]), "
        "set(flowviz.__all__) <= set(dir(flowviz)), flowviz.Config.__module__, flowviz.train.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True", "flowviz.core.config", "flowviz.training.train"]
    bad = subprocess.run(
        [sys.executable, "-c", "import flowviz; flowviz.nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert "AttributeError: module 'flowviz' has no attribute 'nope'" in bad.stderr


def test_every_layer_imports_only_the_layers_below_it():
    for layer, allowed in ALLOWED.items():
        for path in (ROOT / "flowviz" / layer).rglob("*.py"):
            used = imports_of(path) - {layer}
            assert used <= allowed, f"{path.relative_to(ROOT)} imports {sorted(used - allowed)}"


def _module_graph() -> dict[str, set[str]]:
    """flowviz module -> the flowviz modules it imports, at its top or inside a function alike."""
    import ast

    def name(p):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    files = {name(p): p for p in (ROOT / "flowviz").rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = (pkg[: len(pkg) - node.level + 1] if node.level else []) + (node.module or "").split(".")
                base = [b for b in base if b]
                subs = [".".join([*base, a.name]) for a in node.names if ".".join([*base, a.name]) in files]
                found |= set(subs) or {".".join(base)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif (  # importlib.import_module("flowviz...."): an import all the same
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value))
        graph[mod] = {m for m in found if m in files and m != mod}
    return graph


def test_no_module_of_flowviz_imports_back_a_module_that_imports_it():
    """No circle in the import graph of the modules (imports inside functions and through importlib count: an
    import there is still a dependency, only a later one)."""
    graph = _module_graph()
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m, path):
        seen[m] = 1
        for n in sorted(graph[m]):
            assert seen.get(n) != 1, " -> ".join([*path[path.index(n) :], n])
            if n not in seen:
                visit(n, [*path, n])
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [m])


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.find("\n## ", 5)] if "\n## " in layout[5:] else layout
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "flowviz").rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py") and p.name not in layout
    ]
    assert not missing, f"README's Layout section does not name: {missing}"
    for pkg in ("core", "training", "runfiles", "serve", "plots", "ui"):
        assert f"flowviz/{pkg}/" in layout


def test_link_parsing_and_page_state_load_no_streamlit():
    code = (
        "import sys, json; import flowviz.ui.links, flowviz.ui.plaintext, flowviz.ui.state; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
