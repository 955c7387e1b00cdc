"""Built-in zoo, MCUNet JSON configs, msf-CNN chains, the synthetic-weight builder and load_model."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from tinypatch.errors import GraphError, ModelLoadError
from tinypatch.frontends import zoo
from tinypatch.frontends.load import load_model
from tinypatch.frontends.mcunet_config import load_config
from tinypatch.frontends.msfcnn import build_chain, load_msfcnn_chains, parse_chains
from tinypatch.frontends.synth import Builder, make_divisible
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph

from conftest import model_path

# zoo name -> file in shared/configs (README.md of that folder)
CONFIG_FILES = {
    "mcunet-in0": "mcunet-10fps", "mcunet-in1": "mcunet-5fps", "mcunet-in2": "mcunet-256kb-1mb",
    "mcunet-in3": "mcunet-320kb-1mb", "mcunet-in4": "mcunet-512kb-2mb", "mbv2-w0.35": "mbv2-w0.35-r144",
    "mbv2-w0.3": "mbv2-w0.3-r80", "proxyless-w0.3": "proxyless-w0.3-r176", "proxyless-w0.25": "proxyless-w0.25-r112",
}
CONFIG_RESOLUTIONS = {"mcunet-in0": 48, "mcunet-in1": 96, "mcunet-in2": 160, "mcunet-in3": 176, "mcunet-in4": 160,
                      "mbv2-w0.35": 144, "mbv2-w0.3": 80, "proxyless-w0.3": 176, "proxyless-w0.25": 112}
# msf-CNN's published peaks at MAC factor 1.00, from msfcnn_chains.json "published_points"
MSF_PLAIN_PEAK = {"msf-mbv2-w0.35-r144": 181440, "msf-mcunet-vww5-r80": 89600, "msf-mcunet-320kb-r176": 247808}


def out_shape(g: Graph, op_index: int) -> tuple[int, ...]:
    return g.tensors[g.ops[op_index].outputs[0]].shape


def structure(g: Graph) -> list[tuple]:
    """Op types, attributes and every tensor shape, in order (weights excluded)."""
    return [(op.type, tuple(sorted(op.attrs.items())), tuple(g.tensors[t].shape for t in (*op.inputs, *op.outputs)))
            for op in g.ops]


def mcunetv2_peak(g: Graph) -> tuple[int, str]:
    """MCUNetV2's analytic per-layer memory: input + output activations, depthwise in place."""
    best = (0, "")
    for op in g.ops:
        ins = [g.tensors[t].nbytes for t in op.inputs if t and not g.tensors[t].is_const]
        out = sum(g.tensors[t].nbytes for t in op.outputs)
        cost = max(max(ins), out) if op.type == "DEPTHWISE_CONV_2D" else sum(ins) + out
        best = max(best, (cost, op.name))
    return best


def msf_fused_peak(g: Graph) -> int:
    """msf-CNN's accounting (input + output per layer, model input not counted) once every
    depthwise conv is fused with the 1x1 conv after it, which needs no recomputation: the
    pair costs the dw input + the 1x1 output. This is what its MAC-factor-1.00 points report.
    """
    def cost(src: str, dst: str) -> int:
        return (0 if src in g.inputs else g.tensors[src].nbytes) + g.tensors[dst].nbytes

    peak, i = 0, 0
    while i < len(g.ops):
        op = g.ops[i]
        last = i + 1 if op.type == "DEPTHWISE_CONV_2D" else i
        peak, i = max(peak, cost(op.inputs[0], g.ops[last].outputs[0])), last + 1
    return peak


# --- every zoo model ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_zoo_model_builds_validates_and_describes_itself(name: str) -> None:
    g = zoo.build(name)
    g.validate()
    assert g.name == name == g.meta["zoo"]
    assert (name, dict(zoo.list_models())[name]) in zoo.list_models()
    indices = [i for _, ix in g.meta["blocks"] for i in ix]
    assert indices == list(range(len(g.ops))), "blocks must cover every op once, in order"
    assert set(g.meta["roles"]) == {op.name for op in g.ops}
    assert len({op.name for op in g.ops}) == len(g.ops)
    for op in g.ops:
        for t in op.outputs:
            assert g.tensors[t].dtype == "int8" and g.tensors[t].quant is not None


