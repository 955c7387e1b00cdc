"""The Python API: everything the ``tinypatch`` command does, as functions returning result objects.

>>> import tinypatch
>>> graph = tinypatch.load("mcunet-in0")             # zoo name, .tflite / .json path, or a Graph
>>> tinypatch.analyze(graph).report.peak_placed       # bytes, 16-byte aligned arena
46080
>>> result = tinypatch.plan(graph, sram="24KB")       # budgets: ints (bytes) or "24KB", "0.5MB"
>>> tinypatch.run(graph, result).exact                # the plan object, or a plan .json path
True

Every function accepts what the CLI accepts for MODEL (a path, a zoo name, an MCUNet config,
or an already loaded :class:`~tinypatch.ir.Graph`). Results print as the CLI prints them
(``str(result)``), and ``to_dict()`` / ``to_json()`` give the CLI's ``--json``. Errors are
:mod:`tinypatch.errors` exceptions (all subclasses of ``TinypatchError``). Heavy modules
(matplotlib, rich, the planner) load on first use, so ``import tinypatch`` stays light.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

from tinypatch.errors import UsageError
from tinypatch.ir import Graph

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

    from tinypatch.report.layer_memory import MemoryReport
    from tinypatch.codegen.project import Project
    from tinypatch.codegen.report import McuCost
    from tinypatch.planning.cost import PlanCost
    from tinypatch.planning.optimal import FrontResult, Schedule
    from tinypatch.planning.plan import Plan
    from tinypatch.frontends.spec import NetSpec
    from tinypatch.planning.precision import PrecisionMemory, PrecisionPlan
    from tinypatch.planning.redistribute import Redistribution
    from tinypatch.nas.evolution import SearchResult as NasResult
    from tinypatch.nas.space import SearchSpace
    from tinypatch.runtime.quantmcu import Fidelity, QuantizeResult

__all__ = ["AnalysisResult", "CodegenResult", "NasExportResult", "NasTrainResult", "PlanResult", "Progress",
           "QuantizeReport", "RedistributionResult", "RunResult", "SearchOutcome", "analyze", "codegen", "from_torch",
           "import_torch", "load", "nas_export", "nas_train", "parse_clock", "parse_fraction", "parse_latency",
           "parse_size", "plan", "quantize",
           "quantize_float", "redistribute", "run", "search"]

ModelLike = Union[str, "os.PathLike[str]", Graph]
PlanLike = Union["Plan", "PlanResult", str, "os.PathLike[str]"]
InputLike = Union[None, str, "os.PathLike[str]", "np.ndarray", Sequence["np.ndarray"], Mapping[str, "np.ndarray"]]
ARITHS = ("tflite", "onnxruntime")  # the kernels' integer arithmetics (``run --arith``)
Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as long work advances (``total`` 0: not known yet)."""

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?i?[bB]?)\s*$")


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string: ``"64KB"`` -> 65536 (kB, KB and KiB all mean 1024 B).

    >>> parse_size("0.5MB"), parse_size(1000)
    (524288, 1000)
    """
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise UsageError(f"not a size: {size!r} (an int of bytes or a string like 64KB)")
    if isinstance(size, int):
        value = size
    else:
        m = _SIZE.match(size)
        if not m:
            raise UsageError(f"not a size: {size!r} (try 64KB, 256kB, 0.5MB or 65536)")
        unit = m.group(2).lower().rstrip("b").rstrip("i")
        value = int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit])
    if value <= 0:
        raise UsageError(f"size must be positive: {size!r}")
    return value


def parse_fraction(value: float | str) -> float:
    """A MAC overhead from a number or a string: ``0.2``, ``"0.2"`` and ``"20%"`` are all 0.2."""
    try:
        text = str(value).strip()
        v = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise UsageError(f"not a fraction: {value!r} (try 0.2 or 20%)") from None
    if not v >= 0:  # also refuses NaN
        raise UsageError("the MAC overhead must be >= 0")
    return v


_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_TIMES = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_clock(clock: int | str) -> int:
    """A clock in Hz from an int or a string: ``"216MHz"``, ``"1GHz"``, ``"480e6"``, ``8000000``."""
    m = _COUNT.match(str(clock)) if not isinstance(clock, bool) else None
    mult = {"": 1, "hz": 1, "khz": 10**3, "mhz": 10**6, "ghz": 10**9}.get(m.group(2).lower()) if m else None
    if mult is None or not float(m.group(1)) * mult >= 1:
        raise UsageError(f"not a clock: {clock!r} (try 216MHz, 1GHz or 480000000)")
    return round(float(m.group(1)) * mult)


def parse_latency(latency: int | str, clock: int | str | None = None) -> int:
    """A latency limit in predicted instructions: a count (``"120M"``, ``"1.5G"``, ``"5000k"``, an int)
    or a time (``"20ms"``, ``"0.5s"``, ``"800us"``) at ``clock``, one instruction per cycle."""
    m = _COUNT.match(str(latency)) if not isinstance(latency, bool) else None
    unit = m.group(2).lower() if m else None
    if unit in _TIMES:
        if clock is None:
            raise UsageError(f"a latency of {latency!r} needs a clock to turn time into instructions (--clock 216MHz)")
        value = float(m.group(1)) * _TIMES[unit] * parse_clock(clock)
    elif unit in ("", "k", "m", "g"):
        value = float(m.group(1)) * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[unit]
    else:
        raise UsageError(f"not a latency: {latency!r} (predicted instructions like 120M, "
                         "or a time like 20ms with a clock)")
    if not value >= 1:
        raise UsageError(f"the latency limit must be at least one instruction, got {latency!r}")
    return int(value)


def load(model: ModelLike, **overrides: Any) -> Graph:
    """The graph of ``model``: a ``.tflite`` or int8 ``.onnx`` file, an MCUNet/ProxylessNAS ``.json`` config
    (``chains.json#CHAIN`` for one msf-CNN chain), a zoo name (``tinypatch zoo``), or a Graph
    (returned as is). ``overrides`` go to the config / zoo builder (e.g. ``resolution=96``).

    >>> load("mbv2-w0.35-r144").inputs
    ['input']

    Raises ModelLoadError (missing, corrupted or unknown model) or UnsupportedOperatorError.
    """
    if isinstance(model, Graph):
        if overrides:
            raise UsageError(f"a loaded Graph takes no overrides ({', '.join(overrides)})")
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise UsageError(f"not a model: {type(model).__name__} (a path, a zoo name or a Graph)")
    from tinypatch.frontends.load import load_model

    return load_model(os.fspath(model), **overrides)


def _as_plan(plan: PlanLike) -> Plan:
    from tinypatch.planning.plan import Plan

    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, PlanResult):
        return plan.plan
    if isinstance(plan, (str, os.PathLike)):
        return Plan.load(os.fspath(plan))
    raise UsageError(f"not a plan: {type(plan).__name__} (a Plan, a PlanResult or a plan .json path)")


def _phase(progress: Progress | None, phase: str) -> Callable[[int, int], None] | None:
    """Announce ``phase`` and return the (done, total) callback the library's loops take."""
    if progress is None:
        return None
    progress(phase, 0, 0)
    return lambda done, total: progress(phase, done, total)


def _text(render: Callable[[Console], None]) -> str:
    """What ``render`` prints on a 160-column console without colours (the CLI's piped output)."""
    from rich.console import Console

    buf = io.StringIO()
    render(Console(file=buf, width=160, no_color=True))
    return buf.getvalue().rstrip("\n")


class _Result:
    """Printing shared by the results: ``str()`` is the CLI's text, ``to_json()`` its ``--json``."""

    def render(self, console: Console) -> None:  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def __str__(self) -> str:
        return _text(self.render)


# --- analyze --------------------------------------------------------------------------------------

@dataclass(repr=False)
class AnalysisResult(_Result):
    """Per-layer memory and compute of a model (``tinypatch analyze``); figures in ``report``."""

    graph: Graph
    report: MemoryReport

    def render(self, console: Console) -> None:
        """Print the per-layer table and the totals, as ``tinypatch analyze`` does."""
        from tinypatch.report.tables import analyze_tables

        analyze_tables(console, self.graph, self.report)

    def to_dict(self) -> dict[str, Any]:
        """The ``tinypatch analyze --json`` object."""
        return self.report.to_dict()

    def plot(self, path: str | os.PathLike[str], sram: int | str | None = None, plan: PlanLike | None = None) -> None:
        """Save the per-block memory bar chart (MCUNetV2's Figure 1) to ``path``: ``sram`` draws
        the budget line, ``plan`` adds each block's analytic memory under that patch plan."""
        from tinypatch.report.tables import layer_plot

        planned = None
        if plan is not None:
            from tinypatch.planning.check import check_plan
            from tinypatch.planning.cost import plan_analytic
            from tinypatch.planning.plan import fingerprint

            p = _as_plan(plan)
            if p.rewrites and p.fingerprint == fingerprint(self.graph):  # another model's plan: check_plan says so
                raise UsageError("the per-block chart compares a plan with the model's own layers; this plan "
                                 "rewrites the graph (plan it with rewrite=False / --no-rewrite to chart it)")
            planned = plan_analytic(self.graph, p, check_plan(self.graph, p)).per_op
        layer_plot(os.fspath(path), self.graph, self.report, None if sram is None else parse_size(sram), planned)

    def __repr__(self) -> str:
        r = self.report
        return (f"AnalysisResult(model={r.model!r}, ops={len(r.rows)}, peak_placed={r.peak_placed:,} B, "
                f"peak_inplace={r.peak_inplace:,} B, peak_analytic={r.peak_analytic:,} B, "
                f"flash={r.flash_bytes:,} B, macs={r.total_macs:,})")


def analyze(model: ModelLike, *, include_input: bool = True, include_output: bool = True) -> AnalysisResult:
    """Per-layer SRAM, flash and MACs of ``model`` run layer by layer (``tinypatch analyze``).

    >>> a = analyze("mcunet-in0", include_input=False)
    >>> a.report.peak_placed >= a.report.lower_bound
    True
    >>> a.plot("mem.png", sram="32KB")                  # doctest: +SKIP
    """
    from tinypatch.report.layer_memory import analyze as analyze_graph

    graph = load(model)
    return AnalysisResult(graph, analyze_graph(graph, include_input=include_input, include_output=include_output))


# --- plan -----------------------------------------------------------------------------------------

@dataclass(repr=False)
class PlanResult(_Result):
    """The chosen schedule (``plan``), its cost beside layer by layer, and the Pareto front it
    was chosen from (``tinypatch plan``)."""

    graph: Graph
    schedule: Schedule  # the chosen point of the front
    cost: PlanCost
    baseline: PlanCost  # layer by layer (with its in-place ops, as the front counts it)
    front: FrontResult
    settings: dict[str, Any] = field(default_factory=dict)  # the search's space (for reference())
    model: Graph | None = None  # the model, when the chosen plan rewrites it (``graph`` is then the rewritten graph)
    # the least-peak choice's cheaper neighbour (FrontResult.cheaper_nearby; None under a budget or overhead)
    nearby: Schedule | None = None
    _reference: FrontResult | None = field(default=None, init=False)

    @property
    def plan(self) -> Plan:
        """The chosen plan (what ``tinypatch plan -o`` writes)."""
        return self.schedule.plan

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the chosen plan as JSON (``tinypatch plan -o PATH``)."""
        self.plan.save(os.fspath(path))

    def reference(self, progress: Progress | None = None) -> FrontResult | None:
        """The MCUNetV2-style front (one stage from the first layer, halos recomputed) searched
        with the same accounting, for comparison; None when this search already was that space."""
        s = self.settings
        if s.get("single_stage") and s.get("strategy") == "recompute":
            return None
        if self._reference is None:
            from tinypatch.planning.inplace import inplace_front
            from tinypatch.planning.search import search

            graph = self.model or self.graph
            ref = search(graph, include_input=s.get("include_input", True), max_grid=s.get("max_grid", 8),
                         strategy="recompute", single_stage=True,
                         progress=_phase(progress, "searching the MCUNetV2-style single-stage front"))
            if s.get("inplace", True):
                ref = inplace_front(graph, ref, progress=_phase(progress, "running layer-by-layer ops in place"))
            self._reference = ref
        return self._reference

    def plot(self, path: str | os.PathLike[str], progress: Progress | None = None) -> None:
        """Save the Pareto front (peak SRAM vs MACs) beside the MCUNetV2-style front."""
        from tinypatch.report.tables import pareto_plot

        pareto_plot(os.fspath(path), self.graph, self.front, self.reference(progress))

    def render(self, console: Console) -> None:
        """Print the chosen schedule, before/after figures and the front, as ``tinypatch plan`` does."""
        from tinypatch.report.tables import plan_tables

        plan_tables(console, self.graph, self.schedule, self.cost, self.baseline, self.front)
        near = self.nearby
        if near is not None:
            what = "predicted instructions" if self.front.objective == "instructions" else "MACs"
            ratio = self.front.key(near)[0] / self.front.key(self.schedule)[0]
            peak = near.peak or near.lower_bound
            more = peak - (self.schedule.peak or self.schedule.lower_bound)
            console.print(f"hint: {more:,} B more SRAM ({peak:,} B) runs {ratio:.2f}x the {what}: "
                          f"{near.label}; `--sram {peak}B` picks it", highlight=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``tinypatch plan --json`` object."""
        return {"plan": self.plan.to_dict(), "cost": self.cost.to_dict(), "baseline": self.baseline.to_dict(),
                "front": [{"peak": s.peak, "lower_bound": s.lower_bound, "macs": s.macs,
                           "predicted_instructions": s.insns, "kernel_calls": s.calls, "schedule": s.label}
                          for s in self.front.front],
                "objective": self.front.objective, "target": self.settings.get("target"),
                "cheaper_nearby": None if self.nearby is None else
                {"peak": self.nearby.peak or self.nearby.lower_bound, "macs": self.nearby.macs,
                 "predicted_instructions": self.nearby.insns, "schedule": self.nearby.label},
                "predicted_instructions": self.schedule.insns, "search_seconds": self.front.seconds}

    def __repr__(self) -> str:
        c = self.cost
        return (f"PlanResult(model={self.graph.name!r}, schedule={self.schedule.label!r}, "
                f"inplace_ops={len(self.plan.inplace)}, peak={c.peak:,} B, macs={c.macs:,}, "
                f"mac_overhead={c.mac_overhead:+.1%}, front={len(self.front.front)} schedules)")


def plan(model: ModelLike, *, sram: int | str | None = None, max_mac_overhead: float | str | None = None,
         strategy: str = "auto", stream: bool = True, single_stage: bool = False, max_grid: int = 8,
         inplace: bool = True, include_input: bool = True, target: str | None = None, objective: str | None = None,
         rewrite: bool = True, progress: Progress | None = None) -> PlanResult:
    """Search patch-based schedules of ``model`` and choose one (``tinypatch plan``).

    The search gives the exact Pareto front of placed peak SRAM vs MACs; the choice is the fewest
    MACs under ``sram``, else the least peak within ``max_mac_overhead`` (0.2 or "20%"), else
    the least peak. ``strategy``: halo handling, "recompute" (MCUNetV2), "cache" or "auto";
    ``stream=False`` leaves out column-streamed stages; ``single_stage``: MCUNetV2's space (one
    stage from the first layer); ``max_grid``: most tiles per axis (besides row strips);
    ``inplace``: run layer-by-layer ops in place where that lowers the arena; ``include_input``:
    count the model input in the arena; ``rewrite``: also search graphs with reordered operators and
    recomputed maps (:mod:`tinypatch.planning.rewrite_search`; a plan chosen there records its
    rewrites, and ``graph`` is then the rewritten graph); ``target`` (e.g. "cortex-m7"): predict every schedule's
    executed instructions with that target's fitted cost model and, unless ``objective`` is
    "macs", trade peak against predicted instructions instead of MACs (ties: fewer kernel calls);
    ``progress(phase, done, total)`` is called as it advances. A least-peak choice (no budget, no
    overhead) names in ``nearby`` the schedule at most 5% above its peak with the least MACs (or
    predicted instructions), where that saves at least 10% (``tinypatch plan`` prints it as a hint).

    >>> result = plan("mcunet-in0", sram="24KB")
    >>> result.cost.peak <= 24 * 1024
    True
    >>> result.save("plan.json")                       # doctest: +SKIP

    Raises BudgetError (``.best``: the least achievable peak) when nothing fits, UsageError on
    bad budgets.
    """
    from tinypatch.planning.cost import plan_cost
    from tinypatch.planning.inplace import inplace_front
    from tinypatch.planning.rewrite_search import rewrite_front, schedule_graph
    from tinypatch.planning.search import choose, search

    t0 = time.perf_counter()
    budget = None if sram is None else parse_size(sram)
    overhead = None if max_mac_overhead is None else parse_fraction(max_mac_overhead)
    graph = load(model)

    def search_of(g: Graph, announce: bool = False) -> FrontResult:
        return search(g, include_input=include_input, max_grid=max_grid, strategy=strategy,
                      single_stage=single_stage, stream=stream, target=target, objective=objective,
                      progress=_phase(progress, "searching schedules") if announce else None)

    def refine(g: Graph, front: FrontResult, announce: bool = False) -> FrontResult:
        return inplace_front(g, front, progress=_phase(progress, "running layer-by-layer ops in place")
                             if announce else None)

    if rewrite and not single_stage:
        front = rewrite_front(graph, lambda g: search_of(g, g is graph),
                              (lambda g, f: refine(g, f, g is graph)) if inplace else None,
                              _phase(progress, "searching reordered and recomputing graphs"))
    else:
        front = search_of(graph, True)
        front = refine(graph, front, True) if inplace else front
    chosen = choose(front, budget, overhead)
    settings = {"include_input": include_input, "max_grid": max_grid, "strategy": strategy,
                "single_stage": single_stage, "inplace": inplace, "target": target, "rewrite": rewrite}
    planned = schedule_graph(chosen, graph)
    cost, baseline = plan_cost(planned, chosen.plan), plan_cost(graph, front.baseline.plan)
    front = replace(front, seconds=time.perf_counter() - t0)  # the printed time: loading, search, in place, costs
    nearby = front.cheaper_nearby(chosen) if budget is None and overhead is None else None
    return PlanResult(planned, chosen, cost, baseline, front, settings, graph if planned is not graph else None, nearby)


# --- redistribute ---------------------------------------------------------------------------------


@dataclass
class RedistributionResult(_Result):
    """What ``tinypatch redistribute`` prints: MCUNetV2 Table 1 figures before and after."""

    search: Redistribution

    @property
    def spec(self) -> NetSpec:
        return self.search.result.spec

    def save(self, path: str | os.PathLike[str]) -> None:
        from tinypatch.frontends.spec import save_spec

        save_spec(self.spec, path)

    def render(self, console: Console) -> None:
        from rich.table import Table

        r = self.search
        t = Table(title=f"redistribution at {r.grid}x{r.grid} patches, budget {r.budget / 1024:,.1f} kB analytic "
                        f"(input not counted), MACs and parameters within {r.tolerance:.0%}")
        for col in ("network", "patch", "patch-stage MACs", "patch-stage overhead [full tiles]", "MACs",
                    "overhead", "peak kB", "params"):
            t.add_column(col, justify="left" if col == "network" else "right")
        for label, step in (("before: " + r.original.spec.name, r.original), ("after", r.result)):
            f = step.figures
            t.add_row(label, f"{f.patch}x{f.patch}", f"{f.stage_macs / 1e6:.1f}M -> {f.stage_macs_patched / 1e6:.1f}M",
                      f"{f.stage_overhead:+.1%} [{f.stage_overhead_full_tiles:+.1%}]",
                      f"{f.macs / 1e6:.1f}M -> {f.macs_patched / 1e6:.1f}M", f"{f.overhead:+.1%}",
                      f"{f.peak / 1024:,.1f}", f"{f.params / 1e6:.2f}M")
        console.print(t)
        for n, step in enumerate(r.steps, 1):
            console.print(f"move {n}: {step.move} -> overhead {step.figures.overhead:+.1%}")
        if not r.steps:
            console.print("no move lowers the overhead within the constraints")
        console.print(self.spec.describe(), highlight=False)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        r = self.search
        return {"grid": r.grid, "budget": r.budget, "tolerance": r.tolerance,
                "before": {**asdict(r.original.figures), "overhead": r.original.figures.overhead},
                "after": {**asdict(r.result.figures), "overhead": r.result.figures.overhead},
                "moves": [s.move for s in r.steps], "spec": self.spec.to_dict()}

    def __repr__(self) -> str:
        o, f = self.search.original.figures, self.search.result.figures
        return f"<RedistributionResult overhead {o.overhead:+.1%} -> {f.overhead:+.1%}, {len(self.search.steps)} moves>"


def redistribute(spec: str | os.PathLike[str] | NetSpec, *, budget: int | str | None = None, grid: int = 4,
                 tolerance: float | str = 0.05, progress: Progress | None = None) -> RedistributionResult:
    """Redistribute the receptive field of ``spec`` (``tinypatch redistribute``): a zoo name built from
    a spec (MobileNetV2, MCUNet, MnasNet-A1, FBNet-A, ...), a spec ``.json`` (as ``-o`` writes), an
    MCUNet/ProxylessNAS config ``.json`` or a NetSpec.

    Moves (smaller kernels and fewer depthwise convs in the patch stage, blocks moved after it,
    larger kernels later) are searched greedily for the least MAC overhead of MCUNetV2's
    ``grid`` x ``grid`` patch schedule with the analytic peak (input not counted) within
    ``budget`` (default: the original's least peak at that grid) and total MACs and parameters
    within ``tolerance`` of the original.

    >>> redistribute("mbv2-w1.0-r224").search.result.figures.patch   # doctest: +SKIP
    63
    """
    from tinypatch.frontends import zoo
    from tinypatch.frontends.spec import NetSpec
    from tinypatch.planning.redistribute import redistribute as search

    if isinstance(spec, NetSpec):
        net = spec
    elif os.fspath(spec).lower().endswith(".json"):
        from tinypatch.frontends.mcunet_config import parse_config, read_json
        from tinypatch.frontends.spec import is_spec_dict, spec_from_dict

        path = os.fspath(spec)
        data = read_json(path)
        name = os.path.splitext(os.path.basename(path))[0]
        net = spec_from_dict(data, path) if is_spec_dict(data) else parse_config(data, name)
    else:
        net = zoo.spec_of(os.fspath(spec))
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise UsageError(f"the patch grid must be a positive integer, got {grid!r}")
    limit = None if budget is None else parse_size(budget)
    return RedistributionResult(search(net, grid, limit, parse_fraction(tolerance),
                                       progress=_phase(progress, "redistributing")))


# --- search ---------------------------------------------------------------------------------------


@dataclass
class SearchOutcome(_Result):
    """What ``tinypatch search`` prints and saves: the best network, its schedule, the history."""

    search: NasResult
    plan: Plan  # the best network's schedule
    planner: Schedule | None = None  # analytic searches: our planner's best schedule of the winner, placed arena

    @property
    def spec(self) -> NetSpec:
        return self.search.best.spec

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` (best spec as NetSpec JSON, its plan, figures, history) atomically."""
        from tinypatch.safeio import write_text

        write_text(path, self.to_json() + "\n")

    def save_spec(self, path: str | os.PathLike[str]) -> None:
        from tinypatch.frontends.spec import save_spec

        save_spec(self.spec, path)

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Pareto plot of the objective vs SRAM over every feasible network evaluated."""
        from tinypatch.report.plots import plot_pareto

        r = self.search
        c = r.constraints
        scale, unit = (1e6, "M") if r.settings["objective"] == "macs" else (1.0, "")
        front = [(peak, score / scale) for peak, score, _ in r.pareto()]
        best = (r.best.evaluation.peak, r.best.score / scale)
        what = "MACs (M)" if r.settings["objective"] == "macs" else f"objective ({r.settings['objective']}{unit})"
        latency = f"\n{_latency_limit(c, short=True)}" if c.max_insns is not None else ""
        plot_pareto(os.fspath(path), f"search: {len(r.scores)} feasible networks, SRAM <= {c.sram / 1024:g} kB "
                                     f"({c.convention}{'' if c.include_input else ', no input'}){latency}",
                    {"Pareto front of the networks evaluated": front}, {"best": [best]},
                    xlabel=f"SRAM of the schedule, {c.convention} (kB = 1024 B)", ylabel=what)

    def render(self, console: Console) -> None:
        from rich.table import Table

        r = self.search
        c, e = r.constraints, r.best.evaluation
        limits = [f"SRAM <= {c.sram / 1024:g} kB ({c.convention}, input {'counted' if c.include_input else 'not counted'})"]
        if c.flash is not None:
            limits.append(f"flash <= {c.flash / 1024:g} kB")
        if c.max_macs is not None:
            limits.append(f"executed MACs <= {c.max_macs / 1e6:g}M")
        if c.max_insns is not None:
            limits.append(_latency_limit(c))
        patches = "layer by layer only (p = 1)" if c.max_patches == 1 else f"p in 1..{c.max_patches}" + (
            f", {'up to ' * (c.stages > 1)}{c.stages} patch stage{'s' * (c.stages > 1)}"
            + (", recomputed or streamed" if c.stream and c.schedule_objective != "instructions" else "")
            if c.convention == "analytic" else "")
        by = "predicted instructions" if c.schedule_objective == "instructions" else "MACs"
        schedules = "" if c.target is None else f"; schedules by fewest {by} (cost model {c.target})"
        console.print(f"search: {r.space.name} space, {', '.join(limits)}, {patches}; seed {r.settings['seed']}, "
                      f"objective {r.settings['objective']}{schedules}", highlight=False)
        t = Table(title="best network per iteration")
        cols = ("iteration", "objective", "MACs", "SRAM kB", "flash kB", *(("instructions",) if c.target else ()),
                "schedule", "network")
        for col in cols:
            t.add_column(col, justify="left" if col in ("schedule", "network") else "right")
        for h in r.history:
            insns = (f"{h.get('insns', 0) / 1e6:.1f}M",) if c.target else ()
            t.add_row(str(h["iteration"]), f"{h['best_score']:.6g}", f"{h['macs'] / 1e6:.1f}M",
                      f"{h['peak'] / 1024:.1f}", f"{h['flash'] / 1024:.1f}", *insns, h["schedule"], h["best"])
        console.print(t)
        console.print(f"best: {e.macs / 1e6:.2f}M MACs ({e.schedule_macs / 1e6:.2f}M executed, {e.overhead:+.1%}), "
                      f"SRAM {e.peak:,} B = {e.peak / 1024:.1f} kB (layer by layer {e.layer_peak / 1024:.1f} kB), "
                      f"flash {e.flash:,} B = {e.flash / 1024:.1f} kB, schedule {e.schedule}"
                      + (f", predicted {_insns_text(e.insns, c)} on {c.target}" if c.target else ""), highlight=False)
        if c.convention == "analytic":
            p = self.planner
            console.print("our planner on the best network (placed arena, 16-byte aligned, in place): " + (
                f"{p.label}, {(p.peak or p.lower_bound) / 1024:.1f} kB, {p.macs / 1e6:.2f}M MACs executed"
                + (f", predicted {_insns_text(round(p.insns), c)}" if p.insns is not None else "") if p
                else f"no schedule fits {c.sram:,} B"), highlight=False)
        console.print(f"{len(r.evaluations)} networks evaluated ({len(r.scores)} feasible) from {r.proposals} "
                      f"proposals in {r.seconds:.1f} s", highlight=False)
        console.print(self.spec.describe(), highlight=False)

    def to_dict(self) -> dict[str, Any]:
        p = self.planner
        planner = None if p is None else {"schedule": p.label, "peak": p.peak or p.lower_bound, "macs": p.macs,
                                          "insns": p.insns, "plan": p.plan.to_dict()}
        return {**self.search.to_dict(), "plan": self.plan.to_dict(), "planner": planner,
                "pareto": [{"peak": p, "score": s, "fingerprint": f} for p, s, f in self.search.pareto()]}

    def __repr__(self) -> str:
        e = self.search.best.evaluation
        return f"<SearchOutcome best {e.macs / 1e6:.1f}M MACs at {e.peak:,} B ({e.schedule})>"


def search(*, sram: int | str, flash: int | str | None = None, max_macs: int | None = None,
           include_input: bool = True, convention: str = "analytic", max_patches: int = 4, stages: int = 2,
           space: SearchSpace | None = None, objective: Callable[[NetSpec], float] | None = None,
           population: int = 100, parents: int = 20, n_mutate: int = 50, n_crossover: int = 50,
           mutate_prob: float = 0.1, iterations: int = 30, seed: int = 0,
           resume: str | os.PathLike[str] | None = None, ray: bool = False, ray_address: str | None = None,
           workers: int | None = None, progress: bool = False, target: str | None = None,
           max_latency: int | str | None = None, clock: int | str | None = None,
           schedule_objective: str | None = None, stream: bool = True) -> SearchOutcome:
    """Joint architecture + schedule search (``tinypatch search``, MCUNetV2 §3.3).

    Evolution over ``space`` (default: MCUNetV2's on MCUNet's backbone) of networks whose best
    schedule meets ``sram`` (``convention`` "analytic": MCUNetV2's patch schedules, or "placed":
    our planner's placed arena), ``flash`` (weights + biases) and ``max_macs`` (executed MACs).
    ``objective(spec)`` scores feasible networks, higher is better (default: MACs, the TinyNAS
    proxy). ``max_patches=1`` is MCUNet's per-layer search; ``stages`` (analytic convention): up to
    this many patch stages before the per-layer part, 1 (MCUNetV2's) to 4, each of them recomputed p x p
    tiles or, with ``stream`` (default), also one of our planner's stream stages (row strips, columns
    streamed; ``stream=False``: MCUNetV2's tiles only). Candidates are evaluated on Ray when
    ``ray``, ``ray_address`` or ``workers`` is given (a local cluster of ``workers`` CPUs unless
    ``ray_address``), in process otherwise; the result does not depend on where. ``resume``: a
    JSON state file written after every iteration, continued when it exists. An analytic search
    also runs our planner on the winner (``planner``: its best schedule, placed arena).

    ``target`` (a fitted cost model, as ``plan --target``): every feasible network's schedule gets
    its predicted instructions; ``max_latency`` bounds them (:func:`parse_latency`: a count, or a
    time at ``clock``); ``schedule_objective`` picks each network's schedule by the fewest
    "instructions" (the default with a target) or "macs" (MCUNetV2's; the default without).
    """
    from tinypatch.nas.evaluate import Constraints, best_plan, planner_schedule
    from tinypatch.nas.evolution import evolve
    from tinypatch.nas.space import mcunet_space

    clock_hz = None if clock is None else parse_clock(clock)
    constraints = Constraints(parse_size(sram), None if flash is None else parse_size(flash), max_macs,
                              include_input, convention, max_patches, stages, target,
                              None if max_latency is None else parse_latency(max_latency, clock_hz),
                              schedule_objective or ("instructions" if target else "macs"), clock_hz, stream)
    kwargs = dict(population=population, parents=parents, n_mutate=n_mutate, n_crossover=n_crossover,
                  mutate_prob=mutate_prob, iterations=iterations, seed=seed, progress=progress, resume=resume)
    space = space or mcunet_space()
    from tinypatch.nas.executors import ray_executor

    with ray_executor(ray, ray_address, workers) as executor:
        result = evolve(space, constraints, objective, executor=executor, **kwargs)
    best = result.best
    planner = planner_schedule(best.spec, constraints) if convention == "analytic" else None
    return SearchOutcome(result, best_plan(best.spec, best.evaluation, constraints), planner)


def _insns_text(insns: int, c: Any) -> str:
    """'41.02M instructions (= 19.0 ms at 216 MHz)' (the time only with a clock)."""
    at = f" (= {insns / c.clock_hz * 1e3:.3g} ms at {c.clock_hz / 1e6:g} MHz)" if c.clock_hz else ""
    return f"{insns / 1e6:.2f}M instructions{at}"


def _latency_limit(c: Any, short: bool = False) -> str:
    """'predicted instructions <= 43.2M on cortex-m7 (20 ms at 216 MHz, 1 instruction per cycle)'."""
    at = (f" ({c.max_insns / c.clock_hz * 1e3:.3g} ms at {c.clock_hz / 1e6:g} MHz"
          f"{'' if short else ', 1 instruction per cycle'})" if c.clock_hz else "")
    return f"predicted instructions <= {c.max_insns / 1e6:.4g}M on {c.target}{at}"


# --- run ------------------------------------------------------------------------------------------

def _inputs(graph: Graph, value: InputLike, seed: int, preprocess: str, quantize_input: bool = False) -> Any:
    """Model inputs from a file path (image or .npy), arrays, or None (seeded random);
    ``quantize_input``: a .npy holds real values to quantize (else they must fit the input dtype)."""
    if value is None or isinstance(value, (str, os.PathLike)):
        from tinypatch.runtime.inputs import model_inputs

        return model_inputs(graph, None if value is None else os.fspath(value), seed, preprocess, quantize_input)
    return value


@dataclass
class ArithCheck:
    """How the two integer arithmetics compare on one input (``run --arith``)."""

    expected: str  # the arithmetic the model was made for (an .onnx model: onnxruntime's)
    differ: int  # output bytes on which tflite and onnxruntime arithmetic differ
    total: int  # output bytes
    onnxruntime_differ: int | None = None  # .onnx models: --arith onnxruntime vs onnxruntime itself
    onnxruntime_version: str | None = None

    def render(self, console: Console, chosen: str) -> None:
        console.print(f"arithmetic: {chosen} (model expects {self.expected}); tflite vs onnxruntime arithmetic: "
                      f"{self.differ:,} of {self.total:,} output bytes differ")
        if self.onnxruntime_differ is not None:
            verdict = ("[green]byte-identical[/]" if self.onnxruntime_differ == 0
                       else f"[red]{self.onnxruntime_differ:,} bytes differ[/]")
            console.print(f"--arith onnxruntime vs onnxruntime {self.onnxruntime_version}: {verdict}")


def _arith_check(graph: Graph, inputs: Any) -> ArithCheck:
    """Run ``graph`` whole-image in both arithmetics (and, imported from an .onnx file, in onnxruntime)."""
    import numpy as np

    from tinypatch.runtime.executor import run as run_whole

    outs = {}
    for arith in ARITHS:
        g = graph.copy()
        g.meta["arith"] = arith
        outs[arith] = run_whole(g, inputs)
    check = ArithCheck(graph.meta.get("expected_arith", "tflite"),
                       sum(int((outs["tflite"][n] != outs["onnxruntime"][n]).sum()) for n in graph.outputs),
                       sum(int(outs["tflite"][n].size) for n in graph.outputs))
    path = graph.meta.get("onnx", {}).get("path")
    if path and os.path.isfile(path):
        import onnxruntime

        from tinypatch.frontends.onnx_reference import onnxruntime_outputs

        ref = onnxruntime_outputs(path, graph, inputs)
        check.onnxruntime_differ = sum(int((outs["onnxruntime"][n] != np.asarray(ref[n])).sum())
                                       for n in graph.outputs)
        check.onnxruntime_version = onnxruntime.__version__
    return check


def _duration(seconds: float) -> str:
    """A time as a person reads it: milliseconds below a second, else seconds."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass(repr=False)
class RunResult(_Result):
    """A plan executed beside whole-image inference (``tinypatch run``)."""

    model: str
    outputs: dict[str, np.ndarray]  # the planned run's outputs, by graph output name
    reference: dict[str, np.ndarray]  # whole-image outputs
    exact: bool  # byte-identical (values and dtypes)
    arena_high_water: int  # measured in the simulated arena: the highest byte read or written, aligned
    touched_high_water: int  # the highest byte read or written, unaligned
    arena_size: int  # the planned peak
    include_input: bool
    whole_seconds: float
    plan_seconds: float
    arith: str = "tflite"  # the kernels' integer arithmetic: tflite or onnxruntime
    arith_check: ArithCheck | None = None  # tflite vs onnxruntime arithmetic (and vs onnxruntime itself)
    mixed: bool = False  # run under a precision plan (per-patch mixed precision): int8 is the comparison

    @property
    def differ(self) -> int:
        """Output bytes on which the planned run differs from whole-image int8 inference."""
        return sum(int((self.outputs[n] != self.reference[n]).sum()) for n in self.outputs)

    @property
    def ok(self) -> bool:
        """Exact (a mixed-precision run: whatever it differs by is the precision plan's doing), the
        arena never grew past the planned peak and, run in onnxruntime's arithmetic on an .onnx
        model, equal to onnxruntime itself (``tinypatch run`` exits 0)."""
        ort_differs = self.arith == "onnxruntime" and self.arith_check is not None and \
            bool(self.arith_check.onnxruntime_differ)
        return (self.exact or self.mixed) and self.arena_high_water <= self.arena_size and not ort_differs

    def render(self, console: Console) -> None:
        """Print the outputs, timings, verdict and arena figures, as ``tinypatch run`` does."""
        import numpy as np

        if self.arith_check is not None:
            self.arith_check.render(console, self.arith)
        for n, value in self.outputs.items():
            console.print(f"output {n}: {np.array2string(value.ravel()[:16], separator=', ')}"
                          f"{' ...' if value.size > 16 else ''}", highlight=False)
        if self.mixed:
            total = sum(v.size for v in self.outputs.values())
            verdict = f"mixed precision: {self.differ:,} of {total:,} output bytes differ from int8"
        else:
            verdict = "[green]byte-identical[/]" if self.exact else "[red]OUTPUTS DIFFER[/]"
        ratio = f"{self.plan_seconds / self.whole_seconds:.1f}x; " if self.whole_seconds > 0 else ""
        console.print(f"whole-image {_duration(self.whole_seconds)}, planned {_duration(self.plan_seconds)} ({ratio}"
                      f"each builds its executor, then runs once); {verdict}")
        console.print(f"arena: measured high-water mark {self.arena_high_water:,} B (bytes read or written up to "
                      f"{self.touched_high_water:,}, aligned), planned peak {self.arena_size:,} B "
                      f"(input {'in' if self.include_input else 'outside'} the arena)")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "exact": self.exact, "ok": self.ok, "arena_high_water": self.arena_high_water,
                "touched_high_water": self.touched_high_water, "arena_size": self.arena_size,
                "include_input": self.include_input,
                "whole_seconds": self.whole_seconds, "plan_seconds": self.plan_seconds, "arith": self.arith,
                "mixed": self.mixed, "differ": self.differ,
                "arith_check": None if self.arith_check is None else asdict(self.arith_check),
                "outputs": {n: v.tolist() for n, v in self.outputs.items()}}

    def __repr__(self) -> str:
        return (f"RunResult(model={self.model!r}, exact={self.exact}, arena_high_water={self.arena_high_water:,} B, "
                f"arena_size={self.arena_size:,} B)")


def run(model: ModelLike, plan: PlanLike, *, input: InputLike = None, seed: int = 0,
        preprocess: str = "auto", quantize_input: bool = False, arith: str = "tflite",
        precision: PrecisionPlan | str | os.PathLike[str] | None = None) -> RunResult:
    """Run ``model`` whole-image and under ``plan`` in a simulated arena; compare byte for byte
    (``tinypatch run``). ``input``: an image or ``.npy`` path, array(s), or None for a seeded
    random input; ``preprocess``: how image pixels become the input (see ``tinypatch run --help``).
    ``arith``: the kernels' integer arithmetic, ``tflite`` (fixed-point multipliers, what the C
    generator uses) or ``onnxruntime`` (float scales, byte for byte onnxruntime's CPU kernels);
    when it or the model's expected arithmetic is not tflite, ``arith_check`` counts the output
    bytes the two differ on (and, for an ``.onnx`` file, compares with onnxruntime itself).
    ``precision``: a precision plan (``tinypatch quantize``) to run the patch stages at per-patch
    mixed precision; the outputs are then compared with int8, not required to equal it.

    >>> r = run("mcunet-in0", plan("mcunet-in0", sram="24KB"))
    >>> r.exact and r.arena_high_water <= r.arena_size
    True

    Raises PlanError (a plan of another model, or malformed), InputError (unreadable input).
    """
    import numpy as np

    from tinypatch.planning.check import check_plan
    from tinypatch.planning.rewrite import rewritten
    from tinypatch.runtime.executor import run as run_whole
    from tinypatch.runtime.plan_executor import PlanExecutor

    if arith not in ARITHS:
        raise UsageError(f"arith must be one of {', '.join(ARITHS)}, got {arith!r}")
    from tinypatch.planning.precision import PrecisionPlan

    graph = load(model)
    p = _as_plan(plan)
    planned = rewritten(graph, p)  # the graph the stages index; the reference runs the model as loaded
    check_plan(planned, p)
    if precision is not None and not isinstance(precision, PrecisionPlan):
        precision = PrecisionPlan.load(os.fspath(precision))
    if precision is not None:
        precision.check(planned, p)
    inputs = _inputs(graph, input, seed, preprocess, quantize_input)
    check = None
    if arith != "tflite" or graph.meta.get("expected_arith", "tflite") != "tflite":
        check = _arith_check(graph, inputs)
    graph, planned = graph.copy(), planned.copy()
    graph.meta["arith"] = planned.meta["arith"] = arith
    t0 = time.perf_counter()
    whole = run_whole(graph, inputs)
    t1 = time.perf_counter()
    patched = PlanExecutor(planned, p, precision)(inputs)
    t2 = time.perf_counter()
    exact = all(np.array_equal(whole[n], patched.outputs[n]) and whole[n].dtype == patched.outputs[n].dtype
                for n in graph.outputs)
    return RunResult(graph.name, {n: patched.outputs[n] for n in graph.outputs}, {n: whole[n] for n in graph.outputs},
                     exact, patched.arena_high_water, patched.touched_high_water, patched.arena_size, p.include_input,
                     t1 - t0, t2 - t1, arith, check, precision is not None)


# --- quantize (QuantMCU-style per-patch mixed precision) ------------------------------------------

@dataclass(repr=False)
class QuantizeReport(_Result):
    """A precision plan calibrated on one set of inputs and measured on held-out ones (``tinypatch quantize``)."""

    model: str
    plan: Plan
    result: QuantizeResult
    evaluation: Fidelity
    memory: PrecisionMemory

    @property
    def precision(self) -> PrecisionPlan:
        return self.result.precision

    @property
    def bitops_reduction(self) -> float:
        b8, bm = self.evaluation.bitops
        return b8 / bm if bm else float("inf")

    def save(self, path: str | os.PathLike[str]) -> None:
        self.precision.save(os.fspath(path))

    def render(self, console: Console) -> None:
        from rich.table import Table

        ev, notes = self.evaluation, self.precision.notes
        console.print(f"outlier rule: {notes['outlier_rule']} (scope {self.precision.scope!r}); "
                      f"step {notes.get('step', 'static')}; lambda {notes['lambda']}; bitwidths {notes['bitwidths']}; "
                      f"{notes['calibration_inputs']} calibration inputs; moves kept by {notes.get('accept', 'agreement')}",
                      highlight=False)
        table = Table(title=f"per stage, measured on {ev.n} held-out inputs")
        for col in ("stage", "ops", "outlier patches", "bitwidths (maps in order)", "BitOPs int8", "BitOPs mixed",
                    "reduction"):
            table.add_column(col, justify="left" if col.startswith("bit") else "right")
        for sp in self.precision.stages:
            s = self.plan.stages[sp.stage]
            c = ev.counts[s.start]
            table.add_row(str(sp.stage), f"[{s.start}:{s.end}]", f"{c.outlier_tiles / max(c.tiles, 1):.1%}",
                          " ".join(str(m.bits) for m in sp.maps), f"{c.bitops_int8 / max(ev.n, 1):,.0f}",
                          f"{c.bitops / max(ev.n, 1):,.0f}", f"{c.bitops_int8 / max(c.bitops, 1):.2f}x")
        console.print(table)
        b8, bm = ev.bitops
        console.print(f"patch stages: BitOPs {b8 / max(ev.n, 1):,.0f} -> {bm / max(ev.n, 1):,.0f} per input "
                      f"({self.bitops_reduction:.2f}x fewer)", highlight=False)
        console.print(f"fidelity vs int8 on {ev.n} held-out inputs: top-1 agreement {ev.agreement:.2%}, "
                      f"mean |output change| {ev.mean_abs_change:.5f}, flip risk {ev.flip_risk:.4f}", highlight=False)
        console.print(f"arena: {self.memory.worst_case:,} B sized for the worst case (every patch an outlier); "
                      f"{self.memory.all_low_bit:,} B if every lowered tile buffer were packed", highlight=False)

    def to_dict(self) -> dict[str, Any]:
        ev = self.evaluation
        return {"model": self.model, "precision": json.loads(self.precision.to_json()),
                "evaluation": {"n": ev.n, "agreement": ev.agreement, "mean_abs_change": ev.mean_abs_change,
                               "flip_risk": ev.flip_risk,
                               "bitops_int8": ev.bitops[0], "bitops_mixed": ev.bitops[1],
                               "stages": {str(k): {"tiles": c.tiles, "outlier_tiles": c.outlier_tiles,
                                                   "bitops_int8": c.bitops_int8, "bitops": c.bitops}
                                          for k, c in ev.counts.items()}},
                "memory": {"worst_case": self.memory.worst_case, "all_low_bit": self.memory.all_low_bit},
                "search": [vars(s) for s in self.result.steps]}


def _calibration_inputs(graph: Graph, calib: InputLike, n: int, split: str, seed: int, preprocess: str) -> list[Any]:
    """Model inputs for calibration/evaluation: None = ``n`` built-in photo crops of ``split``;
    a folder of images / .npy files; one .npy holding a batch; or arrays."""
    import numpy as np

    from tinypatch.errors import InputError
    from tinypatch.runtime.crops import crops
    from tinypatch.runtime.inputs import MAX_NPY_BYTES, exact_cast, load_input

    t = graph.tensors[graph.inputs[0]]
    if calib is None:
        return list(crops(t, split, n, seed, preprocess))
    if isinstance(calib, (str, os.PathLike)):
        path = os.fspath(calib)
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith((".npy", ".png", ".bmp", ".jpg", ".jpeg")))
            if not files:
                raise InputError(f"no images or .npy files in {path}")
            return [load_input(f, t, preprocess) for f in files]
        if path.lower().endswith(".npy") and os.path.exists(path):
            try:
                x = np.load(path, mmap_mode="r", allow_pickle=False)  # header first, never unpickled
            except (ValueError, OSError, EOFError) as exc:
                raise InputError(f"cannot read {path} as .npy: {exc}") from None
            if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf" or not x.size or x.size % t.size:
                raise InputError(f"{path} must hold a whole number of {t.shape} numeric inputs")
            if x.nbytes > MAX_NPY_BYTES:
                raise InputError(f"{path} holds {x.nbytes:,} B, over the {MAX_NPY_BYTES:,} B limit")
            return list(exact_cast(np.array(x).reshape(-1, *t.shape), t, path))
        return [load_input(path, t, preprocess)]
    if isinstance(calib, Mapping):
        raise UsageError("calibration inputs: a path, an array or a list of arrays")
    return list(calib)


def quantize(model: ModelLike, plan: PlanLike, *, calib: InputLike = None, n_calib: int = 64,
             evaluate: InputLike = None, n_eval: int = 200, quantile: float = 0.9, lam: float = 0.5,
             bitwidths: Sequence[int] = (8, 6, 4, 2), scope: str = "rest", min_agreement: float = 1.0,
             max_change: float = 0.25, max_margin_loss: float = 1.0, accept: str = "agreement",
             max_entropy_loss: float = 0.1, step: str = "static", max_flip_risk: float = 1.0,
             outliers: bool = True, uniform_first: bool = False,
             preprocess: str = "auto", seed: int = 0, progress: Progress | None = None) -> QuantizeReport:
    """Calibrate a per-patch mixed-precision plan (VDPC + VDQS) for ``plan`` and measure it
    against int8 on held-out inputs (``tinypatch quantize``). ``calib`` / ``evaluate``: None for
    the built-in photo crops (``n_calib`` / ``n_eval``, disjoint photos), a folder of images or
    .npy files, a batch .npy, or arrays. ``accept``: what keeps a search move, the calibration
    run's agreement ("agreement", ours) or the entropy proxy alone ("entropy": Omega <=
    ``max_entropy_loss``, the training-free reading of QuantMCU). ``step``: the low-bit maps' shift,
    one per map ("static") or chosen at run time from the values of each patch ("patch") or of
    each pixel of it ("pixel"). ``max_flip_risk``: with "agreement", the estimated share of inputs
    whose top-1 flips a move may reach (:func:`tinypatch.runtime.quantmcu.flip_risk`; 1: off).
    ``outliers=False``: no outlier patches (thresholds 255), each block takes its own step.
    ``uniform_first``: before the per-map moves, lower all maps together one step at a time.
    See :mod:`tinypatch.runtime.quantmcu`.

    Raises PlanError (no tiled stage, a plan of another model), InputError, UsageError (options).
    """
    from tinypatch.kernels.lowbit import BITWIDTHS, STEPS
    from tinypatch.planning.check import check_plan
    from tinypatch.planning.precision import SCOPES, precision_memory
    from tinypatch.planning.rewrite import rewritten
    from tinypatch.runtime.quantmcu import QuantizeOptions, measure
    from tinypatch.runtime.quantmcu import quantize as search

    if not 0 < quantile <= 1 or not 0 <= lam <= 1 or not 0 <= min_agreement <= 1 or not max_change >= 0 \
            or not 0 <= max_entropy_loss <= 1 or not 0 <= max_margin_loss <= 1 or not 0 <= max_flip_risk <= 1:
        raise UsageError("quantile must be in (0, 1], lambda, min-agreement, max-margin-loss, max-flip-risk and "
                         "max-entropy-loss in [0, 1], max-change >= 0")
    if n_calib < 1 or n_eval < 1:
        raise UsageError("n_calib and n_eval must be positive")
    if accept not in ("agreement", "entropy"):
        raise UsageError(f"accept must be 'agreement' or 'entropy', got {accept!r}")
    if step not in STEPS:
        raise UsageError(f"step must be one of {', '.join(STEPS)}, got {step!r}")
    if scope not in SCOPES or not bitwidths or any(isinstance(b, bool) or b not in BITWIDTHS for b in bitwidths):
        raise UsageError(f"scope one of {SCOPES}; bitwidths from {', '.join(map(str, BITWIDTHS))}")
    p = _as_plan(plan)
    graph = rewritten(load(model), p)  # the graph the plan's stages index
    check_plan(graph, p)
    if len(graph.inputs) != 1:
        raise UsageError("quantize calibrates single-input models")
    cal = _calibration_inputs(graph, calib, n_calib, "calibration", seed, preprocess)
    ev = _calibration_inputs(graph, evaluate, n_eval, "evaluation", seed + 1, preprocess)
    opts = QuantizeOptions(quantile, lam, tuple(bitwidths), scope, min_agreement, max_change, accept=accept,
                           max_margin_loss=max_margin_loss, max_entropy_loss=max_entropy_loss, step=step,
                           max_flip_risk=max_flip_risk, outliers=outliers,
                           uniform_first=uniform_first)
    tick = _phase(progress, "searching bitwidths")
    steps = [0]

    def log(_step: Any) -> None:
        steps[0] += 1
        if tick:
            tick(steps[0], 0)

    result = search(graph, p, cal, opts, log)
    if progress:
        progress("measuring held-out inputs", 0, len(ev))
    fid, _ = measure(graph, p, result.precision, ev)
    return QuantizeReport(graph.name, p, result, fid, precision_memory(graph, p, result.precision))


# --- codegen --------------------------------------------------------------------------------------

@dataclass(repr=False)
class CodegenResult(_Result):
    """A generated C project and, after ``report=True``, what building and running it gave."""

    project: Project
    outputs: dict[str, np.ndarray] | None = None  # host build's outputs (report on the host)
    cost: McuCost | None = None  # flash, RAM, stack, instructions (report on a Cortex-M target)
    exact: bool | None = None  # outputs byte-identical to the Python executor; None: not built
    insncount: bool = False  # instruction counts measured (the qemu-insncount plugin was found)
    predicted: float | None = None  # instructions the target's fitted cost model predicts (Cortex-M report)

    @property
    def ok(self) -> bool:
        """Not built, or built and exact (``tinypatch codegen`` exits 0)."""
        return self.exact is not False

    def render(self, console: Console) -> None:
        """Print what ``tinypatch codegen`` prints (the project, then the --report figures)."""
        p = self.project
        if p.plan.inplace:
            console.print(f"{len(p.plan.inplace)} layer-by-layer ops run in place (--no-inplace: none)")
        console.print(f"C project written to {p.path}: arena {p.arena_bytes:,} B, constants "
                      f"{p.const_bytes:,} B, {p.macs:,} MACs (`make -C {p.path} help` lists its targets)")
        if p.arena_bytes > p.sram_budget:
            console.print(f"warning: the arena ({p.arena_bytes:,} B) exceeds the SRAM budget ({p.sram_budget:,} B): "
                          f"a Cortex-M build fails to link (region `RAM' overflowed) and the host build does not "
                          f"check it; plan for the budget with `tinypatch plan --sram`", highlight=False)
        if self.exact is not None:
            from tinypatch.report.codegen_report import print_report

            print_report(console, p, self.cost, self.outputs, bool(self.exact), bool(self.insncount), self.predicted)

    def to_dict(self) -> dict[str, Any]:
        p = self.project
        return {"path": str(p.path), "model": p.model, "target": p.target, "arena_bytes": p.arena_bytes,
                "const_bytes": p.const_bytes, "macs": p.macs, "base_macs": p.base_macs,
                "sram_budget": p.sram_budget, "stack": p.stack, "io_bytes": p.io_bytes, "plan": p.plan.to_dict(),
                "exact": self.exact, "cost": None if self.cost is None else self.cost.to_dict(),
                "predicted_instructions": self.predicted,
                "outputs": None if self.outputs is None else {n: v.tolist() for n, v in self.outputs.items()}}

    def __repr__(self) -> str:
        p = self.project
        built = "" if self.exact is None else f", exact={self.exact}"
        return (f"CodegenResult(path={str(p.path)!r}, target={p.target!r}, arena={p.arena_bytes:,} B, "
                f"constants={p.const_bytes:,} B, macs={p.macs:,}{built})")


