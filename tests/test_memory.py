"""MACs, liveness and the analytic (MCUNetV2) and placed memory accounting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings

from tinypatch.analysis.liveness import liveness, tensor_lifetimes
from tinypatch.analysis.macs import cost_totals, flash_bytes, op_costs
from tinypatch.analysis.analytic import analytic_memory, residual_skips
from tinypatch.report.layer_memory import analyze
from tinypatch.frontends.tflite import load_tflite
from tinypatch.frontends.zoo import build
from tinypatch.ir import Graph, Op, Tensor

from conftest import model_path
from strategies import random_cnn

# MACs from shared/models/MANIFEST.md (ethos-u-vela, which also counts MEAN's sums as MACs)
VELA_MACS_M = {
    "person_detect.tflite": "7.16", "mlperf_vww_96_int8.tflite": "7.49", "mlperf_ic_resnet8_int8.tflite": "12.5",
    "mlperf_kws_dscnn_int8.tflite": "2.66", "mcunet_vww.tflite": "11.6", "mcunetv2_large.tflite": "217.8",
}
MBV2_W1_R224_PEAK = 1_404_928  # MCUNetV2 paper: MobileNetV2-1.0-224 layer-by-layer peak (int8)


class Net:
    """A minimal NHWC int8 graph builder (only shapes matter; weights are zeros)."""

    def __init__(self, h: int, w: int, c: int, prefix: str = "") -> None:
        self.g, self.prefix = Graph("mbv2-like"), prefix
        self.cur = self._act((1, h, w, c))
        self.g.inputs = [self.cur]

    def _act(self, shape: tuple[int, ...]) -> str:
        name = f"{self.prefix}a{len(self.g.tensors)}"
        self.g.add_tensor(Tensor(name, shape, "int8"))
        return name

    def _const(self, shape: tuple[int, ...], dtype: str = "int8") -> str:
        name = f"{self.prefix}w{len(self.g.tensors)}"
        self.g.add_tensor(Tensor(name, shape, dtype, data=np.zeros(shape, dtype)))
        return name

    def conv(self, cout: int, k: int = 1, s: int = 1, depthwise: bool = False) -> str:
        src = self.cur
        _, h, w, cin = self.g.tensors[src].shape
        cout = cin if depthwise else cout
        wshape = (1, k, k, cout) if depthwise else (cout, k, k, cin)
        out = self._act((1, -(-h // s), -(-w // s), cout))
        self.g.add_op(Op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D",
                         [src, self._const(wshape), self._const((cout,), "int32")], [out],
                         {"padding": "SAME", "stride_h": s, "stride_w": s}, name=f"{self.prefix}op{len(self.g.ops)}"))
        self.cur = out
        return out

    def add(self, a: str, b: str) -> str:
        out = self._act(self.g.tensors[a].shape)
        self.g.add_op(Op("ADD", [a, b], [out], name=f"{self.prefix}op{len(self.g.ops)}"))
        self.cur = out
        return out

    def block(self, t: int, cout: int, s: int) -> dict[str, int]:
        """An inverted residual block; returns the op index of each of its convs."""
        x = self.cur
        cin = self.g.tensors[x].shape[-1]
        idx = {}
        if t != 1:
            self.conv(cin * t)
            idx["expand"] = len(self.g.ops) - 1
        self.conv(cin * t, 3, s, depthwise=True)
        idx["dw"] = len(self.g.ops) - 1
        y = self.conv(cout)
        idx["project"] = len(self.g.ops) - 1
        if s == 1 and cin == cout:
            self.add(x, y)
            idx["add"] = len(self.g.ops) - 1
        return idx

    def finish(self) -> Graph:
        self.g.outputs = [self.cur]
        self.g.validate()
        return self.g


def mbv2_front(prefix: str = "") -> tuple[Graph, list[dict[str, int]]]:
    """MobileNetV2-1.0 at 224: stem and the first five inverted residual blocks."""
    n = Net(224, 224, 3, prefix)
    n.conv(32, 3, 2)
    blocks = [n.block(1, 16, 1), n.block(6, 24, 2), n.block(6, 24, 1), n.block(6, 32, 2), n.block(6, 32, 1)]
    return n.finish(), blocks


# --- analytic convention ----------------------------------------------------------------
def test_mbv2_analytic_peak_is_block2_expand():
    g, blocks = mbv2_front()
    am = analytic_memory(g)
    assert am.peak == MBV2_W1_R224_PEAK
    assert am.peak_index == blocks[1]["expand"]
    assert am.peak == 112 * 112 * 16 + 112 * 112 * 96  # input + output of that conv


def test_zoo_mbv2_w1_r224_analytic_peak():
    g = build("mbv2-w1.0-r224")
    am = analytic_memory(g)
    assert am.peak == MBV2_W1_R224_PEAK
    op = g.ops[am.peak_index]  # block 2's expand conv: 112x112x16 -> 112x112x96
    assert op.type == "CONV_2D"
    assert g.tensors[op.inputs[0]].shape == (1, 112, 112, 16) and g.tensors[op.outputs[0]].shape == (1, 112, 112, 96)
    assert am.peak_index == [i for i, o in enumerate(g.ops) if o.type == "CONV_2D"][2]


def test_residual_counted_at_depthwise_not_at_projection():
    g, blocks = mbv2_front()
    am = analytic_memory(g)
    b3 = blocks[2]
    skip = 56 * 56 * 24
    hidden = 56 * 56 * 144
    assert am.per_op[b3["expand"]] == skip + hidden  # the skip is the expand's own input
    assert am.per_op[b3["dw"]] == hidden + skip  # in place (max(in, out)) + live skip
    assert am.skip_bytes[b3["dw"]] == skip and am.skip_bytes[b3["project"]] == 0
    assert am.per_op[b3["project"]] == hidden + skip
    assert am.per_op[b3["add"]] == 3 * skip
    # stride-2 depthwise in place: max(in, out); no residual in block 2
    assert am.per_op[blocks[1]["dw"]] == 112 * 112 * 96
    assert set(residual_skips(g)) == {blocks[2]["dw"], blocks[4]["dw"]}


def test_residual_detection_ignores_names_and_constant_adds():
    g1, _ = mbv2_front()
    g2, _ = mbv2_front(prefix="zz_renamed_")
    assert analytic_memory(g1).per_op == analytic_memory(g2).per_op
    n = Net(8, 8, 4)
    n.conv(16)
    n.conv(4)
    out = n._act((1, 8, 8, 4))
    n.g.add_op(Op("ADD", [n.cur, n._const((1, 1, 1, 4))], [out]))
    n.cur = out
    assert residual_skips(n.finish()) == {}


def test_include_input_and_output_flags():
    g, _ = mbv2_front()
    full = analytic_memory(g)
    no_in = analytic_memory(g, include_input=False)
    no_out = analytic_memory(g, include_output=False)
    assert full.per_op[0] - no_in.per_op[0] == 224 * 224 * 3
    assert full.per_op[1:] == no_in.per_op[1:]
    assert full.per_op[-1] - no_out.per_op[-1] == 28 * 28 * 32


def test_analytic_counts_int8_whatever_the_dtype():
    g = Graph("float-io")
    g.add_tensor(Tensor("x", (1, 4, 4, 3), "float32"))
    g.add_tensor(Tensor("q", (1, 4, 4, 3), "int8"))
    g.inputs, g.outputs = ["x"], ["q"]
    g.add_op(Op("QUANTIZE", ["x"], ["q"]))
    assert analytic_memory(g).peak == 2 * 48
    assert analyze(g, alignment=1).peak_placed == 4 * 48 + 48


# --- MACs -----------------------------------------------------------------------------
def test_macs_formulas():
    g, blocks = mbv2_front()
    costs = op_costs(g)
    assert costs[0].macs == 112 * 112 * 32 * 3 * 3 * 3
    assert costs[blocks[1]["dw"]].macs == 56 * 56 * 96 * 3 * 3
    assert costs[blocks[1]["expand"]].macs == 112 * 112 * 96 * 16
    assert costs[blocks[2]["add"]].macs == 0 and costs[blocks[2]["add"]].elem_ops == 56 * 56 * 24
    assert costs[0].param_bytes == 32 * 27 + 32 * 4
    assert costs[0].in_bytes == 224 * 224 * 3 and costs[0].out_bytes == 112 * 112 * 32
    assert cost_totals(costs).param_bytes == flash_bytes(g)


@pytest.mark.parametrize("name", sorted(VELA_MACS_M))
def test_macs_match_manifest(name):
    g = load_tflite(model_path(name))
    costs = op_costs(g)
    mean_sums = sum(c.elem_ops for c in costs if c.op_type == "MEAN")
    expected = VELA_MACS_M[name]
    decimals = len(expected.split(".")[1])
    assert f"{(cost_totals(costs).macs + mean_sums) / 1e6:.{decimals}f}" == expected


# --- liveness ---------------------------------------------------------------------------
def test_lifetimes_and_io_flags():
    g, blocks = mbv2_front()
    life = tensor_lifetimes(g)
    last = len(g.ops) - 1
    assert life[g.inputs[0]] == (0, 0)
    assert life[g.outputs[0]][1] == last
    skip = g.ops[blocks[2]["expand"]].inputs[0]
    assert life[skip] == (blocks[1]["project"], blocks[2]["add"])
    assert not any(g.tensors[t].is_const for t in life)
    lv = liveness(g, include_input=False)
    assert g.inputs[0] not in lv.tensor_buffer
    assert lv.lower_bound() == max(lv.profile())
    assert [b.name for b in lv.live_at(blocks[2]["dw"])] == [skip, g.ops[blocks[2]["expand"]].outputs[0],
                                                             g.ops[blocks[2]["dw"]].outputs[0]]


# --- report ---------------------------------------------------------------------------
def test_report_rows_and_json():
    g, blocks = mbv2_front()
    r = analyze(g)
    d = json.loads(json.dumps(r.to_dict()))
    assert len(d["rows"]) == len(g.ops)
    assert r.peak_analytic == MBV2_W1_R224_PEAK and r.peak_analytic_op == g.ops[blocks[1]["expand"]].name
    assert max(row.working_bytes for row in r.rows) == r.lower_bound <= r.peak_placed
    assert r.gap == r.peak_placed - r.lower_bound >= 0
    assert r.total_macs == sum(c.macs for c in op_costs(g))
    assert "input counted" in d["accounting"] and d["include_input"] is True
    assert analyze(g, include_input=False).peak_placed <= r.peak_placed


@settings(max_examples=20, deadline=None)
@given(random_cnn(max_layers=5))
def test_report_on_random_graphs(case):
    g, _ = case
    r = analyze(g)
    assert r.lower_bound <= r.peak_placed
    assert len(r.rows) == len(g.ops)
    json.dumps(r.to_dict())


@pytest.mark.parametrize("name", ["person_detect.tflite", "mlperf_vww_96_int8.tflite", "mcunet_vww.tflite",
                                  "mlperf_ic_resnet8_int8.tflite", "mcunetv2_large.tflite"])
def test_report_on_real_models(name):
    g = load_tflite(model_path(name))
    r = analyze(g)
    assert r.peak_placed >= r.lower_bound
    assert r.peak_analytic == max(row.analytic_bytes for row in r.rows)
    assert r.flash_bytes == flash_bytes(g) > 0
