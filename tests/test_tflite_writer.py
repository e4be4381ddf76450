"""The direct TFLite writer, one op at a time: each mapped Keras layer / ``keras.ops`` operation in a tiny model with
a dynamic batch, written straight to a flatbuffer, run in LiteRT at batch 1 and 3 and compared to Keras itself.
Then what it refuses (the caller's fallback), and the builder route end to end (route, signature, contract)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

TOL = 1e-5


def _run_tflite(path: Path, names: list[str], feeds: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The file's ``serving_default`` signature, fed by input name."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(str(path), num_threads=1)
    assert sorted(interp.get_signature_list()["serving_default"]["inputs"]) == sorted(names)
    return interp.get_signature_runner("serving_default")(**dict(zip(names, feeds)))


def _check(tmp_path: Path, build: Callable[[Any], Any], shapes: list[tuple[int, ...]],
           dtypes: tuple[str, ...] = ("float32",), seed: int = 0) -> None:
    """``build(inputs)`` -> outputs; the written file must match Keras at batch 1 and 3 (dynamic batch kept)."""
    import keras

    from converter.adapters.keras_export import signature_output_names
    from converter.tflite_writer import write_model

    keras.utils.set_random_seed(seed)
    dtypes = dtypes * len(shapes) if len(dtypes) == 1 else dtypes
    # names sort opposite to model order: the subgraph must keep model order (LiteRT callers feed by position)
    inputs = [keras.Input(s, dtype=d, name=f"in{len(shapes) - k}") for k, (s, d) in enumerate(zip(shapes, dtypes))]
    outs = build(inputs if len(inputs) > 1 else inputs[0])
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    outs = [keras.layers.Identity(name=f"out{k}")(o) for k, o in enumerate(outs)]
    model = keras.Model(inputs, outs)
    path = tmp_path / "m.tflite"
    names = signature_output_names(model)
    write_model(model, path, [t.name for t in model.inputs], names)
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(str(path)).get_input_details()
    assert all(d["shape_signature"][0] == -1 for d in details), details
    assert [d["name"] for d in details] == [t.name for t in model.inputs], details
    rng = np.random.default_rng(seed)
    for batch in (1, 3):
        feeds = [rng.standard_normal((batch, *s)).astype(np.float32) if d == "float32"
                 else rng.integers(0, 4, (batch, *s)).astype(d) for s, d in zip(shapes, dtypes)]
        expected = model(feeds, training=False)
        expected = expected if isinstance(expected, (list, tuple)) else [expected]
        got = _run_tflite(path, [t.name for t in model.inputs], feeds)
        for name, want in zip(names, expected):
            want = np.asarray(want)
            assert got[name].shape == want.shape, (name, got[name].shape, want.shape)
            np.testing.assert_allclose(got[name], want, atol=TOL, rtol=TOL, err_msg=f"{name} at batch {batch}")


def _layers() -> Any:
    import keras

    return keras.layers


def _ops() -> Any:
    from keras import ops

    return ops


CONV_CASES: dict[str, Callable[[Any], Any]] = {
    "conv_valid_bias_relu": lambda x: _layers().Conv2D(4, 3, activation="relu")(x),
    "conv_same_stride2_nobias": lambda x: _layers().Conv2D(5, 3, strides=2, padding="same", use_bias=False)(x),
    "conv_dilated": lambda x: _layers().Conv2D(3, 3, dilation_rate=2)(x),
    "depthwise_same_mult2": lambda x: _layers().DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x),
    "depthwise_stride2": lambda x: _layers().DepthwiseConv2D(3, strides=2)(x),
    "maxpool": lambda x: _layers().MaxPooling2D(3, strides=2)(x),
    "avgpool_same": lambda x: _layers().AveragePooling2D(2, padding="same")(x),
    "global_avg_keepdims": lambda x: _layers().GlobalAveragePooling2D(keepdims=True)(x),
    "global_max": lambda x: _layers().GlobalMaxPooling2D()(x),
    "zero_padding": lambda x: _layers().ZeroPadding2D(((1, 2), (3, 0)))(x),
    "pad_symmetric": lambda x: _ops().pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric"),
    "pad_reflect": lambda x: _ops().pad(x, [[0, 0], [2, 1], [1, 2], [0, 0]], mode="reflect"),
    "pad_constant": lambda x: _ops().pad(x, [[0, 0], [1, 0], [0, 1], [0, 0]], constant_values=0.5),
    "batchnorm": lambda x: _bn(x),
}


def _bn(x: Any) -> Any:
    layer = _layers().BatchNormalization(epsilon=1e-3)
    y = layer(x)
    rng = np.random.default_rng(1)
    for v in (layer.gamma, layer.beta, layer.moving_mean):
        v.assign(rng.standard_normal(v.shape).astype("float32"))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32"))
    return y


CONV_CASES.update({
    "conv_bn_relu_folded": lambda x: _layers().ReLU()(_bn(_layers().Conv2D(4, 3, padding="same")(x))),
    "depthwise_bn_relu6_folded": lambda x: _layers().ReLU(6.0)(_bn(_layers().DepthwiseConv2D(3)(x * 3.0))),
    "conv_feeds_bn_and_residual": lambda x: _residual(x),
    "add_relu_fused": lambda x: _layers().Activation("relu")(_layers().Add()([x, _layers().Conv2D(3, 1)(x)])),
})


def _residual(x: Any) -> Any:
    """The conv output is read twice: the batch norm cannot be folded into it."""
    y = _layers().Conv2D(3, 1)(x)
    return [_layers().Add()([_bn(y), y]), _layers().ReLU()(y)]


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_family(tmp_path: Path, case: str) -> None:
    _check(tmp_path, CONV_CASES[case], [(9, 9, 3)])


ELEMENTWISE_CASES: dict[str, Callable[[Any], Any]] = {
    "relu": lambda x: _layers().ReLU()(x),
    "relu6": lambda x: _layers().ReLU(max_value=6.0)(x * 4.0),
    "leaky": lambda x: _layers().ReLU(negative_slope=0.1)(x),
    "sigmoid": lambda x: _layers().Activation("sigmoid")(x),
    "silu": lambda x: _layers().Activation("silu")(x),
    "tanh": lambda x: _layers().Activation("tanh")(x),
    "hard_silu": lambda x: _ops().hard_silu(x * 3.0),
    "gelu_exact": lambda x: _ops().gelu(x, approximate=False),
    "gelu_tanh": lambda x: _ops().gelu(x, approximate=True),
    "softmax": lambda x: _ops().softmax(x, axis=-1),
    "clip": lambda x: _ops().clip(x, 0.0, 1.0),
    "add_scalar": lambda x: _ops().add(x, 3.0),
    "mul_broadcast_const": lambda x: _ops().multiply(x, np.arange(6, dtype="float32")),
    "sub_div": lambda x: _ops().divide(_ops().subtract(x, 1.5), 4.0),
    "zeros_like_cast": lambda x: _ops().cast(_ops().add(_ops().zeros_like(x), x), "int32"),
}


@pytest.mark.parametrize("case", sorted(ELEMENTWISE_CASES))
def test_elementwise(tmp_path: Path, case: str) -> None:
    _check(tmp_path, ELEMENTWISE_CASES[case], [(4, 6)])


def test_folding_removes_operators(tmp_path: Path) -> None:
    """conv -> batch norm -> ReLU is one CONV_2D, as the TF converter writes it."""
    import keras

    from converter.tflite_writer import write_model

    x = keras.Input((8, 8, 3))
    model = keras.Model(x, keras.layers.ReLU()(_bn(keras.layers.Conv2D(4, 3)(x))))
    assert write_model(model, tmp_path / "m.tflite", ["x"], ["y"]) == 1


def test_fp16_weights_are_half_size_and_close(tmp_path: Path) -> None:
    """``--quantize fp16`` written directly: every layer weight a FLOAT16 buffer DEQUANTIZE'd at load, as the TF
    converter writes it; the outputs stay within float16 rounding of Keras."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from converter.tflite_writer import write_model

    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    model = keras.Model(x, keras.layers.Dense(5)(keras.layers.Flatten()(keras.layers.Conv2D(16, 3)(x))))
    write_model(model, tmp_path / "f32.tflite", ["x"], ["y"])
    write_model(model, tmp_path / "f16.tflite", ["x"], ["y"], fp16=True)
    size32, size16 = (tmp_path / "f32.tflite").stat().st_size, (tmp_path / "f16.tflite").stat().st_size
    assert size16 < 0.6 * size32, (size16, size32)
    interp = Interpreter(str(tmp_path / "f16.tflite"))
    assert {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()} >= {"float16", "float32"}
    feed = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    got = interp.get_signature_runner()(x=feed)["y"]
    want = np.asarray(model(feed))
    assert np.abs(got - want).max() < 1e-2 * np.abs(want).max(), np.abs(got - want).max()


