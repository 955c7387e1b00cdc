"""Import-time folding of converter shape arithmetic (frontends/fold.py) on hand-built graphs,
and the error that names every unsupported operator. The converter-made models that motivate
it are checked end to end in test_tf_models.py."""

from __future__ import annotations

import numpy as np
import pytest

from tinypatch.errors import ModelLoadError, UnsupportedOperatorError
from tinypatch.frontends.fold import evaluate, fold_shapes
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.runtime.executor import run

Q = QuantParams.tensor(0.05, 3)


def _graph(x_shape: tuple[int, ...]) -> Graph:
    g = Graph("fold")
    g.add_tensor(Tensor("x", x_shape, "int8", Q))
    g.inputs = ["x"]
    return g


def _const(g: Graph, name: str, value: object, dtype: str = "int32") -> str:
    arr = np.array(value, dtype)
    g.add_tensor(Tensor(name, arr.shape, dtype, data=arr))
    return name


def _act(g: Graph, name: str, shape: tuple[int, ...], dtype: str = "int8") -> str:
    g.add_tensor(Tensor(name, shape, dtype, Q if dtype == "int8" else None))
    return name


def test_flatten_with_a_dynamic_batch_folds_to_one_reshape():
    """Keras Flatten, dynamic batch: SHAPE -> STRIDED_SLICE (batch) -> PACK(batch, -1) -> RESHAPE."""
    g = _graph((1, 2, 3, 4))
    _act(g, "s", (4,), "int32")
    _act(g, "b", (), "int32")
    _act(g, "target", (2,), "int32")
    _act(g, "y", (1, 24))
    g.add_op(Op("SHAPE", ["x"], ["s"]))
    g.add_op(Op("STRIDED_SLICE", ["s", _const(g, "b0", [0]), _const(g, "b1", [1]), _const(g, "one", [1])], ["b"],
                {"shrink_axis_mask": 1}))
    g.add_op(Op("PACK", ["b", _const(g, "minus1", -1)], ["target"], {"axis": 0}))
    g.add_op(Op("RESHAPE", ["x", "target"], ["y"]))
    g.outputs = ["y"]
    fold_shapes(g, {"x": (-1, 2, 3, 4), "y": (-1, 24)})
    assert [op.type for op in g.ops] == ["RESHAPE"]
    assert g.tensors["target"].data.tolist() == [1, -1] and "s" not in g.tensors
    x = np.arange(24, dtype=np.int8).reshape(1, 2, 3, 4)
    assert run(g, [x])["y"].tolist() == [list(range(24))]


def test_a_shape_the_file_leaves_dynamic_is_derived_from_the_folded_target():
    """The converter stores a placeholder shape ([1, 1, 6, 8]) where the signature is [-1, -1, 6, 8]."""
    g = _graph((1, 6, 6, 8))
    _act(g, "s", (4,), "int32")
    _act(g, "hw", (2,), "int32")
    _act(g, "target", (4,), "int32")
    _act(g, "y", (1, 1, 6, 8))
    _act(g, "z", (1, 6, 6, 8))
    g.add_op(Op("SHAPE", ["x"], ["s"]))
    g.add_op(Op("STRIDED_SLICE", ["s", _const(g, "b0", [0]), _const(g, "b2", [2]), _const(g, "one", [1])], ["hw"]))
    g.add_op(Op("CONCATENATION", ["hw", _const(g, "tail", [6, 8])], ["target"], {"axis": 0}))
    g.add_op(Op("RESHAPE", ["x", "target"], ["y"]))
    g.add_op(Op("ADD", ["y", "x"], ["z"]))
    g.outputs = ["z"]
    fold_shapes(g, {"x": (-1, 6, 6, 8), "y": (-1, -1, 6, 8), "z": (-1, -1, 6, 8)})
    assert g.tensors["y"].shape == (1, 6, 6, 8) and g.tensors["z"].shape == (1, 6, 6, 8)
    assert [op.type for op in g.ops] == ["RESHAPE", "ADD"]


def _repeat(g: Graph, x: str, axis: int, times: int, out: str) -> None:
    """tf.repeat as TFLite's converter writes it: EXPAND_DIMS -> TILE -> RESHAPE."""
    shape = g.tensors[x].shape
    expanded = (*shape[:axis + 1], 1, *shape[axis + 1:])
    tiled = (*shape[:axis + 1], times, *shape[axis + 1:])
    reps = [1] * 5
    reps[axis + 1] = times
    _act(g, f"{out}_e", expanded)
    _act(g, f"{out}_t", tiled)
    final = list(shape)
    final[axis] *= times
    _act(g, out, tuple(final))
    g.add_op(Op("EXPAND_DIMS", [x, _const(g, f"{out}_ax", axis + 1)], [f"{out}_e"]))
    g.add_op(Op("TILE", [f"{out}_e", _const(g, f"{out}_reps", reps)], [f"{out}_t"]))
    g.add_op(Op("RESHAPE", [f"{out}_t", _const(g, f"{out}_shape", final)], [out]))


@pytest.mark.parametrize("times", [(2, 2), (3, 1), (1, 5), (2, 3)])
def test_upsampling2d_repeats_become_one_nearest_resize(times):
    g = _graph((1, 3, 4, 2))
    _repeat(g, "x", 1, times[0], "rows")
    _repeat(g, "rows", 2, times[1], "y")
    g.outputs = ["y"]
    x = np.random.default_rng(0).integers(-128, 128, (1, 3, 4, 2), dtype=np.int8)
    want = np.repeat(np.repeat(x, times[0], axis=1), times[1], axis=2)
    fold_shapes(g, {})
    assert [op.type for op in g.ops] == ["RESIZE_NEAREST_NEIGHBOR"]
    assert g.tensors[g.ops[0].inputs[1]].data.tolist() == [3 * times[0], 4 * times[1]]
    assert run(g, [x])["y"].tobytes() == want.tobytes()


