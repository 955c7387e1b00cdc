"""Fold the shape arithmetic that TFLite's converter leaves in a graph, at import.

Keras models converted with a dynamic batch (``[-1, H, W, C]``) compute their reshape targets
at run time: ``SHAPE -> STRIDED_SLICE -> PACK / CONCATENATION -> RESHAPE`` around Flatten,
squeeze-excite and transposed convolutions, ``EXPAND_DIMS -> TILE -> RESHAPE`` for
``UpSampling2D``. With the batch taken as 1 every such value is a constant, so
:func:`fold_shapes` evaluates them with numpy and leaves the static graph:

* an operator whose inputs are all constants (``SHAPE`` only needs its input's shape) and
  whose output is not quantized is evaluated and removed; its output becomes a constant;
* shapes the file leaves dynamic (``-1`` beyond the batch in ``shape_signature``) are derived
  from the folded values (a ``RESHAPE`` target, a ``TILE`` multiple...);
* chains of ``RESHAPE`` / ``EXPAND_DIMS`` / ``TILE`` that repeat rows and columns of an NHWC
  map become one ``RESIZE_NEAREST_NEIGHBOR``, checked to copy exactly the same pixels; the remaining ``EXPAND_DIMS`` / ``SQUEEZE`` / ``TILE`` by 1
  on activations become ``RESHAPE``.

Operators still outside ``SUPPORTED_OPS`` afterwards are all named in one
:class:`~tinypatch.errors.UnsupportedOperatorError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tinypatch.errors import ModelLoadError, UnsupportedOperatorError
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.ir.ops import SUPPORTED_OPS
from tinypatch.kernels.resize import nearest_source_indices

# Operators that only compute shapes in converter output: left over, they mean a shape stayed dynamic.
SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK", "EXPAND_DIMS", "SQUEEZE", "TILE", "GATHER", "CAST", "FILL",
             "RANGE", "REDUCE_PROD", "FLOOR_DIV", "SUB")
_INT = ("int32", "int64")
_ELEMENTWISE = ("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "DIV", "FLOOR_DIV")


def _strided_slice(x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray,
                   a: dict[str, Any]) -> np.ndarray | None:
    """TFLite STRIDED_SLICE without ellipsis / new-axis masks (None when they are set)."""
    if a.get("ellipsis_mask", 0) or a.get("new_axis_mask", 0):
        return None
    index: list[Any] = []
    for d in range(len(begin)):
        b, e, s = int(begin[d]), int(end[d]), int(strides[d])
        if a.get("shrink_axis_mask", 0) >> d & 1:
            index.append(b)
            continue
        if a.get("offset", False):
            e = b + e
        start = None if a.get("begin_mask", 0) >> d & 1 else b
        stop = None if a.get("end_mask", 0) >> d & 1 else e
        index.append(slice(start, stop, s))
    return np.asarray(x[tuple(index)])


def _binary(op_type: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "MAXIMUM": np.maximum,
            "MINIMUM": np.minimum, "FLOOR_DIV": np.floor_divide}[op_type]


def evaluate(op: Op, args: list[np.ndarray | None], shapes: list[tuple[int, ...]]) -> np.ndarray | None:
    """The value of ``op`` on constant ``args`` (``shapes`` of its inputs), or None if not foldable."""
    t, a = op.type, op.attrs
    if t == "SHAPE":
        return np.array(shapes[0], np.int64)
    if any(x is None for x in args):
        return None
    x = args[0]
    if t in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE"):
        return x  # reshaped to the output shape by the caller
    if t == "STRIDED_SLICE":
        return _strided_slice(x, args[1], args[2], args[3], a)
    if t == "PACK":
        return np.stack(args, axis=int(a.get("axis", 0)))
    if t == "CONCATENATION":
        return np.concatenate([np.atleast_1d(v) for v in args], axis=int(a.get("axis", 0)))
    if t == "TILE":
        return np.tile(x, [int(m) for m in args[1]])
    if t == "GATHER" and int(a.get("batch_dims", 0)) == 0:
        return np.take(x, args[1].astype(np.int64), axis=int(a.get("axis", 0)))
    if t == "CAST":
        return x
    if t == "FILL":
        return np.full([int(d) for d in args[0]], args[1])
    if t == "RANGE":
        return np.arange(args[0], args[1], args[2])
    if t == "REDUCE_PROD":
        return np.prod(x, axis=tuple(int(d) for d in np.atleast_1d(args[1])), keepdims=bool(a.get("keep_dims")))
    if t in ("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "FLOOR_DIV") and a.get("fused_activation_function",
                                                                            "NONE") == "NONE":
        return _binary(t)(x, args[1])
    return None


def _resolve_reshape(target: np.ndarray, size: int, name: str) -> tuple[int, ...]:
    """A RESHAPE target with at most one -1 resolved against ``size`` elements."""
    dims = [int(d) for d in np.atleast_1d(target)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ModelLoadError(f"RESHAPE to {dims} for {name}: not a valid shape")
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if known == 0 or size % known:
            raise ModelLoadError(f"RESHAPE of {size} values to {dims} for {name}")
        dims[dims.index(-1)] = size // known
    if math.prod(dims) != size:
        raise ModelLoadError(f"RESHAPE of {size} values to {dims} for {name}")
    return tuple(dims)


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*shapes))


class _Folder:
    def __init__(self, graph: Graph, signatures: dict[str, tuple[int, ...]]) -> None:
        self.g = graph
        self.dynamic = {n for n, sig in signatures.items() if any(d < 0 for d in sig[1:])}
        self.underived: list[str] = []  # dynamic shapes nothing derives (reported after unsupported ops)

    def const(self, name: str) -> np.ndarray | None:
        return self.g.tensors[name].data if name else None

    def run(self) -> None:
        kept: list[Op] = []
        for op in self.g.ops:
            if not self._fold(op):
                self._fix_shapes(op)
                kept.append(op)
        self.g.ops = kept

    def _fold(self, op: Op) -> bool:
        outs = [self.g.tensors[t] for t in op.outputs]
        if len(outs) != 1 or outs[0].quant is not None or outs[0].name in self.g.outputs:
            return False
        ins = [self.g.tensors[t] if t else None for t in op.inputs]
        if op.type != "SHAPE" and not ins:
            return False
        if op.type == "SHAPE" and ins[0].name in self.dynamic:
            return False
        value = evaluate(op, [t.data if t is not None else None for t in ins],
                         [t.shape if t is not None else () for t in ins])
        if value is None:
            return False
        out = outs[0]
        if op.type in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE"):
            shape = self._reshaped(op, value.size) if out.name in self.dynamic else out.shape
            value = value.reshape(shape)
        out.data = np.array(value, dtype=out.np_dtype)  # a copy; keeps 0-d scalars 0-d
        out.shape = tuple(int(d) for d in out.data.shape)
        self.dynamic.discard(out.name)
        return True

    def _reshaped(self, op: Op, size: int) -> tuple[int, ...]:
        """Output shape of a reshape-like op of ``size`` elements."""
        x = self.g.tensors[op.inputs[0]].shape
        if op.type == "RESHAPE":
            target = self.const(op.inputs[1]) if len(op.inputs) > 1 and op.inputs[1] else None
            if target is None:
                raise ModelLoadError(f"{op.name}: RESHAPE target is computed at run time")
            return _resolve_reshape(target, size, op.name)
        if op.type == "EXPAND_DIMS":
            axis = int(np.atleast_1d(self.const(op.inputs[1]))[0])
            axis = axis % (len(x) + 1)
            return (*x[:axis], 1, *x[axis:])
        dims = op.attrs.get("squeeze_dims") or tuple(i for i, d in enumerate(x) if d == 1)
        drop = {int(d) % len(x) for d in dims}
        return tuple(d for i, d in enumerate(x) if i not in drop)

    def _fix_shapes(self, op: Op) -> None:
        """Derive the shape of an output the file leaves dynamic, from the op and its inputs."""
        for name in op.outputs:
            if name not in self.dynamic:
                continue
            shape = self._infer(op, name)
            if shape is None:
                self.underived.append(f"{name!r} (output of {op.name})")
                continue
            self.g.tensors[name].shape = shape
            self.dynamic.discard(name)

    def _infer(self, op: Op, name: str) -> tuple[int, ...] | None:
        ins = [self.g.tensors[t] for t in op.inputs if t]
        if any(t.name in self.dynamic for t in ins):
            return None
        t = op.type
        x = ins[0].shape if ins else ()
        if t in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE"):
            try:
                return self._reshaped(op, math.prod(x))
            except ModelLoadError:
                return None
        if t == "TILE" and self.const(op.inputs[1]) is not None:
            return tuple(d * int(m) for d, m in zip(x, self.const(op.inputs[1])))
        if t in _ELEMENTWISE:
            return _broadcast([i.shape for i in ins])
        if t == "CONCATENATION":
            axis = int(op.attrs.get("axis", -1)) % len(x)
            return (*x[:axis], sum(i.shape[axis] for i in ins), *x[axis + 1:])
        if t in ("QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "LEAKY_RELU", "TANH"):
            return x
        return None


_MOVES = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TILE")


def _moved_indices(g: Graph, ops: list[Op], x: Tensor) -> np.ndarray | None:
    """Where each element of the last op's output comes from in ``x`` (flat index), or None."""
    idx = np.arange(x.size).reshape(x.shape)
    for op in ops:
        if op.type == "TILE":
            reps = g.tensors[op.inputs[1]].data
            if reps is None:
                return None
            idx = np.tile(idx, [int(r) for r in reps])
        idx = idx.reshape(g.tensors[op.outputs[0]].shape)
    return idx


