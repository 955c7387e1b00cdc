"""Generate a self-contained C99 project for a model and a plan.

Everything is rendered in memory first (refusing unsupported operators, plans or budgets with
a :mod:`tinypatch.errors` exception), then written: ``model.c``/``model.h`` (weights,
parameters, the static arena, the schedule and the API), the kernel and runtime sources, a
linker script per Cortex-M target and a Makefile.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tinypatch.codegen import targets as tg
from tinypatch.codegen.emitters import OpEmitter
from tinypatch.codegen.mixed_tiles import MixedCode
from tinypatch.codegen.sanitize import c_comment
from tinypatch.codegen.schedule import Scheduler
from tinypatch.codegen.storage import ARENA, Storage, Unit
from tinypatch.errors import BudgetError, PlanError
from tinypatch.ir import Graph
from tinypatch.planning.check import check_plan
from tinypatch.planning.cost import plan_cost
from tinypatch.planning.inplace import add_inplace
from tinypatch.planning.plan import STREAM, Plan
from tinypatch.planning.precision import PrecisionPlan
from tinypatch.planning.rewrite import rewritten
from tinypatch.safeio import output_folder

RUNTIME_SOURCES = ("tp_types.h", "tp_shadow.h", "tp_shadow.c", "tp_kernels.h", "tp_ref.h", "tp_kernels.c", "tp_fast.h",
                   "tp_fast.c", "tp_fast_mve.h", "tp_fast_mve.c", "tp_lowbit.h", "tp_lowbit.c", "tp_mcu.h", "tp_semihost.h", "tp_semihost.c", "tp_startup.c", "tp_main_mcu.c",
                   "tp_main_host.c")


@dataclass(frozen=True)
class Project:
    """A generated project and the figures its header documents."""

    path: Path
    model: str
    target: str
    arena_bytes: int
    const_bytes: int  # weights, quantization parameters and tables (flash)
    macs: int  # with the plan's recomputation
    base_macs: int  # layer by layer
    sram_budget: int
    stack: int
    io_bytes: int  # model inputs/outputs kept outside the arena
    plan: Plan

    @property
    def ram_length(self) -> int:
        return tg.ram_length(self.sram_budget, self.stack)


def generate(graph: Graph, plan: Plan | None, out_dir: str | Path, target: str = "host",
             sram: int | None = None, stack: int = tg.DEFAULT_STACK, inplace: bool = True,
             force: bool = False, precision: PrecisionPlan | None = None) -> Project:
    """Write the C project for ``graph`` under ``plan`` (None: layer by layer) into ``out_dir``;
    ``inplace``: also run in place every layer-by-layer op that lowers the arena
    (:func:`tinypatch.planning.inplace.add_inplace`; ops the plan already lists always are).

    ``precision``: a precision plan (``tinypatch quantize``) for ``plan``: its patch stages then run at
    per-patch mixed precision, exactly as the Python plan executor runs them (:mod:`tinypatch.codegen.mixed_tiles`).

    The folder is written as one step (:func:`tinypatch.safeio.output_folder`): a folder that
    holds other files is refused unless ``force``, and an interrupted run leaves no half project.
    """
    if target not in tg.ALL_TARGETS:
        raise PlanError(f"unknown target {target!r}; choose one of {', '.join(tg.ALL_TARGETS)}")
    graph = rewritten(graph, plan) if plan is not None else graph
    plan = deployed_plan(graph, plan, inplace)
    files, project = render(graph, plan, Path(out_dir), target, sram, stack, precision)
    src = resources.files("tinypatch.codegen") / "c"
    with output_folder(out_dir, force) as staging:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        for name in RUNTIME_SOURCES:
            (staging / name).write_bytes((src / name).read_bytes())
    return project


def deployed_plan(graph: Graph, plan: Plan | None, inplace: bool = True) -> Plan:
    """The plan as generated: checked against ``graph`` (None: layer by layer) and, with ``inplace``,
    with every layer-by-layer op that lowers the arena run in place."""
    plan = plan or Plan.layer_by_layer(graph)
    check_plan(graph, plan)  # refuses a plan of another model, or an illegal one, before anything is written
    return add_inplace(graph, plan) if inplace else plan


def render(graph: Graph, plan: Plan, out: Path, target: str, sram: int | None, stack: int,
           precision: PrecisionPlan | None = None) -> tuple[dict[str, str], Project]:
    """The generated files by name, and the project figures (nothing is written)."""
    unit = Unit()
    storage = Storage(graph, plan, unit)
    arena = storage.arena_size
    budget = arena if sram is None else sram
    if stack < 256 or stack % 8:
        raise PlanError(f"stack must be a multiple of 8 bytes and at least 256, got {stack}")
    if target in tg.TARGETS and tg.ram_length(budget, stack) > tg.TARGETS[target].ram_max:
        t = tg.TARGETS[target]
        raise BudgetError(f"{target} ({t.machine}) has {t.ram_max} B of SRAM at 0x{t.ram_origin:x}; the plan needs "
                          f"{tg.ram_length(budget, stack)} B (SRAM budget {budget} B + stack + overhead)", arena)
    emitter = OpEmitter(graph, storage, unit, target)
    mixed = MixedCode(graph, plan, precision, unit, emitter) if precision is not None else None
    body = Scheduler(graph, storage, unit, emitter, mixed).body()
    cost = plan_cost(graph, plan)
    io_bytes = sum(graph.tensors[t].nbytes for t in storage.io)
    project = Project(out, graph.name, target, arena, unit.const_bytes, cost.macs, cost.base_macs, budget, stack,
                      io_bytes, plan)
    files = {"model.c": _model_c(graph, storage, unit, body), "model.h": _model_h(graph, storage, project),
             "Makefile": _makefile(project)}
    for t in tg.TARGETS.values():
        files[f"link_{t.name}.ld"] = tg.linker_script(t, budget, arena, stack)
    return files, project


def _io_pointer(storage: Storage, t: str) -> str:
    return f"(void *){storage.raw(t)}"


def _model_c(graph: Graph, storage: Storage, unit: Unit, body: str) -> str:
    def switch(fn: str, names: list[str], value, ret: str, default: str) -> str:
        cases = "".join(f"    case {i}: return {value(t)};\n" for i, t in enumerate(names))
        return f"{ret} {fn}(int index)\n{{\n    switch (index) {{\n{cases}    }}\n    return {default};\n}}\n\n"

    indented = "".join("    " + line + "\n" if line else "\n" for line in body.splitlines())
    arena = max(storage.arena_size, 1)
    return f"""/* {c_comment(graph.name)}: generated by tinypatch. Do not edit; regenerate with `tinypatch codegen`. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "tp_kernels.h"
#include "tp_lowbit.h"

#if defined(__arm__) && !defined(__linux__)
#define TP_IO __attribute__((section(".tp_io")))
#else
#define TP_IO
#endif

#if defined(TP_CHECK) /* host check build: every kernel window must lie inside its buffer */
#include <stdio.h>
#include <stdlib.h>
static __attribute__((unused)) void tp_window(const char *p, long h, long w, long rs, long c, long es, const char *lo, const char *hi, int line)
{{
    if (h <= 0 || w <= 0) return;
    if (p < lo || p + ((h - 1) * rs + w * c) * es > hi) {{
        fprintf(stderr, "model.c:%d: kernel window outside its buffer\\n", line);
        abort();
    }}
}}
#define TP_WINDOW(p, h, w, rs, c, es, lo, hi) \\
    tp_window((const char *)(p), (h), (w), (rs), (c), (es), (const char *)(lo), (const char *)(hi), __LINE__)