def test_expand_dims_and_squeeze_on_activations_become_reshapes():
    g = _graph((1, 1, 1, 8))
    _act(g, "sq", (1, 8))
    _act(g, "ex", (1, 1, 8))
    g.add_op(Op("SQUEEZE", ["x"], ["sq"], {"squeeze_dims": (1, 2)}))
    g.add_op(Op("EXPAND_DIMS", ["sq", _const(g, "ax", 1)], ["ex"]))
    g.outputs = ["ex"]
    fold_shapes(g, {})
    assert [op.type for op in g.ops] == ["RESHAPE", "RESHAPE"]
    x = np.arange(8, dtype=np.int8).reshape(1, 1, 1, 8)
    assert run(g, [x])["ex"].tobytes() == x.tobytes()


@pytest.mark.parametrize("op_type,args,attrs,want", [
    ("STRIDED_SLICE", [[5, 6, 7, 8], [1], [0], [1]], {"end_mask": 1}, [6, 7, 8]),
    ("STRIDED_SLICE", [[5, 6, 7, 8], [-1], [0], [-1]], {"end_mask": 1}, [8, 7, 6, 5]),
    ("STRIDED_SLICE", [[5, 6, 7, 8], [1], [2], [1]], {"offset": True}, [6, 7]),
    ("GATHER", [[5, 6, 7, 8], [3, 0]], {"axis": 0}, [8, 5]),
    ("TILE", [[1, 2], [3]], {}, [1, 2, 1, 2, 1, 2]),
    ("FILL", [[2], 7], {}, [7, 7]),
    ("REDUCE_PROD", [[2, 3, 4], [0]], {}, 24),
    ("FLOOR_DIV", [[7, -7], [2, 2]], {}, [3, -4]),
])
def test_shape_math_matches_tensorflow_semantics(op_type, args, attrs, want):
    arrays = [np.array(a, np.int32) for a in args]
    got = evaluate(Op(op_type, [], ["o"], attrs), arrays, [a.shape for a in arrays])
    assert np.asarray(got).tolist() == want


def test_every_unsupported_operator_is_named():
    g = _graph((1, 4, 4, 2))
    prev = "x"
    for k, t in enumerate(["TANH", "CONV_2D_FAKE", "TANH", "RELU"]):
        _act(g, f"y{k}", (1, 4, 4, 2))
        g.add_op(Op(t, [prev], [f"y{k}"], name=f"{k}_{t.lower()}"))
        prev = f"y{k}"
    g.outputs = [prev]
    with pytest.raises(UnsupportedOperatorError) as info:
        fold_shapes(g, {})
    msg = str(info.value)
    assert msg.startswith("3 unsupported operators: TANH x2 (operator indices 0, 2); CONV_2D_FAKE x1 (operator index 1)")
    assert info.value.found == {"TANH": [0, 2], "CONV_2D_FAKE": [1]} and info.value.index == 0


def test_shape_math_on_a_dynamic_dimension_says_a_static_shape_removes_it():
    """H and W dynamic (signature -1): SHAPE cannot fold; the error says what would remove it."""
    g = _graph((1, 4, 4, 2))
    _act(g, "s", (4,), "int32")
    _act(g, "y", (1, 4, 4, 2))
    g.add_op(Op("SHAPE", ["x"], ["s"], name="0_shape"))
    g.add_op(Op("RESHAPE", ["x", "s"], ["y"], name="1_reshape"))
    g.outputs = ["y"]
    with pytest.raises(UnsupportedOperatorError, match=r"SHAPE at operator index 0: SHAPE compute shapes at run "
                                                        r"time .*static input shape \(batch 1\) removes them"):
        fold_shapes(g, {"x": (-1, -1, -1, 2), "y": (-1, -1, -1, 2)})


def test_a_dynamic_shape_nothing_derives_is_a_load_error():
    g = _graph((1, 4, 4, 2))
    _act(g, "y", (1, 1, 4, 2))
    g.add_op(Op("AVERAGE_POOL_2D", ["x"], ["y"], {"filter_h": 4, "filter_w": 1, "stride_h": 4}, name="0_avg"))
    g.outputs = ["y"]
    with pytest.raises(ModelLoadError, match="dynamic shape.*fixed input shape"):
        fold_shapes(g, {"y": (-1, -1, 4, 2)})


def test_the_reader_names_every_unsupported_operator_of_a_file():
    from tinypatch.backends.tflite_writer import write_tflite
    from tinypatch.frontends.tflite import parse_tflite

    g = _graph((1, 4, 4, 2))
    prev = "x"
    for k, t in enumerate(["TANH", "RELU", "GELU", "TANH"]):
        _act(g, f"y{k}", (1, 4, 4, 2))
        g.add_op(Op(t, [prev], [f"y{k}"]))
        prev = f"y{k}"
    g.outputs = [prev]
    with pytest.raises(UnsupportedOperatorError, match=r"^3 unsupported operators: TANH x2 \(operator indices 0, 3\); "
                                                        r"GELU x1 \(operator index 2\)$"):
        parse_tflite(write_tflite(g))