def codegen(model: ModelLike, output: str | os.PathLike[str], *, plan: PlanLike | None = None, target: str = "host",
            sram: int | str | None = None, stack: int | str | None = None, include_input: bool = True,
            inplace: bool = True, report: bool = False, input: InputLike = None, seed: int = 0,
            preprocess: str = "auto", quantize_input: bool = False, force: bool = False,
            progress: Progress | None = None,
            precision: PrecisionPlan | str | os.PathLike[str] | None = None) -> CodegenResult:
    """Write a self-contained C99 project for ``model`` under ``plan`` (default layer by layer)
    into the folder ``output`` (``tinypatch codegen``). ``target``: host, cortex-m4, cortex-m7 or
    cortex-m55; ``sram``: the RAM region's budget (default the planned arena); ``stack``: bytes
    reserved for the stack; ``include_input``: without a plan, whether the input lives in the arena.
    ``report=True`` also builds and runs it (host: ASan/UBSan; Cortex-M: QEMU) on ``input`` and
    checks the outputs against the Python executor. A folder holding files an earlier codegen did
    not write is refused unless ``force``; the project appears as a whole or not at all.
    ``precision``: a precision plan for ``plan`` (``tinypatch quantize``): the patch stages run at
    per-patch mixed precision, and ``report`` compares with the plan executor under it.

    >>> c = codegen("mcunet-in0", "build/in0", report=True)   # doctest: +SKIP
    >>> c.exact, c.project.arena_bytes                          # doctest: +SKIP

    Raises PlanError (plan of another model, unknown target), ToolchainError (build or run failed).
    """
    from tinypatch.codegen import generate
    from tinypatch.codegen.targets import DEFAULT_STACK
    from tinypatch.planning.plan import Plan
    from tinypatch.errors import PlanError
    from tinypatch.planning.precision import PrecisionPlan
    from tinypatch.planning.rewrite import rewritten

    graph = load(model)
    if precision is not None and plan is None:
        raise PlanError("a precision plan is calibrated for a patch plan: give the plan too (--plan)")
    if precision is not None and not isinstance(precision, PrecisionPlan):
        precision = PrecisionPlan.load(os.fspath(precision))
    p = Plan.layer_by_layer(graph, include_input=include_input) if plan is None else _as_plan(plan)
    planned = rewritten(graph, p)  # the graph the plan's stages index (same inputs and outputs as the model)
    project = generate(planned, p, os.fspath(output), target, None if sram is None else parse_size(sram),
                       DEFAULT_STACK if stack is None else parse_size(stack), inplace, force, precision)
    result = CodegenResult(project)
    if report:
        _build_and_check(graph, result, _inputs(graph, input, seed, preprocess, quantize_input), progress, precision)
    return result


