"""Network redistribution (MCUNetV2 §3.2): shrink the patch stage's receptive field.

The figures of a network are those of MCUNetV2's patch schedule (:func:`patch_figures`): one
stage from the first layer, ``grid`` x ``grid`` tiles, halos recomputed, every legal split
tried; the split kept is the one with the fewest MACs whose analytic peak (MCUNetV2
convention, input image not counted) fits the budget (default: the least peak any split
reaches). :func:`redistribute` searches spec edits greedily, one move at a time, keeping the
move that lowers the MAC overhead most while the peak stays within the budget and the total
MACs and parameters within ``tolerance`` of the original:

- ``kernel``: a depthwise kernel in the patch stage 2 smaller (down to 3);
- ``no-dw``: a stride-1 block in the patch stage loses its depthwise conv;
- ``move``: a stride-1 block leaves the patch stage and runs right after it, or after the next
  strided block (at the lower resolution), at that point's channels, with a shortcut;
- each of these also paired with ``grow``: the first depthwise kernel after the patch stage
  below 7 made 2 larger, to keep receptive field and capacity later in the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from tinypatch.analysis.analytic import analytic_memory
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import split_even
from tinypatch.errors import BudgetError, PlanError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.spec import NetSpec
from tinypatch.ir import Graph
from tinypatch.planning.cost import plan_analytic, plan_macs
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.tiles import legal_ends, tile_stage


@dataclass(frozen=True)
class PatchFigures:
    """MCUNetV2's Table 1 figures of one network under its patch schedule."""

    end: int  # the patch stage runs ops [0, end)
    blocks: int  # spec blocks (identity blocks included) up to the last one with an op in the patch stage
    patch: int  # side of the largest input patch (pixels of the model input)
    stage_macs: int  # patch stage, layer by layer
    stage_macs_patched: int  # border-clipped tiles
    stage_macs_full_tiles: int  # every tile at the largest tile's size (TinyEngine, MCUNetV2's figures)
    macs: int  # whole network, layer by layer
    macs_patched: int
    peak: int  # analytic peak of the patch schedule, input not counted
    layer_peak: int  # analytic peak layer by layer, input counted (MCUNetV2 Fig. 1)
    params: int  # constant elements (weights, biases)

    @property
    def overhead(self) -> float:
        return self.macs_patched / self.macs - 1

    @property
    def stage_overhead(self) -> float:
        return self.stage_macs_patched / self.stage_macs - 1

    @property
    def stage_overhead_full_tiles(self) -> float:
        return self.stage_macs_full_tiles / self.stage_macs - 1


def patch_figures(graph: Graph, grid: int = 4, budget: int | None = None) -> PatchFigures:
    """The MCUNetV2 patch schedule of ``graph`` at ``grid`` x ``grid`` under ``budget`` (analytic bytes)."""
    if grid < 1:
        raise PlanError("the patch grid must have at least 1 tile per axis")
    cands = []
    for end in legal_ends(graph, 0):
        out = graph.tensors[graph.ops[end - 1].outputs[0]].shape
        if len(out) != 4 or min(out[1], out[2]) < grid:
            continue
        stage = Stage(0, end, split_even(out[1], grid), split_even(out[2], grid))
        plan = Plan(graph.name, fingerprint(graph), [stage], include_input=False)
        st = tile_stage(graph, stage)
        macs, full, base = plan_macs(graph, [st])
        cands.append((plan_analytic(graph, plan, [st]).peak, macs, base, end, st, full))
    if not cands:
        raise PlanError(f"{graph.name}: no patch stage from the first layer holds {grid}x{grid} tiles")
    least = min(c[0] for c in cands)
    limit = least if budget is None else budget
    fits = [c for c in cands if c[0] <= limit]
    if not fits:
        raise BudgetError(f"{graph.name}: no {grid}x{grid} patch schedule fits {limit} B (analytic); the least "
                          f"peak is {least} B", least)
    peak, macs, base, end, st, full = min(fits, key=lambda c: (c[1], c[0]))
    stage_base = sum(op_macs(graph, graph.ops[k]) for k in range(end))
    x = graph.inputs[0]
    patch = max(st.h.max_len(x), st.w.max_len(x))
    names = [name for name, ops in graph.meta.get("blocks", []) if ops and min(ops) < end]
    blocks = max((int(n.split(".")[1]) + 1 for n in names if n.startswith("blocks.")), default=0)
    params = sum(t.size for t in graph.tensors.values() if t.is_const)
    return PatchFigures(end, blocks, patch, stage_base, stage_base + macs - base, stage_base + full - base, base,
                        macs, peak, analytic_memory(graph).peak, params)