def test_merging_layers_with_three_operands(tmp_path: Path) -> None:
    _check(tmp_path, lambda xs: [_layers().Add()(xs), _layers().Multiply()(xs)], [(4, 6)] * 3)


LINEAR_SHAPE_CASES: dict[str, Callable[[Any], Any]] = {
    "dense_3d": lambda x: _layers().Dense(7)(x),
    "dense_2d_relu": lambda x: _layers().Dense(7, activation="relu")(_layers().Flatten()(x)),
    "dense_bn_folded": lambda x: _bn(_layers().Dense(7)(x)),
    "layernorm": lambda x: _ln(x),
    "matmul_self": lambda x: _ops().matmul(x, _ops().transpose(x, (0, 2, 1))),
    "matmul_const": lambda x: _ops().matmul(x, np.ones((6, 2), "float32")),
    "reshape_layer": lambda x: _layers().Reshape((2, 12))(x),
    "reshape_op_batch_inside": lambda x: _ops().reshape(_ops().transpose(x, (1, 0, 2)), (4, -1, 3, 2)),
    "expand_squeeze": lambda x: _ops().squeeze(_ops().expand_dims(x, 0), 0),
    "transpose": lambda x: _ops().transpose(x, (0, 2, 1)),
    "concat_last_axis": lambda x: _ops().concatenate([x, _ops().multiply(x, 2.0)], axis=-1),
    "concat_layer": lambda x: _layers().Concatenate(axis=1)([x, x]),
    "take_scalar": lambda x: _ops().take(x, 2, axis=2),
    "take_negative": lambda x: _ops().take(x, -1, axis=1),
    "getitem": lambda x: x[:, 1:3, ::2],
    "getitem_int": lambda x: x[:, -1],
    "getitem_ellipsis": lambda x: x[..., 0:1],
    "split_stack": lambda x: _ops().stack(_ops().split(x, [1, 4], axis=2)[::-1][:1] * 2, axis=1),
    "split_sections": lambda x: _ops().split(x, 3, axis=-1),
    "flip": lambda x: _ops().flip(x, axis=1),
    "slice_first_row": lambda x: _ops().slice(x, (0, 1, 2), (1, 2, 3)),
    "compare_where": lambda x: _ops().where(_ops().logical_or(_ops().greater(x, 0.5), _ops().equal(x, x * 0)),
                                            x, _ops().where(_ops().logical_not(_ops().less(x, -1.0)), 2.0, x)),
    "mean_sum_max": lambda x: [_ops().mean(x, axis=1), _ops().sum(x, axis=-1, keepdims=True),
                               _ops().max(x, axis=(1, 2))],
    "softmax_attention": lambda x: _ops().softmax(_ops().matmul(x, _ops().transpose(x, (0, 2, 1))) * 0.125),
}