def from_torch(module: Any, example_input: Any, calibration: Any = None, *,
               c_project: str | os.PathLike[str] | None = None, target: str = "host", **kwargs: Any) -> Any:
    """PyTorch module -> ONNX -> onnxruntime int8 static quantization -> IR, in one call
    (``tinypatch import-torch`` for saved programs). ``kwargs`` go to
    :func:`tinypatch.frontends.pytorch.from_torch` (``quant_format``: QDQ or QOperator;
    ``workdir``). With ``c_project`` (a folder) the imported model's layer-by-layer C project is
    written there too. Returns a ``TorchImport``: ``graph``, the ONNX file, and ``steps`` (what
    each step did and how long it took).

    >>> r = from_torch(net, torch.randn(1, 3, 32, 32), c_project="build/net")   # doctest: +SKIP
    >>> r.graph, [s["step"] for s in r.steps]                                    # doctest: +SKIP

    Raises ModelLoadError (torch/onnx missing, export or quantization failed, unsupported ops).
    """
    from tinypatch.frontends.pytorch import from_torch as _from_torch

    result = _from_torch(module, example_input, calibration, **kwargs)
    if c_project is not None:
        t = time.perf_counter()
        project = codegen(result.graph, c_project, target=target).project
        result.steps.append(dict(step="codegen", seconds=time.perf_counter() - t, file=str(project.path),
                                 what=f"C project: arena {project.arena_bytes:,} B, constants "
                                      f"{project.const_bytes:,} B, {project.macs:,} MACs"))
    return result