@dataclass(frozen=True)
class Step:
    """One accepted edit and the network it leaves."""

    move: str  # human-readable description
    spec: NetSpec
    figures: PatchFigures


@dataclass
class Redistribution:
    """The search: the original, the accepted steps in order, and its settings."""

    original: Step
    steps: list[Step]
    budget: int
    grid: int
    tolerance: float

    @property
    def result(self) -> Step:
        return self.steps[-1] if self.steps else self.original


def _channels_before(spec: NetSpec, index: int) -> int:
    c = spec.stem_channels
    for b in spec.blocks[:index]:
        if b is not None:
            c = b.out_channels
    return c


def _grow(spec: NetSpec, first: int) -> tuple[NetSpec, str] | None:
    for j in range(first, len(spec.blocks)):
        b = spec.blocks[j]
        if b is not None and b.depthwise and b.kernel < 7:
            return spec.with_block(j, kernel=b.kernel + 2), f"blocks.{j} k{b.kernel}->k{b.kernel + 2}"
    return None


def moves(spec: NetSpec, patch_blocks: int) -> Iterator[tuple[str, NetSpec]]:
    """Every single edit that shrinks the receptive field of the first ``patch_blocks`` blocks,
    alone and paired with a larger kernel after the patch stage."""
    for i in range(patch_blocks):
        b = spec.blocks[i]
        if b is None:
            continue
        edits: list[tuple[str, NetSpec, int]] = []
        if b.depthwise and b.kernel > 3:
            edits.append((f"blocks.{i} k{b.kernel}->k{b.kernel - 2}", spec.with_block(i, kernel=b.kernel - 2),
                          patch_blocks))
        if b.stride == 1 and b.depthwise and not b.use_se:
            edits.append((f"blocks.{i} without depthwise", spec.with_block(i, depthwise=False), patch_blocks))
        if b.stride == 1:
            rest = (*spec.blocks[:i], *spec.blocks[i + 1:])
            short = replace(spec, blocks=rest)
            at = patch_blocks - 1  # right after the patch stage, in the shortened list
            strided = next((j + 1 for j in range(at, len(rest)) if rest[j] is not None and rest[j].stride > 1), None)
            for pos, where in ((at, "after the patch stage"), (strided, "to the next lower resolution")):
                if pos is None or (where != "after the patch stage" and pos == at):
                    continue
                moved = replace(b, out_channels=_channels_before(short, pos), shortcut=True, mid_channels=None)
                edits.append((f"blocks.{i} moved {where}", replace(spec, blocks=(*rest[:pos], moved, *rest[pos:])),
                              pos))
        for text, new, first in edits:
            yield text, new
            grown = _grow(new, first)
            if grown is not None:
                yield f"{text}, {grown[1]}", grown[0]


def redistribute(spec: NetSpec, grid: int = 4, budget: int | None = None, tolerance: float = 0.05,
                 max_steps: int = 12, progress: Callable[[int, int], None] | None = None) -> Redistribution:
    """Greedy redistribution of ``spec`` (see the module docstring); ``budget`` defaults to the
    original's least {grid}x{grid} analytic peak."""
    if not 0 <= tolerance < 1:
        raise PlanError("the MAC / parameter tolerance must be in [0, 1)")
    base = patch_figures(build_net(spec), grid, budget)
    limit = base.peak if budget is None else budget
    result = Redistribution(Step("original", spec, base), [], limit, grid, tolerance)
    seen = {spec.fingerprint()}
    current = result.original
    for step in range(max_steps):
        best: Step | None = None
        cands = list(moves(current.spec, current.figures.blocks))
        for n, (text, new) in enumerate(cands):
            if progress:
                progress(n, len(cands))
            if new.fingerprint() in seen:
                continue
            seen.add(new.fingerprint())
            try:
                fig = patch_figures(build_net(new), grid, limit)
            except (BudgetError, PlanError):
                continue
            if abs(fig.macs / base.macs - 1) > tolerance or abs(fig.params / base.params - 1) > tolerance:
                continue
            if best is None or (fig.overhead, abs(fig.macs - base.macs)) < (
                    best.figures.overhead, abs(best.figures.macs - base.macs)):
                best = Step(text, new, fig)
        if best is None or best.figures.overhead >= current.figures.overhead:
            break
        result.steps.append(best)
        current = best
    return result
