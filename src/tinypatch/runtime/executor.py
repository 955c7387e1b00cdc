"""Whole-image execution of a graph with the numpy reference kernels.

``Executor(graph)`` prepares every operator once; calling it runs one inference.
``run(graph, inputs)`` does the same through a per-graph cache, so repeated calls on the
same :class:`Graph` object only pay for preparation once (treat a graph as frozen once run).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import numpy as np

from tinypatch.errors import InputError
from tinypatch.ir import Graph
from tinypatch.kernels import PreparedOp, prepare
from tinypatch.runtime.threads import blas_threads

Inputs = Sequence[np.ndarray] | Mapping[str, np.ndarray]


class Executor:
    """Prepared kernels of one graph, run in the graph's (topological) op order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.kernels: list[PreparedOp] = [prepare(graph, op) for op in graph.ops]
        self.signature = _signature(graph)
        last_use: dict[str, int] = {}
        for i, op in enumerate(graph.ops):
            for t in op.inputs:
                if t:
                    last_use[t] = i
        keep = set(graph.outputs)
        self.release: dict[int, list[str]] = {}
        for name, i in last_use.items():
            if name not in keep and not graph.tensors[name].is_const:
                self.release.setdefault(i, []).append(name)

    def __call__(self, inputs: Inputs, keep: bool = False, threads: int | None = 1) -> dict[str, np.ndarray]:
        """Run one inference. Returns the graph outputs by name, or every activation if ``keep``.
        ``threads``: numpy's BLAS threads meanwhile (default 1, see :mod:`tinypatch.runtime.threads`;
        None leaves numpy's setting)."""
        env = self.check_inputs(inputs)
        with blas_threads(threads):
            for i, (op, kernel) in enumerate(zip(self.graph.ops, self.kernels)):
                outs = kernel([env[t] for t in kernel.input_names])
                for name, value in zip(op.outputs, outs):
                    env[name] = value
                if not keep:
                    for name in self.release.get(i, ()):
                        env.pop(name, None)
        if keep:
            return {name: env[name] for name in self.graph.activations()}
        return {name: env[name] for name in self.graph.outputs}

    def check_inputs(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Validate and name the inputs (InputError on a wrong count, name, shape or dtype)."""
        g = self.graph
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(g.inputs))
            if unknown:
                raise InputError(f"unknown model input(s) {unknown}; the model takes {g.inputs}")
            missing = [n for n in g.inputs if n not in inputs]
            if missing:
                raise InputError(f"missing model input(s) {missing}")
            named = {n: inputs[n] for n in g.inputs}
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            if len(inputs) != len(g.inputs):
                raise InputError(f"the model takes {len(g.inputs)} input(s) {g.inputs}, got {len(inputs)}")
            named = dict(zip(g.inputs, inputs))
        env: dict[str, np.ndarray] = {}
        for name, value in named.items():
            t = g.tensors[name]
            x = np.asarray(value)
            if x.shape != t.shape:
                raise InputError(f"input {name!r} must have shape {t.shape}, got {x.shape}")
            if x.dtype != t.np_dtype:
                raise InputError(f"input {name!r} must be {t.dtype}, got {x.dtype} (cast it with .astype)")
            env[name] = x
        return env


def _signature(graph: Graph) -> tuple:
    return (graph.meta.get("arith"), *(id(op) for op in graph.ops))


# The executors of the last few graphs run. Not a WeakKeyDictionary: an executor references its
# graph, so such an entry would never die (every graph ever run stayed in memory).
_CACHE: collections.OrderedDict[int, Executor] = collections.OrderedDict()
_CACHE_SIZE = 4


def executor_for(graph: Graph) -> Executor:
    """The cached :class:`Executor` of ``graph`` (rebuilt if its op list changed)."""
    ex = _CACHE.pop(id(graph), None)
    if ex is None or ex.graph is not graph or ex.signature != _signature(graph):
        ex = Executor(graph)
    _CACHE[id(graph)] = ex
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return ex


def run(graph: Graph, inputs: Inputs, keep: bool = False, threads: int | None = 1) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs``: a list in ``graph.inputs`` order, a dict by name, or one
    array for a single-input model. Raises InputError on a wrong count, name, shape or dtype.

    Returns ``{output name: array}``; with ``keep=True`` every activation tensor (graph
    inputs included) by name. ``threads``: numpy's BLAS threads (default 1; None: numpy's own).
    """
    return executor_for(graph)(inputs, keep, threads)
