"""The ``tinypatch`` command line: analyze, plan, run, zoo.

Every error tinypatch raises on purpose becomes one line on stderr and exit status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from rich.console import Console

from tinypatch.errors import TinypatchError

EPILOG = """\
MODEL is a .tflite file, an MCUNet/ProxylessNAS .json config, or a built-in zoo name
(`tinypatch zoo` lists them). Sizes accept B, kB/KB/KiB (1024 B), MB/MiB: 64KB, 256kB, 0.5MB.

examples:
  tinypatch analyze mbv2-w0.35-r144 --plot mem.png
  tinypatch plan mcunet-in1 --sram 64KB -o plan.json
  tinypatch run mcunet-in1 --plan plan.json
"""

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?i?[bB]?)\s*$")


def parse_size(text: str) -> int:
    """'64KB' -> 65536. kB, KB and KiB all mean 1024 B (the MCU convention)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 64KB, 256kB, 0.5MB or 65536)")
    unit = m.group(2).lower().rstrip("b").rstrip("i")
    value = float(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return int(value)


def _fraction(text: str) -> float:
    try:
        v = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r} (try 0.2 or 20%)") from None
    if v < 0:
        raise argparse.ArgumentTypeError("the MAC overhead must be >= 0")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinypatch",
        description="Fit int8 CNNs into microcontroller SRAM: per-layer memory analysis, patch-based "
                    "schedules with the least extra compute, and bit-exact execution.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("analyze", help="per-layer SRAM, flash and MACs of a model",
                       description="Per-layer memory and compute: analytic (MCUNetV2 convention) and placed "
                                   "(real arena offsets) peaks, the liveness lower bound, flash and MACs.")
    a.add_argument("model", help="path to .tflite / .json config, or a zoo name")
    a.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    a.add_argument("--plot", metavar="FILE.png", help="save the per-layer memory bar chart")
    a.add_argument("--sram", type=parse_size, metavar="SIZE", help="draw this budget line on the plot")
    a.add_argument("--plan", metavar="PLAN.json",
                   help="also plot each block's analytic memory under this patch plan (MCUNetV2's Figure 1)")
    _accounting_flags(a)

    pl = sub.add_parser("plan", help="search patch-based schedules; print and save the best one",
                        description="Search fused patch stages (split points, tile grids, halo recompute or "
                                    "caching) for the exact Pareto front of peak SRAM vs MACs; pick the fewest "
                                    "MACs under --sram, or the least peak under --max-mac-overhead.")
    pl.add_argument("model", help="path to .tflite / .json config, or a zoo name")
    pl.add_argument("--sram", type=parse_size, metavar="SIZE", help="SRAM budget for the placed arena peak")
    pl.add_argument("--max-mac-overhead", type=_fraction, metavar="F",
                    help="allowed extra MACs over layer-by-layer, e.g. 0.2 or 20%%")
    pl.add_argument("--strategy", choices=("auto", "recompute", "cache"), default="auto",
                    help="halo handling inside a stage: recompute (MCUNetV2), cache (keep halos in buffers, "
                         "or stream columns through window buffers) or auto (all, chosen per stage; default)")
    pl.add_argument("--no-stream", action="store_true",
                    help="leave out column-streamed stages (stream stages run one kernel call per column: "
                         "fewer buffers, more call overhead)")
    pl.add_argument("--single-stage", action="store_true",
                    help="MCUNetV2's space: one patch stage from the first layer, then layer by layer")
    pl.add_argument("--max-grid", type=int, default=8, metavar="N",
                    help="most tiles per axis besides 4-, 2- and 1-row strips (default 8)")
    pl.add_argument("--no-inplace", dest="inplace", action="store_false",
                    help="do not run layer-by-layer ops in place (default: every schedule runs the ops that "
                         "lower its arena in place, output over input in raster order; no extra MACs)")
    from tinypatch.codegen.targets import ALL_TARGETS
    pl.add_argument("--target", choices=ALL_TARGETS,
                    help="predict executed instructions on this target (fitted cost model) and, unless --objective "
                         "macs, pick the fewest predicted instructions under --sram (ties: fewer kernel calls)")
    pl.add_argument("--objective", choices=("instructions", "macs"),
                    help="what the front trades against SRAM: predicted instructions (default with --target; needs "
                         "it) or MACs (default without --target)")
    pl.add_argument("-o", "--output", metavar="PLAN.json", help="write the chosen plan as JSON")
    pl.add_argument("--plot", metavar="FILE.png", help="save the Pareto front (peak SRAM vs MACs)")
    pl.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    _accounting_flags(pl, output=False)

    r = sub.add_parser("run", help="execute a plan and check it against whole-image inference",
                       description="Run the model layer by layer and with the plan, compare the outputs "
                                   "byte for byte and report the measured arena high-water mark.")
    r.add_argument("model", help="path to .tflite / .json config, or a zoo name")
    r.add_argument("--plan", required=True, metavar="PLAN.json", help="a plan written by `tinypatch plan -o`")
    r.add_argument("--input", metavar="FILE", help="image (png/bmp/jpg) or .npy; default: seeded random")
    from tinypatch.runtime.inputs import PREPROCESS, PREPROCESS_HELP
    r.add_argument("--preprocess", choices=PREPROCESS, default="auto", help=PREPROCESS_HELP)
    r.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")

    sh = sub.add_parser("show", help="print the IR, a plan's tiles and the arena map",
                        description="Print the IR (one line per op: inputs and outputs with shapes and "
                                    "quantization), each patch stage's tiles with the input spans and halos, and "
                                    "the arena map (buffer, offset, size, first and last op) exactly as the C "
                                    "generator places it.")
    sh.add_argument("model", help="path to .tflite / .json config, or a zoo name")
    sh.add_argument("--plan", metavar="PLAN.json", help="a plan from `tinypatch plan -o` (default: layer by layer)")
    sh.add_argument("--no-inplace", dest="inplace", action="store_false",
                    help="as `codegen --no-inplace`: no layer-by-layer op writes over its input")
    sh.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")

    sub.add_parser("zoo", help="list the built-in models", description="List the built-in zoo models.")
    _codegen_parser(sub, PREPROCESS, PREPROCESS_HELP)
    return p