@pytest.mark.parametrize("name", ["mcunet-in1", "mbv2-w0.35-r144", "mbv1-w0.25-r96", "msf-mcunet-vww5-r80"])
def test_weights_are_deterministic_and_seeded(name: str) -> None:
    a, b, c = zoo.build(name), zoo.build(name), zoo.build(name, seed=1)
    consts = [n for n, t in a.tensors.items() if t.is_const and n.endswith(".weight")]
    assert consts
    for n in a.tensors:
        ta, tb = a.tensors[n], b.tensors[n]
        assert ta.shape == tb.shape and ta.dtype == tb.dtype
        if ta.is_const:
            assert np.array_equal(ta.data, tb.data)
        if ta.quant is not None:
            assert np.array_equal(ta.quant.scale, tb.quant.scale)
    assert all(not np.array_equal(a.tensors[n].data, c.tensors[n].data) for n in consts)


@pytest.mark.parametrize("name", ["mcunet-in0", "mbv2-w0.35-r144", "mbv1-w0.25-r96"])
def test_quantization_follows_tflite_int8_rules(name: str) -> None:
    g = zoo.build(name)
    for op in g.ops:
        x = g.tensors[op.inputs[0]]
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w, bias = g.tensors[op.inputs[1]], g.tensors[op.inputs[2]]
            assert w.dtype == "int8" and bias.dtype == "int32" and np.all(w.quant.zero_point == 0)
            assert np.abs(w.data.astype(int)).max() <= 127
            channel_axis = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}.get(op.type)
            assert w.quant.axis == channel_axis
            if channel_axis is not None:
                assert w.quant.scale.size == w.shape[channel_axis] == bias.shape[0]
            np.testing.assert_allclose(bias.quant.scale, x.quant.scale[0] * w.quant.scale, rtol=1e-6)
        if op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "PAD"):
            y = g.tensors[op.outputs[0]]
            assert (y.quant.scale[0], y.quant.zero_point[0]) == (x.quant.scale[0], x.quant.zero_point[0])
        if op.type in ("SOFTMAX", "LOGISTIC"):
            q = g.tensors[op.outputs[0]].quant
            assert (q.scale[0], q.zero_point[0]) == (np.float32(1 / 256), -128)