/* With TP_DUMP_FILE=path set, every operator's output is appended there as it is computed: the
 * whole tensor for a layer-by-layer op, the fresh region of each tile inside a patch stage.
 * Record: int32 {{op, tile row, tile col, y0, x0, h, w, c, esize}}, then h rows of w * c * esize bytes. */
static __attribute__((unused)) void tp_dump(int k, int ti, int tj, long y0, long x0, const void *p, long h, long w,
                                            long rs, long c, long es)
{{
    static FILE *f;
    static int state; /* 0: not opened yet, 1: dumping, -1: off */
    if (!state) {{
        const char *path = getenv("TP_DUMP_FILE");
        f = path ? fopen(path, "wb") : NULL;
        state = f ? 1 : -1;
    }}
    if (state < 0 || h <= 0 || w <= 0) return;
    const int32_t head[9] = {{k, ti, tj, (int32_t)y0, (int32_t)x0, (int32_t)h, (int32_t)w, (int32_t)c, (int32_t)es}};
    int ok = fwrite(head, sizeof head, 1, f) == 1;
    for (long r = 0; r < h && ok; r++) ok = fwrite((const char *)p + r * rs * es, (size_t)(w * c * es), 1, f) == 1;
    if (!ok || fflush(f) != 0) {{
        fprintf(stderr, "cannot write TP_DUMP_FILE\\n");
        abort();
    }}
}}
#define TP_DUMP(k, ti, tj, y0, x0, p, h, w, rs, c, es) tp_dump((k), (ti), (tj), (y0), (x0), (p), (h), (w), (rs), (c), (es))
#else
#define TP_WINDOW(p, h, w, rs, c, es, lo, hi) ((void)0)
#define TP_DUMP(k, ti, tj, y0, x0, p, h, w, rs, c, es) ((void)0)
#endif

