"""The schema of manifest.json: every field's JSON type and bounds, one table per object.

A manifest is untrusted input: whoever hands over a bundle wrote it. Before any dataclass is
built, every field is checked against these tables (built from :mod:`edge_sdk.manifest_checks`),
and a failure names the field (``graphs[2].inputs[0].shape[1]``). The bounds are generous for
real models and refuse what would hang, divide by zero, exhaust memory or silently compute
nonsense further down (a pyramid that never shrinks, a zero std, labels that do not match the
scores). The Manifest's own table is in :mod:`edge_sdk.manifest`, beside the class it checks.
"""

from __future__ import annotations

import math
import re
from typing import Any

from edge_sdk.errors import ManifestError
from edge_sdk.int8_policy import METHODS, QUANTISABLE_OPS
from edge_sdk.manifest_checks import (
    MAX_NAME,
    Check,
    any_object,
    boolean,
    integer,
    join_path,
    json_value,
    list_of,
    mapping,
    nullable,
    number,
    object_of,
    one_of,
    problem,
    record,
    shown,
    string,
)
from edge_sdk.manifest_parts import (
    ARTIFACT_FORMATS,
    DTYPES,
    OUTPUT_KINDS,
    PRECISIONS,
    SUPPORTED_SCHEMA_VERSIONS,
    Artifact,
    Calibration,
    DimRange,
    GraphSpec,
    Preprocessing,
    TensorSpec,
    WeightSource,
)

MAX_MANIFEST_BYTES = 4 << 20  # exported manifests are 10-60 kB (the inline tokenizer)
MAX_TEXT = 1 << 16  # free text (attribution, origin, provenance)
MAX_PATH = 255  # artifact paths
MAX_RANK = 8
MAX_DIM = 2**31 - 1  # ONNX dims are int64; runtimes index tensors with int32
MAX_SIDE = 8192  # preprocessing sizes and margins, in pixels
COLORS = {"rgb": 3, "bgr": 3, "gray": 1}  # colour order -> channels
INTERPOLATIONS = frozenset({"linear", "area", "cubic", "nearest"})
LAYOUTS = frozenset({"NCHW"})
# The MTCNN pyramid (edge_sdk.pipelines.detector): min_face below P-Net's 12 px window
# divides by zero or scans sub-window faces; a scale_factor of 1 never shrinks the
# pyramid (it hung, memory growing), near 0 skips every face size.
DETECTOR_MIN_FACE = (12, 4096)
DETECTOR_SCALE_FACTOR = (0.1, 0.95)

_PATH_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")
_DIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def bundle_path_problem(relative: Any) -> str | None:
    """Why ``relative`` cannot name a file of a bundle, or None when it can.

    Only plain relative POSIX paths of portable names pass: nothing absolute, no drive,
    backslash, NUL, ``.``/``..`` or hidden part, so no runtime or OS can resolve it
    anywhere but inside the bundle directory, and one file has one spelling.
    """
    if not isinstance(relative, str):
        return f"expected a string, got {shown(relative)}"
    if not relative:
        return "empty path"
    if len(relative) > MAX_PATH:
        return f"longer than {MAX_PATH} characters"
    for part in relative.split("/"):
        if not _PATH_PART.fullmatch(part):
            return (
                f"part {shown(part)} is not a plain file name (letters, digits, . _ + -; "
                "not starting with a dot)"
            )
    return None


def path_error(relative: Any, where: str = "artifact path") -> ManifestError | None:
    """The error for a path that fails :func:`bundle_path_problem`, or None."""
    why = bundle_path_problem(relative)
    if why is None:
        return None
    return ManifestError(
        f"{where} {shown(relative)} leaves the bundle directory or is not a plain relative "
        f"path ({why})"
    )


def _report(value: Any, where: str) -> None:
    json_value(value, where, finite=False)


def _relative_path(value: Any, where: str) -> None:
    error = path_error(value, f"{where}: path")
    if error is not None:
        raise error


def _dim(value: Any, where: str) -> None:
    if isinstance(value, str):
        string(min_len=1, max_len=64, pattern=_DIM_NAME, what="a dimension name")(value, where)
    else:
        integer(1, MAX_DIM)(value, where)


