"""Graph IR: tensors, operators and a graph in topological order (NHWC, like TFLite).

Operators use TFLite's builtin names (``CONV_2D``, ``DEPTHWISE_CONV_2D``...) and attribute
names taken from TFLite's schema options in snake_case (``stride_h``, ``padding``,
``fused_activation_function``...); ``tinypatch.ir.ops`` lists them. Passes are plain
functions over a :class:`Graph`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from tinypatch.errors import GraphError

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4, "bool": 1}


@dataclass
class QuantParams:
    """Affine quantization ``real = scale * (q - zero_point)``, per tensor or per channel."""

    scale: np.ndarray  # float32, shape (1,) or (channels,)
    zero_point: np.ndarray  # int64, same length as scale
    axis: int | None = None  # quantized dimension for per-channel, None for per-tensor

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if self.zero_point.size == 1 and self.scale.size > 1:
            self.zero_point = np.repeat(self.zero_point, self.scale.size)
        if self.scale.size != self.zero_point.size:
            raise GraphError(f"quantization has {self.scale.size} scales but {self.zero_point.size} zero points")

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @classmethod
    def tensor(cls, scale: float, zero_point: int = 0) -> QuantParams:
        return cls(np.array([scale], np.float32), np.array([zero_point], np.int64), None)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale.tolist(), "zero_point": self.zero_point.tolist(), "axis": self.axis}


@dataclass
class Tensor:
    """A named value: an activation (``data is None``) or a constant (weights, bias, shape)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams | None = None
    data: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        if self.dtype not in DTYPE_BYTES:
            raise GraphError(f"tensor {self.name!r}: unsupported dtype {self.dtype}")

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


@dataclass
class Op:
    """One operator: a TFLite builtin type, input/output tensor names and attributes.

    An optional input that is absent (e.g. a conv without bias) is the empty string.
    """

    type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __repr__(self) -> str:
        return f"{self.name or self.type}: {self.type}({', '.join(self.inputs)}) -> {', '.join(self.outputs)}"


class Graph:
    """Tensors by name, operators in topological order, named graph inputs and outputs."""

    def __init__(self, name: str = "model") -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.meta: dict[str, Any] = {}  # frontend facts, e.g. {"tflite_index": {name: index}}

    # --- building -------------------------------------------------------------------
    def add_tensor(self, tensor: Tensor) -> Tensor:
        if tensor.name in self.tensors:
            raise GraphError(f"duplicate tensor name {tensor.name!r}")
        self.tensors[tensor.name] = tensor
        return tensor

    def add_op(self, op: Op) -> Op:
        for name in (*op.inputs, *op.outputs):
            if name and name not in self.tensors:
                raise GraphError(f"op {op.name or op.type} refers to unknown tensor {name!r}")
        if not op.name:
            op.name = f"{op.type.lower()}_{len(self.ops)}"
        self.ops.append(op)
        return op

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            name, i = f"{base}_{i}", i + 1
        return name

    # --- walking --------------------------------------------------------------------
    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def producers(self) -> dict[str, int]:
        """Map tensor name -> index of the op that writes it."""
        return {t: i for i, op in enumerate(self.ops) for t in op.outputs}

    def consumers(self) -> dict[str, list[int]]:
        """Map tensor name -> indices of the ops that read it, in order."""
        users: dict[str, list[int]] = {}
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                if t and i not in users.setdefault(t, []):
                    users[t].append(i)
        return users

    def activations(self) -> list[str]:
        """Names of every non-constant tensor: graph inputs and op outputs, in schedule order."""
        seen = list(self.inputs)
        for op in self.ops:
            seen.extend(t for t in op.outputs if t not in seen)
        return seen

    def copy(self) -> Graph:
        """A deep copy of the structure; constant arrays and quantization parameters are shared (treat
        them as read-only: a pass that changes a tensor's quantization gives it new parameters)."""
        g = Graph(self.name)
        for t in self.tensors.values():
            g.tensors[t.name] = Tensor(t.name, t.shape, t.dtype, t.quant, t.data)
        g.ops = [Op(o.type, list(o.inputs), list(o.outputs), copy.deepcopy(o.attrs), o.name) for o in self.ops]
        g.inputs, g.outputs = list(self.inputs), list(self.outputs)
        g.meta = copy.deepcopy(self.meta)
        return g

    def validate(self) -> None:
        """Check that every op reads tensors already defined and every output is produced."""
        defined = set(self.inputs) | {n for n, t in self.tensors.items() if t.is_const}
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                if t and t not in defined:
                    raise GraphError(f"op {i} ({op.type}) reads {t!r} before it is produced")
            for t in op.outputs:
                if t in defined:
                    raise GraphError(f"tensor {t!r} is written twice (op {i}, {op.type})")
                defined.add(t)
        for t in self.outputs:
            if t not in defined:
                raise GraphError(f"graph output {t!r} is never produced")

    def __repr__(self) -> str:
        lines = [f"Graph {self.name}: inputs={self.inputs} outputs={self.outputs}"]
        for op in self.ops:
            shapes = [self.tensors[t].shape for t in op.outputs]
            lines.append(f"  {op!r}  {shapes}")
        return "\n".join(lines)