#ifndef TP_STAGE_RUNS
#define TP_STAGE_RUNS 1 /* how often each tiled patch stage runs (2: measurement builds count one stage's instructions) */
#endif

/* The arena: every activation at its planned offset. */
static uint8_t {ARENA}[{arena}] TP_ALIGN(16);
{storage.io_decls()}
/* Constants: weights, quantization parameters, tables, tile spans. */
{"".join(unit.decls)}
{switch("model_input", graph.inputs, lambda t: _io_pointer(storage, t), "void *", "NULL")}\
{switch("model_output", graph.outputs, lambda t: _io_pointer(storage, t), "void *", "NULL")}\
{switch("model_input_bytes", graph.inputs, lambda t: graph.tensors[t].nbytes, "size_t", "0")}\
{switch("model_output_bytes", graph.outputs, lambda t: graph.tensors[t].nbytes, "size_t", "0")}\
int model_invoke(void)
{{
{indented}    return 0;
}}
"""


def _tensor_doc(graph: Graph, storage: Storage, t: str) -> str:
    tensor = graph.tensors[t]
    q = ""
    if tensor.quant is not None and tensor.quant.scale.size == 1:
        q = f", scale {float(tensor.quant.scale[0]):.9g}, zero point {int(tensor.quant.zero_point[0])}"
    where = f"arena offset {storage.offset(t)}" if storage.in_arena(t) else "own buffer outside the arena"
    shape = "x".join(map(str, tensor.shape))
    return f"{tensor.dtype} [{shape}] ({tensor.nbytes} B{q}; {where})"


def _model_h(graph: Graph, storage: Storage, p: Project) -> str:
    stages = ", ".join(f"ops [{s.start}, {s.end}) streamed in {s.grid[0]} row strips" if s.mode(s.start) == STREAM
                       else f"ops [{s.start}, {s.end}) in {s.grid[0]}x{s.grid[1]} tiles" for s in p.plan.stages)
    schedule = f"patch-based: {stages}" if stages else "layer by layer"
    lines = [f" *   input {i}: {_tensor_doc(graph, storage, t)}" for i, t in enumerate(graph.inputs)]
    lines += [f" *   output {i}: {_tensor_doc(graph, storage, t)}" for i, t in enumerate(graph.outputs)]
    defs = [f"#define MODEL_INPUT{i}_BYTES {graph.tensors[t].nbytes}" for i, t in enumerate(graph.inputs)]
    defs += [f"#define MODEL_OUTPUT{i}_BYTES {graph.tensors[t].nbytes}" for i, t in enumerate(graph.outputs)]
    nl = "\n"
    return f"""/* {c_comment(graph.name)}: generated by tinypatch.
 *
 * Schedule: {schedule}.
 * RAM: one static arena of {p.arena_bytes} B holding every activation at its planned offset
 *      (no malloc); {p.io_bytes} B of model inputs/outputs outside it.
 * Flash: {p.const_bytes} B of constant data (weights, quantization parameters, tables) plus code.
 * MACs: {p.macs} per inference ({p.base_macs} layer by layer).
 * Tensors:
{nl.join(lines)}
 *
 * Use: write each input into model_input(i) (model_input_bytes(i) bytes), call model_invoke(),
 * read each output from model_output(i). Inputs live in the arena and are overwritten by the
 * inference: write them again before every call. Not reentrant.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>

#define MODEL_ARENA_BYTES {p.arena_bytes}
#define MODEL_CONST_BYTES {p.const_bytes}
#define MODEL_MACS {p.macs}
#define MODEL_NUM_INPUTS {len(graph.inputs)}
#define MODEL_NUM_OUTPUTS {len(graph.outputs)}
{nl.join(defs)}

void *model_input(int index);
void *model_output(int index);
size_t model_input_bytes(int index);
size_t model_output_bytes(int index);
int model_invoke(void); /* 0 on success */

