"""Print the import graph between flowviz's sub-packages (from the source, with ast; nothing is imported).

python scripts/import_graph.py        # one line per edge: importer -> imported (number of modules)
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "flowviz"


def layer_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imports_of(path: Path) -> set[str]:
    """flowviz sub-packages (or top-level modules) that one file imports, relative imports resolved."""
    pkg = ["flowviz", *path.relative_to(ROOT).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = base + (node.module.split(".") if node.module else [])
            targets = [mod + [a.name] for a in node.names] if not node.module else [mod]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        else:
            continue
        found |= {t[1] for t in targets if t[0] == "flowviz" and len(t) > 1}
    return found


def graph() -> Counter:
    edges = Counter()
    for path in sorted(ROOT.rglob("*.py")):
        src = layer_of(path)
        for dst in imports_of(path) - {src}:
            edges[src, dst] += 1
    return edges


if __name__ == "__main__":
    for (src, dst), n in sorted(graph().items()):
        print(f"{src:>10} -> {dst:<10} ({n} module{'s' if n > 1 else ''})")
    sys.exit(0)
