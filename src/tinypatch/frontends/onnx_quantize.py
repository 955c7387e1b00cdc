"""Quantize a float ONNX CNN with calibration data into TFLite's int8 scheme, as a QDQ model.

TFLite's scheme (what ``--arith tflite`` and the C generator compute): activations per-tensor
asymmetric int8 from the calibrated range widened to contain 0 (``scale = (max - min) / 255``,
zero point nudged onto the int8 grid), weights per-channel symmetric int8
(``scale = max|w| / 127``, zero point 0), int32 biases with scale ``s_in * s_w``. A Relu or
Clip(0, 6) that is the only reader of a Conv/Gemm/Add output is folded into that output's range
(its quantization clamps exactly like the activation). The written model carries
``metadata_props["tinypatch.arith"] = "tflite"`` so the importer records it as expected.
"""

from __future__ import annotations

import numpy as np

from tinypatch.errors import ModelLoadError
from tinypatch.frontends.onnx import _onnx, read_onnx_model
from tinypatch.safeio import write_bytes

ARITH_KEY = "tinypatch.arith"
_WEIGHTED = {"Conv": 0, "Gemm": None, "MatMul": 1}  # op -> per-channel axis of input 1 (Gemm: from transB)
_FOLDABLE = ("Relu", "Clip")


