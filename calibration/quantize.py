"""ONNX Runtime static quantisation of one graph to QDQ INT8.

The QDQ form (QuantizeLinear/DequantizeLinear pairs around FP32 ops) is what both ONNX
Runtime and TensorRT's explicit quantisation read. Two forms are written (``FORMS``):

* ``tensorrt``: weights per-channel, activations and weights symmetric INT8 (zero point
  0), which TensorRT requires, on the family policy's op types only. It is what
  ``edge-sdk build --precision int8`` reads; ONNX Runtime's CPU kernels ran it slower than
  FP32 for every family (measured, ``benchmarks/int8.py``): S8 activations and QDQ pairs
  that fuse into no integer kernel.
* ``cpu``: unsigned INT8 activations with zero points, signed per-channel weights (U8S8,
  the form x86 and Arm integer kernels take), on every op ONNX Runtime can quantise so
  the integer chain is not broken between ops. Only ONNX Runtime reads it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from calibration.reader import FeedReader
from edge_sdk.errors import CalibrationError, EdgeSDKError

Feed = dict[str, np.ndarray]


def _method(name: str) -> object:
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if name not in methods:
        raise EdgeSDKError(f"unknown calibration method {name!r}; expected {sorted(methods)}")
    return methods[name]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# ORT's quantize_static builds its Entropy calibrator with 128 bins and 128 quantised bins,
# which makes the KL threshold the full range, i.e. MinMax (measured: identical models).
# Ranges are therefore computed here with TensorRT's histogram sizes and handed to
# quantize_static through its range cache.
CALIBRATOR_OPTIONS: dict[str, dict[str, object]] = {
    "minmax": {},
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
}


def compute_ranges(
    model_path: Path, feeds: list[Feed], method: str, op_types: tuple[str, ...], cache: Path
) -> Path:
    """Activation ranges of ``model_path`` over ``feeds``, saved as ORT's JSON range cache."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        model_path,
        list(op_types) or None,  # None: every tensor (the ``cpu`` form quantises all ops)
        augmented_model_path=str(cache.parent / "augmented.onnx"),
        calibrate_method=_method(method),
        extra_options=dict(CALIBRATOR_OPTIONS[method]),
    )
    # ORT's histogram collector stacks each tensor's values over one collect_data call with
    # np.asarray, which fails on feeds of different shapes (P-Net's pyramid levels). Ranges
    # and histograms merge across calls, so each call gets feeds of one shape.
    try:
        for group in _same_shape_groups(feeds):
            calibrator.collect_data(FeedReader(group))
    except ValueError as exc:
        # numpy cannot cut 2048 float32 bins out of a near-constant tensor, e.g. uniform
        # attention weights (measured: an untrained scene-cocoer edge model, softmax outputs
        # all within 2e-6 of 1/49). MinMax builds no histogram.
        raise CalibrationError(f"{method} ranges failed ({exc}); minmax has no histogram") from exc
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def _same_shape_groups(feeds: list[Feed]) -> list[list[Feed]]:
    """Feeds grouped by the shapes of their inputs, in first-seen order."""
    groups: dict[tuple[tuple[str, tuple[int, ...]], ...], list[Feed]] = {}
    for feed in feeds:
        key = tuple(sorted((name, tuple(value.shape)) for name, value in feed.items()))
        groups.setdefault(key, []).append(feed)
    return list(groups.values())


def excluded_nodes(onnx_bytes: bytes, patterns: tuple[str, ...]) -> list[str]:
    """Names of the model's nodes matching any ``fnmatch`` pattern (kept FP32)."""
    import fnmatch

    import onnx

    if not patterns:
        return []
    names = [node.name for node in onnx.load_from_string(onnx_bytes).graph.node]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


FORMS = ("tensorrt", "cpu")


def quantize_graph(
    onnx_bytes: bytes,
    feeds: list[Feed],
    method: str,
    op_types: tuple[str, ...],
    exclude: tuple[str, ...] = (),
    quantize_outputs: bool = True,
    form: str = "tensorrt",
) -> tuple[bytes, bytes]:
    """INT8 QDQ model from FP32 ONNX bytes, with activation ranges from ``feeds``.

    Args:
        onnx_bytes: the FP32 model (the bundle's hash-checked artifact).
        feeds: calibration feeds (one sample each); ranges come from these only.
        method: ``minmax``, ``entropy`` (KL, 2048 bins) or ``percentile`` (99.999th).
        op_types: op types whose inputs are quantised; all others stay FP32. Empty: every
            op type ONNX Runtime can quantise.
        exclude: ``fnmatch`` patterns of node names that stay FP32 although their op type
            is quantised (the family policy's ``exclude_nodes``).
        quantize_outputs: False puts no QuantizeLinear/DequantizeLinear on the outputs of
            the quantised ops (ORT's ``OpTypesToExcludeOutputQuantization``), only on their
            inputs: the placement TensorRT recommends, and needed where an op's output is
            a graph output (INT8 logits) or feeds a normalisation (measured: face-expclip).
        form: ``tensorrt`` (symmetric S8S8) or ``cpu`` (U8S8); see the module docstring.

    Returns:
        (INT8 model bytes, the range cache as JSON bytes) — the cache travels in the bundle
        and is what the TensorRT 8.x calibration cache is written from.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if form not in FORMS:
        raise EdgeSDKError(f"unknown INT8 form {form!r}; expected one of {FORMS}")
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise EdgeSDKError("INT8 calibration needs onnxruntime >= 1.24 (range caches)")
    # ORT prints progress and advises a pre-processing pass through the root logger; our
    # graphs come from our exporter with shapes inferred already, so both are noise here.
    with (
        tempfile.TemporaryDirectory(prefix="edge-sdk-quant-") as tmp,
        contextlib.redirect_stdout(io.StringIO()),
        _quiet_root_logger(),
    ):
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(onnx_bytes)
        cache = compute_ranges(source, feeds, method, op_types, Path(tmp) / "ranges.json")
        symmetric = form == "tensorrt"
        quantize_static(
            str(source),
            str(target),
            None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) or None,
            nodes_to_exclude=excluded_nodes(onnx_bytes, exclude),
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=_method(method),
            extra_options={
                "ActivationSymmetric": symmetric,
                "WeightSymmetric": True,
                "OpTypesToExcludeOutputQuantization": [] if quantize_outputs else list(op_types),
            },
            calibration_cache_path=str(cache),
        )
        return target.read_bytes(), cache.read_bytes()
