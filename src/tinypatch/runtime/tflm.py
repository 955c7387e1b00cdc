"""TFLite Micro as a reference: its arena head and every tensor, from the ``tflite-micro``
Python interpreter (an optional dependency: ImportError when it is absent).

* :func:`tflm_head`: the "Arena allocation head" line ``print_allocations()`` prints after
  loading a model (TFLM's non-persistent plan: activations plus kernel scratch buffers).
  TFLM's MicroPrintf writes to the C stdio streams, so fds 1 and 2 point at a temporary file
  while it prints.
* :func:`tflm_tensors`: every tensor after one inference, with the interpreter built with
  ``kPreserveAllTensors`` (TFLM then keeps each intermediate in its own slot) and read back
  with ``GetTensor(index, 0)``; keyed by our tensor names.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinypatch.ir import Graph


def _runtime():  # noqa: ANN202
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def tflm_head(path: str | Path) -> int:
    """TFLM's arena head (bytes) for the model at ``path``."""
    interp = _runtime().Interpreter.from_file(str(path))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            interp.print_allocations()
            ctypes.CDLL(None).fflush(None)  # C stdio buffers, in case a build prints to stdout
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
    m = re.search(r"Arena allocation head (\d+) bytes", text)
    if m is None:
        raise RuntimeError(f"tflite-micro printed no arena head for {path}")
    return int(m.group(1))


def tflm_tensors(path: str | Path, graph: Graph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every activation tensor of ``graph`` (read from ``path``) after TFLM ran ``inputs``."""
    rt = _runtime()
    interp = rt.Interpreter.from_file(str(path), intrepreter_config=rt.InterpreterConfig.kPreserveAllTensors)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    out = {}
    index = graph.meta["tflite_index"]  # our name -> the file's tensor index (set by the reader)
    for name in graph.activations():
        t = graph.tensors[name]
        got = interp.GetTensor(index[name], 0)
        data = np.asarray(got["tensor_data"]).reshape(tuple(int(d) for d in got["shape"]))
        if data.shape != t.shape or data.dtype != t.np_dtype:
            raise RuntimeError(f"tensor {name!r}: TFLM has {data.dtype} {data.shape}, we {t.dtype} {t.shape}")
        out[name] = data
    return out
