"""A bounded slice of ``benchmarks/fuzz.py`` (the full run is 100,000 mutated models and 10,000
random networks): no traceback, hang, RSS overrun or byte mismatch, and every kind of outcome
actually reached (mutations refused, mutations run, random networks equal to LiteRT)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ASSETS, SKIP_NO_ASSETS

pytest.importorskip("ai_edge_litert.interpreter")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402


@pytest.mark.skipif(ASSETS is None, reason=SKIP_NO_ASSETS)
def test_fuzz_slice(capsys):
    args = ["--mutations", "800", "--networks", "80", "--onnx", "0", "--seed", "7", "--workers", "2",
            "--progress", "0", "--timeout", "30"]
    assert fuzz.main(args) == 0, capsys.readouterr().out
    summary = json.loads(capsys.readouterr().out)
    out = summary["outcomes"]
    assert not summary["failures"]
    assert out.get("refused", 0) > 100 and out.get("ran", 0) > 10 and out.get("exact") == 80
    assert summary["peak_rss_mib"] < 2048


@pytest.mark.skipif(ASSETS is None, reason=SKIP_NO_ASSETS)
def test_fuzz_slice_onnx(capsys, tmp_path):
    """Mutated int8 ONNX models (QDQ and QOperator) through the ONNX reader and every later step."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    args = ["--mutations", "0", "--networks", "0", "--onnx", "160", "--seed", "3", "--workers", "2",
            "--progress", "0", "--timeout", "60", "--onnx-models", str(fuzz.build_onnx_models(tmp_path))]
    assert fuzz.main(args) == 0, capsys.readouterr().out
    summary = json.loads(capsys.readouterr().out)
    out = summary["onnx_outcomes"]
    assert not summary["failures"]
    assert out.get("refused", 0) > 40 and out.get("ran", 0) > 10, out


@pytest.mark.skipif(ASSETS is None, reason=SKIP_NO_ASSETS)
def test_fuzz_case_is_reproducible():
    corpus = fuzz.Corpus(ASSETS / "models", 3_000_000)
    assert [corpus.mutation(3, i) for i in range(30)] == [corpus.mutation(3, i) for i in range(30)]


def test_running_many_graphs_keeps_memory_bounded():
    """The executor cache held every graph ever run (found by the full fuzz run: RSS grew ~30 kB a case)."""
    import gc
    import weakref

    import numpy as np

    from tinypatch.frontends.random_cnn import RngDraw, random_cnn
    from tinypatch.runtime import executor

    refs = []
    for i in range(12):
        graph, x = random_cnn(RngDraw(np.random.default_rng(i)), max_layers=2)
        executor.run(graph, [x])
        refs.append(weakref.ref(graph))
        del graph
    gc.collect()
    assert len(executor._CACHE) <= executor._CACHE_SIZE
    assert sum(r() is not None for r in refs) <= executor._CACHE_SIZE
