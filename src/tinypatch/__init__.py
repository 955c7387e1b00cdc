"""tinypatch: fit CNNs into microcontroller SRAM by running their first layers patch by patch.

Flow: frontends -> Graph IR -> passes / analysis -> planning -> runtime (numpy) / codegen (C).

The Python API (:mod:`tinypatch.api`) does what the ``tinypatch`` command does::

    import tinypatch
    result = tinypatch.plan("mcunet-in1", sram="48KB")     # also analyze, run, codegen, load
    print(result)                                          # the tables `tinypatch plan` prints
    tinypatch.run("mcunet-in1", result).exact              # True: byte for byte

``tinypatch.codegen`` is both the C generator's package and the API function: calling it runs
:func:`tinypatch.api.codegen`.
"""

from tinypatch.api import (AnalysisResult, CodegenResult, PlanResult, QuantizeReport, RedistributionResult, RunResult,
                           SearchOutcome, analyze, from_torch, import_torch, load, parse_size, plan, quantize,
                           quantize_float, redistribute, run, search)
from tinypatch.ir import Graph, Op, QuantParams, Tensor

__all__ = ["AnalysisResult", "CodegenResult", "Graph", "Op", "PlanResult", "QuantParams", "QuantizeReport",
           "RedistributionResult", "RunResult", "SearchOutcome", "Tensor", "analyze", "codegen", "from_torch",
           "import_torch", "load", "parse_size", "plan", "quantize", "quantize_float", "redistribute", "run", "search"]
__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 - ``tinypatch.codegen``, imported on first use
    if name == "codegen":
        import importlib

        return importlib.import_module("tinypatch.codegen")
    raise AttributeError(f"module 'tinypatch' has no attribute {name!r}")
