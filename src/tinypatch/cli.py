"""The ``tinypatch`` command line: analyze, plan, run, zoo.

Every error tinypatch raises on purpose becomes one line on stderr and exit status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.text import Text

from tinypatch import api
from tinypatch.errors import TinypatchError, UsageError

_STARTED: float | None = time.perf_counter()  # when the process's first command started (see _clock)

EPILOG = """\
MODEL is a .tflite or int8 .onnx file, an MCUNet/ProxylessNAS .json config, or a built-in zoo
name (`tinypatch zoo` lists them). Sizes accept B, kB/KB/KiB (1024 B), MB/MiB: 64KB, 256kB, 0.5MB.

The usual order: analyze (how much SRAM?), plan (which schedule fits?), run (is it exact?),
codegen (C for the board). Before that, a network can change to fit better: redistribute (a
smaller patch-stage receptive field), search (architecture + schedule), nas (train, export);
after it, quantize (per-patch mixed precision). PyTorch and float ONNX models come in through
import-torch and quantize-float.

examples:
  tinypatch analyze mbv2-w0.35-r144 --plot mem.png
  tinypatch plan mcunet-in1 --sram 64KB -o plan.json
  tinypatch run mcunet-in1 --plan plan.json
  tinypatch codegen mcunet-in1 --plan plan.json -o build/in1 --report

`tinypatch COMMAND --help` explains a command; the same functions are a Python API
(`import tinypatch; help(tinypatch.plan)`).
"""


class _Formatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal, epilogs (examples) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True)) if "\n" in text \
            else super()._fill_text(text, width, indent)


MODEL_HELP = ("a .tflite or int8 .onnx file, an MCUNet/ProxylessNAS .json config, or a zoo name "
              "(`tinypatch zoo`)")
ANALYZE_EXAMPLES = """examples:
  tinypatch analyze model.tflite                      tables: per layer, then the peaks
  tinypatch analyze mcunet-in1 --no-input --json      figures as JSON, camera image not counted
  tinypatch analyze mbv2-w1.0-r224 --plot mem.png --sram 256KB --plan plan.json
                                                      MCUNetV2's Figure 1: per block, with a plan
"""
PLAN_EXAMPLES = """With neither --sram nor --max-mac-overhead the least-peak schedule is chosen, whatever its MACs.

examples:
  tinypatch plan model.tflite --sram 64KB -o plan.json     fewest MACs that fit 64 kB
  tinypatch plan model.tflite --max-mac-overhead 10%       least SRAM within +10% MACs
  tinypatch plan mcunet-in1 --single-stage --strategy recompute --plot front.png
                                                           MCUNetV2's space, front plotted
"""
RUN_EXAMPLES = """Exit status 0: byte-identical and within the planned arena (with --arith onnxruntime on an .onnx
model: also equal to onnxruntime); 1: not; 2: an error.

examples:
  tinypatch run model.tflite --plan plan.json
  tinypatch run person_detect.tflite --plan plan.json --input person.bmp --preprocess raw
"""
SHOW_EXAMPLES = """examples:
  tinypatch show model.tflite                                   IR and the layer-by-layer arena map
  tinypatch show model.tflite --plan plan.json --json           a plan's tiles and arena map as JSON
"""
CODEGEN_EXAMPLES = """examples:
  tinypatch codegen model.tflite -o build/model                 layer by layer, host build
  tinypatch codegen model.tflite --plan plan.json -o build/m --target cortex-m7 --report
                                                                build, run on QEMU, print costs
  make -C build/model help                                      the project's make targets