def _ln(x: Any) -> Any:
    layer = _layers().LayerNormalization(epsilon=1e-6)
    y = layer(x)
    rng = np.random.default_rng(2)
    layer.gamma.assign(rng.standard_normal(layer.gamma.shape).astype("float32"))
    layer.beta.assign(rng.standard_normal(layer.beta.shape).astype("float32"))
    return y


@pytest.mark.parametrize("case", sorted(LINEAR_SHAPE_CASES))
def test_linear_and_shape(tmp_path: Path, case: str) -> None:
    _check(tmp_path, LINEAR_SHAPE_CASES[case], [(4, 6)])


def test_embedding_takes_integer_ids(tmp_path: Path) -> None:
    _check(tmp_path, lambda ids: _layers().Embedding(5, 3)(ids), [(7,)], dtypes=("int32",))


def test_two_inputs_two_outputs_keep_their_order(tmp_path: Path) -> None:
    """Signature keys are the Keras input names and output layer names, in model order in the subgraph."""
    _check(tmp_path, lambda xs: [_layers().Dense(2)(xs[1]), _ops().add(xs[0], xs[0])], [(3,), (5,)])


def test_unmapped_op_is_refused_before_writing(tmp_path: Path) -> None:
    import keras

    from converter.tflite_writer import WriterRefused, write_model

    x = keras.Input((5, 3))
    model = keras.Model(x, keras.layers.LSTM(4)(x))
    with pytest.raises(WriterRefused, match="LSTM"):
        write_model(model, tmp_path / "m.tflite", ["x"], ["y"])
    assert not (tmp_path / "m.tflite").exists()