def _codegen_parser(sub, preprocess: tuple[str, ...], preprocess_help: str) -> None:  # noqa: ANN001
    from tinypatch.codegen.targets import ALL_TARGETS, DEFAULT_STACK

    c = sub.add_parser("codegen", help="generate a self-contained C99 project (host and Cortex-M)",
                       description="Write C99 sources (weights, one static arena at the planned offsets, the "
                                   "plan's schedule as loops, kernels), a Makefile and linker scripts whose RAM "
                                   "region is the SRAM budget. --report builds it, runs it (host, or QEMU for "
                                   "Cortex-M) and checks the outputs against the Python executor.")
    c.add_argument("model", help="path to .tflite / .json config, or a zoo name")
    c.add_argument("--plan", metavar="PLAN.json", help="a plan from `tinypatch plan -o` (default: layer by layer)")
    c.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write the project into")
    c.add_argument("--target", choices=ALL_TARGETS, default="host", help="build target of --report (default host)")
    c.add_argument("--sram", type=parse_size, metavar="SIZE",
                   help="SRAM budget of the RAM region (default: the planned arena); the link fails above it")
    c.add_argument("--stack", type=parse_size, default=DEFAULT_STACK, metavar="SIZE",
                   help=f"stack reserved in the RAM region (default {DEFAULT_STACK} B)")
    c.add_argument("--no-input", dest="include_input", action="store_false",
                   help="without --plan: keep the model input outside the arena (its own buffer)")
    c.add_argument("--no-inplace", dest="inplace", action="store_false",
                   help="never write a layer-by-layer op's output over its input (default: every op whose "
                        "in-place run lowers the arena does, TinyEngine-style, in raster order)")
    c.add_argument("--report", action="store_true", help="build, run and print flash, RAM, stack and instructions")
    c.add_argument("--input", metavar="FILE", help="input of --report: image or .npy (default: seeded random)")
    c.add_argument("--preprocess", choices=preprocess, default="auto", help=preprocess_help)
    c.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")


