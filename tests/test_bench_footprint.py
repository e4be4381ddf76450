"""The zoo's "+N×w": a row's peak memory beyond the footprint of its own route (``benchmarks/zoo.py``), measured on
the tiny model with the same target: the .tflite route imports LiteRT's interpreter and our flatbuffer writer beside
the conversion, the .keras route does not."""
from __future__ import annotations

from benchmarks.zoo import FOOTPRINT_TARGETS, Conversion, ModelResult, ZooConfig, _model_dict, footprint
from benchmarks.zoo_models import ALL_MODELS


def _conversion(target: str, peak_mib: float) -> Conversion:
    return Conversion(target=target, command="", converted=True, verified=True, reason="", exit_code=0,
                      static_batch=False, dynamic_batch_failure="", wall_s=1.0, peak_rss_mib=peak_mib,
                      max_abs_error=0.0, output_scale=1.0, rel_error=0.0, max_elementwise_rel_error=0.0,
                      failed_hop=None, route=(), crossport_timings_s={}, load=(0.0, 0.0))


def _result(name: str, conversions: tuple[Conversion, ...], weights_mib: float = 0.0) -> ModelResult:
    model = ALL_MODELS[name]
    return ModelResult(name, model.direction, model.origin, model.input_shape, model.input_dtype,
                       {"weights_bytes": int(weights_mib * 2**20)}, {}, conversions, (), None, 1.0)


def test_the_tiny_model_converts_to_the_targets_the_run_reports() -> None:
    tiny, tiny_keras = ALL_MODELS["tiny_torch_cnn"], ALL_MODELS["tiny_keras_cnn"]
    assert ZooConfig().targets(tiny) == FOOTPRINT_TARGETS
    assert ZooConfig(only_targets=("tflite",)).targets(tiny) == ("tflite",)
    assert ZooConfig(only_targets=("tflite_int8",)).targets(tiny) == ("tflite",)  # int8 rows: the float route's
    assert ZooConfig(only_targets=("pt2",)).targets(tiny) == ("keras",)  # the report's footprint line stays
    assert ZooConfig(only_targets=("tflite",)).targets(tiny_keras) == ("pt2",)


def test_each_row_is_measured_against_its_own_targets_footprint() -> None:
    tiny = _result("tiny_torch_cnn", (_conversion("keras", 1000.0), _conversion("tflite", 1010.0)))
    tiny_keras = _result("tiny_keras_cnn", (_conversion("pt2", 1200.0),))
    fp = footprint([tiny, tiny_keras])
    assert fp == {"torch2tf/keras": 1000.0, "torch2tf/tflite": 1010.0, "keras2torch/pt2": 1200.0}
    model = _result("resnet18", (_conversion("keras", 1030.0), _conversion("tflite", 1030.0),
                                 _conversion("tflite_int8", 1050.0)), weights_mib=10.0)
    ratios = {c["target"]: c["rss_over_footprint_per_weights"] for c in _model_dict(model, fp)["conversions"]}
    assert ratios == {"keras": 3.0, "tflite": 2.0, "tflite_int8": 4.0}
