"""Where every tensor of a plan lives in C: arena offsets, I/O buffers outside it, flash constants.

The arena is one static byte array of exactly the planned peak; each activation buffer sits
at the offset the arena planner gave it (:func:`tinypatch.planning.arena.place`, the same
placement the Python plan executor uses). Model inputs/outputs that the plan leaves out of
the arena get their own static arrays (section ``.tp_io`` on a microcontroller).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinypatch.codegen import cfmt
from tinypatch.codegen.sanitize import c_ident
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.planning.arena import Placement
from tinypatch.planning.memory import PlanBuffers, place_plan, plan_buffers
from tinypatch.planning.plan import Plan

ARENA = "tp_arena"


@dataclass
class Unit:
    """The C translation unit being built: declarations in order, constants emitted once."""

    decls: list[str] = field(default_factory=list)
    consts: dict[str, str] = field(default_factory=dict)
    const_bytes: int = 0  # bytes of constant data (weights, parameters, tables)
    _names: set[str] = field(default_factory=set)

    def name(self, base: str) -> str:
        """A fresh C identifier built from ``base``."""
        base = c_ident(base)
        n, i = base, 1
        while n in self._names:
            n, i = f"{base}_{i}", i + 1
        self._names.add(n)
        return n

    def array(self, c_type: str, base: str, values: np.ndarray, align: int = 4) -> str:
        """Emit a constant array; returns its C name."""
        name = self.name(base)
        self.decls.append(cfmt.array(c_type, name, values, align=align))
        self.const_bytes += int(np.asarray(values).size) * _CSIZE[c_type]
        return name

    def add(self, text: str, nbytes: int = 0) -> None:
        self.decls.append(text)
        self.const_bytes += nbytes


_CSIZE = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "float": 4, "double": 8}


class Storage:
    """Arena placement of a plan and the C expression of every tensor's base pointer."""

    def __init__(self, graph: Graph, plan: Plan, unit: Unit) -> None:
        self.graph, self.unit = graph, unit
        self.buffers: PlanBuffers = plan_buffers(graph, plan)
        self.placement: Placement = place_plan(self.buffers)
        self.arena_size = self.placement.peak
        self.inplace = set(plan.inplace)  # ops whose output overlaps their input (raster-order kernels)
        self.buffer_of = self.buffers.liveness.tensor_buffer
        self.io: dict[str, str] = {}
        for t in [*graph.inputs, *graph.outputs]:
            if t not in self.buffer_of and t not in self.io and graph.tensors[t].nbytes:
                self.io[t] = unit.name(f"tp_io_{t}")

    def esize(self, t: str) -> int:
        return DTYPE_BYTES[self.graph.tensors[t].dtype]

    def ctype(self, t: str) -> str:
        return cfmt.ctype(self.graph.tensors[t].dtype)

    def offset(self, name: str) -> int:
        """Arena offset of a tensor or of a named buffer (line buffers)."""
        return self.placement.offsets[self.buffer_of.get(name, name)]

    def buffer_bytes(self, name: str) -> int:
        return self.placement.sizes[self.buffer_of.get(name, name)]

    def in_arena(self, t: str) -> bool:
        return t in self.buffer_of

    def raw(self, name: str) -> str:
        """``char *`` to the start of a tensor's (or a named buffer's) storage."""
        t = self.graph.tensors.get(name)
        if t is not None and t.is_const:
            return f"((const char *){self.const(name)})"
        if name in self.io:
            return f"((char *){self.io[name]})"
        return f"((char *){ARENA} + {self.offset(name)})"

    def base(self, t: str) -> str:
        """Typed pointer to element 0 of tensor ``t``."""
        const = "const " if self.graph.tensors[t].is_const else ""
        return f"(({const}{self.ctype(t)} *){self.raw(t)})"

    def const(self, t: str) -> str:
        """C name of a constant tensor's data (emitted on first use)."""
        if t not in self.unit.consts:
            tensor = self.graph.tensors[t]
            self.unit.consts[t] = self.unit.array(self.ctype(t), f"tp_c_{t}", tensor.data, align=16)
        return self.unit.consts[t]

    def io_decls(self) -> str:
        """Static arrays of the tensors kept outside the arena."""
        out = []
        for t, name in self.io.items():
            tensor = self.graph.tensors[t]
            out.append(f"static {self.ctype(t)} {name}[{tensor.size}] TP_IO TP_ALIGN(16);\n")
        return "".join(out)
