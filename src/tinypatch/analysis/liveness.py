"""Activation lifetimes over the op order, the buffers they need, and the lower bound on any arena.

Time is the op index. A tensor is live from the op that writes it to the last op that reads
it, both inclusive (graph inputs from step 0, graph outputs to the last step); constants are
not activations and never appear. With ``aliasing`` a RESHAPE output shares its input's
buffer (TFLM-style in-place reshape), so the pair is one buffer over the union of their
lifetimes. ``include_input`` / ``include_output`` = False leave the model's input / output
tensors out of the arena (e.g. an input streamed from a camera).

An *anchor* ties a buffer to another at a fixed distance: an operator run in place writes its
output buffer ``shift`` bytes below the input buffer it overwrites
(:mod:`tinypatch.analysis.inplace_shift`), so the two may share bytes at the step where one ends and
the other starts. Anchored buffers form groups placed as one block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinypatch.ir import Graph
from tinypatch.ir.optable import InPlace, op_def


@dataclass(frozen=True)
class Buffer:
    """A block of ``size`` bytes needed from op ``start`` to op ``end`` (inclusive)."""

    name: str
    size: int
    start: int
    end: int

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class Liveness:
    """Arena buffers of a graph and which buffer holds each activation tensor."""

    buffers: list[Buffer]  # in the model's tensor order (TFLM adds them to its planner so)
    tensor_buffer: dict[str, str]  # activation tensor name -> name of the buffer holding it
    num_steps: int
    anchors: dict[str, tuple[str, int]] = field(default_factory=dict)  # buffer -> (buffer above it, shift)

    def live_at(self, step: int) -> list[Buffer]:
        return [b for b in self.buffers if b.start <= step <= b.end]

    def profile(self, alignment: int = 1) -> list[int]:
        """Bytes live at each step (sizes rounded up to ``alignment``; bytes shared by anchored
        buffers counted once)."""
        return live_profile(self.buffers, self.num_steps, alignment, self.anchors)

    def lower_bound(self, alignment: int = 1) -> int:
        """No placement of these buffers fits in fewer bytes than this."""
        return max(self.profile(alignment), default=0)


def align_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def anchor_groups(buffers: list[Buffer], anchors: dict[str, tuple[str, int]],
                  alignment: int = 1) -> dict[str, tuple[str, int]]:
    """Buffer name -> (group name, offset in the group) for every buffer; shifts are rounded up to
    ``alignment`` and every group starts at offset 0. Unanchored buffers are groups of one."""
    where: dict[str, tuple[str, int]] = {}

    def resolve(name: str) -> None:
        chain = []
        while name not in where and name in anchors:
            chain.append(name)
            name = anchors[name][0]
        root, rel = where.setdefault(name, (name, 0))
        for n in reversed(chain):
            rel -= align_up(anchors[n][1], alignment)
            where[n] = (root, rel)

    for b in buffers:
        resolve(b.name)
    low: dict[str, int] = {}
    for root, rel in where.values():
        low[root] = min(low.get(root, 0), rel)
    return {n: (root, rel - low[root]) for n, (root, rel) in where.items()}


def live_profile(buffers: list[Buffer], num_steps: int, alignment: int = 1,
                 anchors: dict[str, tuple[str, int]] | None = None) -> list[int]:
    """Bytes live at each step ``0..num_steps-1``: the sum of aligned sizes, the members of an
    anchored group live at that step counted once where they share bytes."""
    steps = max(num_steps, max((b.end + 1 for b in buffers), default=0))
    diff = [0] * (steps + 1)  # buffers alone in their group: added from start, taken off after end
    shared: dict[str, list[tuple[Buffer, int]]] = {}  # root of an anchored group -> (member, offset)
    groups = anchor_groups(buffers, anchors, alignment) if anchors else {}
    count: dict[str, int] = {}
    for root, _ in groups.values():
        count[root] = count.get(root, 0) + 1
    for b in buffers:
        root, rel = groups.get(b.name, (b.name, 0))
        if count.get(root, 1) > 1:
            shared.setdefault(root, []).append((b, rel))
            continue
        size = align_up(b.size, alignment)
        diff[b.start] += size
        diff[b.end + 1] -= size
    prof, acc = [0] * steps, 0
    for t in range(steps):
        acc += diff[t]
        prof[t] = acc
    for members in shared.values():
        at: dict[int, list[tuple[int, int]]] = {}  # step -> the members' byte ranges live then
        for b, rel in members:
            span = (rel, rel + align_up(b.size, alignment))
            for t in range(b.start, b.end + 1):
                at.setdefault(t, []).append(span)
        for t, spans in at.items():
            prof[t] += _union_bytes(spans)
    return prof


def _union_bytes(intervals: list[tuple[int, int]]) -> int:
    total, reach = 0, None
    for lo, hi in sorted(intervals):
        if reach is None or lo >= reach:
            total, reach = total + hi - lo, hi
        elif hi > reach:
            total, reach = total + hi - reach, hi
    return total


def lower_bound(buffers: list[Buffer], alignment: int = 1,
                anchors: dict[str, tuple[str, int]] | None = None) -> int:
    """Largest number of bytes live at one time step (see :func:`live_profile`)."""
    return max(live_profile(buffers, 0, alignment, anchors), default=0)


def tensor_lifetimes(graph: Graph) -> dict[str, tuple[int, int]]:
    """(first step, last step) of every activation tensor, inclusive."""
    last = max(len(graph.ops) - 1, 0)
    life: dict[str, list[int]] = {t: [0, 0] for t in graph.inputs}
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            if t and t in life:
                life[t][1] = i
        for t in op.outputs:
            life.setdefault(t, [i, i])
    for t in graph.outputs:
        life[t][1] = last
    return {t: (s, e) for t, (s, e) in life.items()}


def _tensor_order(graph: Graph, names: list[str]) -> list[str]:
    index = graph.meta.get("tflite_index")
    if not index:
        return names
    return sorted(names, key=lambda n: index.get(n, len(index)))


def liveness(graph: Graph, include_input: bool = True, include_output: bool = True,
             aliasing: bool = True) -> Liveness:
    """The arena buffers of ``graph`` (see the module docstring for the flags)."""
    life = tensor_lifetimes(graph)
    excluded = set()
    if not include_input:
        excluded |= set(graph.inputs)
    if not include_output:
        excluded |= set(graph.outputs)
    in_arena = [t for t in life if t not in excluded and graph.tensors[t].nbytes > 0]
    root = {t: t for t in in_arena}
    if aliasing:
        for op in graph.ops:
            if op_def(op.type).inplace == InPlace.ALIAS and op.inputs[0] in root and op.outputs[0] in root:
                src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
                if src.nbytes == dst.nbytes:
                    root[op.outputs[0]] = root[op.inputs[0]]
    spans: dict[str, list[int]] = {}
    for t in in_arena:
        s, e = life[t]
        r = root[t]
        cur = spans.setdefault(r, [graph.tensors[t].nbytes, s, e])
        cur[0], cur[1], cur[2] = max(cur[0], graph.tensors[t].nbytes), min(cur[1], s), max(cur[2], e)
    buffers = [Buffer(r, *spans[r]) for r in _tensor_order(graph, list(spans))]
    return Liveness(buffers, {t: root[t] for t in in_arena}, len(graph.ops))