# --- MobileNetV2 1.0 / 224, checked against torchvision / MCUNetV2 facts -------------------------
def test_mbv2_224_structure() -> None:
    g = zoo.build("mbv2-w1.0-r224")
    blocks = [(n, ix) for n, ix in g.meta["blocks"] if n.startswith("blocks.")]
    assert len(blocks) == 17
    assert sum(op.type == "ADD" for op in g.ops) == 10
    outs = [out_shape(g, ix[-1])[3] for _, ix in blocks]
    assert outs == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    assert [r for n, r in g.meta["roles"].items() if n.startswith("blocks.0.")] == ["dw", "project"]
    assert [g.meta["roles"][g.ops[i].name] for i in blocks[1][1]] == ["expand", "dw", "project"]
    # MCUNetV2 splits MobileNetV2-224 after its first 5 blocks counting the stem
    name, ix = g.meta["blocks"][4]
    assert name == "blocks.3" and out_shape(g, ix[-1]) == (1, 28, 28, 32)
    head = dict(g.meta["blocks"])["head"]
    assert [g.ops[i].type for i in head] == ["CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert out_shape(g, head[0]) == (1, 7, 7, 1280) and g.tensors[g.outputs[0]].shape == (1, 1000)


def test_mbv2_224_mcunetv2_peak_is_block2_expand() -> None:
    g = zoo.build("mbv2-w1.0-r224")
    op = g.ops[[o.name for o in g.ops].index("blocks.1.expand")]
    assert g.tensors[op.inputs[0]].shape == (1, 112, 112, 16)
    assert g.tensors[op.outputs[0]].shape == (1, 112, 112, 96)
    assert mcunetv2_peak(g) == (16 * 112 * 112 + 96 * 112 * 112, "blocks.1.expand") == (1_404_928, "blocks.1.expand")


def test_width_rounding_and_last_channel_rules() -> None:
    assert (make_divisible(32 * 0.35), make_divisible(64 * 0.3), make_divisible(32 * 0.3)) == (16, 24, 16)
    wide = zoo.build("mbv2-w1.4-r224")
    assert out_shape(wide, dict(wide.meta["blocks"])["head"][0]) == (1, 7, 7, make_divisible(1280 * 1.4))
    torchvision, mcunet = zoo.build("mbv2-w0.35-r144"), zoo.build("mbv2-w0.35")
    assert structure(torchvision)[:-3] == structure(mcunet)[:-3]  # same backbone
    assert [out_shape(g, dict(g.meta["blocks"])["head"][0])[3] for g in (torchvision, mcunet)] == [1280, 448]


def test_overrides() -> None:
    g = zoo.build("mcunet-in1", resolution=128, num_classes=10)
    assert g.tensors[g.inputs[0]].shape == (1, 128, 128, 3) and g.tensors[g.outputs[0]].shape == (1, 10)
    assert zoo.build("msf-mcunet-vww5-r80", resolution=96).tensors["input"].shape == (1, 96, 96, 3)
    with pytest.raises(ModelLoadError, match="num_classes"):
        zoo.build("msf-mcunet-vww5-r80", num_classes=10)
    with pytest.raises(ModelLoadError, match="unknown override"):
        zoo.build("mbv1-w0.25-r96", width=2)


def test_explicit_pad_reproduces_pytorch_geometry() -> None:
    same, exact = zoo.build("mbv2-w1.0-r224"), zoo.build("mbv2-w1.0-r224", explicit_pad=True)
    assert not any(op.type == "PAD" for op in same.ops)
    strided_even = [op.name for op in same.ops if op.attrs.get("stride_h") == 2
                    and same.tensors[op.inputs[0]].shape[1] % 2 == 0]
    pads = [op for op in exact.ops if op.type == "PAD"]
    assert [p.name for p in pads] == [f"{n}.pad" for n in strided_even] and len(pads) == 5
    for p in pads:
        assert exact.tensors[p.inputs[1]].data.tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
        assert exact.meta["roles"][p.name] == "pad"
    shapes = {n: t.shape for n, t in same.tensors.items() if not t.is_const}
    assert all(exact.tensors[n].shape == s for n, s in shapes.items())


def test_mbv1_matches_mlperf_vww_topology() -> None:
    real = load_tflite(model_path("mlperf_vww_96_int8.tflite"))
    ours = zoo.build("mbv1-w0.25-r96", num_classes=2)
    assert [(op.type, real.tensors[op.outputs[0]].shape) for op in real.ops] == \
        [(op.type, ours.tensors[op.outputs[0]].shape) for op in ours.ops]


# --- MCUNet JSON configs --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_embedded_architecture_equals_json_config(name: str, assets) -> None:
    cfg = assets / "configs" / f"{CONFIG_FILES[name]}_imagenet.json"
    from_json, embedded = load_config(cfg), zoo.build(name)
    assert from_json.tensors["input"].shape == (1, CONFIG_RESOLUTIONS[name], CONFIG_RESOLUTIONS[name], 3)
    assert structure(from_json) == structure(embedded)
    assert from_json.meta["blocks"] == embedded.meta["blocks"]
    assert from_json.meta["roles"] == embedded.meta["roles"]


def test_zero_layer_blocks_are_identities(assets) -> None:
    g = load_config(assets / "configs" / "proxyless-w0.25-r112_imagenet.json")
    names = [n for n, _ in g.meta["blocks"]]
    assert "blocks.2" in names and "blocks.3" not in names and "blocks.4" not in names and "blocks.5" in names
    assert g.ops[dict(g.meta["blocks"])["blocks.5"][0]].inputs[0] == g.ops[dict(g.meta["blocks"])["blocks.2"][-1]].outputs[0]


def small_config() -> dict:
    """A valid ProxylessNASNets config with one block of each kind (ZeroLayer included)."""
    def mb(cin: int, cout: int, k: int, s: int, e: int, shortcut: bool, **extra) -> dict:
        conv = {"name": "MBInvertedConvLayer", "in_channels": cin, "out_channels": cout, "kernel_size": k,
                "stride": s, "expand_ratio": e, "mid_channels": None, "act_func": "relu6", "use_se": False, **extra}
        return {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv,
                "shortcut": {"name": "IdentityLayer", "in_channels": [cout], "out_channels": [cout]} if shortcut else None}
    return {
        "name": "ProxylessNASNets", "resolution": 32,
        "first_conv": {"name": "ConvLayer", "kernel_size": 3, "stride": 2, "dilation": 1, "groups": 1,
                       "in_channels": 3, "out_channels": 8, "act_func": "relu6"},
        "blocks": [mb(8, 8, 3, 1, 1, False), mb(8, 16, 5, 2, 3, False),
                   {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": {"name": "ZeroLayer", "stride": 1},
                    "shortcut": {"name": "IdentityLayer"}},
                   mb(16, 16, 3, 1, 4, True, use_se=True, mid_channels=72)],
        "feature_mix_layer": {"name": "ConvLayer", "kernel_size": 1, "stride": 1, "in_channels": 16,
                              "out_channels": 32, "act_func": "relu6"},
        "classifier": {"name": "LinearLayer", "in_features": 32, "out_features": 10},
    }


def test_config_dict_with_se_zero_layer_and_mid_channels() -> None:
    g = load_config(small_config())
    roles = g.meta["roles"]
    assert [n for n, _ in g.meta["blocks"]] == ["stem", "blocks.0", "blocks.1", "blocks.3", "head"]
    assert [g.ops[i].type for i in dict(g.meta["blocks"])["blocks.3"]] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "CONV_2D", "CONV_2D", "LOGISTIC", "MUL", "CONV_2D", "ADD"]
    assert g.tensors["blocks.3.expand"].shape == (1, 8, 8, 72)  # mid_channels wins over 16 * 4
    assert g.tensors["blocks.1.expand"].shape[3] == 24  # round(8 * 3)
    assert g.tensors["blocks.3.se.reduce"].shape == (1, 1, 1, 24)  # make_divisible(72 // 4, 8)
    assert roles["blocks.3.se.mul"] == "se" and roles["blocks.3.add"] == "add"
    assert g.tensors[g.outputs[0]].shape == (1, 10)
    assert load_config(small_config(), resolution=40).tensors["input"].shape == (1, 40, 40, 3)