def import_torch(model: str | os.PathLike[str], output: str | os.PathLike[str], *,
                 input_shape: Sequence[int] | None = None, calibration: str | os.PathLike[str] | None = None,
                 quant_format: str = "QDQ") -> Any:
    """A saved PyTorch model (``.pt2`` torch.export program, or TorchScript with ``input_shape``)
    quantized with onnxruntime and written to ``output`` as an int8 ``.onnx`` file, atomically
    (``tinypatch import-torch``). ``calibration``: a ``.npy`` of float32 samples (default: the
    example input). Returns the ``TorchImport`` (graph, steps)."""
    import tempfile

    import numpy as np

    from tinypatch.errors import InputError
    from tinypatch.frontends.pytorch import from_torch as _from_torch
    from tinypatch.frontends.pytorch import load_torch_file
    from tinypatch.safeio import write_bytes

    module, example = load_torch_file(os.fspath(model), None if input_shape is None else tuple(input_shape))
    samples = None
    if calibration is not None:
        try:
            samples = list(np.load(os.fspath(calibration)).astype(np.float32))
        except (OSError, ValueError) as e:
            raise InputError(f"calibration {os.fspath(calibration)}: not a readable .npy array ({e})") from None
    with tempfile.TemporaryDirectory() as tmp:
        result = _from_torch(module, example, samples, quant_format=quant_format, workdir=tmp)
        with open(result.onnx_path, "rb") as f:
            write_bytes(output, f.read())
    result.onnx_path = os.fspath(output)
    return result


