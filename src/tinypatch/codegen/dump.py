"""Every tensor from C: read the records a host check build writes with ``TP_DUMP_FILE`` set and
compare them with the whole-image Python executor's tensors.

A record is one operator's output as the generated code just computed it: the whole tensor
for a layer-by-layer operator, the fresh region of one tile for an operator inside a patch
stage (columns of the output for the last operator of a stream stage).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinypatch.errors import ToolchainError
from tinypatch.ir import Graph

_HEAD = 9  # int32: op, tile row, tile col, y0, x0, h, w, c, esize


@dataclass(frozen=True)
class DumpRecord:
    op: int
    tile: tuple[int, int]  # (-1, -1): a layer-by-layer op's whole output
    y0: int
    x0: int
    data: np.ndarray  # uint8 (h, w, c * esize)


def read_dump(path: Path) -> list[DumpRecord]:
    raw = Path(path).read_bytes()
    out, at = [], 0
    while at < len(raw):
        if at + 4 * _HEAD > len(raw):
            raise ToolchainError(f"{path}: truncated record header at byte {at}")
        k, ti, tj, y0, x0, h, w, c, es = np.frombuffer(raw, np.int32, _HEAD, at).tolist()
        at += 4 * _HEAD
        n = h * w * c * es
        if h <= 0 or w <= 0 or c <= 0 or es <= 0 or at + n > len(raw):
            raise ToolchainError(f"{path}: bad record for op {k} at byte {at}")
        out.append(DumpRecord(k, (ti, tj), y0, x0, np.frombuffer(raw, np.uint8, n, at).reshape(h, w, c * es)))
        at += n
    return out


def dump_mismatches(graph: Graph, records: list[DumpRecord], tensors: Mapping[str, np.ndarray],
                    expected: set[int]) -> list[str]:
    """Records that differ from ``tensors`` (every activation by name, e.g. ``run(g, x, keep=True)``),
    and the ``expected`` ops that have no record."""
    bad = []
    for r in records:
        name = graph.ops[r.op].outputs[0]
        want = np.ascontiguousarray(tensors[name]).view(np.uint8)
        if r.tile == (-1, -1):
            got, ref = r.data.reshape(-1), want.reshape(-1)
        else:
            h, w = r.data.shape[:2]
            got, ref = r.data, want.reshape(want.shape[1], want.shape[2], -1)[r.y0: r.y0 + h, r.x0: r.x0 + w]
        if got.shape != ref.shape or not np.array_equal(got, ref):
            bad.append(f"op {r.op} ({graph.ops[r.op].type}) tile {r.tile} at ({r.y0}, {r.x0}): differs")
    seen = {r.op for r in records}
    bad += [f"op {k} ({graph.ops[k].type}): never dumped" for k in sorted(expected - seen)]
    return bad