def test_unmapped_configuration_is_refused(tmp_path: Path) -> None:
    import keras

    from converter.tflite_writer import WriterRefused, write_model

    x = keras.Input((8, 8, 4))
    model = keras.Model(x, keras.layers.Conv2D(4, 3, groups=2)(x))
    with pytest.raises(WriterRefused, match="groups=2"):
        write_model(model, tmp_path / "m.tflite", ["x"], ["y"])


# ---- the builder route end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["two_in_two_out", "transformer_block"])
def test_builder_route_writes_directly(tmp_path: Path, name: str) -> None:
    """Verified against onnxruntime and the source like any .tflite; the file carries the contract and a
    ``serving_default`` signature keyed by the source's input names."""
    from ai_edge_litert.interpreter import Interpreter

    from converter import ConvertOptions, contract, convert
    from fixtures import save

    source = save.save_pt2(name, tmp_path / f"{name}.pt2")
    out = tmp_path / "m.tflite"
    result = convert(str(source), ConvertOptions(output=str(out), manifest=False))
    assert result.passed, result.report.format_text()
    assert "tflite float32 (crossport direct writer)" in result.report.route, result.report.route
    assert contract.read(out) is not None
    signature = Interpreter(str(out)).get_signature_list()["serving_default"]
    assert sorted(signature["inputs"]) == sorted(t.name for t in result.report.inputs), signature


def test_unmapped_op_falls_back_to_the_tf_converter(tmp_path: Path) -> None:
    """A static-batch LSTM stays one fused Keras LSTM layer, which the writer does not map: the whole model goes
    through the TF converter, and the report says so and why."""
    from converter import ConvertOptions, convert
    from fixtures import save

    source = save.save_pt2("lstm", tmp_path / "lstm.pt2", dynamic_batch=False)
    result = convert(str(source), ConvertOptions(output=str(tmp_path / "m.tflite"), manifest=False))
    assert result.passed, result.report.format_text()
    assert "tflite float32 (TF converter)" in result.report.route, result.report.route
    assert any("direct TFLite writer" in n and "LSTM" in n for n in result.report.notes), result.report.notes


def test_contract_is_filled_in_place_and_the_model_is_untouched(tmp_path: Path) -> None:
    """The writer reserves the contract's buffer as the file's last bytes; ``embed`` rewrites only those (no
    re-pack), every other object -- weights, ops, signature -- stays as written, and the file still runs the same.
    A file whose contract buffer is not last (re-packed by the fallback) is refused by the in-place path."""
    import keras
    from ai_edge_litert import schema_py_generated as schema

    from converter import contract
    from converter.tflite_writer import write_model

    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    model = keras.Model(x, keras.layers.Identity(name="y")(keras.layers.Dense(4, name="fc")(x)))
    path = tmp_path / "m.tflite"
    write_model(model, path, ["x"], ["y"])
    before = bytearray(path.read_bytes())
    assert contract.read(path) is None  # the placeholder is no contract
    feed = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    ran_before = _run_tflite(path, ["x"], [feed])["y"]
    made = contract.Contract((("x", "none", "none"),), (("y", "none", "none"),), ("pytorch", "tflite"), 18, "s.pt2")
    assert contract.embed(path, "tflite", made)
    after = path.read_bytes()
    blob = made.to_json().encode()
    assert len(after) == len(before) - 16 + len(blob) and after.endswith(blob)
    assert contract.read(path) == made
    old, new = schema.ModelT.InitFromPackedBuf(before, 0), schema.ModelT.InitFromPackedBuf(bytearray(after), 0)
    assert len(old.buffers) == len(new.buffers) and [m.name for m in new.metadata] == [contract.KEY.encode()]
    for k, (a, b) in enumerate(zip(old.buffers[:-1], new.buffers[:-1])):
        assert np.array_equal(np.asarray(a.data if a.data is not None else []),
                              np.asarray(b.data if b.data is not None else [])), k
    np.testing.assert_array_equal(_run_tflite(path, ["x"], [feed])["y"], ran_before)
    smaller = contract.Contract((("x", "a", "b"),), (("y", "c", "d"),))
    assert contract.embed(path, "tflite", smaller) and contract.read(path) == smaller  # shrinks in place too
    contract._tflite_add(path, made.to_json().encode())  # noqa: SLF001 - the re-pack fallback
    assert not contract._tflite_fill(path, b"{}")  # noqa: SLF001 - its contract buffer is no longer last
    assert contract.read(path) == made


