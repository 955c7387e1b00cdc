"""Per-patch mixed precision (QuantMCU-style): the integer low-bit formula, the precision plan,
the executor hook (int8 path unchanged; run-time patch classes), calibration and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import model_path

from tinypatch import api
from tinypatch.analysis.macs import op_macs
from tinypatch.cli import main
from tinypatch.errors import PlanError, UsageError
from tinypatch.kernels.lowbit import (
    block_shift,
    code_range,
    packed_bytes,
    requantize,
    requantize_blocks,
    step_shift,
)
from tinypatch.planning.plan import Plan, fingerprint
from tinypatch.planning.precision import (
    MapPrecision,
    PrecisionPlan,
    StagePrecision,
    plan_fingerprint,
)
from tinypatch.planning.tiles import tile_stage
from tinypatch.runtime.crops import crops, photos
from tinypatch.runtime.mixed import (
    MixedPrecision,
    PixelwiseRun,
    stage_maps,
    tile_independent,
)
from tinypatch.runtime.plan_executor import PlanExecutor
from tinypatch.runtime.quantmcu import _margin_loss, flip_risk, measure, uniform


@pytest.mark.parametrize("bits", [7, 6, 5, 4, 3, 2])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("zp", [-128, -5, 0, 37])
def test_requantize_is_the_documented_formula(bits, signed, zp):
    q = np.arange(-128, 128, dtype=np.int8)
    lo, hi = code_range(bits, signed)
    for shift in range(8):
        code = np.clip(np.floor((q.astype(np.float64) - zp) / 2 ** shift + 0.5), lo, hi)  # round half up
        expect = np.clip(zp + code * 2 ** shift, -128, 127).astype(np.int8)
        got = requantize(q, zp, bits, shift, signed)
        assert np.array_equal(got, expect)
        assert got[q == zp][0] == zp  # the zero point survives
        assert len(np.unique(got)) <= 2 ** bits
    assert np.array_equal(requantize(q, zp, 8, 0, True), q)


def test_step_shift_and_packing():
    assert step_shift(4, False, 15) == 0 and step_shift(4, False, 16) == 1 and step_shift(4, True, 255) == 6
    assert step_shift(2, False, 200) == 7
    assert packed_bytes(10, 4) == 5 and packed_bytes(4, 6) == 3 and packed_bytes(3, 2) == 1
    assert packed_bytes(8, 3) == 3 and packed_bytes(8, 5) == 5 and packed_bytes(8, 7) == 7
    assert packed_bytes(8, 4, 2) == 5  # two 3-bit run-time shifts


@pytest.fixture(scope="module")
def vww():
    graph = api.load(str(model_path("mlperf_vww_96_int8.tflite")))
    plan = api.plan(graph, single_stage=True, strategy="recompute", inplace=False, include_input=False).plan
    assert plan.stages
    return graph, plan


def _precision(graph, plan, bits, threshold, scope="rest"):
    maps = [MapPrecision(t, bits, threshold, False) for t in stage_maps(graph, plan, 0)]
    return PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), [StagePrecision(0, maps)], scope)


def _input(graph, seed=0):
    return next(crops(graph.tensors[graph.inputs[0]], "evaluation", 1, seed))


def test_precision_plan_json_round_trip_and_checks(vww, tmp_path):
    graph, plan = vww
    p = _precision(graph, plan, 4, 200)
    path = tmp_path / "p.json"
    p.save(str(path))
    q = PrecisionPlan.load(str(path))
    assert q == p
    q.check(graph, plan)
    other = Plan(plan.model, plan.fingerprint, [], plan.include_input, plan.include_output)
    with pytest.raises(PlanError, match="another patch plan"):
        q.check(graph, other)
    for bits in (1, 9):
        with pytest.raises(PlanError, match="bits"):
            MapPrecision("x", bits, 10, True)
    good = json.loads(p.to_json())
    for field, bad in (("bits", 4.5), ("bits", True), ("threshold", "7"), ("signed", 1), ("tensor", 3)):
        d = json.loads(json.dumps(good))
        d["stages"][0]["maps"][0][field] = bad
        with pytest.raises(PlanError, match=field):
            PrecisionPlan.from_json(json.dumps(d))
    with pytest.raises(PlanError, match="nested too deeply"):
        PrecisionPlan.from_json("[" * 100000 + "]" * 100000)
    with pytest.raises(PlanError, match="not a tinypatch precision plan"):
        PrecisionPlan.from_json(json.dumps({"format": "x"}))


def test_all_8_bit_and_all_outlier_runs_are_int8_exact(vww):
    graph, plan = vww
    x = _input(graph)
    ref = PlanExecutor(graph, plan)(x)
    for prec in (_precision(graph, plan, 8, 255), _precision(graph, plan, 2, 0)):  # threshold 0: every patch an outlier
        mixed = MixedPrecision(graph, plan, prec)
        run = PlanExecutor(graph, plan, mixed)(x)
        assert all(np.array_equal(run.outputs[n], ref.outputs[n]) for n in graph.outputs)
        c = mixed.counts[plan.stages[0].start]
        assert c.bitops == c.bitops_int8 and run.arena_high_water <= run.arena_size
    assert c.outlier_tiles == c.tiles == plan.stages[0].n_tiles


def test_low_bit_patches_counted_and_classified_at_run_time(vww):
    graph, plan = vww
    s = plan.stages[0]
    stage_macs = api.plan(graph, single_stage=True, strategy="recompute", inplace=False,
                          include_input=False).cost.macs - sum(
        op_macs(graph, op) for k, op in enumerate(graph.ops) if not s.start <= k < s.end)
    x = _input(graph, 3)
    mixed = MixedPrecision(graph, plan, _precision(graph, plan, 4, 255))  # no patch can be an outlier
    run = PlanExecutor(graph, plan, mixed)(x)
    c = mixed.counts[s.start]
    assert c.bitops_int8 == 64 * stage_macs and c.outlier_tiles == 0
    assert 0 < c.bitops < c.bitops_int8 and c.bitops % 32 == 0
    assert run.arena_high_water <= run.arena_size
    # only the stage input lowered, threshold between the tiles' maxima: the outlier tiles are
    # exactly those whose own input piece exceeds it
    st = tile_stage(graph, s)
    zp = int(graph.tensors[graph.inputs[0]].quant.zero_point[0])
    maxima = []
    for i in range(s.grid[0]):
        for j in range(s.grid[1]):
            (h0, h1), (w0, w1) = st.h.spans[i][s.start].reads[0], st.w.spans[j][s.start].reads[0]
            maxima.append(int(np.abs(x[:, h0:h1, w0:w1].astype(np.int32) - zp).max()))
    thr = sorted(maxima)[len(maxima) // 2]
    prec = PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan),
                         [StagePrecision(0, [MapPrecision(graph.inputs[0], 4, thr, False)])])
    mixed = MixedPrecision(graph, plan, prec)
    PlanExecutor(graph, plan, mixed)(x)
    assert mixed.counts[s.start].outlier_tiles == sum(m > thr for m in maxima)


def test_crops_come_from_disjoint_photos():
    cal = {n for n, _ in photos("calibration")}
    ev = {n for n, _ in photos("evaluation")}
    assert cal and ev and not cal & ev
    graph = api.load(str(model_path("mlperf_vww_96_int8.tflite")))
    t = graph.tensors[graph.inputs[0]]
    a = list(crops(t, "calibration", 3, 0))
    assert all(x.shape == t.shape and x.dtype == t.np_dtype for x in a)
    assert np.array_equal(a[0], next(crops(t, "calibration", 1, 0))) and not np.array_equal(a[0], a[1])


def test_quantize_cli(vww, tmp_path, capsys):
    graph, plan = vww
    pp = tmp_path / "plan.json"
    plan.save(str(pp))
    out = tmp_path / "prec.json"
    assert main(["quantize", str(model_path("mlperf_vww_96_int8.tflite")), "--plan", str(pp), "--n-calib", "3",
                 "--n-eval", "3", "--bits", "8,4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "top-1 agreement" in text and "outlier patches" in text and "worst case" in text
    prec = PrecisionPlan.load(str(out))
    prec.check(graph, plan)
    assert {m.bits for m in prec.stages[0].maps} <= {8, 4}
    assert main(["quantize", str(model_path("mlperf_vww_96_int8.tflite")), "--plan", str(pp), "--bits", "9"]) == 2
    assert main(["quantize", str(model_path("mlperf_vww_96_int8.tflite")), "--plan", str(tmp_path / "no.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 2


def test_quantize_api_takes_arrays_and_refuses_plans_without_stages(vww):
    graph, plan = vww
    xs = list(crops(graph.tensors[graph.inputs[0]], "evaluation", 2, 5))
    r = api.quantize(graph, plan, calib=xs, evaluate=xs, bitwidths=(8, 4))
    assert r.evaluation.n == 2 and json.loads(r.to_json())["evaluation"]["n"] == 2
    b8, bm = r.evaluation.bitops
    assert bm <= b8 and r.memory.all_low_bit <= r.memory.worst_case
    with pytest.raises(PlanError, match="no patch stage.*--no-stream"):  # with how to make a plan that has one
        api.quantize(graph, Plan.layer_by_layer(graph), calib=xs, evaluate=xs)
    stream = Plan.from_dict({"format": "tinypatch-plan/1", "model": graph.name, "fingerprint": fingerprint(graph), "stages": [
        {"ops": [0, 8], "grid": [4, 12], "rows": [0, 3, 6, 9, 12], "cols": list(range(13)),
         "halo": {str(k): "stream" for k in range(7)}}]})
    with pytest.raises(PlanError, match="only stream stages.*--no-stream"):  # was a precision plan of no stage, "infx fewer"
        api.quantize(graph, stream, calib=xs, evaluate=xs)


def test_entropy_acceptance_runs_no_calibration_and_respects_its_bound(vww):
    graph, plan = vww
    xs = list(crops(graph.tensors[graph.inputs[0]], "calibration", 2, 7))
    loose = api.quantize(graph, plan, calib=xs, evaluate=xs[:1], bitwidths=(8, 4, 3), accept="entropy",
                         max_entropy_loss=1.0)
    assert all(m.bits == 3 for sp in loose.precision.stages for m in sp.maps)  # every move passes a bound of 1
    assert all(s.accepted and s.agreement != s.agreement for s in loose.result.steps)  # NaN: nothing was run
    strict = api.quantize(graph, plan, calib=xs, evaluate=xs[:1], bitwidths=(8, 4), accept="entropy",
                          max_entropy_loss=0.0)
    assert all(m.bits == 8 for sp in strict.precision.stages for m in sp.maps)
    assert strict.precision.notes["accept"] == "entropy"
    with pytest.raises(UsageError):
        api.quantize(graph, plan, calib=xs, accept="proxy")
    with pytest.raises(UsageError):
        api.quantize(graph, plan, calib=xs, n_eval=0)


def test_uniform_plan_has_no_calibration_outlier(vww):
    graph, plan = vww
    xs = list(crops(graph.tensors[graph.inputs[0]], "calibration", 2, 8))
    prec = uniform(graph, plan, xs, 3)
    assert prec.scope == "map" and {m.bits for sp in prec.stages for m in sp.maps} == {3}
    rec = MixedPrecision(graph, plan, None, record=True)
    for x in xs:
        PlanExecutor(graph, plan, rec)(x)
    assert all(m.threshold == max(rec.stats[m.tensor].patch_max) for m in prec.stages[0].maps)
    fid, _ = measure(graph, plan, prec, xs)
    c = fid.counts[plan.stages[0].start]
    assert 3 * c.bitops_int8 <= 8 * c.bitops < 8 * c.bitops_int8  # 3 bits but where a lowered map pushed a later one


def test_margin_loss_is_the_share_of_the_int8_margin_lost():
    ref = np.array([0.1, 0.7, 0.2])
    assert _margin_loss(ref, ref) == 0.0
    assert _margin_loss(np.array([0.1, 0.5, 0.4]), ref) == pytest.approx(0.8)  # margin 0.5 -> 0.1
    assert _margin_loss(np.array([0.0, 0.9, 0.1]), ref) == 0.0  # a wider margin loses nothing
    assert _margin_loss(np.array([0.6, 0.3, 0.1]), ref) > 1  # flipped
    assert _margin_loss(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0 and _margin_loss(ref[:1], ref[:1]) == 0.0
    with pytest.raises(UsageError, match="max-margin-loss"):
        api.quantize(str(model_path("mlperf_vww_96_int8.tflite")), Plan.layer_by_layer(api.load(
            str(model_path("mlperf_vww_96_int8.tflite")))), max_margin_loss=2)


def test_crops_use_pixel_levels_for_inputs_quantized_per_pixel_level():
    graph = api.load(str(model_path("mlperf_ic_resnet8_int8.tflite")))  # input scale 1, zero point -128
    x = next(crops(graph.tensors[graph.inputs[0]], "evaluation", 1, 1))
    assert len(np.unique(x)) > 64  # 0..1 reals would give it two codes


def test_run_executes_a_precision_plan(vww, tmp_path, capsys):
    """`run --precision` runs the patch stage at mixed precision: the same outputs as the executor
    with the precision hook, the differing bytes counted against int8, the arena within the plan."""
    graph, plan = vww
    prec = _precision(graph, plan, 2, 255)  # every map at 2 bits, no patch an outlier
    x = _input(graph, 5)
    want = PlanExecutor(graph, plan, MixedPrecision(graph, plan, prec))(x).outputs
    r = api.run(graph, plan, input=[x], precision=prec)
    assert r.mixed and r.ok and r.arena_high_water <= r.arena_size
    assert all(np.array_equal(r.outputs[n], want[n]) for n in graph.outputs)
    assert r.differ == sum(int((want[n] != r.reference[n]).sum()) for n in graph.outputs) > 0
    pp, qp = tmp_path / "plan.json", tmp_path / "prec.json"
    plan.save(str(pp))
    prec.save(str(qp))
    model = str(model_path("mlperf_vww_96_int8.tflite"))
    assert main(["run", model, "--plan", str(pp), "--precision", str(qp)]) == 0
    assert "output bytes differ from int8" in capsys.readouterr().out
    other = api.plan(graph, inplace=False).plan  # a precision plan of another patch plan is refused
    other.save(str(pp))
    assert main(["run", model, "--plan", str(pp), "--precision", str(qp)]) == 2
    assert "precision plan" in capsys.readouterr().err


# --- run-time steps (block floating point per patch / per pixel) -----------------------------------
@pytest.mark.parametrize("bits", [7, 5, 4, 2])
@pytest.mark.parametrize("signed", [True, False])
def test_run_time_step_is_the_least_shift_that_fits_the_block(bits, signed):
    rng = np.random.default_rng(bits)
    zp = -128 if not signed else 3
    x = rng.integers(-128, 128, (1, 5, 6, 7)).astype(np.int8)
    x[0, 0, 0] = np.clip(zp + rng.integers(0, 3, 7), -128, 127)  # a pixel with a tiny range
    top = code_range(bits, signed)[1]
    got = requantize_blocks(x, zp, bits, signed, "pixel")
    for idx in np.ndindex(x.shape[:-1]):
        px = x[idx]
        m = int(np.abs(px.astype(np.int32) - zp).max())
        s = next(s for s in range(9) if top << s >= m)
        assert s == 0 or top << (s - 1) < m
        assert np.array_equal(got[idx], requantize(px, zp, bits, s, signed))
        if m <= top:
            assert np.array_equal(got[idx], px)  # lossless
    whole = requantize_blocks(x, zp, bits, signed, "patch")
    assert np.array_equal(whole, requantize(x, zp, bits, int(block_shift(np.abs(x.astype(int) - zp).max(), bits,
                                                                           signed)), signed))
    assert np.array_equal(block_shift(np.array([0, top, top + 1, 255]), bits, signed)[:3], [0, 0, 1])


def test_precision_plan_step_field_and_format_versions(vww):
    graph, plan = vww
    p = _precision(graph, plan, 4, 255)
    p.stages[0].maps[1] = MapPrecision(p.stages[0].maps[1].tensor, 5, 255, False, step="pixel")
    d = json.loads(p.to_json())
    assert d["format"] == "tinypatch-precision/2" and PrecisionPlan.from_json(p.to_json()) == p
    old = json.loads(_precision(graph, plan, 4, 255).to_json())
    old["format"] = "tinypatch-precision/1"
    for m in old["stages"][0]["maps"]:
        del m["step"]
    assert all(m.step == "static" for m in PrecisionPlan.from_json(json.dumps(old)).stages[0].maps)
    with pytest.raises(PlanError, match="step"):
        MapPrecision("x", 4, 10, True, step="row")
    d["stages"][0]["maps"][0]["step"] = 3
    with pytest.raises(PlanError, match="step"):
        PrecisionPlan.from_json(json.dumps(d))


def _pixel_plan(graph, plan, bits, threshold=255, step="pixel"):
    stages = [StagePrecision(i, [MapPrecision(t, bits, threshold, False, step=step) for t in stage_maps(graph, plan, i)])
              for i in range(len(plan.stages))]
    return PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), stages)


def test_pixel_steps_without_outliers_do_not_depend_on_the_tiling(vww):
    """Per-pixel steps and no outlier patch: the tiled run equals the whole-image run with the
    stage's maps requantized (PixelwiseRun), which measure() then uses after checking the first input."""
    graph, plan = vww
    prec = _pixel_plan(graph, plan, 3)
    assert tile_independent(prec) and not tile_independent(_pixel_plan(graph, plan, 3, 200))
    assert not tile_independent(_pixel_plan(graph, plan, 3, step="patch")) and not tile_independent(None)
    xs = list(crops(graph.tensors[graph.inputs[0]], "evaluation", 3, 4))
    fast = PixelwiseRun(graph, plan, prec)
    tiled = []
    for x in xs:
        mixed = MixedPrecision(graph, plan, prec)
        want = PlanExecutor(graph, plan, mixed)([x]).outputs
        assert all(np.array_equal(fast(x)[n], want[n]) for n in graph.outputs)
        tiled.append(mixed.counts[plan.stages[0].start])
    fid, _ = measure(graph, plan, prec, xs)
    c = fid.counts[plan.stages[0].start]
    assert c.bitops == sum(t.bitops for t in tiled) < c.bitops_int8 == sum(t.bitops_int8 for t in tiled)
    assert c.tiles == sum(t.tiles for t in tiled) and c.outlier_tiles == 0
    with pytest.raises(PlanError, match="tiling"):
        PixelwiseRun(graph, plan, _pixel_plan(graph, plan, 3, 200))


