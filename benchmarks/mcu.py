"""Generated C on emulated Cortex-M: flash, RAM, stack, executed instructions, instructions/MAC.

Run: ``python benchmarks/mcu.py [--target cortex-m7] [--models NAME ...] [--no-layers] [--no-acceptance] [--json OUT]``
(needs arm-none-eabi-gcc, libnewlib-arm-none-eabi, qemu-system-arm and the shared assets).

For every shared .tflite model, layer by layer and patch-based (the least-peak plan of the
searched front, and its fewest-MAC patch plan), the generated project is cross-compiled, run on
QEMU on one input and checked byte for byte against the Python executor. Figures (bytes):

* flash: .text + .rodata + .ARM.exidx + .data image (``arm-none-eabi-size -A``);
* static RAM: .data + .bss = the arena plus the runtime's own variables;
* stack: high-water mark measured by painting the whole stack at reset;
* RAM used: static RAM + measured stack; RAM region: the linker script's LENGTH
  (SRAM budget = planned arena, + reserved stack + runtime overhead);
* every schedule runs the layer-by-layer operators that lower its arena in place (output
  written over the input in raster order, ``tinypatch codegen``'s default); the row says how many;
* instructions: executed guest instructions (qemu-insncount plugin): the whole program, and
  per MAC; "kernel" counts only the kernel code (tp_kernels.c, tp_fast_arm.c).

With a fitted cost model for the target (``tinypatch.planning.latency``), every row also shows
the predicted instructions and their error, and a latency section (``--no-acceptance`` skips it)
prints issue 13's figures: on mcunet_vww (input outside the arena) the plan that
``plan --target T --no-input --sram 62352B`` picks and the least-RAM plan with no extra MACs
(``--objective macs --max-mac-overhead 0``, ties broken by predicted instructions), each as
executed instructions against layer by layer; and, for the first two stream stages of each
measured model's front, instructions per MAC of the stage's ops streamed against the same ops
layer by layer (each built as a model of its own).

Reference figures: TFLite Micro's activation arena ("head") per model, measured by the
tflite-micro interpreter (:func:`tinypatch.runtime.tflm.tflm_head`; "n/a" without it); quoted
from the project's issues and MANIFEST: TinyEngine's 62,352 B for mcunet_vww patch-based (input
image outside the arena), and CMSIS-NN 19.1's instructions/MAC on four layers, measured in
the same emulator (Cortex-M7: DSP extension; Cortex-M55: Helium). Those four layers are built
here with the same shapes and run through the same generated code path (one-layer models).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinypatch.assets import assets_dir
from tinypatch.codegen import generate
from tinypatch.codegen.report import McuCost, measure
from tinypatch.codegen.targets import DEFAULT_STACK, MCU_TARGETS, TARGETS
from tinypatch.codegen.toolchain import build_insncount, missing_tools
from tinypatch.errors import BudgetError
from tinypatch.frontends.synth import Builder
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph, Op
from tinypatch.planning.inplace import inplace_front
from tinypatch.planning.latency import cost_model, fitted_targets
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.search import choose, search
from tinypatch.runtime.inputs import load_input, random_input
from tinypatch.runtime.tflm import tflm_head
from tinypatch.safeio import write_text

TINYENGINE_MCUNET_VWW = 62352  # arena + kernel buffers of its 2x2 patch code, input image outside
CMSIS_NN = {  # executed instructions / MAC, CMSIS-NN 19.1 at -O2 with this GCC, same emulator
    "cortex-m7": {"conv 1x1 24x24x16->96": 3.92, "depthwise 3x3 s1 24x24x96": 8.01,
                  "conv 3x3 s2 48x48x3->16": 4.88, "conv 3x3 s1 12x12x32->32": 1.93},
    "cortex-m55": {"conv 1x1 24x24x16->96": 1.05, "depthwise 3x3 s1 24x24x96": 2.19,
                   "conv 3x3 s2 48x48x3->16": 1.42, "conv 3x3 s1 12x12x32->32": 0.26},
}


def reference_layers() -> dict[str, Graph]:
    """The four layers of the CMSIS-NN comparison as one-layer int8 models."""
    def one(name: str, shape: tuple[int, ...], layer) -> Graph:
        b = Builder(name, seed=1)
        return b.finish([layer(b, b.input(shape))])
    return {
        "conv 1x1 24x24x16->96": one("conv1x1", (1, 24, 24, 16), lambda b, x: b.conv(x, 96, 1, 1, name="c")),
        "depthwise 3x3 s1 24x24x96": one("dw3x3", (1, 24, 24, 96), lambda b, x: b.depthwise(x, 3, 1, name="d")),
        "conv 3x3 s2 48x48x3->16": one("conv3x3s2", (1, 48, 48, 3), lambda b, x: b.conv(x, 16, 3, 2, name="c")),
        "conv 3x3 s1 12x12x32->32": one("conv3x3", (1, 12, 12, 32), lambda b, x: b.conv(x, 32, 3, 1, name="c")),
    }


def model_input(graph: Graph, path: Path) -> list:
    t = graph.tensors[graph.inputs[0]]
    if path.name.startswith("person_detect"):
        return [load_input(str(path.parent / "person.bmp"), t, "raw")]
    if path.name.startswith("mlperf_kws"):
        return [load_input(str(path.parent / "mlperf_kws_sample_input_int8.npy"), t)]
    return [random_input(graph.tensors[n], seed=i) for i, n in enumerate(graph.inputs)]


def schedules(graph: Graph, path: Path) -> list[tuple[str, Plan, int | None]]:
    """(label, plan, reference RAM) per mode measured for a model: layer by layer, the least-peak
    patch plan and the fewest-MAC patch plan of the front."""
    try:  # TFLite Micro's arena head, measured by its interpreter
        head: int | None = tflm_head(path)
    except ImportError:
        head = None
    out: list[tuple[str, Plan, int | None]] = [("layer by layer", Plan.layer_by_layer(graph), head)]
    front = [s for s in search(graph).front if s.plan.stages]
    if front:
        out.append((f"patch: {front[0].label}", front[0].plan, None))
    if len(front) > 1:
        out.append((f"patch: {front[-1].label}", front[-1].plan, None))
    if path.name == "mcunet_vww.tflite":
        best = search(graph, include_input=False).front[0]
        out.append((f"patch, input outside: {best.label}", best.plan, TINYENGINE_MCUNET_VWW))
    return out


def _row(t: Table, model: str, label: str, c: McuCost, ref: int | None, predicted: float | None) -> None:
    versus = "" if ref is None else f"{c.ram_used:,} vs {ref:,} ({'less' if c.ram_used < ref else 'MORE'})"
    error = "-" if predicted is None else f"{predicted / c.insns - 1:+.1%}"
    t.add_row(model, label, f"{c.flash:,}", f"{c.arena:,}", f"{c.static_ram:,}", f"{c.stack_used:,}",
              f"{c.ram_used:,}", f"{c.ram_region:,}", f"{c.insns:,}", "-" if predicted is None else f"{predicted:,.0f}",
              error, f"{c.kernel_insns:,}", f"{c.macs:,}", f"{c.insns_per_mac:.2f}", "yes" if c.exact else "NO", versus)


def stage_graph(graph: Graph, start: int, end: int) -> Graph:
    """Ops ``[start, end)`` of ``graph`` as a model of their own (inputs: what they read from outside)."""
    sub = Graph(f"{graph.name}[{start}:{end}]")
    produced = {t for op in graph.ops[start:end] for t in op.outputs}
    for op in graph.ops[start:end]:
        for t in (*op.inputs, *op.outputs):
            if t and t not in sub.tensors:
                sub.add_tensor(graph.tensors[t])
                if t not in produced and not graph.tensors[t].is_const:
                    sub.inputs.append(t)
        sub.add_op(Op(op.type, list(op.inputs), list(op.outputs), dict(op.attrs), op.name))
    sub.outputs = [graph.ops[end - 1].outputs[0]]
    return sub


def _run(g: Graph, plan: Plan, folder: Path, target: str, plugin: Path, stack: int, x: list | None = None) -> McuCost:
    x = x if x is not None else [random_input(g.tensors[n], seed=i) for i, n in enumerate(g.inputs)]
    c = measure(g, generate(g, plan, folder, target, stack=stack), x, plugin)
    if not c.exact:
        raise SystemExit(f"{g.name} on {target}: outputs differ from the Python executor")
    return c


def acceptance(console: Console, target: str, assets: Path, tmp: Path, plugin: Path, stack: int,
               models: list[Path]) -> list[dict]:
    """Issue 13's latency figures: mcunet_vww's chosen plans against layer by layer, and the first two
    stream stages of each measured model's front against the same ops layer by layer (instructions / MAC)."""
    rows: list[dict] = []
    t = Table(title=f"latency on {target}: executed instructions against layer by layer (input outside the arena)")
    for col in ("model", "plan", "arena B", "MACs", "instructions", "vs layer by layer", "goal"):
        t.add_column(col, justify="left" if col in ("model", "plan", "goal") else "right")
    vww = assets / "models" / "mcunet_vww.tflite"
    if vww in models:
        g = load_tflite(str(vww))
        x = model_input(g, vww)
        lbl = _run(g, Plan.layer_by_layer(g, include_input=False), tmp / "acc_lbl", target, plugin, stack, x)
        picks = [("plan --target --no-input --sram 62352B", 1.03,
                  choose(inplace_front(g, search(g, include_input=False, target=target)), TINYENGINE_MCUNET_VWW)),
                 ("least RAM, no extra MACs (--objective macs --max-mac-overhead 0)", 1.08,
                  choose(inplace_front(g, search(g, include_input=False, target=target, objective="macs")),
                         max_mac_overhead=0.0))]
        t.add_row("mcunet_vww", "layer by layer", f"{lbl.arena:,}", f"{lbl.macs:,}", f"{lbl.insns:,}", "1.000", "")
        for label, goal, s in picks:
            c = _run(g, s.plan, tmp / "acc_plan", target, plugin, stack, x)
            ratio = c.insns / lbl.insns
            t.add_row("", f"{label}: {s.label}", f"{c.arena:,}", f"{c.macs:,}", f"{c.insns:,}", f"{ratio:.3f}",
                      f"<= {goal} {'met' if ratio <= goal else 'NOT met'}", style=None if ratio <= goal else "yellow")
            rows.append({"model": vww.name, "plan": label, "schedule": s.label, "ratio": ratio, "goal": goal,
                         "insns": c.insns, "lbl_insns": lbl.insns, "arena": c.arena})
    console.print(t)
    st = Table(title=f"stream stages on {target}: the stage's ops as a model of their own, streamed vs layer by layer")
    for col in ("model", "stage", "MACs streamed", "instr. streamed", "MACs layer by layer", "instr. layer by layer",
                "instr./MAC ratio", "goal"):
        st.add_column(col, justify="left" if col in ("model", "stage", "goal") else "right")
    for path in models:
        g = load_tflite(str(path))
        stages = {(s.start, s.end): s for sch in search(g).front for s in sch.plan.stages if s.halo
                  and set(s.halo.values()) == {"stream"}}
        for (a, b), stage in sorted(stages.items())[:2]:
            sub = stage_graph(g, a, b)
            shifted = Stage(0, b - a, stage.rows, stage.cols, {k - a: m for k, m in stage.halo.items()})
            plan = Plan(sub.name, fingerprint(sub), [shifted])
            try:
                streamed = _run(sub, plan, tmp / "acc_s", target, plugin, stack)
                layers = _run(sub, Plan.layer_by_layer(sub), tmp / "acc_l", target, plugin, stack)
            except BudgetError as exc:  # e.g. mcunetv2_large's stages on the Cortex-M55 board (512 KB)
                console.print(f"{path.name} stream stage [{a}:{b}]: skipped ({exc})")
                continue
            ratio = (streamed.insns / streamed.macs) / (layers.insns / layers.macs)
            st.add_row(path.stem, f"[{a}:{b}] {stage.grid[0]} strips", f"{streamed.macs:,}", f"{streamed.insns:,}",
                       f"{layers.macs:,}", f"{layers.insns:,}", f"{ratio:.3f}", f"<= 1.3 {'met' if ratio <= 1.3 else 'NOT met'}",
                       style=None if ratio <= 1.3 else "yellow")
            rows.append({"model": path.name, "stream_stage": [a, b], "strips": stage.grid[0], "ratio": ratio,
                         "goal": 1.3})
    console.print(st)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=MCU_TARGETS, default="cortex-m7")
    ap.add_argument("--models", nargs="*", help="shared model names, with or without .tflite (default: all)")
    ap.add_argument("--no-layers", action="store_true", help="skip the four CMSIS-NN reference layers")
    ap.add_argument("--no-acceptance", action="store_true",
                    help="skip the latency figures (mcunet_vww's plans and stream stages against layer by layer)")
    ap.add_argument("--stack", type=int, default=DEFAULT_STACK)
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args()
    console = Console(width=230)
    missing = missing_tools(args.target)
    assets = assets_dir()
    if missing or assets is None:
        console.print(f"cannot run: {missing or 'shared assets not found (set TINYPATCH_ASSETS)'}")
        return 2
    paths = sorted((assets / "models").glob("*.tflite"))
    if args.models:
        unknown = set(args.models) - {p.name for p in paths} - {p.stem for p in paths}
        if unknown:
            console.print(f"cannot run: no shared model {', '.join(sorted(unknown))} (a file name, with or without .tflite)")
            return 2
        paths = [p for p in paths if p.name in args.models or p.stem in args.models]
    target = TARGETS[args.target]
    model = cost_model(args.target) if args.target in fitted_targets() else None
    console.print(f"target {args.target} (QEMU -M {target.machine}); arm-none-eabi-gcc -std=c99 -O2 -mthumb "
                  f"{target.cpu_flags} -ffunction-sections -fdata-sections -fno-strict-aliasing -ffp-contract=off "
                  f"-DTP_FAST, newlib-nano, -Wl,--gc-sections; stack reserved {args.stack} B")
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        plugin = build_insncount(assets, Path(tmp) / "plugin")
        t = Table(title=f"generated C on {args.target}: bytes, executed instructions (RAM used = static RAM + "
                        "measured stack; reference: TFLM arena head, or TinyEngine for mcunet_vww)")
        for col in ("model", "schedule", "flash", "arena", "static RAM", "stack", "RAM used", "RAM region",
                    "instructions", "predicted", "error", "kernel instr.", "MACs", "instr./MAC", "exact",
                    "RAM vs reference"):
            t.add_column(col, justify="left" if col in ("model", "schedule", "RAM vs reference") else "right")
        for path in paths:
            g = load_tflite(str(path))
            x = model_input(g, path)
            for k, (label, plan, ref) in enumerate(schedules(g, path)):
                try:
                    project = generate(g, plan, Path(tmp) / f"{path.stem}_{k}", args.target, stack=args.stack)
                except BudgetError as exc:
                    console.print(f"{path.name} {label}: skipped ({exc})")
                    continue
                c = measure(g, project, x, plugin)
                predicted = model.predict(g, project.plan) if model is not None else None
                if project.plan.inplace:
                    label += f" ({len(project.plan.inplace)} ops in place)"
                _row(t, path.stem, label, c, ref, predicted)
                results.append({"model": path.name, "schedule": label, "reference_ram": ref, "predicted": predicted,
                                **c.to_dict()})
                console.print(f"measured {path.name}: {label}", style="dim")
        console.print(t)
        errors = [abs(r["predicted"] / r["insns"] - 1) for r in results if r.get("predicted")]
        if model is not None and errors:
            console.print(f"cost model of {args.target}: worst error {max(errors):.1%} over {len(errors)} programs "
                          f"({sum(e <= 0.10 for e in errors)} within +-10%)")
        if not args.no_acceptance and model is not None:
            results += acceptance(console, args.target, assets, Path(tmp), plugin, args.stack, paths)
        if not args.no_layers and args.target in CMSIS_NN:
            lt = Table(title=f"reference layers on {args.target}: kernel instructions / MAC (ours vs CMSIS-NN)")
            for col in ("layer", "MACs", "kernel instr.", "ours / MAC", "CMSIS-NN / MAC", "exact"):
                lt.add_column(col, justify="left" if col == "layer" else "right")
            for name, g in reference_layers().items():
                project = generate(g, None, Path(tmp) / name.replace(" ", "_").replace(">", ""), args.target,
                                   stack=args.stack, inplace=False)  # as CMSIS-NN runs them: out of place
                c = measure(g, project, [random_input(g.tensors[g.inputs[0]], seed=3)], plugin)
                per_mac = c.kernel_insns / c.macs
                ref = CMSIS_NN[args.target][name]
                lt.add_row(name, f"{c.macs:,}", f"{c.kernel_insns:,}", f"{per_mac:.2f}", f"{ref:.2f}",
                           "yes" if c.exact else "NO", style=None if per_mac <= ref else "yellow")
                results.append({"layer": name, "kernel_insns_per_mac": per_mac, "cmsis_nn": ref, **c.to_dict()})
            console.print(lt)
    if args.json:
        write_text(args.json, json.dumps(results, indent=1))
    return 0 if all(r.get("exact", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