#endif
"""


def _makefile(p: Project) -> str:
    cpu = "\n".join(f"CPU_{t.name} = {t.cpu_flags}\nQEMU_{t.name} = {t.machine}" for t in tg.TARGETS.values())
    mcu = " ".join(tg.MCU_TARGETS)
    return f"""# Generated by tinypatch (model.h names the model): arena {p.arena_bytes} B, SRAM budget {p.sram_budget} B,
# stack {p.stack} B (RAM region {p.ram_length} B on Cortex-M).
#
#   make host                      host build: ./model_host input.bin output.bin
#   make host-check                host build with -fsanitize=address,undefined and window checks
#   make host-shadow               host build, every in-place call shadowed (reference and DSP
#                                  kernels): a read of an input byte the output already overwrote aborts
#   make ... FAST=                 reference kernels only (no optimised paths)
#   make cortex-m4|cortex-m7|cortex-m55   cross build (arm-none-eabi-gcc): model_<target>.elf
#   make run-cortex-m7             run on QEMU: reads input.bin, writes output.bin (semihosting)
#   make size-cortex-m7            text/data/bss of the ELF

CC ?= cc
ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
QEMU ?= qemu-system-arm
OPT ?= -O2
FAST ?= -DTP_FAST
CFLAGS_COMMON = -std=c99 -Wall -Wextra -fno-strict-aliasing -ffp-contract=off $(FAST)
MODEL_SRCS = model.c tp_kernels.c tp_fast.c tp_lowbit.c tp_shadow.c
HEADERS = model.h tp_types.h tp_kernels.h tp_ref.h tp_fast.h tp_fast_mve.h tp_lowbit.h tp_mcu.h tp_semihost.h
HOST_SRCS = $(MODEL_SRCS) tp_main_host.c
MCU_SRCS = $(MODEL_SRCS) tp_fast_mve.c tp_main_mcu.c tp_startup.c tp_semihost.c
ARM_CFLAGS = $(CFLAGS_COMMON) $(OPT) -mthumb -ffunction-sections -fdata-sections
ARM_LDFLAGS = -nostartfiles --specs=nano.specs -Wl,--gc-sections
{cpu}

.PHONY: all help host host-check host-shadow {mcu} clean
all: host

help:
\t@sed -n 's/^#   //p' Makefile

HOST_FLAGS_host = $(CFLAGS_COMMON) $(OPT)
HOST_FLAGS_host_check = $(CFLAGS_COMMON) -O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined \\
\t-fno-sanitize-recover=all -DTP_CHECK
HOST_FLAGS_host_shadow = $(CFLAGS_COMMON) -O1 -g1 -DTP_CHECK -DTP_SHADOW

host: model_host
host-check: model_host_check
host-shadow: model_host_shadow
# one object per source (a compiler cache can keep the kernels' objects: CC="ccache cc"), all rebuilt
model_host model_host_check model_host_shadow: model_%: $(HOST_SRCS) $(HEADERS)
\t@mkdir -p obj_$*
\t@for s in $(HOST_SRCS); do $(CC) $(HOST_FLAGS_$*) -c $$s -o obj_$*/$${{s%.c}}.o || exit 1; done
\t$(CC) $(HOST_FLAGS_$*) -o $@ $(addprefix obj_$*/,$(HOST_SRCS:.c=.o))

{mcu}: %: model_%.elf
model_%.elf: $(MCU_SRCS) $(HEADERS) link_%.ld
\t@mkdir -p obj_$*
\t@for s in $(MCU_SRCS); do $(ARM_CC) $(ARM_CFLAGS) $(CPU_$*) -c $$s -o obj_$*/$${{s%.c}}.o || exit 1; done
\t$(ARM_CC) $(ARM_CFLAGS) $(CPU_$*) -T link_$*.ld $(ARM_LDFLAGS) -Wl,-Map=model_$*.map -o $@ \\
\t\t$(addprefix obj_$*/,$(MCU_SRCS:.c=.o)) -lgcc

run-%: model_%.elf
\t$(QEMU) -M $(QEMU_$*) -nographic -monitor none -serial none \\
\t\t-semihosting-config enable=on,target=native -kernel model_$*.elf

size-%: model_%.elf
\t$(ARM_SIZE) -A model_$*.elf

clean:
\trm -rf model_host model_host_check model_host_shadow model_*.elf model_*.map obj_* output.bin plugin.log
"""
