"""Small int8 ONNX models for the tests and benchmarks: torchvision CNNs with random weights at
tiny resolutions, exported (opset 13) and quantized by onnxruntime in QDQ and QOperator form."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TORCHVISION = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "mnasnet0_5", "shufflenet_v2_x0_5")
FORMATS = ("QDQ", "QOperator")
RESOLUTION = 33  # odd at every stride-2 layer: ONNX's symmetric pads equal TFLite's SAME, no PAD ops


def quantize_file(float_path: Path, out: Path, fmt: str, shape: tuple[int, ...], samples: int = 4) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_suffix(".pre.onnx")
    if not pre.exists():
        quant_pre_process(str(float_path), str(pre))
    batches = iter([np.random.RandomState(i).randn(*shape).astype(np.float32) for i in range(samples)])

    class Reader:
        def get_next(self):  # noqa: ANN202
            x = next(batches, None)
            return None if x is None else {"input": x}

    quantize_static(str(pre), str(out), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def export(module, shape: tuple[int, ...], path: Path) -> Path:  # noqa: ANN001
    import torch

    module.eval()
    torch.onnx.export(module, (torch.randn(*shape),), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], output_names=["output"])
    return path


def torchvision_model(name: str, fmt: str, folder: Path, resolution: int = RESOLUTION) -> Path:
    """``folder/NAME-RES-FMT.onnx``, built once."""
    out = folder / f"{name}-{resolution}-{fmt}.onnx"
    if out.exists():
        return out
    import torch
    import torchvision

    shape = (1, 3, resolution, resolution)
    float_path = folder / f"{name}-{resolution}.onnx"
    if not float_path.exists():
        torch.manual_seed(0)
        export(getattr(torchvision.models, name)(weights=None), shape, float_path)
    return quantize_file(float_path, out, fmt, shape)


def photos(resolution: int) -> list[np.ndarray]:
    """scikit-image's bundled photos (astronaut, coffee, chelsea) as float NCHW, ImageNet-normalised."""
    from skimage import data
    from skimage.transform import resize

    out = []
    for img in (data.astronaut(), data.coffee(), data.chelsea()):
        x = resize(img, (resolution, resolution), anti_aliasing=True).astype(np.float32)
        x = (x - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
        out.append(x.transpose(2, 0, 1)[None].astype(np.float32))
    return out