def _broken(path: str, value) -> dict:
    cfg = small_config()
    *keys, last = path.split(".")
    node = cfg
    for k in keys:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return cfg


@pytest.mark.parametrize("path,value,message", [
    ("first_conv", KeyError, "first_conv"),
    ("blocks.1.mobile_inverted_conv.in_channels", 12, "in_channels is 12"),
    ("blocks.1.mobile_inverted_conv.kernel_size", "5", "kernel_size"),
    ("blocks.1.mobile_inverted_conv.act_func", "gelu", "act_func"),
    ("blocks.1.shortcut", {"name": "IdentityLayer"}, "shortcut needs stride 1"),
    ("blocks.2.mobile_inverted_conv.stride", 2, "ZeroLayer"),
    ("blocks.0.mobile_inverted_conv.name", "MixedEdge", "unsupported layer"),
    ("classifier.in_features", 31, "in_features"),
    ("resolution", KeyError, "resolution"),
])
def test_malformed_configs_raise_model_load_error(path: str, value, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_config(_broken(path, value))


def test_unreadable_config_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a readable JSON"):
        load_config(bad)
    with pytest.raises(ModelLoadError, match="not found"):
        load_config(tmp_path / "missing.json")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="JSON object"):
        load_config(listed)


# --- msf-CNN chains --------------------------------------------------------------------------------
def test_msf_chains_file_matches_embedded_chains(assets) -> None:
    path = assets / "configs" / "msfcnn_chains.json"
    data = json.loads(path.read_text())
    for name, peak in MSF_PLAIN_PEAK.items():
        assert re.search(rf"{name}: {peak} at 1\.00", data["published_points"])
    chains, graphs = parse_chains(data), load_msfcnn_chains(path)
    assert set(chains) == set(MSF_PLAIN_PEAK) == set(graphs)
    for name, spec in chains.items():
        assert zoo.msf_chain_spec(name) == spec
        assert structure(graphs[name]) == structure(zoo.build(name))