def _accounting_flags(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("--no-input", dest="include_input", action="store_false",
                   help="leave the model input out of the arena (streamed / decoded in place, as MCUNetV2 counts)")
    if output:
        p.add_argument("--no-output", dest="include_output", action="store_false",
                       help="leave the model output out of the arena")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        return COMMANDS[args.command](args, console)
    except TinypatchError as exc:
        if args.debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except OSError as exc:  # the file system said no (a folder we cannot write, a full disk, ...)
        if args.debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130


def _load(spec: str):  # noqa: ANN202
    from tinypatch.frontends.load import load_model

    return load_model(spec)


def cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.report.layer_memory import analyze
    from tinypatch.report.tables import analyze_tables, layer_plot

    graph = _load(args.model)
    report = analyze(graph, include_input=args.include_input, include_output=args.include_output)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        analyze_tables(console, graph, report)
    if args.plot:
        planned = None
        if args.plan:
            from tinypatch.planning.check import check_plan
            from tinypatch.planning.cost import plan_analytic
            from tinypatch.planning.plan import Plan

            plan = Plan.load(args.plan)
            planned = plan_analytic(graph, plan, check_plan(graph, plan)).per_op
        layer_plot(args.plot, graph, report, args.sram, planned)
        if not args.json:
            console.print(f"plot written to {args.plot}")
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from tinypatch.planning.cost import plan_cost
    from tinypatch.planning.inplace import inplace_front
    from tinypatch.planning.search import choose, search
    from tinypatch.report.tables import pareto_plot, plan_tables

    graph = _load(args.model)
    flags = dict(include_input=args.include_input, max_grid=args.max_grid)
    with Progress(console=Console(stderr=True), transient=True, disable=args.json) as bar:
        task = bar.add_task("searching schedules", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = search(graph, strategy=args.strategy, single_stage=args.single_stage, progress=tick,
                        stream=not args.no_stream, target=args.target, objective=args.objective, **flags)
        if args.inplace:
            bar.update(task, description="running layer-by-layer ops in place", completed=0)
            result = inplace_front(graph, result, progress=tick)
        chosen = choose(result, args.sram, args.max_mac_overhead)
        cost = plan_cost(graph, chosen.plan)
        base = plan_cost(graph, result.baseline.plan)
        reference = None
        if args.plot and not (args.single_stage and args.strategy == "recompute"):
            bar.update(task, description="searching the MCUNetV2-style single-stage front", completed=0)
            reference = search(graph, strategy="recompute", single_stage=True, progress=tick, **flags)
            if args.inplace:
                reference = inplace_front(graph, reference, progress=tick)
    if args.json:
        print(json.dumps({"plan": chosen.plan.to_dict(), "cost": cost.to_dict(), "baseline": base.to_dict(),
                          "front": [{"peak": s.peak, "lower_bound": s.lower_bound, "macs": s.macs,
                                     "predicted_instructions": s.insns, "kernel_calls": s.calls,
                                     "schedule": s.label} for s in result.front],
                          "objective": result.objective, "target": args.target,
                          "predicted_instructions": chosen.insns,
                          "search_seconds": result.seconds}, indent=1))
    else:
        plan_tables(console, graph, chosen, cost, base, result)
    if args.output:
        chosen.plan.save(args.output)
        if not args.json:
            console.print(f"plan written to {args.output}")
    if args.plot:
        pareto_plot(args.plot, graph, result, reference)
        if not args.json:
            console.print(f"Pareto plot written to {args.plot}")
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    import numpy as np

    from tinypatch.planning.check import check_plan
    from tinypatch.planning.plan import Plan
    from tinypatch.runtime.executor import run
    from tinypatch.runtime.inputs import model_inputs
    from tinypatch.runtime.plan_executor import PlanExecutor

    graph = _load(args.model)
    plan = Plan.load(args.plan)
    check_plan(graph, plan)
    inputs = model_inputs(graph, args.input, args.seed, args.preprocess)
    t0 = time.perf_counter()
    whole = run(graph, inputs)
    t1 = time.perf_counter()
    ex = PlanExecutor(graph, plan)
    patched = ex(inputs)
    t2 = time.perf_counter()
    same = all(np.array_equal(whole[n], patched.outputs[n]) and whole[n].dtype == patched.outputs[n].dtype
               for n in graph.outputs)
    for n in graph.outputs:
        console.print(f"output {n}: {np.array2string(patched.outputs[n].ravel()[:16], separator=', ')}"
                      f"{' ...' if patched.outputs[n].size > 16 else ''}", highlight=False)
    console.print(f"whole-image {t1 - t0:.2f} s, planned {t2 - t1:.2f} s; "
                  f"{'[green]byte-identical[/]' if same else '[red]OUTPUTS DIFFER[/]'}")
    console.print(f"arena: measured high-water mark {patched.arena_high_water:,} B, planned peak "
                  f"{patched.arena_size:,} B (input {'in' if plan.include_input else 'outside'} the arena)")
    return 0 if same and patched.arena_high_water <= patched.arena_size else 1


def cmd_zoo(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from tinypatch.frontends.zoo import list_models

    table = Table(title="built-in models (synthetic int8 weights)")
    table.add_column("name")
    table.add_column("description")
    for name, desc in list_models():
        table.add_row(name, desc)
    console.print(table)
    return 0


def cmd_codegen(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.codegen import generate
    from tinypatch.codegen.report_cli import report_project
    from tinypatch.planning.plan import Plan

    graph = _load(args.model)
    plan = Plan.load(args.plan) if args.plan else Plan.layer_by_layer(graph, include_input=args.include_input)
    project = generate(graph, plan, args.output, args.target, args.sram, args.stack, args.inplace)
    if project.plan.inplace:
        console.print(f"{len(project.plan.inplace)} layer-by-layer ops run in place (--no-inplace: none)")
    console.print(f"C project written to {project.path}: arena {project.arena_bytes:,} B, constants "
                  f"{project.const_bytes:,} B, {project.macs:,} MACs (`make -C {project.path} help` lists its targets)")
    return report_project(console, graph, project, args) if args.report else 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.planning.plan import Plan
    from tinypatch.report.show import format_pipeline, pipeline

    graph = _load(args.model)
    facts = pipeline(graph, Plan.load(args.plan) if args.plan else None, args.inplace)
    sys.stdout.write(json.dumps(facts, indent=1) + "\n" if args.json else format_pipeline(facts))
    return 0


COMMANDS = {"analyze": cmd_analyze, "plan": cmd_plan, "run": cmd_run, "zoo": cmd_zoo, "codegen": cmd_codegen,
            "show": cmd_show}

if __name__ == "__main__":
    sys.exit(main())