def _nearest_repeat(x: Tensor, y: Tensor, idx: np.ndarray) -> bool:
    """``idx`` (source of every element of ``y``) is a plain nearest resize of NHWC ``x``."""
    if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[::3] != y.shape[::3] or y.shape[1:3] == x.shape[1:3]:
        return False
    rows = nearest_source_indices(y.shape[1], x.shape[1], False, False)
    cols = nearest_source_indices(y.shape[2], x.shape[2], False, False)
    return np.array_equal(idx, np.arange(x.size).reshape(x.shape)[:, rows][:, :, cols])


def _repeats_to_resize(g: Graph) -> None:
    """Chains of RESHAPE / EXPAND_DIMS / TILE that repeat rows and columns of an NHWC map
    (``tf.repeat``, Keras UpSampling2D) become one RESIZE_NEAREST_NEIGHBOR, when the pixels
    it copies are exactly the chain's (checked on an index map)."""
    users = g.consumers()
    i = 0
    while i < len(g.ops):
        best = None
        for j in range(i, len(g.ops)):
            op = g.ops[j]
            if op.type not in _MOVES or (j > i and op.inputs[0] != g.ops[j - 1].outputs[0]):
                break
            if any(o.type == "TILE" for o in g.ops[i:j + 1]):
                x, y = g.tensors[g.ops[i].inputs[0]], g.tensors[op.outputs[0]]
                idx = _moved_indices(g, g.ops[i:j + 1], x)
                if idx is not None and x.dtype == y.dtype and _nearest_repeat(x, y, idx):
                    best = j
            if len(users.get(op.outputs[0], [])) != 1 or op.outputs[0] in g.outputs:
                break
        if best is None:
            i += 1
            continue
        x, y = g.ops[i].inputs[0], g.ops[best].outputs[0]
        size = g.add_tensor(Tensor(g.unique_name(f"{y}/size"), (2,), "int32",
                                   data=np.array(g.tensors[y].shape[1:3], np.int32)))
        g.ops[i:best + 1] = [Op("RESIZE_NEAREST_NEIGHBOR", [x, size.name], [y],
                                {"align_corners": False, "half_pixel_centers": False}, name=g.ops[best].name)]
        users = g.consumers()
        i += 1


