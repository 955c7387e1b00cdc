"""Code injection: nothing a model says reaches generated C, headers, Makefiles or linker scripts.

A model whose every string field (graph / file name, description, subgraph and tensor names,
msf-CNN chain name) carries a payload must give a project that builds and compiles to the same
object code as the same model with clean names, with no payload text in any generated file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tinypatch.backends import save_tflite
from tinypatch.codegen import generate
from tinypatch.codegen.sanitize import c_comment, c_ident
from tinypatch.codegen.toolchain import missing_tools
from tinypatch.frontends.load import load_model
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.planning.search import search

PAYLOADS = (
    '*/ __attribute__((constructor)) void tp_evil(void){ system("id > pwned"); } /*',
    "\n$(shell id > pwned)\n",
    "x\\\n#define model_invoke tp_evil",
    "??/\nint tp_evil = 1; // ",
    "`id` ; rm -rf ~ #",
)
# file names cannot hold '/', so the file-name payload has no comment terminator
FILE_PAYLOAD = "evil\n$(shell id > pwned)\\\n# ``; id.tflite"
# what only an unsanitised payload can leave (sanitised names may keep their letters in identifiers)
MARKERS = ("((constructor", "$(shell", "system(", "#define model_invoke", "??/", "`id`", "rm -rf ~", "id > pwned")
NO_CC = missing_tools("host")


def small_net(name: str = "net") -> Graph:
    b = Builder(name, seed=3)
    x = b.input((1, 12, 12, 3))
    x = b.conv(x, 8, 3, 2, name="stem", act="RELU6")
    x = b.depthwise(x, 3, 1, name="dw", act="RELU6")
    x = b.conv(x, 8, 1, name="proj")
    x = b.mean(x, name="pool")
    x = b.fully_connected(x, 4, name="fc")
    return b.finish([b.softmax(x, name="softmax")])


def renamed(g: Graph, name: str, names: list[str], description: str) -> Graph:
    """``g`` with its tensors renamed to ``names`` (in order), its name and description replaced."""
    to = dict(zip(g.tensors, names))
    out = Graph(name)
    for t in g.tensors.values():
        out.add_tensor(Tensor(to[t.name], t.shape, t.dtype, t.quant, t.data))
    for op in g.ops:
        out.add_op(Op(op.type, [to[n] if n else "" for n in op.inputs], [to[n] for n in op.outputs], dict(op.attrs)))
    out.inputs, out.outputs = [to[n] for n in g.inputs], [to[n] for n in g.outputs]
    out.meta = {"description": description, "subgraph_name": description}
    return out


def hostile_and_clean(tmp: Path) -> tuple[Graph, Graph]:
    g = small_net()
    n = len(g.tensors)
    hostile = renamed(g, "h", [f"{PAYLOADS[i % len(PAYLOADS)]}{i}" for i in range(n)], "".join(PAYLOADS))
    clean = renamed(g, "c", [f"t{i}" for i in range(n)], "clean")
    paths = []
    for graph, fname in ((hostile, FILE_PAYLOAD), (clean, "clean.tflite")):
        (tmp / fname).parent.mkdir(exist_ok=True)
        save_tflite(graph, tmp / fname)
        paths.append(load_model(str(tmp / fname)))
    return paths[0], paths[1]


def generated_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.iterdir())
                     if p.suffix in (".c", ".h", ".ld") or p.name == "Makefile")


def code_of(folder: Path) -> tuple[str, str]:
    """(disassembly with relocations, constant data) of model.c compiled alone, file names cut."""
    subprocess.run(["cc", "-std=c99", "-O2", "-c", "model.c", "-o", "model.o"], cwd=folder, check=True)
    dis = subprocess.run(["objdump", "-d", "-r", "-j", ".text", "model.o"], cwd=folder, check=True,
                         capture_output=True, text=True).stdout
    data = subprocess.run(["objdump", "-s", "-j", ".rodata", "-j", ".data", "model.o"], cwd=folder, check=True,
                          capture_output=True, text=True).stdout
    return dis.split("\n", 2)[2], data.split("\n", 2)[2]


def test_sanitizers_keep_nothing_dangerous():
    for p in (*PAYLOADS, FILE_PAYLOAD, "a*/b", "a/*b", "a??/b", "$$x", "#x"):
        ident, comment = c_ident(p), c_comment(p)
        assert ident.replace("_", "").isalnum() or set(ident) == {"_"}
        assert not ident[0].isdigit()
        for bad in ("*/", "/*", "\\", "\n", "\r", "?", "$", "#", "`", '"', "'", ";", "(", "/"):
            assert bad not in comment
    assert c_ident("9lives") == "_9lives" and c_ident("") == "_"
    assert len(c_ident("x" * 10_000)) <= 49 and len(c_comment("x" * 10_000)) <= 80


def test_hostile_names_reach_no_generated_file(tmp_path):
    hostile, clean = hostile_and_clean(tmp_path)
    assert "pwned" in hostile.name and "$(shell" in hostile.name  # the file name was read as the model name
    plan = search(hostile, max_grid=3).front[0].plan  # a patch plan: tile and line-buffer code too
    generate(hostile, plan, tmp_path / "h")
    text = generated_text(tmp_path / "h")
    for marker in MARKERS:
        assert marker not in text, marker
    makefile = (tmp_path / "h" / "Makefile").read_text()
    assert "shell" not in makefile and "pwned" not in makefile and "evil" not in makefile  # no model text at all


@pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
def test_hostile_names_compile_to_the_same_code(tmp_path):
    hostile, clean = hostile_and_clean(tmp_path)
    for graph, out in ((hostile, tmp_path / "h"), (clean, tmp_path / "c")):
        generate(graph, None, out)
        subprocess.run(["make", "-s", "host"], cwd=out, check=True, capture_output=True)
    assert not list(tmp_path.rglob("pwned"))
    assert code_of(tmp_path / "h") == code_of(tmp_path / "c")


def test_hostile_chain_name(tmp_path):
    name = PAYLOADS[0] + PAYLOADS[1]
    chains = {"models": {name: {"input_hw": [8, 8], "input_channels": 3,
                                "layers": [["conv", 8, 3, 2, 1], ["dw", 8, 3, 1, 1], ["conv", 4, 1, 1, 0]]}}}
    path = tmp_path / "chains.json"
    path.write_text(json.dumps(chains))
    g = load_model(f"{path}#{name}")
    generate(g, None, tmp_path / "out")
    text = generated_text(tmp_path / "out")
    for marker in MARKERS:
        assert marker not in text, marker