def activation_qparams(lo: float, hi: float) -> tuple[np.float32, np.int8]:
    """TFLite's asymmetric int8 parameters for the range [lo, hi] (widened to contain 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi == lo:
        return np.float32(1.0), np.int8(0)
    scale = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return np.float32(scale), np.int8(zp)


def _calibrate(model, samples: list[np.ndarray]) -> dict[str, tuple[float, float]]:  # noqa: ANN001
    """Min and max of every float tensor over the calibration samples (onnxruntime, float)."""
    onnx = _onnx()
    import onnxruntime as ort  # noqa: PLC0415

    m = onnx.ModelProto()
    m.CopyFrom(model)
    outputs = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for t in n.output:
            if t and t not in outputs:
                m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    (inp,) = [i.name for i in sess.get_inputs()]
    names = [o.name for o in sess.get_outputs()]
    ranges: dict[str, tuple[float, float]] = {}
    for x in samples:
        vals = dict(zip(names, sess.run(names, {inp: x})))
        vals[inp] = x
        for k, v in vals.items():
            if v.dtype == np.float32 and v.size:
                lo, hi = ranges.get(k, (np.inf, -np.inf))
                ranges[k] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return ranges


def _constants(graph, nh) -> tuple[dict[str, np.ndarray], list]:  # noqa: ANN001
    """The graph's constants by name (initializers, Constant nodes' values, and Identity nodes over a
    constant, as torch.onnx.export writes shared weights) and the nodes that are not constants."""
    inits = {t.name: nh.to_array(t) for t in graph.initializer}
    nodes = []
    for n in graph.node:
        if n.op_type == "Constant" and [a.name for a in n.attribute] == ["value"]:
            inits[n.output[0]] = nh.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
        else:
            nodes.append(n)
    return inits, nodes


def quantize_float_onnx(path: str, calibration: list[np.ndarray], out_path: str) -> str:
    """Write ``out_path``: the float model ``path`` quantized in TFLite's int8 scheme (QDQ form)."""
    onnx = _onnx()
    helper, nh = onnx.helper, onnx.numpy_helper
    model = read_onnx_model(path)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
           for n in model.graph.node):
        raise ModelLoadError(f"{path}: already quantized")
    samples = [np.asarray(x, np.float32) for x in calibration]
    if not samples:
        raise ModelLoadError("no calibration samples")
    ranges = _calibrate(model, samples)
    g = model.graph
    inits, graph_nodes = _constants(g, nh)
    users: dict[str, list] = {}
    for n in graph_nodes:
        for t in n.input:
            users.setdefault(t, []).append(n)
    # fold Relu / Clip into the range of the tensor they read
    renamed: dict[str, str] = {}
    nodes = []
    for n in graph_nodes:
        src = n.input[0] if n.input else ""
        prod_ok = any(src in p.output and p.op_type in ("Conv", "Gemm", "MatMul", "Add") for p in graph_nodes)
        if n.op_type in _FOLDABLE and prod_ok and len(users.get(src, [])) == 1 and src not in {o.name for o in g.output}:
            renamed[src] = n.output[0]
            continue
        nodes.append(n)
    for n in nodes:
        for k, t in enumerate(n.output):
            if t in renamed:
                n.output[k] = renamed[t]
    new_nodes, new_inits, done = [], [], set()

    def qdq(t: str) -> str:
        """Q -> DQ after float tensor t; returns the dequantized name."""
        if t not in done:
            lo, hi = ranges.get(t, (0.0, 0.0))
            s, z = activation_qparams(lo, hi)
            new_inits.extend([nh.from_array(np.array(s, np.float32), f"{t}_s"),
                              nh.from_array(np.array(z, np.int8), f"{t}_z")])
            new_nodes.append(helper.make_node("QuantizeLinear", [t, f"{t}_s", f"{t}_z"], [f"{t}_q"]))
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{t}_q", f"{t}_s", f"{t}_z"], [f"{t}_dq"]))
            done.add(t)
        return f"{t}_dq"

    for i in g.input:
        if i.name not in inits:
            qdq(i.name)
    for n in nodes:
        ins = list(n.input)
        if n.op_type in _WEIGHTED and len(ins) > 1 and ins[1] in inits:
            w = inits[ins[1]].astype(np.float32)
            axis = _WEIGHTED[n.op_type]
            if axis is None:
                axis = 0 if any(a.name == "transB" and a.i for a in n.attribute) else 1
            red = tuple(a for a in range(w.ndim) if a != axis)
            ws = (np.maximum(np.abs(w).max(axis=red), 1e-12) / 127.0).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            wq = np.clip(np.rint(w / ws.reshape(shape)), -127, 127).astype(np.int8)
            wn = ins[1]
            new_inits += [nh.from_array(wq, f"{wn}_q"), nh.from_array(ws, f"{wn}_s"),
                          nh.from_array(np.zeros(ws.shape, np.int8), f"{wn}_z")]
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{wn}_q", f"{wn}_s", f"{wn}_z"], [f"{wn}_dq"], axis=axis))
            x_s, _ = activation_qparams(*ranges.get(ins[0], (0.0, 0.0)))
            ins = [qdq(ins[0]), f"{wn}_dq", *ins[2:]]
            if len(ins) > 2 and ins[2] in inits:
                bs = (np.float32(x_s) * ws).astype(np.float32)
                bq = np.rint(inits[ins[2]].astype(np.float64) / bs).astype(np.int32)
                bn = ins[2]
                new_inits += [nh.from_array(bq, f"{bn}_q"), nh.from_array(bs, f"{bn}_s"),
                              nh.from_array(np.zeros(bs.shape, np.int32), f"{bn}_z")]
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{bn}_q", f"{bn}_s", f"{bn}_z"], [f"{bn}_dq"], axis=0))
                ins[2] = f"{bn}_dq"
        else:
            ins = [t if (not t or t in inits) else qdq(t) for t in ins]
        new = helper.make_node(n.op_type, ins, list(n.output), name=n.name, domain=n.domain)
        new.attribute.extend(n.attribute)
        new_nodes.append(new)
        for t in n.output:
            qdq(t)
    outs = []
    for o in g.output:
        name = renamed.get(o.name, o.name)
        outs.append(helper.make_tensor_value_info(f"{name}_dq", onnx.TensorProto.FLOAT, None))
    read = {t for n in new_nodes for t in n.input}
    keep_inits = [nh.from_array(v, k) for k, v in inits.items() if k in read]
    graph = helper.make_graph(new_nodes, g.name or "model", list(i for i in g.input if i.name not in inits),
                              outs, keep_inits + new_inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.metadata_props.add(key=ARITH_KEY, value="tflite")
    write_bytes(out_path, out.SerializeToString())  # atomic: the whole file or none
    return out_path
