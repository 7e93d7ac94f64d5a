"""Face pipeline: image -> MTCNN detections -> face crops -> every face family's head.

:class:`FacePipeline` runs a face-fer7 bundle (detector + expression classifier) on its own,
as it always has. Inside a Recognizer the same detector also feeds the other face families
(:mod:`edge_sdk.pipelines.face_families`: CAF valence/arousal, Exp-CLIP zero-shot): each is
a *head* that turns face boxes into fields of :class:`Face`, and :func:`analyze_faces` runs
one detection and then every head on the same boxes, each batched over the faces.

Each head declares what it adds, so nothing outside it names a face family: the fields it
fills (``result_fields``; :class:`Face` keeps its named attributes for the built-in heads
and puts any other field in ``Face.extras``), its columns of the command line's face table
(:class:`FaceColumn`) and the accuracy task its answers score (:data:`FACE_TASKS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Protocol

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import InputError
from edge_sdk.manifest import Manifest, Preprocessing
from edge_sdk.pipelines.base import GraphPipeline
from edge_sdk.pipelines.common import Sessions, Timer, describe, open_graphs, run_batched
from edge_sdk.pipelines.detector import (
    DETECT_MAX_SIDE,
    Detections,
    DetectorConfig,
    MTCNNDetector,
    shares,
)
from edge_sdk.pipelines.registry import register_pipeline
from edge_sdk.preprocess.face import face_tensor
from edge_sdk.preprocess.image import ImageInput, load_image
from runtimes.base import Session

GRAPHS = ("pnet", "rnet", "onet", "classifier")
DETECTOR_GRAPHS = ("pnet", "rnet", "onet")
# What a face head's answers score in ``edge-sdk check accuracy``: expression categories in
# its label order (``label``/``probabilities``), zero-shot categories over its vocabulary
# (also ``label``/``probabilities`` when no other head gave them), or (valence, arousal)
# read from its ``result_fields``.
TASK_CATEGORIES = "categories"
TASK_ZERO_SHOT = "zero-shot categories"
TASK_VALENCE_AROUSAL = "valence-arousal"
FACE_TASKS = (TASK_CATEGORIES, TASK_ZERO_SHOT, TASK_VALENCE_AROUSAL)
CATEGORICAL_TASKS = (TASK_CATEGORIES, TASK_ZERO_SHOT)


@dataclass(frozen=True)
class ZeroShot:
    """Exp-CLIP's answer for one face over the bundle's vocabulary (softmax of its logits)."""

    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"label": self.label, "probabilities": dict(self.probabilities)}


@dataclass(frozen=True)
class Face:
    """One detected face and what every loaded face family says about it.

    ``label``/``probabilities`` are the expression categories of the first categorical face
    family loaded (face-fer7, else Exp-CLIP), in its label order; None/empty when only
    valence/arousal is loaded. ``valence``/``arousal`` (in [-1, 1]) come from face-caf and
    ``zero_shot`` from face-expclip, None when that family is not loaded. Fields of any
    other face head are in ``extras`` (name -> JSON value, as its ``result_fields`` say);
    :meth:`value` reads either kind by name. ``landmarks`` are the eyes, nose and mouth
    corners as (x, y) pixels.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    detection_score: float
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    valence: float | None = None
    arousal: float | None = None
    zero_shot: ZeroShot | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """A head's result field by name: a named attribute or an entry of ``extras``."""
        return getattr(self, name) if name in _NAMED_FIELDS else self.extras.get(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; optional families' fields appear only when they ran."""
        out: dict[str, Any] = {
            "box": list(self.box),
            "landmarks": [list(p) for p in self.landmarks],
            "detection_score": self.detection_score,
            "label": self.label,
            "probabilities": dict(self.probabilities),
        }
        optional = {n: getattr(self, n) for n in _OPTIONAL_FIELDS}
        for name, value in {**optional, **self.extras}.items():
            if value is not None:
                out[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out


_NAMED_FIELDS = frozenset(f.name for f in dataclass_fields(Face)) - {"extras"}
_OPTIONAL_FIELDS = ("valence", "arousal", "zero_shot")


@dataclass(frozen=True)
class FaceColumn:
    """One column a face head adds to the command line's face table.

    Attributes:
        name: the column header.
        format: a :class:`Face` -> the cell text (called only for faces where the head's
            ``result_fields`` are set; "-" is shown elsewhere).
    """

    name: str
    format: Callable[[Face], str]


@dataclass(frozen=True)
class FacePrediction:
    """Result for one image: every face (possibly none) plus timings per stage in ms.

    The timings are per image (decode, detect, then one stage per face family: classify,
    valence_arousal, zero_shot): each stage is batched over the faces. ``backends`` says
    which backend/precision ran each graph.
    """

    faces: tuple[Face, ...]
    image_size: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; says explicitly when no face was found."""
        return {
            "faces": [f.to_dict() for f in self.faces],
            "face_count": len(self.faces),
            "no_face": not self.faces,
            "image_size": {"width": self.image_size[0], "height": self.image_size[1]},
            "timings_ms": dict(self.timings_ms),
            "backends": dict(self.backends),
        }


class FaceHead(Protocol):
    """A face family run on detected boxes.

    ``stage`` names its timing; ``crops`` cuts its input batch from one image, ``infer``
    runs a batch of crops (of any number of images), ``fill`` adds its fields to each face.
    ``feature_dim`` is the width of its per-face embedding (None: it has none), which the
    audio-video pipeline uses as per-frame face features. ``result_fields`` names the
    fields ``fill`` sets (a :class:`Face` attribute or a key of ``Face.extras``),
    ``columns`` its columns of the face table and ``accuracy_task`` (one of
    :data:`FACE_TASKS`, or None) what ``check accuracy`` scores with its answers.
    """

    family: str
    stage: str
    backends: dict[str, str]
    feature_dim: int | None
    result_fields: tuple[str, ...]
    columns: tuple[FaceColumn, ...]
    accuracy_task: str | None

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def fill(self, outputs: dict[str, np.ndarray], fields: list[dict[str, Any]]) -> None: ...

    def features(self, outputs: dict[str, np.ndarray]) -> np.ndarray: ...


def detector_threads() -> dict[str, int] | None:
    """Thread hints for opening the three nets: one each when the detector can fan their
    calls out over its helper threads (see :mod:`edge_sdk.pipelines.detector`), else the
    runtime's default."""
    return dict.fromkeys(DETECTOR_GRAPHS, 1) if shares(True) > 1 else None


def open_detector(
    bundle: ModelBundle,
    device: DeviceInfo,
    backend: str | None = None,
    precision: str | None = None,
    wrap: Callable[[str, Session], Session] | None = None,
) -> tuple[MTCNNDetector, dict[str, str]]:
    """The MTCNN cascade of a bundle that carries pnet/rnet/onet, and its backends."""
    sessions = open_graphs(
        bundle, DETECTOR_GRAPHS, device, backend, precision, wrap, detector_threads()
    )
    return _detector(bundle, sessions), describe(sessions)


def _detector(bundle: ModelBundle, sessions: Sessions) -> MTCNNDetector:
    manifest = bundle.manifest
    detector_config = manifest.config.get("detector", {})
    max_side = detector_config.get("max_side", DETECT_MAX_SIDE)  # None: full resolution
    return MTCNNDetector(
        sessions["pnet"],
        sessions["rnet"],
        sessions["onet"],
        manifest.preprocessing["detector"],
        DetectorConfig(
            min_face=int(detector_config.get("min_face", 20)),
            scale_factor=float(detector_config.get("scale_factor", 0.709)),
            thresholds=tuple(detector_config.get("thresholds", (0.6, 0.7, 0.7))),
            max_side=None if max_side is None else int(max_side),
        ),
        owned=tuple(sessions.opened[name] for name in DETECTOR_GRAPHS),
    )


def has_detector(bundle: ModelBundle) -> bool:
    """Whether the bundle carries the three MTCNN graphs."""
    names = {g.name for g in bundle.manifest.graphs}
    return set(DETECTOR_GRAPHS) <= names


def analyze_faces(
    image: ImageInput,
    detector: MTCNNDetector,
    heads: Sequence[FaceHead],
    backends: dict[str, str],
    *,
    color: str = "rgb",
) -> FacePrediction:
    """Decode, detect once, then run every head on the same boxes."""
    timer = Timer()
    with timer("decode"):
        pixels = load_image(image, color=color)
    with timer("detect"):
        found = detector.detect(pixels)
    return faces_from_detections(pixels, found, heads, backends, timer)


def faces_from_detections(
    pixels: np.ndarray,
    found: Detections,
    heads: Sequence[FaceHead],
    backends: dict[str, str],
    timer: Timer,
) -> FacePrediction:
    """Run every head (one stage each, batched over the faces) on detections of ``pixels``."""
    fields: list[dict[str, Any]] = [{} for _ in range(len(found))]
    for head in heads:
        with timer(head.stage):
            if len(found):
                head.fill(head.infer(head.crops(pixels, found.boxes)), fields)
    return FacePrediction(
        faces=make_faces(found, fields),
        image_size=(int(pixels.shape[1]), int(pixels.shape[0])),
        timings_ms=timer.finish(),
        backends=dict(backends),
    )


def make_faces(found: Detections, filled: Sequence[dict[str, Any]]) -> tuple[Face, ...]:
    """Face objects from detections and the fields the heads filled in (fields that are
    no named :class:`Face` attribute go to ``extras``)."""
    faces = []
    for i in range(len(found)):
        named = {k: v for k, v in filled[i].items() if k in _NAMED_FIELDS}
        extras = {k: v for k, v in filled[i].items() if k not in _NAMED_FIELDS}
        faces.append(
            Face(
                box=tuple(float(v) for v in found.boxes[i]),
                landmarks=tuple((float(x), float(y)) for x, y in found.landmarks[i]),
                detection_score=float(found.scores[i]),
                **named,
                extras=extras,
            )
        )
    return tuple(faces)


def face_head_classes() -> tuple[type, ...]:
    """Every registered face head class (registration order), with its declarations."""
    from edge_sdk.pipelines.registry import pipelines

    return tuple(
        dict.fromkeys(
            cls for cls in pipelines().values() if getattr(cls, "modality", None) == "face"
        )
    )


def face_columns(faces: Sequence[Face]) -> tuple[FaceColumn, ...]:
    """The face-table columns of every registered head whose fields some face has (works
    for a served prediction too: it needs the faces, not the heads that made them)."""
    columns: dict[str, FaceColumn] = {}
    for cls in face_head_classes():
        declared = tuple(getattr(cls, "result_fields", ()))
        if declared and any(f.value(n) is not None for f in faces for n in declared):
            for column in getattr(cls, "columns", ()):
                columns.setdefault(column.name, column)
    return tuple(columns.values())


def categories(labels: Sequence[str], probabilities: np.ndarray) -> tuple[str, dict[str, float]]:
    """(argmax label, {label: p}) in the manifest's label order."""
    mapping = {lab: float(p) for lab, p in zip(labels, probabilities, strict=True)}
    return labels[int(np.argmax(probabilities))], mapping


def crops_for(image: np.ndarray, boxes: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The head's input batch for ``boxes`` of one image (the shared face crop rule)."""
    return face_tensor(image, boxes, prep)


@register_pipeline("face")
class FacePipeline(GraphPipeline):
    """face-fer7: detector and classifier sessions opened once at start-up, reused per call.

    It is also the categorical :class:`FaceHead` (stage ``classify``) and the detector
    provider for the other face families when a Recognizer holds several bundles.
    """

    modality = "face"
    stage = "classify"
    feature_dim = None
    opens = GRAPHS
    options = ("detector",)
    result_fields = ("label", "probabilities")
    columns = ()  # label and p are the table's own columns
    accuracy_task = TASK_CATEGORIES

    def __init__(self, *args: Any, detector: Any = None, **kwargs: Any) -> None:
        """GraphPipeline's arguments; a detector *name* (``load(detector="auto")``) means
        the Recognizer opens that one, so the bundle's MTCNN graphs are not opened."""
        self._own_detector = not isinstance(detector, str)
        super().__init__(*args, **kwargs)

    def graph_names(self, manifest: Manifest) -> tuple[str, ...]:
        if self._own_detector:
            return self.opens
        return tuple(n for n in self.opens if n not in DETECTOR_GRAPHS)

    def configure(self, manifest: Manifest) -> None:
        self.classifier_prep = manifest.preprocessing["classifier"]

    def thread_hints(self) -> dict[str, int] | None:
        return detector_threads()

    def start(self, bundle: ModelBundle, backend: str | None) -> None:
        self.detector = _detector(bundle, self.sessions) if self._own_detector else None
        self.classifier = self.sessions["classifier"]
        self.detector_backends = {
            n: self.backends[n] for n in DETECTOR_GRAPHS if n in self.backends
        }

    def classify(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Class probabilities (n, k) for face boxes in an RGB uint8 image."""
        if boxes.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.infer(self.crops(image, boxes))["probabilities"]

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Gray 64x64 crops under fer's rule (square box + 10 px margin)."""
        return crops_for(image, boxes, self.classifier_prep)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Classifier outputs for a batch of crops (chunked to the graph's batch profile)."""
        return run_batched(self.classifier, self.graphs["classifier"], {"image": batch})

    def fill(self, outputs: dict[str, np.ndarray], fields: list[dict[str, Any]]) -> None:
        """Set ``label``/``probabilities`` of each face (first categorical family wins)."""
        for i, probs in enumerate(outputs["probabilities"]):
            if fields[i].get("label") is None:
                fields[i]["label"], fields[i]["probabilities"] = categories(self.labels, probs)

    def features(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The exported classifier has no embedding output."""
        raise NotImplementedError("face-fer7's classifier exports no face features")

    def predict(self, image: ImageInput, *, color: str = "rgb") -> FacePrediction:
        """Detect and classify every face in one image."""
        if self.detector is None:
            raise InputError("this face-fer7 pipeline was opened without its detector "
                             "(a named detector replaced it): predict through the Recognizer")
        return analyze_faces(image, self.detector, (self,), self.backends, color=color)