"""


def parse_size(text: str) -> int:
    """'64KB' -> 65536. kB, KB and KiB all mean 1024 B (the MCU convention)."""
    try:
        return api.parse_size(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    try:
        return api.parse_fraction(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinypatch",
        description="Fit int8 CNNs into microcontroller SRAM: per-layer memory analysis, patch-based "
                    "schedules with the least extra compute, and bit-exact execution.",
        epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    from tinypatch.ir.validate import DEFAULT_MAX_TENSOR_BYTES
    p.add_argument("--max-tensor-bytes", type=parse_size, default=DEFAULT_MAX_TENSOR_BYTES, metavar="SIZE",
                   help=f"refuse models with a larger tensor (default {DEFAULT_MAX_TENSOR_BYTES // 2**20}MB)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("analyze", help="per-layer SRAM, flash and MACs of a model",
                       description="Per-layer memory and compute: analytic (MCUNetV2 convention) and placed "
                                   "(real arena offsets) peaks, the liveness lower bound, flash and MACs.",
                       epilog=ANALYZE_EXAMPLES, formatter_class=_Formatter)
    a.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    a.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    a.add_argument("--plot", metavar="FILE.png", help="save the per-layer memory bar chart")
    a.add_argument("--sram", type=parse_size, metavar="SIZE", help="draw this budget line on the plot")
    a.add_argument("--plan", metavar="PLAN.json",
                   help="also plot each block's analytic memory under this patch plan (MCUNetV2's Figure 1)")
    _accounting_flags(a)

    pl = sub.add_parser("plan", help="search patch-based schedules; print and save the best one",
                        description="Search fused patch stages (split points, tile grids, halo recompute or "
                                    "caching) for the exact Pareto front of peak SRAM vs MACs; pick the fewest "
                                    "MACs under --sram, or the least peak under --max-mac-overhead, else the "
                                    "least peak (then a hint names a schedule at most 5% above it that saves at "
                                    "least 10% of the MACs, or with --target of the predicted instructions, and "
                                    "the --sram that picks it).",
                        epilog=PLAN_EXAMPLES, formatter_class=_Formatter)
    pl.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    pl.add_argument("--sram", type=parse_size, metavar="SIZE", help="SRAM budget for the placed arena peak, e.g. 64KB")
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
    pl.add_argument("--no-rewrite", dest="rewrite", action="store_false",
                    help="search the model's operator order only (default: also graphs with producers moved just "
                         "before their consumers and long-lived maps recomputed for their last reader; a plan "
                         "chosen there records its rewrites, which run, codegen and show replay)")
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
                                   "byte for byte and report the measured arena high-water mark.",
                       epilog=RUN_EXAMPLES, formatter_class=_Formatter)
    r.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    r.add_argument("--plan", required=True, metavar="PLAN.json", help="a plan written by `tinypatch plan -o`")
    r.add_argument("--input", metavar="FILE", help="image (png/bmp/jpg; resized bilinearly to the input's height x "
                   "width) or .npy; default: seeded random")
    from tinypatch.runtime.inputs import PREPROCESS, PREPROCESS_HELP
    r.add_argument("--preprocess", choices=PREPROCESS, default="auto", help=PREPROCESS_HELP)
    r.add_argument("--seed", type=_natural, default=0, help="seed of the random input (default 0)")
    r.add_argument("--quantize-input", action="store_true",
                   help="the .npy holds real values: quantize them with the input's scale and zero point "
                        "(default: its values must fit the input's dtype exactly)")
    r.add_argument("--precision", metavar="PRECISION.json",
                   help="a precision plan from `tinypatch quantize`: run the patch stages at per-patch mixed "
                        "precision and count the output bytes that differ from int8")
    r.add_argument("--arith", choices=("tflite", "onnxruntime"), default="tflite",
                   help="integer arithmetic of the kernels: tflite (fixed-point multipliers, what the C generator "
                        "and CMSIS-NN use; default) or onnxruntime (float scales, round half to even: byte for byte "
                        "onnxruntime's CPU results). When either is not tflite, or the model expects onnxruntime's, an .onnx model is also run in onnxruntime and compared, and the "
                        "output bytes on which the two arithmetics differ are counted")

    sh = sub.add_parser("show", help="print the IR, a plan's tiles and the arena map",
                        description="Print the IR (one line per op: inputs and outputs with shapes and "
                                    "quantization), each patch stage's tiles with the input spans and halos, and "
                                    "the arena map (buffer, offset, size, first and last op) exactly as the C "
                                    "generator places it.",
                        epilog=SHOW_EXAMPLES, formatter_class=_Formatter)
    sh.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    sh.add_argument("--plan", metavar="PLAN.json", help="a plan from `tinypatch plan -o` (default: layer by layer)")
    sh.add_argument("--no-inplace", dest="inplace", action="store_false",
                    help="as `codegen --no-inplace`: no layer-by-layer op writes over its input")
    sh.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")

    q = sub.add_parser("quantize", help="calibrate per-patch mixed precision (QuantMCU-style) for a plan",
                       description="VDPC (outlier patches by value) + VDQS (greedy per-map bitwidths, score "
                                   "S = -lambda*Omega + (1-lambda)*Phi) on calibration inputs; writes the precision "
                                   "plan and prints per stage the outlier share, bitwidths, BitOPs before/after and "
                                   "top-1 agreement / output change against int8 on held-out inputs.",
                       formatter_class=_Formatter)
    q.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    q.add_argument("--plan", required=True, metavar="PLAN.json", help="a plan written by `tinypatch plan -o`")
    q.add_argument("--calib", metavar="DATA", help="folder of images/.npy, or a batch .npy; default: built-in "
                                                   "photo crops (scikit-image / scikit-learn photos)")
    q.add_argument("--eval", dest="evaluate", metavar="DATA", help="held-out inputs, as --calib; default: crops "
                                                                   "of other photos")
    q.add_argument("--n-calib", type=int, default=64, help="built-in calibration crops (default 64)")
    q.add_argument("--n-eval", type=int, default=200, help="built-in held-out crops (default 200)")
    q.add_argument("--quantile", type=float, default=0.9, help="non-outlier share of calibration patches (0.9)")
    q.add_argument("--lambda", dest="lam", type=float, default=0.5, help="weight of the entropy term (0.5)")
    q.add_argument("--bits", default="8,6,4,2", help="bitwidth set the search steps down, from 8..2 (default 8,6,4,2)")
    q.add_argument("--scope", choices=("rest", "map"), default="rest",
                   help="an outlier keeps this and later maps of the tile at 8 bits (rest) or only this map")
    q.add_argument("--min-agreement", type=float, default=1.0, help="calibration top-1 agreement a move keeps")
    q.add_argument("--max-change", type=float, default=0.25,
                   help="mean |output change| a move may reach, as a share of int8's mean top-1/top-2 margin")
    q.add_argument("--max-margin-loss", type=float, default=1.0,
                   help="with --accept agreement: the share of its own int8 top-1 margin any calibration input may "
                        "lose (default 1: off)")
    q.add_argument("--accept", choices=("agreement", "entropy"), default="agreement",
                   help="what keeps a search move: the calibration inputs still agree with int8 (agreement, ours) "
                        "or its entropy loss Omega is at most --max-entropy-loss (entropy: training-free)")
    q.add_argument("--max-entropy-loss", type=float, default=0.1, help="Omega bound of --accept entropy (0.1)")
    q.add_argument("--step", choices=("static", "patch", "pixel"), default="static",
                   help="the low-bit maps' step: one per map (static), or chosen at run time from the values of "
                        "each patch (patch) or of each pixel of a patch (pixel; block floating point)")
    q.add_argument("--no-outliers", dest="outliers", action="store_false",
                   help="no outlier patches (VDPC off, thresholds 255): every patch low-bit at its blocks' own steps")
    q.add_argument("--uniform-first", action="store_true",
                   help="before the per-map moves, lower every map together one step at a time while accepted")
    q.add_argument("--max-flip-risk", type=float, default=1.0,
                   help="with --accept agreement: the estimated share of inputs whose top-1 flips (every input's lead "
                        "lost against every input's int8 margin) a move may reach (default 1: off)")
    q.add_argument("--preprocess", choices=PREPROCESS, default="auto", help=PREPROCESS_HELP)
    q.add_argument("-o", "--output", metavar="PRECISION.json", help="write the precision plan")
    q.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")

    sub.add_parser("zoo", help="list the built-in models", description="List the built-in zoo models.")
    rd = sub.add_parser("redistribute", help="shrink the patch stage's receptive field (MCUNetV2 Table 1)",
                        description="Search architecture edits (smaller kernels and no depthwise conv in the patch "
                                    "stage, blocks moved after it, larger kernels later) for the least MAC overhead "
                                    "of MCUNetV2's patch schedule within the budget, keeping MACs and parameters "
                                    "within the tolerance; print before/after like MCUNetV2's Table 1.")
    rd.add_argument("spec", help="a zoo name built from a spec (mbv2-w1.0-r224, mnasnet-a1, fbnet-a, mcunet-in3, "
                                 "...) or a spec .json (`-o` writes one)")
    rd.add_argument("--budget", type=parse_size, metavar="SIZE",
                    help="analytic peak limit, input not counted (default: the original's least peak at the grid)")
    rd.add_argument("--grid", type=int, default=4, help="patches per axis (default 4)")
    rd.add_argument("--tolerance", type=_fraction, default=0.05, help="MAC and parameter tolerance (default 5%%)")
    rd.add_argument("-o", "--output", metavar="SPEC.json", help="write the redistributed spec")
    rd.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    _search_parser(sub)
    it = sub.add_parser("import-torch", help="quantize a saved PyTorch model into an int8 .onnx file",
                        description="Load a torch.export program (.pt2) or a TorchScript file, export it to ONNX "
                                    "(opset 13), quantize it with onnxruntime's static quantization (per-channel "
                                    "int8 weights) and check that tinypatch imports it; every command then takes "
                                    "the written .onnx file.")
    # dest "source", not "model": main() loads every `model` as a tinypatch model, which these files are not
    it.add_argument("source", metavar="model", help="a .pt2 (torch.export.save) or TorchScript (.pt) file")
    it.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="the quantized ONNX file to write")
    it.add_argument("--input-shape", metavar="N,C,H,W", help="input shape (TorchScript; a .pt2 brings its example)")
    it.add_argument("--calibration", metavar="FILE.npy", help="float32 calibration samples [K, C, H, W] or "
                                                                "[K, N, C, H, W] (default: the example input)")
    it.add_argument("--format", choices=("QDQ", "QOperator"), default="QDQ", help="ONNX quantization form")
    qz = sub.add_parser("quantize-float", help="quantize a float .onnx model into TFLite's int8 scheme",
                        description="Calibrate a float ONNX CNN on sample inputs and write it as an int8 QDQ model "
                                    "in TFLite's scheme (per-tensor asymmetric activations, per-channel symmetric "
                                    "weights, int32 biases): every command then takes the written file, and its "
                                    "expected arithmetic is tflite.")
    qz.add_argument("source", metavar="model", help="a float .onnx file with one input")
    qz.add_argument("--calibration", required=True, metavar="FILE.npy",
                    help="float32 samples [K, ...input shape] or [K, ...input shape without batch]")
    qz.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="the int8 ONNX file to write")
    _codegen_parser(sub, PREPROCESS, PREPROCESS_HELP)
    _nas_parser(sub)
    return p


NAS_EXAMPLES = """The three steps from data to board (PyTorch needed: pip install 'tinypatch[nas]'):
  tinypatch nas train digits --resolutions 24,28,32 --epochs 15 -o sn.pt
                                        train the supernet (20% of every class held out)
  tinypatch search --supernet sn.pt --sram 4KB --placed --population 20 --iterations 5 -o best.json
                                        evolve under the SRAM limit, scored by held-out accuracy
  tinypatch nas export sn.pt --spec best.json --sram 4KB -o winner.tflite
                                        int8 .tflite + plan, accuracy checked four ways (QEMU included)