def quantize_float(model: str | os.PathLike[str], calibration: str | os.PathLike[str],
                   output: str | os.PathLike[str]) -> Graph:
    """A float ``.onnx`` CNN calibrated on ``calibration`` (a ``.npy`` of float32 samples, with or
    without the batch axis) and written to ``output`` as int8 QDQ in TFLite's scheme (per-tensor
    asymmetric activations, per-channel symmetric weights, int32 biases; ``tinypatch
    quantize-float``). Returns the imported int8 graph."""
    import numpy as np

    from tinypatch.errors import InputError
    from tinypatch.frontends.onnx import load_onnx, read_onnx_model
    from tinypatch.frontends.onnx_quantize import quantize_float_onnx

    path = os.fspath(model)
    onnx_model = read_onnx_model(path)
    inits = {t.name for t in onnx_model.graph.initializer}
    inputs = [i for i in onnx_model.graph.input if i.name not in inits]
    if not inputs:
        raise InputError(f"{path}: the model has no input")
    shape = tuple(d.dim_value for d in inputs[0].type.tensor_type.shape.dim)
    try:
        data = np.load(os.fspath(calibration)).astype(np.float32)
    except (OSError, ValueError) as e:
        raise InputError(f"calibration {os.fspath(calibration)}: not a readable .npy array ({e})") from None
    if data.shape[1:] == shape[1:] and shape[:1] == (1,):
        data = data[:, None]
    if data.shape[1:] != shape:
        raise InputError(f"calibration samples of shape {data.shape[1:]}, the model input is {shape}")
    quantize_float_onnx(path, list(data), os.fspath(output))
    return load_onnx(os.fspath(output))


