"""Architecture specs (JSON, hash, edits) and redistribution against MCUNetV2's Table 1."""

from __future__ import annotations

import json

import pytest

from tinypatch import api
from tinypatch.cli import main
from tinypatch.errors import ModelLoadError
from tinypatch.frontends.load import load_model
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.spec import load_spec, save_spec, spec_from_dict
from tinypatch.frontends.zoo import build, spec_of
from tinypatch.planning.redistribute import moves, patch_figures


def _close(value: float, paper: float, rel: float = 0.05) -> bool:
    return abs(value / paper - 1) <= rel


def test_table1_mbv2_and_mbv2_rd() -> None:
    """MCUNetV2 Table 1 at 4x4 patches (patch-stage MACs with full-size tiles, MCUNetV2's convention)."""
    mbv2, rd = (patch_figures(build(n), 4) for n in ("mbv2-w1.0-r224", "mbv2-rd"))
    assert (mbv2.patch, rd.patch) == (75, 63)
    assert _close(mbv2.stage_macs_full_tiles, 130e6) and _close(rd.stage_macs_full_tiles, 73e6)
    assert _close(mbv2.macs_patched, 330e6) and _close(rd.macs_patched, 301e6)
    assert _close(mbv2.peak, 172 * 1024) and _close(rd.peak, 172 * 1024)
    assert _close(mbv2.layer_peak, 1372 * 1024) and _close(rd.layer_peak, 1372 * 1024)
    assert abs(rd.overhead - 0.03) <= 0.01 and abs(mbv2.overhead - 0.10) <= 0.01
    assert abs(rd.stage_overhead_full_tiles - 0.18) <= 0.01 and abs(mbv2.stage_overhead_full_tiles - 0.42) <= 0.01


def test_paper_networks_macs() -> None:
    """MnasNet-A1 312M and FBNet-A 249M MACs in their papers (FBNet-A's grouped 1x1s are dense here)."""
    from tinypatch.analysis.macs import op_macs

    for name, paper in (("mnasnet-a1", 312e6), ("fbnet-a", 249e6)):
        g = build(name)
        assert _close(sum(op_macs(g, op) for op in g.ops), paper, 0.02), name


def test_spec_json_hash_edit(tmp_path) -> None:
    spec = spec_of("mnasnet-a1")
    path = tmp_path / "s.json"
    save_spec(spec, path)
    again = load_spec(path)
    assert again == spec and again.fingerprint() == spec.fingerprint()
    edited = spec.with_block(3, kernel=3)
    assert edited.fingerprint() != spec.fingerprint() and edited.blocks[3].kernel == 3
    assert "blocks.3  MB3 k3 s2 40 SE" in edited.describe()
    assert spec.stage_depths() == [1, 2, 3, 4, 2, 3, 1] and "stage depths 1,2,3,4,2,3,1" in str(spec)
    assert spec_of("mbv2-w1.0-r224").stage_depths() == [1, 2, 3, 4, 3, 3, 1]
    assert spec_of("fbnet-a").stage_depths() == [1, 4, 4, 4, 4, 4, 1]
    g1, g2 = build_net(spec), load_model(str(path))
    assert [o.type for o in g1.ops] == [o.type for o in g2.ops]
    assert all((g1.tensors[a].data == g2.tensors[b].data).all() for a, b in zip(g1.tensors, g2.tensors)
               if g1.tensors[a].is_const)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("format"), "not a tinypatch architecture spec"),
    (lambda d: d.update(width=2), "unknown field"),
    (lambda d: d["blocks"][1].update(kernel=4), "bad kernel"),
    (lambda d: d["blocks"][0].update(depthwise=False, stride=2), "without a depthwise"),
    (lambda d: d["blocks"][1].update(shortcut=True), "identity shortcut"),
    (lambda d: d["blocks"].__setitem__(0, [1, 2]), "must be null or an object"),
    (lambda d: d["blocks"][3].update(kernel="3"), "kernel must be an integer"),
    (lambda d: d.update(resolution=None), "resolution must be an integer"),
])
def test_bad_spec(change, message) -> None:
    d = spec_of("mbv2-w1.0-r224").to_dict()
    change(d)
    with pytest.raises(ModelLoadError, match=message):
        spec_from_dict(d)


def test_redistribute_mbv2_finds_rd(tmp_path, capsys) -> None:
    out = tmp_path / "rd.json"
    assert main(["redistribute", "mbv2-w1.0-r224", "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["after"]["overhead"] <= d["before"]["overhead"] / 2
    assert d["after"]["peak"] <= d["before"]["peak"] and d["after"]["patch"] < d["before"]["patch"]
    assert abs(d["after"]["macs"] / d["before"]["macs"] - 1) <= 0.05
    assert abs(d["after"]["params"] / d["before"]["params"] - 1) <= 0.05
    assert api.redistribute(str(out)).search.original.figures.overhead == pytest.approx(d["after"]["overhead"])


def test_redistribute_errors(capsys) -> None:
    assert main(["redistribute", "msf-mcunet-vww5-r80"]) == 2
    assert main(["redistribute", "mbv2-w1.0-r224", "--budget", "1KB"]) == 2
    err = capsys.readouterr().err
    assert "not a zoo model built from an architecture spec" in err and "least peak" in err


def test_redistribute_mnasnet_halves_overhead() -> None:
    """MnasNet-A1 (large kernels early, the worst in MCUNetV2's Fig. 5)."""
    r = api.redistribute("mnasnet-a1").search
    o, f = r.original.figures, r.result.figures
    assert f.overhead <= o.overhead / 2 and f.peak <= o.peak and abs(f.macs / o.macs - 1) <= 0.05
    assert any("next lower resolution" in text for text, _ in moves(r.original.spec, 3))
    assert "mnasnet-a1" in str(api.redistribute(r.result.spec, tolerance="5%"))


def test_redistribute_mcunet_config_json(tmp_path, assets) -> None:
    """An MCUNet config .json is a spec source: the same architecture hash as the zoo's copy."""
    path = assets / "configs" / "proxyless-w0.25-r112_imagenet.json"
    r = api.redistribute(path, grid=2).search
    assert r.original.spec.fingerprint() == spec_of("proxyless-w0.25").fingerprint()
    assert r.result.figures.overhead < r.original.figures.overhead and r.result.figures.peak <= r.budget
    with pytest.raises(ModelLoadError, match="not found"):
        api.redistribute(tmp_path / "missing.json")


def test_redistributed_network_runs_patch_by_patch_bit_exactly() -> None:
    """MbV2-RD (a block without depthwise conv) at 64x64: its 2x2 MCUNetV2 schedule gives the same bytes."""
    from tinypatch.analysis.regions import split_even
    from tinypatch.planning.plan import Plan, Stage, fingerprint

    g = build("mbv2-rd", resolution=64)
    f = patch_figures(g, 2)
    out = g.tensors[g.ops[f.end - 1].outputs[0]].shape
    plan = Plan(g.name, fingerprint(g), [Stage(0, f.end, split_even(out[1], 2), split_even(out[2], 2))])
    assert api.run(g, plan).exact