def _ordered(value: dict[str, Any], where: str) -> None:
    if not value["min"] <= value["opt"] <= value["max"]:
        raise problem(where, f"must satisfy min <= opt <= max, got {value}")


def _channels_agree(value: dict[str, Any], where: str) -> None:
    channels = COLORS[value["color"]]
    wanted = "1" if channels == 1 else f"1 or {channels}"
    for key in ("mean", "std"):
        if key in value and len(value[key]) not in (1, channels):
            raise problem(
                join_path(where, key),
                f"has {len(value[key])} values; colour {value['color']!r} needs {wanted}",
            )


_NAME = string(min_len=1)
_HEX64 = string(pattern=re.compile("[0-9a-f]{64}"), what="64 lowercase hex digits")
_FREE_TEXT = string(max_len=MAX_TEXT, lines=True)
_FINITE = number(-math.inf, math.inf)
_GRAPH_NAME = string(
    min_len=1, max_len=64, pattern=_PATH_PART, what="a graph name (letters, digits, . _ + -)"
)
_TENSOR = record(
    TensorSpec,
    {
        "name": _NAME,
        "dtype": one_of(DTYPES, "dtype"),
        "shape": list_of(_dim, max_len=MAX_RANK),
        "kind": nullable(one_of(OUTPUT_KINDS, "output kind")),
    },
)
_DIM_RANGE = record(
    DimRange, {k: integer(0, MAX_DIM) for k in ("min", "opt", "max")}, rule=_ordered
)
_GRAPH = record(
    GraphSpec,
    {
        "name": _GRAPH_NAME,
        "architecture": _NAME,
        "inputs": list_of(_TENSOR, min_len=1, max_len=64),
        "outputs": list_of(_TENSOR, min_len=1, max_len=64),
        "dims": mapping(
            _DIM_RANGE, key=string(min_len=1, max_len=64, pattern=_DIM_NAME, what="a dim name")
        ),
        "config": any_object,
    },
)
_ARTIFACT = record(
    Artifact,
    {
        "path": _relative_path,
        "sha256": _HEX64,
        "format": one_of(ARTIFACT_FORMATS, "format"),
        "graph": _GRAPH_NAME,
        "precision": one_of(PRECISIONS, "precision"),
        "target": _NAME,
        "built_with": mapping(_NAME, max_len=64),
    },
)
_PREPROCESSING = record(
    Preprocessing,
    {
        "size": list_of(integer(1, MAX_SIDE), min_len=2, max_len=2),
        "color": one_of(COLORS, "colour order"),
        "scale": number(0.0, 1.0, above=True),
        "mean": list_of(number(-255.0, 255.0), min_len=1, max_len=4),
        "std": list_of(number(0.0, 255.0, above=True), min_len=1, max_len=4),
        "interpolation": one_of(INTERPOLATIONS, "interpolation"),
        "layout": one_of(LAYOUTS, "layout"),
        "crop": object_of({}, {"square": boolean, "margin_px": integer(0, MAX_SIDE)}),
    },
    rule=_channels_agree,
)
_WEIGHT = record(
    WeightSource,
    {
        "name": _NAME,
        "license": _NAME,
        "attribution": _FREE_TEXT,
        "origin": _FREE_TEXT,
        "sha256": _HEX64,
    },
)
_COUNT = integer(0, 2**31 - 1)
_CALIBRATION = record(
    Calibration,
    {
        "method": _NAME,
        "sample_count": _COUNT,
        "data_sha256": string(max_len=MAX_NAME),
        "holdout_count": _COUNT,
        "seed": nullable(integer(-(2**63), 2**63 - 1)),
        "source": _FREE_TEXT,
        "graphs": mapping(_report, max_len=64),
        "thresholds": mapping(_FINITE, max_len=64),
        "passed": boolean,
        "forced": boolean,
    },
)
_TENSOR_NAME = string(min_len=1, max_len=MAX_NAME)
# A family's INT8 settings (edge_sdk.int8_policy.Int8Policy), read by calibration.
_INT8_POLICY = object_of(
    {},
    {
        "method": one_of(METHODS, "INT8 calibration method"),
        "skip_graphs": list_of(_GRAPH_NAME, max_len=64, unique=True),
        "op_types": list_of(
            one_of(QUANTISABLE_OPS, "quantisable op type"), min_len=1, max_len=16, unique=True
        ),
        "exclude_nodes": mapping(
            list_of(string(min_len=1, max_len=MAX_NAME), max_len=256), key=_GRAPH_NAME, max_len=64
        ),
        "masks": mapping(
            mapping(_TENSOR_NAME, key=_TENSOR_NAME, max_len=64), key=_GRAPH_NAME, max_len=64
        ),
        "center_activations": boolean,
        "quantize_outputs": boolean,
    },
)
# One BlazeFace graph's decoding settings (edge_sdk.pipelines.blazeface).
_BLAZEFACE_ENTRY = object_of(
    {
        "input_size": integer(16, 1024),
        "strides": list_of(integer(1, 1024), min_len=1, max_len=16),
        "anchors_per_layer": integer(1, 64),
        "min_score": number(0.0, 1.0),
        "nms_iou": number(0.0, 1.0),
        "min_face_fraction": number(0.0, 1.0),
        "resize": one_of({"letterbox"}, "resize rule"),
    },
    {
        "keypoints": list_of(string(min_len=1, max_len=MAX_NAME), max_len=64),
        "source": _FREE_TEXT,
    },
)
_DIGEST = string(pattern=re.compile("sha256:[0-9a-f]{64}"), what="sha256:<64 hex digits>")
# Free-form, but what the SDK reads from it is checked like any other field.
_CONFIG = object_of(
    {},
    {
        "pipeline": _NAME,
        "detector": object_of(
            {},
            {
                "min_face": integer(*DETECTOR_MIN_FACE),
                "scale_factor": number(*DETECTOR_SCALE_FACTOR),
                "thresholds": list_of(number(0.0, 1.0), min_len=3, max_len=3),
            },
        ),
        "int8_policy": _INT8_POLICY,
        "blazeface": mapping(_BLAZEFACE_ENTRY, key=_GRAPH_NAME, max_len=16),
        "detector_default": _GRAPH_NAME,
        # CocoER's workspace: η is chosen on validation and travels with the weights
        "workspace": object_of(
            {},
            {"eta": number(0.0, 100.0), "levels": list_of(_GRAPH_NAME, max_len=16)},
            open_ended=True,
        ),
        # av-fbp: the per-frame face features it was trained on
        "face_features": object_of(
            {"dim": integer(1, 65536)},
            {"encoder_digest": nullable(_DIGEST), "encoder_family": nullable(_NAME)},
            open_ended=True,
        ),
        "tokenizer": object_of(
            {"kind": one_of({"inline", "package"}, "tokenizer kind")},
            {
                "json": string(max_len=MAX_MANIFEST_BYTES, lines=True),
                "package": _NAME,
                "path": _relative_path,
                "sha256": _HEX64,
            },
        ),
    },
    open_ended=True,
)
# Every record of the schema but the Manifest's own, by dataclass.
PART_RECORDS: dict[type, Check] = {
    TensorSpec: _TENSOR,
    DimRange: _DIM_RANGE,
    GraphSpec: _GRAPH,
    Artifact: _ARTIFACT,
    Preprocessing: _PREPROCESSING,
    WeightSource: _WEIGHT,
    Calibration: _CALIBRATION,
}


def manifest_record(manifest: type) -> Check:
    """The check of a whole manifest, for the Manifest dataclass ``manifest``.

    :mod:`edge_sdk.manifest` defines the class and calls this: the schema cannot import the
    class whose parsing uses it.
    """
    return record(
        manifest,
        {
            "schema_version": integer(
                min(SUPPORTED_SCHEMA_VERSIONS), max(SUPPORTED_SCHEMA_VERSIONS)
            ),
            "family": _NAME,
            "variant": _NAME,
            "labels": list_of(_NAME, min_len=1, unique=True),
            "graphs": list_of(_GRAPH, min_len=1, max_len=64),
            "artifacts": list_of(_ARTIFACT),
            "preprocessing": mapping(_PREPROCESSING, max_len=64),
            "weights": list_of(_WEIGHT, max_len=256),
            "provenance": mapping(_FREE_TEXT, max_len=256),
            "calibration": nullable(_CALIBRATION),
            "parity": mapping(_FINITE),
            "config": _CONFIG,
        },
    )
