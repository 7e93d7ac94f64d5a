"""Face pipeline: image -> MTCNN detections -> face crops -> expression classifier."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.pipelines.detector import DetectorConfig, MTCNNDetector
from edge_sdk.preprocess.face import face_tensor
from edge_sdk.preprocess.image import ImageInput, load_image
from runtimes.base import Session
from runtimes.selection import open_graph

GRAPHS = ("pnet", "rnet", "onet", "classifier")


@dataclass(frozen=True)
class Face:
    """One detected face and its expression.

    ``probabilities`` keeps the manifest's label order; ``landmarks`` are the eyes, nose
    and mouth corners as (x, y) pixels.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    detection_score: float
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "box": list(self.box),
            "landmarks": [list(p) for p in self.landmarks],
            "detection_score": self.detection_score,
            "label": self.label,
            "probabilities": dict(self.probabilities),
        }


@dataclass(frozen=True)
class FacePrediction:
    """Result for one image: every face (possibly none) plus timings per stage in ms.

    The timings are per image (decode, detect, classify): stages are batched over faces.
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


class FacePipeline:
    """Detector and classifier sessions opened once at start-up and reused for every call."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: DeviceInfo,
        backend: str | None = None,
        precision: str | None = None,
        wrap: Callable[[str, Session], Session] | None = None,
    ) -> None:
        """Open every graph once.

        ``wrap(graph_name, session)`` may decorate each session, e.g. to record the
        tensors each graph sees for INT8 calibration.
        """
        manifest = bundle.manifest
        self.labels = manifest.labels
        self.classifier_prep = manifest.preprocessing["classifier"]
        sessions = {
            name: open_graph(bundle, name, device, backend=backend, precision=precision)
            for name in GRAPHS
        }
        if wrap is not None:
            sessions = {name: wrap(name, session) for name, session in sessions.items()}
        detector_config = manifest.config.get("detector", {})
        self.detector = MTCNNDetector(
            sessions["pnet"],
            sessions["rnet"],
            sessions["onet"],
            manifest.preprocessing["detector"],
            DetectorConfig(
                min_face=int(detector_config.get("min_face", 20)),
                scale_factor=float(detector_config.get("scale_factor", 0.709)),
                thresholds=tuple(detector_config.get("thresholds", (0.6, 0.7, 0.7))),
            ),
        )
        self.classifier = sessions["classifier"]
        self.backends = {n: f"{s.backend}/{s.precision}" for n, s in sessions.items()}

    def classify(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Class probabilities (n, k) for face boxes in an RGB uint8 image."""
        if boxes.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        batch = face_tensor(image, boxes, self.classifier_prep)
        return self.classifier.run({"image": batch})["probabilities"]

    def predict(self, image: ImageInput, *, color: str = "rgb") -> FacePrediction:
        """Detect and classify every face in one image."""
        start = time.perf_counter()
        pixels = load_image(image, color=color)
        decoded = time.perf_counter()
        found = self.detector.detect(pixels)
        detected = time.perf_counter()
        probs = self.classify(pixels, found.boxes)
        classified = time.perf_counter()
        faces = tuple(
            Face(
                box=tuple(float(v) for v in found.boxes[i]),
                landmarks=tuple((float(x), float(y)) for x, y in found.landmarks[i]),
                detection_score=float(found.scores[i]),
                label=self.labels[int(np.argmax(probs[i]))],
                probabilities={lab: float(p) for lab, p in zip(self.labels, probs[i], strict=True)},
            )
            for i in range(len(found))
        )
        return FacePrediction(
            faces=faces,
            image_size=(int(pixels.shape[1]), int(pixels.shape[0])),
            timings_ms={
                "decode": (decoded - start) * 1e3,
                "detect": (detected - decoded) * 1e3,
                "classify": (classified - detected) * 1e3,
                "total": (classified - start) * 1e3,
            },
            backends=self.backends,
        )
