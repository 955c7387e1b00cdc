"""Cost of a generated project on an emulated Cortex-M: flash, RAM, stack, executed instructions.

* flash: ``.text`` + ``.rodata`` + ``.ARM.exidx`` + ``.data`` (its initial values live in flash),
  from ``arm-none-eabi-size -A``;
* static RAM: ``.data`` + ``.bss`` (the arena and the runtime's few variables);
* stack: high-water mark measured by painting the stack before the inference;
* instructions: executed guest instructions counted by the qemu-insncount plugin, for the
  whole program (startup and semihosting I/O included) and inside the kernel code alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinypatch.codegen import toolchain
from tinypatch.codegen.project import Project
from tinypatch.errors import ToolchainError
from tinypatch.ir import Graph
from tinypatch.runtime.executor import run

Inputs = Sequence[np.ndarray] | Mapping[str, np.ndarray]


@dataclass
class McuCost:
    target: str
    flash: int  # text + rodata + exidx + data image
    text: int
    rodata: int
    static_ram: int  # .data + .bss
    arena: int
    ram_region: int  # LENGTH of the linker script's RAM region
    stack_used: int  # measured
    stack_reserved: int
    insns: int | None
    kernel_insns: int | None
    macs: int
    exact: bool  # outputs byte-identical to the Python executor

    @property
    def insns_per_mac(self) -> float | None:
        return self.insns / self.macs if self.insns is not None and self.macs else None

    @property
    def ram_used(self) -> int:
        """Static RAM plus the measured stack."""
        return self.static_ram + self.stack_used

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(insns_per_mac=self.insns_per_mac, ram_used=self.ram_used)
        return d


def outputs_equal(graph: Graph, got: Mapping[str, np.ndarray], inputs: Inputs,
                  reference: Mapping[str, np.ndarray] | None = None) -> bool:
    """Are ``got`` byte for byte the Python executor's outputs on ``inputs`` (or ``reference``, e.g.
    the plan executor's under a precision plan)?"""
    ref = run(graph, inputs) if reference is None else reference
    return all(got[n].dtype == ref[n].dtype and np.array_equal(got[n].view(np.uint8), ref[n].view(np.uint8))
               for n in graph.outputs)


def measure(graph: Graph, project: Project, inputs: Inputs, plugin: Path | None = None,
            timeout: float = 600, reference: Mapping[str, np.ndarray] | None = None) -> McuCost:
    """Build ``project`` for its Cortex-M target, run it on QEMU and collect its costs."""
    target = project.target
    toolchain.make(project.path, target)
    elf = project.path / f"model_{target}.elf"
    sizes = toolchain.section_sizes(elf)
    q = toolchain.run_qemu(project.path, graph, inputs, target, plugin, timeout)
    text, rodata, data = sizes.get(".text", 0), sizes.get(".rodata", 0), sizes.get(".data", 0)
    return McuCost(target, text + rodata + sizes.get(".ARM.exidx", 0) + data, text, rodata,
                   data + sizes.get(".bss", 0), project.arena_bytes, project.ram_length, q.stack_used,
                   project.stack, q.insns, q.kernel_insns, project.macs,
                   outputs_equal(graph, q.outputs, inputs, reference))


def _stage_builds(project: Project, timeout: float) -> Iterator[int]:
    """Build the project with every tiled patch stage run twice, then as generated (left built so)."""
    for runs in (2, 1):
        toolchain.make(project.path, "clean")
        toolchain.make(project.path, project.target, timeout, {"FAST": f"-DTP_FAST -DTP_STAGE_RUNS={runs}"})
        yield runs


def stage_instructions(graph: Graph, project: Project, inputs: Inputs, plugin: Path,
                       timeout: float = 600) -> tuple[int, dict[str, np.ndarray]]:
    """Executed instructions of the project's tiled patch stages alone, on its Cortex-M target, and the
    outputs of the program as generated: the program built with every such stage run twice
    (``TP_STAGE_RUNS=2``, same input, same data after it) minus the program as generated. Valid for
    plans whose stages run no op in place."""
    counts, outputs = [], {}
    for _ in _stage_builds(project, timeout):
        q = toolchain.run_qemu(project.path, graph, inputs, project.target, plugin, timeout)
        if q.insns is None:
            raise ToolchainError("the qemu-insncount plugin reported no count")
        counts.append(q.insns)
        outputs = q.outputs
    return counts[0] - counts[1], outputs


def stage_profile(graph: Graph, project: Project, inputs: Inputs, plugin: Path,
                  timeout: float = 600) -> dict[str, int]:
    """Executed instructions of the tiled patch stages per kernel function (``tp_kernels.c``,
    ``tp_fast*.c``, ``tp_lowbit.c``; a static helper the compiler kept counts under its own name), as
    :func:`stage_instructions` counts the total: every stage run twice minus as generated, one QEMU run
    per function and build. Functions the stages do not run are left out."""
    per: dict[str, int] = {}
    for runs in _stage_builds(project, timeout):
        elf = project.path / f"model_{project.target}.elf"
        for name, span in toolchain.kernel_functions(elf).items():
            q = toolchain.run_qemu(project.path, graph, inputs, project.target, plugin, timeout, span)
            if q.kernel_insns is None:
                raise ToolchainError("the qemu-insncount plugin reported no count")
            per[name] = per.get(name, 0) + (q.kernel_insns if runs == 2 else -q.kernel_insns)
    return {k: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v}