"""


def _nas_parser(sub) -> None:  # noqa: ANN001
    from tinypatch.codegen.targets import ALL_TARGETS

    n = sub.add_parser("nas", help="train a weight-sharing supernet; export a subnet to int8 and the board",
                       description="Accuracy for the architecture search (MCUNetV2 §3.3) and the way from the "
                                   "search's winner to the board (issue 14).",
                       epilog=NAS_EXAMPLES, formatter_class=_Formatter)
    nsub = n.add_subparsers(dest="nas_command", required=True, metavar="STEP")
    t = nsub.add_parser("train", help="train a supernet on your data (sandwich rule)",
                        description="Train a weight-sharing supernet over MCUNet's space (kernel 3/5/7 by centre "
                                    "crop, expand 3/4/6 and width 0.5/0.75/1 by channel slicing, depth 2/3/4) with "
                                    "the sandwich rule and in-place distillation; a held-out part of every class is "
                                    "kept for measuring subnets. Prints one line per epoch.",
                        epilog=NAS_EXAMPLES, formatter_class=_Formatter)
    t.add_argument("data", help="'digits' or 'digits:64' (scikit-learn's digits upscaled), a .npz with x (uint8 "
                                "images) and y (labels), or a folder with one subfolder of images per class")
    t.add_argument("-o", "--output", required=True, metavar="SUPERNET.pt", help="checkpoint to write")
    t.add_argument("--epochs", type=_positive, default=10, help="training epochs (default 10)")
    t.add_argument("--resolutions", type=_int_list, metavar="R,R,...",
                   help="input resolutions of the space (default: the data's, 32 for digits)")
    t.add_argument("--holdout", type=_fraction, default=0.2, metavar="F", help="held-out fraction (default 20%%)")
    t.add_argument("--batch-size", type=_positive, default=64, help="batch size (default 64)")
    t.add_argument("--config", metavar="CONFIG.json", help="the space as JSON (SupernetConfig fields)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the sampling")
    _micro_batches_option(t)
    _ray_options(t, "compute the micro-batches' gradients")
    t.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    e = nsub.add_parser("export", help="int8 .tflite of a subnet, planned and checked on the board",
                        description="Extract a subnet from the supernet, fine-tune it, quantize it to int8 "
                                    "(post-training calibration, then quantization-aware fine-tuning whose "
                                    "forward is the integer arithmetic), write the .tflite, plan it under --sram "
                                    "and measure its held-out accuracy three ways: PyTorch int8 simulation vs our "
                                    "executor (identical logits), LiteRT BUILTIN_REF (identical bytes), the "
                                    "generated C on QEMU (identical bytes). Exit 1 if any differs.",
                        epilog=NAS_EXAMPLES, formatter_class=_Formatter)
    e.add_argument("supernet", metavar="SUPERNET.pt", help="a checkpoint from `tinypatch nas train`")
    e.add_argument("--spec", required=True, metavar="SPEC.json",
                   help="the subnet: a search result (`tinypatch search -o`) or a spec .json")
    e.add_argument("-o", "--output", required=True, metavar="MODEL.tflite",
                   help="the int8 model (the plan goes beside it as MODEL.plan.json)")
    e.add_argument("--data", help="the training data, if it moved since `nas train`")
    e.add_argument("--sram", type=parse_size, metavar="SIZE", help="SRAM budget of the plan (default: least peak)")
    e.add_argument("--no-input", dest="include_input", action="store_false",
                   help="leave the model input out of the planned arena")
    e.add_argument("--finetune-epochs", type=_natural, default=2, help="float fine-tuning epochs (default 2)")
    e.add_argument("--qat-epochs", type=_natural, default=2, help="quantization-aware epochs (default 2)")
    e.add_argument("--target", choices=[t for t in ALL_TARGETS if t != "host"], default="cortex-m7",
                   help="the emulated board (default cortex-m7)")
    e.add_argument("--mcu-images", type=_positive, metavar="N", help="run only the first N held-out images on QEMU")
    e.add_argument("--project", metavar="DIR", help="keep the generated C project in DIR")
    e.add_argument("--no-board", dest="board", action="store_false", help="skip planning and QEMU")
    e.add_argument("--seed", type=int, default=0, help="seed of fine-tuning and calibration batches")
    e.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")


def _ray_options(parser, what: str) -> None:  # noqa: ANN001
    parser.add_argument("--ray", action="store_true", help=f"{what} on a local Ray cluster")
    parser.add_argument("--ray-address", metavar="ADDR", help=f"{what} on the Ray cluster at ADDR")
    parser.add_argument("--workers", type=_positive, metavar="N", help="CPUs of the local Ray cluster (implies --ray)")


def _micro_batches_option(parser, prefix: str = "") -> None:  # noqa: ANN001
    parser.add_argument("--micro-batches", type=_positive, metavar="K",
                        help=f"{prefix}each training step is K micro-batches, gradients summed in a fixed order "
                             "(default 1, on Ray the cluster's CPUs); the weights depend on the seed and K only, "
                             "in process or on Ray")


SEARCH_EXAMPLES = """SRAM is MCUNetV2's analytic peak of the network's best patch schedule (every p x p grid, p <=
--max-patches, over every first-stage length, and with --stages K, default 2, every run of up
to K consecutive patch stages, each also as one of our planner's stream stages unless --no-stream),
or with --placed the placed arena of our planner's
best schedule (multi-stage, halo caching, in place; slower). Flash counts int8 weights and int32
biases. The objective is the network's MACs (TinyNAS's proxy: no data needed), or with --data /
--supernet its held-out accuracy from a weight-sharing supernet (the space is then the supernet's).

examples:
  tinypatch search --sram 256KB --flash 1MB -o best.json --plot pareto.png
                                        MCUNetV2-M4's board, 30 iterations x 100 (minutes)
  tinypatch search --sram 256KB --flash 1MB --max-patches 1      MCUNet's per-layer search
  tinypatch search --sram 64KB --flash 512KB --iterations 5 --population 20 --resume state.json
                                        a short search; run it again to continue from state.json
  tinypatch search --sram 256KB --flash 1MB --workers 4          candidates evaluated on a local Ray
  tinypatch search --sram 256KB --flash 1MB --target cortex-m7 --max-latency 500ms --clock 216MHz
                                        also within a predicted latency (each schedule by fewest instructions)
  tinypatch search --data digits --supernet sn.pt --sram 8KB --population 20 --iterations 5 -o best.json
                                        accuracy on held-out digits (trains sn.pt first if missing)
"""


def _search_parser(sub) -> None:  # noqa: ANN001
    from tinypatch.nas.space import SPACES

    se = sub.add_parser("search", help="joint architecture + schedule search (MCUNetV2 §3.3)",
                        description="Evolutionary search (MCUNetV2: random feasible population, top parents, "
                                    "mutation and crossover children) over MCUNet's space (kernel 3/5/7, expand "
                                    "3/4/6, width 0.5/0.75/1 per block, 2-4 blocks per stage, resolution 96-256) "
                                    "for the network with the best objective whose best schedule fits the "
                                    "constraints; prints the history and the winner, -o writes it with its plan.",
                        epilog=SEARCH_EXAMPLES, formatter_class=_Formatter)
    se.add_argument("--sram", type=parse_size, required=True, metavar="SIZE", help="SRAM limit, e.g. 256KB")
    se.add_argument("--flash", type=parse_size, metavar="SIZE", help="flash limit for weights and biases, e.g. 1MB")
    se.add_argument("--max-macs", type=_count, metavar="N", help="limit on the MACs the schedule executes, e.g. 200M")
    from tinypatch.planning.latency import fitted_targets

    se.add_argument("--target", choices=fitted_targets(),
                    help="predict each feasible network's executed instructions on this target (the fitted cost "
                         "model of `plan --target`) and, unless --objective macs, choose its schedule by them")
    se.add_argument("--max-latency", metavar="N",
                    help="latency limit (needs --target): predicted instructions (e.g. 120M) or a time (e.g. 20ms, "
                         "with --clock; one instruction per cycle)")
    se.add_argument("--clock", metavar="HZ", help="the board's clock for a time in --max-latency, e.g. 216MHz")
    se.add_argument("--objective", choices=("instructions", "macs"), dest="schedule_objective",
                    help="how each network's schedule is chosen: fewest predicted instructions (default with "
                         "--target; needs it) or fewest MACs (MCUNetV2's; default without --target)")
    se.add_argument("--no-input", dest="include_input", action="store_false",
                    help="do not count the input image in SRAM (MCUNetV2's convention for its search)")
    se.add_argument("--placed", action="store_true",
                    help="SRAM is our planner's placed arena peak, not MCUNetV2's analytic figure")
    se.add_argument("--max-patches", type=_positive, default=4, metavar="P",
                    help="patch grids p x p for p = 1..P (default 4; 1: layer by layer only, MCUNet's search)")
    se.add_argument("--stages", type=int, choices=(1, 2, 3, 4), default=2,
                    help="analytic SRAM: up to this many patch stages before the per-layer part (default 2; "
                         "1: MCUNetV2's one)")
    se.add_argument("--no-stream", dest="stream", action="store_false",
                    help="analytic SRAM: patch stages recompute p x p tiles only (MCUNetV2's); by default a stage may "
                         "also stream (our planner's row strips computed column by column, where no tensor inside it "
                         "has two readers; not with the instructions objective)")
    se.add_argument("--space", choices=sorted(SPACES), default="mcunet",
                    help="mcunet: ImageNet, 1000 classes (default); mcunet-vww: 2 classes, half width, "
                         "resolution 48-256")
    se.add_argument("--resolutions", type=_int_list, metavar="R,R,...", help="override the space's resolutions")
    se.add_argument("--data", metavar="DATA",
                    help="objective: held-out accuracy from a weight-sharing supernet trained on DATA ('digits', a .npz "
                         "or an image folder; see `tinypatch nas train`), in the supernet's space (needs PyTorch)")
    se.add_argument("--supernet", metavar="SUPERNET.pt",
                    help="with --data: the checkpoint to load if it exists, else where to save the one trained; "
                         "alone: use this checkpoint and the data it was trained on")
    se.add_argument("--epochs", type=_positive, default=10, help="with --data and no checkpoint: training epochs")
    _micro_batches_option(se, "with --data and no checkpoint: ")
    se.add_argument("--calib-batches", type=_positive, default=20, metavar="N",
                    help="BatchNorm re-calibration batches of 64 per candidate (default 20, MCUNetV2's)")
    se.add_argument("--population", type=_positive, default=100, help="population size (default 100)")
    se.add_argument("--parents", type=_positive, default=20, help="parents kept per iteration (default 20)")
    se.add_argument("--mutate", type=_natural, default=50, metavar="N", help="mutation children (default 50)")
    se.add_argument("--crossover", type=_natural, default=50, metavar="N", help="crossover children (default 50)")
    se.add_argument("--mutate-prob", type=_fraction, default=0.1, metavar="F",
                    help="probability a gene is resampled in a mutation (default 0.1)")
    se.add_argument("--iterations", type=_natural, default=30, help="iterations (default 30)")
    se.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same search (default 0)")
    se.add_argument("--resume", metavar="FILE", help="state file written after every iteration; continued if it exists")
    _ray_options(se, "evaluate candidates (and, with --data and no checkpoint, train the supernet)")
    se.add_argument("-o", "--output", metavar="FILE.json",
                    help="write the result: best spec (NetSpec JSON), its plan, figures, history")
    se.add_argument("--save-spec", metavar="SPEC.json", help="write the best network's spec alone")
    se.add_argument("--plot", metavar="FILE.png", help="save the Pareto plot of the objective vs SRAM")
    se.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")


def _int_from(least: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``least``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more, got {v}")
        return v
    return parse


_positive, _natural = _int_from(1), _int_from(0)


def _count(text: str) -> int:
    """'200M' -> 200000000, '1.5G', '5000k' or a plain integer."""
    t = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if mult > 1 else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 200M)") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return int(v * mult)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"resolutions must be positive: {text!r}")
    return values


def _codegen_parser(sub, preprocess: tuple[str, ...], preprocess_help: str) -> None:  # noqa: ANN001
    from tinypatch.codegen.targets import ALL_TARGETS, DEFAULT_STACK

    c = sub.add_parser("codegen", help="generate a self-contained C99 project (host and Cortex-M)",
                       description="Write C99 sources (weights, one static arena at the planned offsets, the "
                                   "plan's schedule as loops, kernels), a Makefile and linker scripts whose RAM "
                                   "region is the SRAM budget. --report builds it, runs it (host, or QEMU for "
                                   "Cortex-M) and checks the outputs against the Python executor.",
                       epilog=CODEGEN_EXAMPLES, formatter_class=_Formatter)
    c.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    c.add_argument("--plan", metavar="PLAN.json", help="a plan from `tinypatch plan -o` (default: layer by layer)")
    c.add_argument("--precision", metavar="PRECISION.json",
                   help="a precision plan from `tinypatch quantize` for --plan: the patch stages run at per-patch "
                        "mixed precision (run-time outlier test, low-bit requantization); --report compares "
                        "with `tinypatch run --precision`")
    c.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder to write the project into (replaced as a whole; see --force)")
    c.add_argument("--force", action="store_true",
                   help="write into DIR even if it holds files that an earlier codegen did not write")
    c.add_argument("--target", choices=ALL_TARGETS, default="host", help="the board the code is for (checks its SRAM, picks e.g. Helium "
                        "kernels on cortex-m55) and what --report builds and runs (default host)")
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
    c.add_argument("--seed", type=_natural, default=0, help="seed of the random input (default 0)")
    c.add_argument("--quantize-input", action="store_true", help="quantize a .npy of real values (see `run`)")


def _accounting_flags(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("--no-input", dest="include_input", action="store_false",
                   help="leave the model input out of the arena (streamed / decoded in place, as MCUNetV2 counts)")
    if output:
        p.add_argument("--no-output", dest="include_output", action="store_false",
                       help="leave the model output out of the arena")


def _clock() -> float:
    """When this command started: at this module's import for a process's first command, else now
    (plan's printed time covers the whole command: imports, loading, search, in-place pass, costs)."""
    global _STARTED
    started, _STARTED = (time.perf_counter() if _STARTED is None else _STARTED), None
    return started


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.started = _clock()
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        if getattr(args, "model", None) is not None:
            # every model is validated once, under --max-tensor-bytes
            args.model = api.load(args.model, max_tensor_bytes=args.max_tensor_bytes)
        return COMMANDS[args.command](args, console)
    except (TinypatchError, OSError) as exc:  # OSError: the file system said no (a folder we cannot write, ...)
        if args.debug:
            raise
        _error(exc)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130


def _error(exc: BaseException) -> None:
    """One line on stderr; the message is plain text (rich markup would eat ``[start, end]``)."""
    Console(stderr=True).print(Text.assemble(("error:", "bold red"), f" {exc}"), highlight=False, soft_wrap=True)


@contextmanager
def _progress(disable: bool = False) -> Iterator[api.Progress]:
    """A transient progress bar on stderr, driven by the API's ``progress(phase, done, total)`` hook
    (off when stderr is not a terminal: no stray blank line in logs)."""
    from rich.progress import Progress

    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=disable or not err.is_terminal) as bar:
        task = bar.add_task("working", total=None)

        def hook(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total or None)

        yield hook


def cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    if (args.sram or args.plan) and not args.plot:  # they only draw on the chart: silently ignored before
        raise UsageError(f"{'--sram' if args.sram else '--plan'} draws on the plot: add --plot FILE.png "
                         f"(`tinypatch plan --sram` finds a schedule that fits)")
    result = api.analyze(args.model, include_input=args.include_input, include_output=args.include_output)
    if args.json:
        print(result.to_json())
    else:
        result.render(console)
    if args.plot:
        result.plot(args.plot, args.sram, args.plan)
        if not args.json:
            console.print(f"plot written to {args.plot}")
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    with _progress(disable=args.json) as progress:
        result = api.plan(args.model, sram=args.sram, max_mac_overhead=args.max_mac_overhead,
                          strategy=args.strategy, stream=not args.no_stream, single_stage=args.single_stage,
                          max_grid=args.max_grid, inplace=args.inplace, include_input=args.include_input,
                          target=args.target, objective=args.objective, rewrite=args.rewrite,
                          progress=progress)
        if args.plot:
            result.reference(progress)
    from dataclasses import replace

    # the printed time: the whole command up to its output (see _clock)
    result.front = replace(result.front, seconds=time.perf_counter() - args.started)
    _emit(result, args, console, "plan")
    if args.plot:
        result.plot(args.plot)
        if not args.json:
            console.print(f"Pareto plot written to {args.plot}")
    return 0


def _emit(result: api.PlanResult | api.RedistributionResult | api.SearchOutcome | api.NasTrainResult
          | api.QuantizeReport, args: argparse.Namespace, console: Console, what: str) -> None:
    """Print a result (text or --json) and save it to -o, as plan, redistribute, search and quantize do."""
    if args.json:
        print(result.to_json())
    else:
        result.render(console)
    if args.output:
        result.save(args.output)
        if not args.json:
            console.print(f"{what} written to {args.output}")


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    result = api.run(args.model, args.plan, input=args.input, seed=args.seed, preprocess=args.preprocess,
                     quantize_input=args.quantize_input, arith=args.arith,
                     precision=args.precision)
    result.render(console)
    return 0 if result.ok else 1


def cmd_quantize(args: argparse.Namespace, console: Console) -> int:
    try:
        bits = [int(b) for b in args.bits.split(",")]
    except ValueError:
        raise UsageError(f"--bits: comma-separated integers, got {args.bits!r}") from None
    with _progress(disable=args.json) as progress:
        result = api.quantize(args.model, args.plan, calib=args.calib, n_calib=args.n_calib, evaluate=args.evaluate,
                              n_eval=args.n_eval, quantile=args.quantile, lam=args.lam, bitwidths=bits,
                              scope=args.scope, min_agreement=args.min_agreement, max_change=args.max_change,
                              max_margin_loss=args.max_margin_loss, accept=args.accept,
                              max_entropy_loss=args.max_entropy_loss, step=args.step,
                              max_flip_risk=args.max_flip_risk, outliers=args.outliers,
                              uniform_first=args.uniform_first,
                              preprocess=args.preprocess, progress=progress)
    _emit(result, args, console, "precision plan")
    return 0


def cmd_import_torch(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.errors import InputError

    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            raise InputError(f"--input-shape {args.input_shape!r}: expected integers like 1,3,32,32") from None
    result = api.import_torch(args.source, args.output, input_shape=shape, calibration=args.calibration,
                              quant_format=args.format)
    console.print(result.report(), highlight=False)
    console.print(f"written {args.output}")
    return 0


def cmd_quantize_float(args: argparse.Namespace, console: Console) -> int:
    graph = api.quantize_float(args.source, args.calibration, args.output)
    console.print(f"written {args.output}: {len(graph.ops)} int8 ops, TFLite scheme", highlight=False)
    return 0


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


def cmd_redistribute(args: argparse.Namespace, console: Console) -> int:
    with _progress(disable=args.json) as progress:
        result = api.redistribute(args.spec, budget=args.budget, grid=args.grid, tolerance=args.tolerance,
                                  progress=progress)
    _emit(result, args, console, "spec")
    return 0


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.nas.executors import ray_executor

    with ray_executor(args.ray, args.ray_address, args.workers):  # one Ray session for training and search
        return _search(args, console)


def _search(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.nas.space import SPACES

    space = SPACES[args.space]()
    objective = None
    if args.data or args.supernet:
        with _log_lines(disable=args.json) as log:
            objective, space = api.accuracy_objective(args.supernet, args.data, epochs=args.epochs,
                                                      calib_batches=args.calib_batches, seed=args.seed,
                                                      micro_batches=args.micro_batches, ray=args.ray,
                                                      ray_address=args.ray_address, workers=args.workers,
                                                      progress=log)
    if args.resolutions:
        from dataclasses import replace

        space = replace(space, resolutions=args.resolutions)
    err = Console(stderr=True)
    result = api.search(sram=args.sram, flash=args.flash, max_macs=args.max_macs, include_input=args.include_input,
                        objective=objective, convention="placed" if args.placed else "analytic", max_patches=args.max_patches,
                        stages=args.stages, stream=args.stream,
                        space=space, population=args.population, parents=args.parents, n_mutate=args.mutate,
                        n_crossover=args.crossover, mutate_prob=args.mutate_prob, iterations=args.iterations,
                        seed=args.seed, resume=args.resume, ray=args.ray, ray_address=args.ray_address,
                        workers=args.workers, progress=not args.json and err.is_terminal, target=args.target,
                        max_latency=args.max_latency, clock=args.clock, schedule_objective=args.schedule_objective)
    _emit(result, args, console, "result")
    if args.save_spec:
        result.save_spec(args.save_spec)
        if not args.json:
            console.print(f"spec written to {args.save_spec}")
    if args.plot:
        result.plot(args.plot)
        if not args.json:
            console.print(f"Pareto plot written to {args.plot}")
    return 0


def cmd_codegen(args: argparse.Namespace, console: Console) -> int:
    with _progress(disable=not args.report) as progress:
        result = api.codegen(args.model, args.output, plan=args.plan, target=args.target, sram=args.sram,
                             stack=args.stack, include_input=args.include_input, inplace=args.inplace,
                             report=args.report, input=args.input, seed=args.seed, preprocess=args.preprocess,
                             quantize_input=args.quantize_input, force=args.force, progress=progress,
                             precision=args.precision)
    result.render(console)
    return 0 if result.ok else 1


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from tinypatch.planning.plan import Plan
    from tinypatch.report.show import format_pipeline, pipeline

    graph = api.load(args.model)
    facts = pipeline(graph, Plan.load(args.plan) if args.plan else None, args.inplace)
    sys.stdout.write(json.dumps(facts, indent=1) + "\n" if args.json else format_pipeline(facts))
    return 0


@contextmanager
def _log_lines(disable: bool = False) -> Iterator[api.Progress]:
    """Progress of long steps (training epochs, phases) as lines on stderr."""
    err = Console(stderr=True)

    def hook(phase: str, done: int, total: int) -> None:
        if not disable and done == 0 and total == 0:
            err.print(phase, highlight=False)

    yield hook


def cmd_nas(args: argparse.Namespace, console: Console) -> int:
    with _log_lines(disable=args.json) as progress:
        if args.nas_command == "train":
            result = api.nas_train(args.data, epochs=args.epochs, resolutions=args.resolutions, holdout=args.holdout,
                                   seed=args.seed, batch_size=args.batch_size, config=args.config,
                                   micro_batches=args.micro_batches, ray=args.ray, ray_address=args.ray_address,
                                   workers=args.workers, progress=progress)
        else:
            result = api.nas_export(args.supernet, args.spec, args.output, data=args.data, sram=args.sram,
                                    include_input=args.include_input, finetune_epochs=args.finetune_epochs,
                                    qat_epochs=args.qat_epochs, mcu_images=args.mcu_images, target=args.target,
                                    project=args.project, seed=args.seed, board=args.board, progress=progress)
    if args.nas_command == "train":
        _emit(result, args, console, "supernet")
        return 0
    print(result.to_json()) if args.json else result.render(console)
    return 0 if result.ok else 1


COMMANDS = {"analyze": cmd_analyze, "plan": cmd_plan, "run": cmd_run, "zoo": cmd_zoo, "codegen": cmd_codegen,
            "show": cmd_show, "redistribute": cmd_redistribute, "search": cmd_search, "nas": cmd_nas,
            "quantize": cmd_quantize,
            "import-torch": cmd_import_torch, "quantize-float": cmd_quantize_float}

if __name__ == "__main__":
    sys.exit(main())
