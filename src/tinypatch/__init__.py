"""tinypatch: fit CNNs into microcontroller SRAM by running their first layers patch by patch.

Flow: frontends -> Graph IR -> passes / analysis -> planning -> runtime (numpy) / codegen (C).
"""

from tinypatch.ir import Graph, Op, QuantParams, Tensor

__all__ = ["Graph", "Op", "QuantParams", "Tensor", "from_torch"]


def from_torch(module, example_input, calibration=None, c_project=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
    """PyTorch module -> ONNX -> onnxruntime int8 quantization -> IR (``frontends.pytorch.from_torch``,
    whose keyword arguments pass through); with ``c_project`` (a folder) also the layer-by-layer C
    project of the imported model. Returns a ``TorchImport`` (graph, ONNX file, steps report).
    """
    import time  # noqa: PLC0415

    from tinypatch.frontends.pytorch import from_torch as _from_torch  # noqa: PLC0415 (torch is optional)

    result = _from_torch(module, example_input, calibration, **kwargs)
    if c_project is not None:
        from tinypatch.codegen import generate  # noqa: PLC0415

        t = time.perf_counter()
        project = generate(result.graph, None, c_project)
        result.steps.append(dict(step="codegen", seconds=time.perf_counter() - t, file=str(project.path),
                                 what=f"C project: arena {project.arena_bytes:,} B, constants "
                                      f"{project.const_bytes:,} B, {project.macs:,} MACs"))
    return result
__version__ = "0.1.0"
