"""One-way layers: ir <- kernels <- analysis <- planning <- runtime <- codegen <- report <- cli.

Walks every module's imports (AST, including imports inside functions and ``TYPE_CHECKING``
blocks) and fails on an import of a higher layer, on an import cycle between modules, on an
include or call cycle between the C kernel files, and on two modules with the same file name.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import tinypatch

PKG = Path(tinypatch.__file__).parent
C_DIR = PKG / "codegen" / "c"
# rank of each subpackage (or top-level module): a module may import its own package and lower ranks
LAYERS = {
    "errors": 0, "assets": 0, "safeio": 0.5,
    "ir": 1,
    "kernels": 2, "frontends": 2.5,  # frontends check the reference kernels' limits at load
    "analysis": 3, "backends": 3,
    "planning": 4,
    "runtime": 5,
    "codegen": 6,
    "nas": 6.5,  # architecture search (specs scored by their schedules) and export (checked by runtime and C)
    "report": 7,
    "api": 8, "cli": 9, "__init__": 10,
}
# The one sanctioned upward edge: the C-generator package is callable as the API function of the same
# name (importing a submodule rebinds ``tinypatch.codegen`` to the package), lazily, inside __call__.
ALLOWED_UPWARD = {("tinypatch.codegen", "tinypatch.api")}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """The tinypatch modules ``path`` imports (a package's ``__init__`` when a name is not a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tinypatch":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in mods else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tinypatch"}
    return found


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return top, LAYERS[top]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    mods = _modules()
    unknown = {m.split(".")[1] for m in mods if "." in m} - set(LAYERS)
    assert not unknown, f"add {unknown} to LAYERS"


def test_no_upward_imports():
    mods = _modules()
    bad = []
    for mod, path in sorted(mods.items()):
        top, rank = _layer(mod)
        for dep in sorted(_imports(path, mods)):
            dtop, drank = _layer(dep)
            if dtop != top and drank >= rank and (mod, dep) not in ALLOWED_UPWARD:
                bad.append(f"{mod} ({top}) imports {dep} ({dtop})")
    assert not bad, "imports against the layers " + " <- ".join(LAYERS) + ":\n" + "\n".join(bad)


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {d for d in _imports(p, mods) if d != m and (m, d) not in ALLOWED_UPWARD} for m, p in mods.items()}
    # a package's __init__ re-exporting its submodules is not a cycle with them
    for m in graph:
        graph[m] = {d for d in graph[m] if not (m.startswith(d + ".") and mods[d].name == "__init__.py")}
    assert _cycles(graph) == []


def test_the_checks_catch_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_file_names_are_unique():
    seen: dict[str, list[str]] = defaultdict(list)
    for p in PKG.rglob("*.py"):
        if p.name != "__init__.py":
            seen[p.name].append(p.relative_to(PKG).as_posix())
    assert not {n: ps for n, ps in seen.items() if len(ps) > 1}


def test_c_kernel_files_have_no_cycles():
    """C files by stem (x.h + x.c are one unit): includes and calls of functions defined elsewhere."""
    files = {p: p.read_text() for p in C_DIR.iterdir() if p.suffix in (".c", ".h")}
    defined = {}
    for p, text in files.items():
        if p.suffix == ".c":
            for fn in re.findall(r"^[a-z][\w \*]*?\b(tp_\w+)\([^;]*?\)\s*\{", text, re.M | re.S):
                defined[fn] = p.stem
    graph: dict[str, set[str]] = defaultdict(set)
    for p, text in files.items():
        graph[p.stem] |= {Path(h).stem for h in re.findall(r'#include "(\w+\.h)"', text)}
        if p.suffix == ".c":
            graph[p.stem] |= {defined[f] for f in re.findall(r"\b(tp_\w+)\(", text) if f in defined}
        graph[p.stem].discard(p.stem)
    assert defined, "no C function definitions found"
    assert _cycles(dict(graph)) == []
