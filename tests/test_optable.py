"""The operator table is the one place that knows operator types.

* every operator is registered everywhere it must be: table row, numpy kernel class, C emitter,
  C kernel functions, TFLite reader/writer options;
* outside ``ir/``, ``kernels/``, ``frontends/``, ``backends/`` (the TFLite writer) and the C
  emitters (``codegen/emitters.py``) no module names an operator type.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import tinypatch
from tinypatch.backends import tflite_writer
from tinypatch.codegen import supported_ops as c_ops
from tinypatch.frontends.tflite import _OPTIONS as READ_OPTIONS
from tinypatch.ir.ops import SUPPORTED_OPS
from tinypatch.ir.optable import OPS, InPlace, Kind, Region, op_def, registered_ops
from tinypatch.kernels import supported_ops as kernel_ops
from tinypatch.kernels.base import _REGISTRY

PKG = Path(tinypatch.__file__).parent
# where operator types may be named: the IR (the table), the kernels, the readers and writer, the C emitters
ALLOWED = ("ir/", "kernels/", "frontends/", "backends/", "codegen/emitters.py")
C_DIR = PKG / "codegen" / "c"


def test_every_operator_is_registered_everywhere():
    table = set(registered_ops())
    assert set(SUPPORTED_OPS) == table, "the frontend's supported list is the table"
    assert set(kernel_ops()) == table, f"numpy kernels differ from the table: {set(kernel_ops()) ^ table}"
    assert set(c_ops()) == table, f"C emitters differ from the table: {set(c_ops()) ^ table}"
    for name in table:
        assert (name in tflite_writer._BUILTIN_CODES) == OPS[name].tflite_builtin, f"{name}: TFLite builtin flag"


@pytest.mark.parametrize("name", registered_ops())
def test_row_matches_its_kernel_c_functions_and_options(name):
    d = OPS[name]
    module, cls = d.kernel.rsplit(".", 1)
    assert _REGISTRY[name] is getattr(importlib.import_module(f"tinypatch.kernels.{module}"), cls)
    header = (C_DIR / "tp_kernels.h").read_text()
    sources = "".join(p.read_text() for p in C_DIR.glob("*.c"))
    for fn in d.c_kernels:
        assert re.search(rf"\b{fn}\(", header), f"{name}: {fn} is not declared in tp_kernels.h"
        assert re.search(rf"^\w.*\b{fn}\([^;]*$", sources, re.M), f"{name}: {fn} is not defined in codegen/c"
    # the reader and writer carry exactly the attributes the table gives defaults for
    read = {attr for attr, _, _ in READ_OPTIONS[name][1]} if name in READ_OPTIONS else set()
    assert read == set(d.attrs) or not d.tflite_builtin, f"{name}: reader options {read} vs table attributes {set(d.attrs)}"


@pytest.mark.parametrize("name", registered_ops())
def test_traits_are_consistent(name):
    d = OPS[name]
    assert (d.region == Region.WINDOW) == (d.window is not None)
    if d.inplace == InPlace.WINDOW:
        assert d.region in (Region.WINDOW, Region.PAD), "a window shift needs a window map"
    if d.region in (Region.IDENTITY, Region.CONCAT):
        assert d.kind == Kind.POINTWISE
    if d.spatial:
        assert d.kind == Kind.WINDOW


def test_unknown_operator_is_opaque():
    d = op_def("NO_SUCH_OP")
    assert not d.local and d.inplace == InPlace.NO and d.attrs == {}


def _named_ops(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every string literal in ``path`` that is exactly a registered operator type."""
    names = set(registered_ops())
    tree = ast.parse(path.read_text())
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in names]


def test_no_operator_type_named_outside_the_table_kernels_and_emitters():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(ALLOWED):
            continue
        found += [f"{rel}:{line}: {name}" for line, name in _named_ops(path)]
    assert not found, "operator types named outside ir/kernels/frontends/C emitters:\n" + "\n".join(found)


def test_the_grep_finds_a_named_operator(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('if op.type == "CONV_2D":\n    pass\n"""A docstring naming CONV_2D is fine."""\n')
    assert _named_ops(p) == [(1, "CONV_2D")]


def test_supported_ops_doc_is_up_to_date():
    from tinypatch.report.supported_ops import supported_ops_markdown

    doc = PKG.parents[1] / "docs" / "supported-ops.md"
    assert doc.read_text() == supported_ops_markdown(), \
        "docs/supported-ops.md is stale: run python -m tinypatch.report.supported_ops docs/supported-ops.md"


def test_batching_trait_keeps_tile_dependent_kernels_tile_by_tile():
    """The plan executor stacks like tiles along N only for kernels that batch: window and
    point-wise ops; never gathers (their index tables depend on where the tile is) nor slices
    (their begin/size constants index N)."""
    for d in OPS.values():
        if d.gather or d.region in (Region.CHANNEL_SLICE, Region.NONE):
            assert not d.batches, d.name
    assert op_def("CONV_2D").batches and op_def("ADD").batches and op_def("PAD").batches