def test_streamed_weights_and_a_mapped_builder_write_the_same_bytes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Large models get a builder backed by an anonymous memory map, and large weights are not copied into it but
    streamed into their reserved places while the file is written (``graph.WeightBuilder``, ``graph.finish``),
    transposed kernels in blocks of rows. Forced here for a small model (every weight streamed, blocks of one
    row), the file is byte for byte the one with every weight copied into a plain ``bytearray`` builder."""
    import keras

    from converter.tflite_writer import graph, write_model

    x = keras.Input((8, 8, 3), name="x")
    model = keras.Model(x, keras.layers.Dense(5)(keras.layers.Conv2D(4, 3)(x)))
    monkeypatch.setattr(graph, "_DEFERRED_FROM", 1 << 40)
    write_model(model, tmp_path / "copied.tflite", ["x"], ["y"])
    monkeypatch.setattr(graph, "_DEFERRED_FROM", 0)
    monkeypatch.setattr(graph, "_MAPPED_FROM", 0)
    monkeypatch.setattr(graph, "_BLOCK_BYTES", 1)
    write_model(model, tmp_path / "streamed.tflite", ["x"], ["y"])
    assert (tmp_path / "streamed.tflite").read_bytes() == (tmp_path / "copied.tflite").read_bytes()
    deferred = []
    real_add = graph.add_bytes

    def spy(builder, raw):  # noqa: ANN001, ANN202 - records which weights took the streamed path
        offset = real_add(builder, raw)
        deferred.append(bool(getattr(builder, "deferred", ())) and builder.deferred[-1][1] is raw)
        return offset

    monkeypatch.setattr(graph, "add_bytes", spy)
    write_model(model, tmp_path / "again.tflite", ["x"], ["y"])
    assert sum(deferred) >= 4  # both kernels and biases were streamed, not copied
    assert (tmp_path / "again.tflite").read_bytes() == (tmp_path / "copied.tflite").read_bytes()


def test_the_tflite_runner_keeps_one_interpreter_across_batches(tmp_path: Path) -> None:
    """Verification and latency run the file through one interpreter, resized per input set (opening it per set
    repacked every weight): its outputs at batch 2, 3 and 1, in that order, are a fresh interpreter's per batch."""
    import keras

    from converter.layout import Layout
    from converter.parity.runners import TFLiteRunner
    from converter.tflite_writer import write_model

    x = keras.Input((6, 6, 3), name="x")
    model = keras.Model(x, keras.layers.Dense(4)(keras.layers.Conv2D(5, 3, activation="relu")(x)))
    path = tmp_path / "m.tflite"
    write_model(model, path, ["x"], ["y"])
    runner = TFLiteRunner(path, (Layout.NHWC,), (Layout.NONE,))
    rng = np.random.default_rng(0)
    interp = None
    for batch in (2, 3, 1):
        feed = rng.standard_normal((batch, 6, 6, 3)).astype(np.float32)
        got = runner.run([feed])[0]
        interp = interp or runner._interp  # noqa: SLF001 - the interpreter the first run opened
        assert interp is not None and runner._interp is interp  # noqa: SLF001 - kept, not reopened
        fresh = _run_tflite(path, ["x"], [feed])["y"]
        assert got.shape[0] == batch
        np.testing.assert_allclose(got, fresh, rtol=1e-6, atol=1e-6)
    call = runner.timed([feed])
    call()
    assert runner._interp is interp  # noqa: SLF001 - latency times the same interpreter
    runner.release()
    assert runner._interp is None  # noqa: SLF001