def _build_and_check(graph: Graph, result: CodegenResult, inputs: Any, progress: Progress | None,
                     precision: PrecisionPlan | None = None) -> None:
    """Build and run ``result.project`` on its target; fill in its outputs / cost and verdict
    (against the plan executor under ``precision`` when given, else the whole-image executor)."""
    import tempfile
    from pathlib import Path

    from tinypatch.assets import assets_dir
    from tinypatch.codegen import toolchain
    from tinypatch.codegen.report import measure, outputs_equal
    from tinypatch.errors import ToolchainError
    from tinypatch.planning.latency import cost_model, fitted_targets
    from tinypatch.planning.rewrite import rewritten

    project = result.project
    missing = toolchain.missing_tools(project.target)
    if missing:
        raise ToolchainError(f"cannot build for {project.target}: {missing}")
    reference = None
    if precision is not None:
        from tinypatch.runtime.plan_executor import PlanExecutor

        reference = PlanExecutor(graph, project.plan, precision)(inputs).outputs
    if project.target == "host":
        _phase(progress, "building and running on the host (ASan/UBSan)")
        toolchain.make(project.path, "host-check")
        result.outputs = toolchain.run_host(project.path, graph, inputs, "model_host_check")
        result.exact = outputs_equal(graph, result.outputs, inputs, reference)
        return
    _phase(progress, f"building and running on {project.target} (QEMU)")
    with tempfile.TemporaryDirectory() as tmp:
        assets = assets_dir()
        plugin = toolchain.build_insncount(assets, Path(tmp)) if assets is not None else None
        result.cost = measure(graph, project, inputs, plugin, reference=reference)
    result.exact, result.insncount = result.cost.exact, plugin is not None
    if project.target in fitted_targets():
        result.predicted = cost_model(project.target).predict(rewritten(graph, project.plan), project.plan)