def _to_reshape(g: Graph) -> None:
    """EXPAND_DIMS / SQUEEZE / TILE-by-1 on activations copy nothing: they become RESHAPE."""
    for k, op in enumerate(g.ops):
        if op.type not in ("EXPAND_DIMS", "SQUEEZE", "TILE"):
            continue
        if op.type == "TILE" and (g.tensors[op.inputs[1]].data is None or np.any(g.tensors[op.inputs[1]].data != 1)):
            continue
        y = g.tensors[op.outputs[0]]
        shape = g.add_tensor(Tensor(g.unique_name(f"{y.name}/shape"), (len(y.shape),), "int32",
                                    data=np.array(y.shape, np.int32)))
        g.ops[k] = Op("RESHAPE", [op.inputs[0], shape.name], list(op.outputs), {}, op.name)


def unsupported_ops(graph: Graph, index: Callable[[int, Op], int]) -> dict[str, list[int]]:
    """Operator type -> file indices of every operator outside SUPPORTED_OPS."""
    found: dict[str, list[int]] = {}
    for k, op in enumerate(graph.ops):
        if op.type not in SUPPORTED_OPS:
            found.setdefault(op.type, []).append(index(k, op))
    return found


def fold_shapes(graph: Graph, signatures: dict[str, tuple[int, ...]],
                index: Callable[[int, Op], int] = lambda k, op: k) -> None:
    """Fold ``graph``'s shape arithmetic in place (see the module doc); ``signatures`` holds the
    ``shape_signature`` of tensors whose signature differs from their shape, ``index`` maps an op
    to its index in the file. Raises UnsupportedOperatorError naming every operator left that
    tinypatch cannot run, ModelLoadError when a shape stays dynamic."""
    folder = _Folder(graph, signatures)
    folder.run()
    _repeats_to_resize(graph)
    _to_reshape(graph)
    used = set(graph.inputs) | set(graph.outputs) | {t for op in graph.ops for t in (*op.inputs, *op.outputs)}
    for name in [n for n in graph.tensors if n not in used]:
        del graph.tensors[name]
    found = unsupported_ops(graph, index)
    if found:
        dynamic_batch = any(sig and sig[0] < 0 for sig in signatures.values())
        shape_math = sorted({op.type for op in graph.ops if op.type in found and op.type in SHAPE_OPS
                             and all(graph.tensors[t].dtype in _INT for t in op.outputs)})
        hint = ""
        if shape_math:
            hint = (f"{', '.join(shape_math)} compute shapes at run time and could not be folded"
                    f"{' (the model has a dynamic batch)' if dynamic_batch else ''}: converting with a static "
                    "input shape (batch 1) removes them")
        raise UnsupportedOperatorError.listing(found, hint)
    if folder.underived:
        raise ModelLoadError(f"tensor {folder.underived[0]} has a dynamic shape that import cannot derive"
                             f"{f' (and {len(folder.underived) - 1} more)' if len(folder.underived) > 1 else ''}: "
                             "convert the model with a fixed input shape")
