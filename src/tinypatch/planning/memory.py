"""Arena buffers of a plan: layer-by-layer liveness, reshaped by the patch stages.

Time is the operator index, as in :mod:`tinypatch.analysis.liveness`: every tile of a stage
runs the stage's operators in the same order, so a tile-local tensor keeps its layer-by-layer
lifetime but shrinks to its largest tile region, while the stage's full-size tensors (its
inputs and its output) stay alive across the whole stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tinypatch.analysis.inplace_shift import inplace_candidates
from tinypatch.analysis.liveness import Buffer, Liveness, liveness
from tinypatch.errors import PlanError
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.planning.arena import Placement, place
from tinypatch.planning.plan import Plan
from tinypatch.planning.tiles import StageTiling, tile_stage


def tile_bytes(graph: Graph, tiling: StageTiling, tensor: str) -> int:
    """Bytes of a stage-internal tensor's buffer: its largest tile region (a window of it when streaming)."""
    t = graph.tensors[tensor]
    return tiling.h.max_len(tensor) * tiling.buffer_cols(tensor) * t.shape[3] * DTYPE_BYTES[t.dtype]


def accumulator_name(tensor: str) -> str:
    return f"{tensor}#sums"


def accumulator_bytes(graph: Graph, tiling: StageTiling) -> int:
    """int32 per-channel sums of a stage ending in a global average (0 otherwise)."""
    if tiling.info.reduce is None:
        return 0
    return 4 * graph.tensors[tiling.info.tiled].shape[3]


def line_buffer_name(tensor: str) -> str:
    return f"{tensor}#lines"


def line_buffer_bytes(graph: Graph, tiling: StageTiling, op_index: int) -> int:
    """Bytes of the full-width line buffer keeping an op's overlapping rows between tile rows."""
    t = graph.tensors[graph.ops[op_index].outputs[0]]
    lo, hi = tiling.w.extent(t.name)
    return tiling.h.overlap(op_index) * (hi - lo) * t.shape[3] * DTYPE_BYTES[t.dtype]


@dataclass
class PlanBuffers:
    """The plan's buffers and the stage tilings they were derived from."""

    liveness: Liveness
    tilings: list[StageTiling]
    tile_tensors: dict[str, int]  # stage-internal tensor -> stage index


def plan_buffers(graph: Graph, plan: Plan, tilings: list[StageTiling] | None = None,
                 strict: bool = True) -> PlanBuffers:
    """Buffers (size, first step, last step) of every arena tensor under ``plan``; ``strict``:
    an op of ``plan.inplace`` that cannot run in place is an error (else it runs out of place)."""
    if tilings is None:
        users = graph.consumers() if len(plan.stages) > 1 else None
        tilings = [tile_stage(graph, s, users) for s in plan.stages]
    base = liveness(graph, plan.include_input, plan.include_output)
    tile_tensors = {t: k for k, st in enumerate(tilings) for t in st.info.internal}
    holders: dict[str, list[str]] = {}
    for t, b in base.tensor_buffer.items():
        holders.setdefault(b, []).append(t)
    producers, users = graph.producers(), graph.consumers()
    in_stage: dict[int, list[tuple[int, int]]] = {}  # op -> (first op, last op) of each stage holding it
    for st in tilings:
        for k in range(st.stage.start, st.stage.end):
            in_stage.setdefault(k, []).append((st.stage.start, st.stage.end - 1))
    buffers = []
    for b in base.buffers:
        tensors = holders[b.name]
        if len(tensors) == 1 and tensors[0] in tile_tensors:
            st = tilings[tile_tensors[tensors[0]]]
            k = producers[tensors[0]]
            b = replace(b, size=tile_bytes(graph, st, tensors[0]))
            if st.cached(k):  # keeps its halo: lives across all tiles
                b = replace(b, start=st.stage.start, end=st.stage.end - 1)
            buffers.append(b)
            if st.line_buffer(k) and line_buffer_bytes(graph, st, k):
                buffers.append(Buffer(line_buffer_name(tensors[0]), line_buffer_bytes(graph, st, k),
                                      st.stage.start, st.stage.end - 1))
            continue
        start, end = b.start, b.end
        for t in tensors:  # made or read inside a stage: lives from its start / to its last op
            start = min([start] + [s0 for s0, _ in in_stage.get(producers.get(t, -1), ())])
            end = max([end] + [s1 for u in users.get(t, []) for _, s1 in in_stage.get(u, ())])
        buffers.append(Buffer(b.name, b.size, start, end))
    for st in tilings:
        if st.info.reduce is not None:
            buffers.append(Buffer(accumulator_name(st.info.output), accumulator_bytes(graph, st),
                                  st.stage.start, st.stage.end - 1))
    anchors = inplace_anchors(graph, plan, buffers, base.tensor_buffer, tilings, strict)
    return PlanBuffers(Liveness(buffers, base.tensor_buffer, base.num_steps, anchors), tilings, tile_tensors)


def inplace_anchors(graph: Graph, plan: Plan, buffers: list[Buffer], tensor_buffer: dict[str, str],
                    tilings: list[StageTiling], strict: bool = True) -> dict[str, tuple[str, int]]:
    """Output buffer -> (input buffer, shift) of every op the plan runs in place; PlanError (or,
    not ``strict``, no anchor) for one that cannot (inside a stage, not the last reader of an
    arena input it could overwrite, ...)."""
    by_name = {b.name: b for b in buffers}
    kept = kept_buffers(graph, tensor_buffer)
    anchors: dict[str, tuple[str, int]] = {}

    def refuse(message: str) -> None:
        if strict:
            raise PlanError(message)

    for k in plan.inplace:
        if not 0 <= k < len(graph.ops):
            refuse(f"in-place op {k} does not exist (the model has {len(graph.ops)} ops)")
            continue
        if any(st.stage.start <= k < st.stage.end for st in tilings):
            refuse(f"op {k} runs inside a patch stage; only layer-by-layer ops run in place")
            continue
        anchor = op_anchor(graph, k, by_name, tensor_buffer, kept)
        if anchor is None or anchor[0] in anchors:
            refuse(f"op {k} ({graph.ops[k].type}) cannot run in place: it is not the last reader "
                   f"of an arena input it could overwrite")
            continue
        anchors[anchor[0]] = anchor[1:]
    return anchors


def kept_buffers(graph: Graph, tensor_buffer: dict[str, str]) -> set[str]:
    """Buffers of the graph outputs: never overwritten."""
    return {tensor_buffer[t] for t in graph.outputs if t in tensor_buffer}


def op_anchor(graph: Graph, k: int, by_name: dict[str, Buffer], tensor_buffer: dict[str, str],
              kept: set[str]) -> tuple[str, str, int] | None:
    """(output buffer, input buffer, shift) if op ``k`` can write its output over an input.

    The input buffer must end at op ``k`` and the output buffer start there, so no other op can
    anchor either of them: the ops of a plan run in place independently of each other.
    """
    out = tensor_buffer.get(graph.ops[k].outputs[0]) if graph.ops[k].outputs else None
    if not out or by_name[out].start != k:
        return None
    for cand in inplace_candidates(graph, k):
        src = tensor_buffer.get(cand.tensor)
        if src and src != out and src not in kept and by_name[src].end == k:
            return out, src, cand.shift
    return None


def place_plan(buffers: PlanBuffers, alignment: int = 16, node_limit: int | None = None) -> Placement:
    """Arena offsets of a plan's buffers (in-place pairs at their fixed distance)."""
    live = buffers.liveness
    return place(live.buffers, alignment, node_limit, live.anchors)