def test_flip_risk_pairs_every_loss_with_every_margin():
    assert flip_risk([0.0, 0.0], [0.5, 0.1]) == 0.0
    assert flip_risk([0.2, 0.0], [0.1, 0.3]) == pytest.approx(0.25)  # 0.2 exceeds one of two margins, for one input
    assert flip_risk([1.0], [0.0, 0.5]) == 1.0  # tied int8 tops are left out
    assert flip_risk([], [0.1]) == 0.0 and flip_risk([0.3], [0.0]) == 0.0


def test_search_with_pixel_steps_and_no_outliers(vww, tmp_path, capsys):
    graph, plan = vww
    xs = list(crops(graph.tensors[graph.inputs[0]], "calibration", 3, 9))
    r = api.quantize(graph, plan, calib=xs, evaluate=xs[:2], bitwidths=(8, 4), step="pixel", outliers=False,
                     max_change=10, max_flip_risk=1.0)
    maps = r.precision.stages[0].maps
    assert all(m.step == "pixel" and m.threshold == 255 for m in maps) and {m.bits for m in maps} <= {8, 4}
    assert r.evaluation.counts[plan.stages[0].start].outlier_tiles == 0
    assert r.precision.notes["step"] == "pixel" and "none" in r.precision.notes["outlier_rule"]
    first = api.quantize(graph, plan, calib=xs, evaluate=xs[:1], bitwidths=(8, 6, 4), step="pixel", outliers=False,
                         uniform_first=True, min_agreement=0, max_change=1e9)
    assert [(s.tensor, s.bits, s.accepted) for s in first.result.steps[:2]] == [("*", 6, True), ("*", 4, True)]
    assert {m.bits for m in first.precision.stages[0].maps} == {4}  # every move accepted, all together first
    pp = tmp_path / "plan.json"
    plan.save(str(pp))
    assert main(["quantize", str(model_path("mlperf_vww_96_int8.tflite")), "--plan", str(pp), "--n-calib", "2",
                 "--n-eval", "2", "--bits", "8,4", "--step", "pixel", "--no-outliers", "--max-flip-risk", "0.5",
                 "--uniform-first",
                 "-o", str(tmp_path / "p.json")]) == 0
    assert all(m.step == "pixel" for m in PrecisionPlan.load(str(tmp_path / "p.json")).stages[0].maps)
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal: usage on stderr, status 2
        main(["quantize", str(model_path("mlperf_vww_96_int8.tflite")), "--plan", str(pp), "--step", "row"])
    assert exc.value.code == 2
    with pytest.raises(UsageError, match="step"):
        api.quantize(graph, plan, calib=xs, step="row")
    with pytest.raises(UsageError, match="flip-risk"):
        api.quantize(graph, plan, calib=xs, max_flip_risk=2)


def test_benchmark_measures_a_model_file_without_the_shared_assets(tmp_path, monkeypatch, capsys):
    """`benchmarks/quantmcu.py --models FILE` measures a model of the user's own (an ImageNet-trained one,
    say) the same way as the shared ones, with no shared assets; a shared name without them is refused."""
    import importlib.util
    from pathlib import Path

    src = model_path("mlperf_vww_96_int8.tflite")
    spec = importlib.util.spec_from_file_location("bench_quantmcu", Path(__file__).parents[1] / "benchmarks" /
                                                  "quantmcu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    own = tmp_path / "my_model.tflite"
    own.write_bytes(src.read_bytes())
    monkeypatch.setenv("TINYPATCH_ASSETS", str(tmp_path / "absent"))
    out = tmp_path / "rows.json"
    assert bench.main(["--models", str(own), "--methods", "int8,floor", "--n-calib", "2", "--n-eval", "3",
                       "--insns", "", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["my_model", "my_model"] and rows[0]["agreement"] == 1.0
    assert rows[1]["bitops"] < rows[1]["bitops_int8"]
    assert bench.main(["--models", "mlperf_vww_96_int8", "--insns", ""]) == 2
    assert "TINYPATCH_ASSETS" in capsys.readouterr().err