@pytest.mark.parametrize("name", sorted(MSF_PLAIN_PEAK))
def test_msf_chain_reproduces_published_unit_mac_factor_peak(name: str) -> None:
    g = zoo.build(name)
    assert not any(op.type == "PAD" for op in g.ops)
    assert len(g.ops) == len(zoo.msf_chain_spec(name).layers)
    assert msf_fused_peak(g) == MSF_PLAIN_PEAK[name]


def test_msf_vww_chain_with_explicit_pad_matches_tinyengine_model() -> None:
    real = load_tflite(model_path("mcunet_vww.tflite"))
    ours = zoo.build("msf-mcunet-vww5-r80", explicit_pad=True)

    def convs(g: Graph) -> list[tuple]:
        return [(op.type, g.tensors[op.outputs[0]].shape, op.attrs.get("padding"), op.attrs.get("stride_h"))
                for op in g.ops if op.type in ("PAD", "CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs(real) == convs(ours)


def test_msf_roles_and_blocks() -> None:
    g = zoo.build("msf-mcunet-vww5-r80")
    roles = [g.meta["roles"][op.name] for op in g.ops]
    assert roles[:6] == ["stem", "dw", "project", "expand", "dw", "project"]
    assert [g.ops[i].attrs["fused_activation_function"] for i in range(3)] == ["RELU6", "RELU6", "NONE"]
    assert [n for n, _ in g.meta["blocks"]][:3] == ["stem", "blocks.0", "blocks.1"]
    assert sum(n.startswith("blocks.") for n, _ in g.meta["blocks"]) == 15


def test_msf_malformed_chain() -> None:
    with pytest.raises(ModelLoadError, match="no 'models'"):
        parse_chains({"about": "x"})
    with pytest.raises(ModelLoadError, match="layer 1"):
        parse_chains({"models": {"c": {"input_hw": [8, 8], "input_channels": 3,
                                       "layers": [["conv", 4, 3, 2, 1], ["pool", 4, 2, 2, 0]]}}})
    spec = parse_chains({"models": {"c": {"input_hw": [8, 8], "input_channels": 3,
                                          "layers": [["conv", 4, 3, 2, 1], ["dw", 8, 3, 1, 1]]}}})["c"]
    with pytest.raises(ModelLoadError, match="dw conv from 4 to 8"):
        build_chain(spec)


# --- synth builder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size,stride,kernel,pads", [(8, 1, 3, False), (9, 2, 3, False), (8, 2, 3, True),
                                                     (10, 2, 5, True), (7, 2, 7, False)])