# --- nas: supernet training and export to the board -------------------------------------------------

def _nas(module: str) -> Any:
    """Import ``tinypatch.nas.<module>`` (they need PyTorch); UsageError naming the extra when absent."""
    import importlib

    try:
        return importlib.import_module(f"tinypatch.nas.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch":
            raise UsageError("supernet training and export need PyTorch: pip install 'tinypatch[nas]'") from None
        raise


def _log(progress: Progress | None) -> Callable[[str], None] | None:
    return None if progress is None else (lambda line: progress(line, 0, 0))


@dataclass(repr=False)
class NasTrainResult(_Result):
    """A trained weight-sharing supernet (``tinypatch nas train``): per-epoch loss and held-out
    accuracy of the largest and smallest subnets (BatchNorm re-calibrated)."""

    trained: Any  # tinypatch.nas.supernet.TrainedSupernet
    path: str | None = None

    def save(self, path: str | os.PathLike[str]) -> None:
        self.trained.save(path)
        self.path = os.fspath(path)

    def render(self, console: Console) -> None:
        from rich.table import Table

        t, c = self.trained, self.trained.config
        console.print(f"data: {t.data.get('source', '?')}, {len(t.train.y)} training / {len(t.holdout.y)} held-out "
                      f"images, {c.num_classes} classes; space: resolutions {list(c.resolutions)}, stem "
                      f"{c.stem_channels}, MB1 {c.first_channels}, stages {[list(s[:2]) for s in c.stages]}, "
                      f"depths {[list(s[2]) for s in c.stages]}, kernels {list(c.kernels)}, expands "
                      f"{list(c.expands)}, widths {list(c.widths)}", highlight=False)
        k = t.micro_batches
        table = Table(title=f"supernet training (sandwich rule{f', {k} micro-batches a step' if k > 1 else ''}; "
                            "held-out accuracy after BatchNorm re-calibration)")
        for col in ("epoch", "loss", "largest", "smallest", "time s"):
            table.add_column(col, justify="right")
        for row in t.history:
            table.add_row(str(row["epoch"]), f"{row['loss']:.3f}", f"{row['largest']:.1%}", f"{row['smallest']:.1%}",
                          f"{row['seconds']:.0f}")
        console.print(table)

    def to_dict(self) -> dict[str, Any]:
        t = self.trained
        return {"config": t.config.to_dict(), "data": t.data, "history": t.history, "seconds": t.seconds,
                "micro_batches": t.micro_batches, "path": self.path}


def accuracy_objective(supernet: str | os.PathLike[str] | None = None, data: str | os.PathLike[str] | None = None, *,
                       epochs: int = 10, calib_batches: int = 20, seed: int = 0, micro_batches: int | None = None,
                       ray: bool = False, ray_address: str | None = None, workers: int | None = None,
                       progress: Progress | None = None) -> tuple[Callable[[NetSpec], float], SearchSpace]:
    """The search objective from a supernet (``tinypatch search --data / --supernet``) and the space of
    its subnets: the checkpoint ``supernet`` if it exists (its recorded data, or ``data``), else a
    supernet trained on ``data`` for ``epochs`` (saved to ``supernet`` when given; ``micro_batches``,
    ``ray``, ``ray_address``, ``workers``: as :func:`nas_train`). The objective is a subnet's
    held-out accuracy after BatchNorm re-calibration on ``calib_batches`` x 64 training images.
    Needs PyTorch."""
    sn = _nas("supernet")
    if supernet is not None and os.path.exists(supernet):
        trained = sn.load_supernet(os.fspath(supernet), None if data is None else _nas("data").load_data(os.fspath(data)))
    elif data is None:
        raise UsageError(f"supernet checkpoint not found: {supernet}; give --data to train one")
    else:
        trained = nas_train(data, epochs=epochs, seed=seed, micro_batches=micro_batches, ray=ray,
                            ray_address=ray_address, workers=workers, progress=progress).trained
        if supernet is not None:
            trained.save(supernet)
    return sn.SupernetAccuracy(trained, calib_batches=calib_batches, seed=seed), trained.config.to_space()


def nas_train(data: str | os.PathLike[str], *, epochs: int = 10, resolutions: Sequence[int] | None = None,
              holdout: float | str = 0.2, seed: int = 0, batch_size: int = 64, config: Any = None,
              micro_batches: int | None = None, ray: bool = False, ray_address: str | None = None,
              workers: int | None = None, progress: Progress | None = None) -> NasTrainResult:
    """Train a weight-sharing supernet (MCUNet's space: kernel 3/5/7, expand 3/4/6, width
    0.5/0.75/1, depth 2/3/4) on ``data``: ``digits`` / ``digits:64`` (scikit-learn's digits,
    upscaled), a ``.npz`` with ``x`` and ``y``, or an image folder (one subfolder per class).
    ``holdout`` of every class is kept for measuring accuracy. ``config``: a
    :class:`tinypatch.nas.supernet.SupernetConfig` or its JSON file (default: a small space for
    32x32 images); ``resolutions`` overrides its resolutions. ``save()`` writes the checkpoint.

    Data-parallel: each step is ``micro_batches`` micro-batches whose gradients are summed in a
    fixed order (default: 1 in process, the cluster's CPUs on Ray); they run on Ray when ``ray``,
    ``ray_address`` or ``workers`` is given (a local cluster of ``workers`` CPUs unless
    ``ray_address``), else in process. The weights depend on the seed and ``micro_batches`` only:
    in process and on Ray they are the same bits. Needs PyTorch.
    """
    sn = _nas("supernet")
    if isinstance(config, (str, os.PathLike)):
        from tinypatch.frontends.mcunet_config import read_json

        try:
            config = sn.SupernetConfig.from_dict(read_json(os.fspath(config)))
        except (TypeError, ValueError, KeyError) as exc:
            raise UsageError(f"{config}: not a supernet config ({exc})") from None
    if micro_batches is not None and (not isinstance(micro_batches, int) or isinstance(micro_batches, bool)
                                      or micro_batches < 1):
        raise UsageError(f"micro-batches must be a positive integer, got {micro_batches!r}")
    from tinypatch.nas.executors import ray_executor

    with ray_executor(ray, ray_address, workers) as executor:
        k = micro_batches or (executor.cpus if executor is not None else 1)
        trained = _nas("pipeline").train(os.fspath(data), config, resolutions=resolutions, epochs=epochs,
                                         holdout=parse_fraction(holdout), seed=seed, batch_size=batch_size,
                                         micro_batches=k, executor=executor, progress=_log(progress))
    return NasTrainResult(trained)


@dataclass(repr=False)
class NasExportResult(_Result):
    """A subnet taken to the board (``tinypatch nas export``): accuracies from supernet to int8, the
    plan, and the held-out accuracy measured three ways."""

    deployed: Any  # tinypatch.nas.pipeline.Deployed
    output: str
    planned: PlanResult | None = None
    sram: int | None = None

    @property
    def ok(self) -> bool:
        return self.deployed.verification.ok

    def render(self, console: Console) -> None:
        from rich.table import Table

        d = self.deployed
        ex = d.exported
        console.print(ex.program.spec.describe(), highlight=False)
        steps = [("supernet weights (BN re-calibrated)", "float", ex.supernet_accuracy)]
        steps += [(f"fine-tuned, epoch {i}", "float", a) for i, a in enumerate(ex.finetune, 1)]
        steps.append(("post-training calibration", "int8", ex.ptq_accuracy))
        steps += [(f"quantization-aware, epoch {i}", "int8", a) for i, a in enumerate(ex.qat, 1)]
        t = Table(title="held-out accuracy from supernet to int8")
        for col in ("step", "arithmetic", "accuracy"):
            t.add_column(col, justify="left" if col == "step" else "right")
        for name, kind, acc in steps:
            t.add_row(name, kind, f"{acc:.2%}")
        console.print(t)
        if self.planned is not None:
            c, b = self.planned.cost, self.planned.baseline
            budget = "" if self.sram is None else f" under {self.sram:,} B"
            console.print(f"plan{budget}: {self.planned.schedule.label}, placed peak {c.peak:,} B (layer by layer "
                          f"{b.peak:,} B), MACs {c.macs:,} ({c.mac_overhead:+.1%})", highlight=False)
        v = Table(title="held-out accuracy, three ways (identical: same int8 bytes as our executor)")
        for col in ("way", "images", "accuracy", "identical", "note"):
            v.add_column(col, justify="left" if col in ("way", "note") else "right")
        for w in d.verification.ways:
            v.add_row(w.name, str(w.images), "-" if w.images == 0 else f"{w.accuracy:.2%}",
                      {True: "yes", False: "NO", None: "-"}[w.identical], w.note)
        console.print(v)
        console.print(f"int8 model written to {self.output} ({len(d.tflite):,} B)"
                      + ("" if self.planned is None else f"; plan to {_plan_path(self.output)}"), highlight=False)

    def to_dict(self) -> dict[str, Any]:
        d = self.deployed
        ex = d.exported
        out: dict[str, Any] = {"spec": ex.program.spec.to_dict(), "output": self.output, "ok": self.ok,
                               "accuracy": {"supernet": ex.supernet_accuracy, "finetune": ex.finetune,
                                            "ptq": ex.ptq_accuracy, "qat": ex.qat},
                               "verification": d.verification.to_dict()}
        if self.planned is not None:
            c = self.planned.cost
            out["plan"] = {"schedule": self.planned.schedule.label, "peak": c.peak, "layer_peak": self.planned.baseline.peak,
                           "macs": c.macs, "sram": self.sram}
        return out


def _plan_path(output: str) -> str:
    return os.path.splitext(output)[0] + ".plan.json"


def _read_spec(spec: Any) -> NetSpec:
    """A NetSpec, a spec .json (``redistribute -o``), or a search result .json holding ``best.spec``."""
    from tinypatch.frontends.spec import NetSpec, spec_from_dict

    if isinstance(spec, NetSpec):
        return spec
    from tinypatch.frontends.mcunet_config import read_json

    path = os.fspath(spec)
    d = read_json(path)
    if isinstance(d, dict) and isinstance(d.get("best"), dict) and "spec" in d["best"]:
        d = d["best"]["spec"]
    return spec_from_dict(d, path)


def nas_export(supernet: str | os.PathLike[str], spec: Any, output: str | os.PathLike[str], *,
               data: str | os.PathLike[str] | None = None, sram: int | str | None = None, include_input: bool = True,
               finetune_epochs: int = 2, qat_epochs: int = 2, mcu_images: int | None = None,
               target: str = "cortex-m7", project: str | os.PathLike[str] | None = None, seed: int = 0,
               board: bool = True, progress: Progress | None = None) -> NasExportResult:
    """Take ``spec`` (a NetSpec, a spec .json, or a search result .json) from the supernet checkpoint
    to the board: extract, fine-tune, quantize to int8 (post-training calibration, then
    quantization-aware fine-tuning), write ``output`` (.tflite), plan it (fewest MACs under ``sram``,
    else the least peak; the plan goes to ``OUTPUT.plan.json``) and measure its held-out accuracy
    three ways: the PyTorch int8 simulation vs our executor (identical int8 logits), LiteRT
    BUILTIN_REF (identical bytes) and, unless ``board=False``, the generated C on QEMU
    (``target``; ``mcu_images``: only the first images; ``project``: keep the C project there).
    ``data``: the training data when it moved since ``nas train``. Needs PyTorch.
    """
    sn = _nas("supernet")
    pipeline = _nas("pipeline")
    net_spec = _read_spec(spec)
    trained = sn.load_supernet(os.fspath(supernet), None if data is None else _nas("data").load_data(os.fspath(data)))
    budget = None if sram is None else parse_size(sram)
    holder: dict[str, PlanResult] = {}

    def choose(graph: Graph) -> Plan:
        holder["plan"] = plan(graph, sram=budget, include_input=include_input, progress=progress)
        return holder["plan"].plan

    out = os.fspath(output)
    deployed = pipeline.export_to_board(trained, net_spec, out, plan=choose if board else None,
                                        finetune_epochs=finetune_epochs, qat_epochs=qat_epochs, mcu_images=mcu_images,
                                        target=target, project_dir=project, seed=seed, progress=_log(progress))
    planned = holder.get("plan")
    if planned is not None:
        planned.save(_plan_path(out))
    return NasExportResult(deployed, out, planned, budget)