def test_explicit_padding_uses_same_only_when_geometry_agrees(size: int, stride: int, kernel: int, pads: bool) -> None:
    b = Builder("t")
    x = b.input((1, size, size, 4))
    y = b.depthwise(x, kernel, stride, padding=kernel // 2, name="dw")
    g = b.finish([y])
    assert any(op.type == "PAD" for op in g.ops) == pads
    assert g.tensors["dw"].shape[1] == (size + 2 * (kernel // 2) - kernel) // stride + 1
    assert g.ops[-1].attrs["padding"] == ("VALID" if pads else "SAME")


def test_builder_layers_and_errors() -> None:
    b = Builder("t", seed=5)
    x = b.input((1, 12, 12, 3))
    x = b.conv(x, 8, 3, 1, dilation=2, padding="VALID", name="c")
    assert b.shape(x) == (1, 8, 8, 8)
    m = b.pool(x, "max", 2, name="mp")
    a = b.pool(x, "avg", 3, 2, padding="SAME", name="ap")
    assert b.shape(m) == (1, 4, 4, 8) and b.shape(a) == (1, 4, 4, 8)
    s = b.add(m, a, name="sum", act="RELU")
    f = b.reshape(b.mean(s, name="gap", keep_dims=True), (1, 8), name="flat")
    out = b.softmax(b.fully_connected(f, 5, name="fc", out_std=4.0), name="prob")
    g = b.finish([out])
    assert [op.type for op in g.ops] == ["CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD", "MEAN", "RESHAPE",
                                         "FULLY_CONNECTED", "SOFTMAX"]
    assert g.meta["blocks"] == [] and g.meta["seed"] == 5
    with pytest.raises(GraphError, match="ADD of shapes"):
        b.add(x, m, name="bad")
    with pytest.raises(GraphError, match="cannot reshape"):
        b.reshape(f, (1, 7), name="bad2")
    with pytest.raises(GraphError, match="does not fit"):
        b.conv(m, 4, 7, padding="VALID", name="bad3")
    with pytest.raises(GraphError, match="fused activation"):
        b.conv(m, 4, 1, act="TANH", name="bad4")


# --- load_model ---------------------------------------------------------------------------------------
def test_load_model_sources(assets) -> None:
    assert load_model("mcunet-in0").meta["zoo"] == "mcunet-in0"
    assert load_model("mbv2-w0.5-r96").tensors["input"].shape == (1, 96, 96, 3)
    cfg = load_model(str(assets / "configs" / "mcunet-5fps_imagenet.json"), resolution=64)
    assert cfg.tensors["input"].shape == (1, 64, 64, 3)
    chains = str(assets / "configs" / "msfcnn_chains.json")
    assert structure(load_model(chains + "#msf-mcunet-vww5-r80")) == structure(zoo.build("msf-mcunet-vww5-r80"))
    with pytest.raises(ModelLoadError, match="msf-mbv2-w0.35-r144"):
        load_model(chains)
    with pytest.raises(ModelLoadError, match="no chain 'nope'"):
        load_model(chains + "#nope")
    assert load_model(str(assets / "models" / "person_detect.tflite")).name == "person_detect"


def test_load_model_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(ModelLoadError, match=r"did you mean mcunet-in4.*tinypatch zoo"):
        load_model("mcunet-in9")
    with pytest.raises(ModelLoadError, match="tinypatch zoo"):
        load_model("resnet50")
    with pytest.raises(ModelLoadError, match="unknown override"):
        load_model("mcunet-in0", bogus=1)


def test_load_model_json_config_errors(tmp_path) -> None:
    cfg = tmp_path / "net.json"
    cfg.write_text(json.dumps(small_config()))
    assert load_model(str(cfg)).name == "net"
    with pytest.raises(ModelLoadError, match="drop '#x'"):
        load_model(f"{cfg}#x")
    with pytest.raises(ModelLoadError, match="unknown override"):
        load_model(str(cfg), width=2)
    broken = copy.deepcopy(small_config())
    broken["blocks"][0]["mobile_inverted_conv"]["out_channels"] = 0
    cfg.write_text(json.dumps(broken))
    with pytest.raises(ModelLoadError, match="bad kernel_size"):
        load_model(str(cfg))


# --- execution smoke test (numpy executor) -------------------------------------------------------------
@pytest.mark.parametrize("name", ["mbv2-w0.35-r144", "mcunet-in1"])
def test_zoo_models_run_and_respond_to_their_input(name: str) -> None:
    from tinypatch.runtime import executor

    g = zoo.build(name)
    rng = np.random.default_rng(0)
    outs = [executor.run(g, [rng.integers(-128, 128, size=(1, *g.tensors["input"].shape[1:]), dtype=np.int8)])
            [g.outputs[0]] for _ in range(2)]
    assert all(np.unique(o).size > 20 for o in outs), "logits should spread over many int8 values"
    assert np.mean(outs[0] != outs[1]) > 0.5
