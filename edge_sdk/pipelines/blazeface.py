"""BlazeFace detection: letterbox, one network call, anchor decoding, weighted NMS.

The network (a ``face-blazeface`` bundle graph, :mod:`edge_sdk.models.face_blazeface.family`)
returns MediaPipe's raw tensors; everything around it is numpy here, the same whatever
runtime ran the graph. :class:`BlazeFaceDetector` has the interface of
:class:`~edge_sdk.pipelines.detector.MTCNNDetector` (``detect(image, timings)`` ->
:class:`Detections`, ``config.min_face``, ``close()``), so a Recognizer can hold either.

Its boxes are BlazeFace's own by default, which are looser than MTCNN's (IoU 0.72-0.76
with MTCNN's on the astronaut). Face heads were built on MTCNN-shaped crops, so
:func:`aligned_boxes` lays one box geometry out from the eyes both detectors report
(``BlazeFaceConfig(align=True)``, what :func:`open_named_detector` opens): heads then get
crops within IoU 0.9 of MTCNN's, hence the same labels, whichever detector ran.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BundleError, InputError
from edge_sdk.manifest import Preprocessing
from edge_sdk.pipelines.common import describe, open_graphs
from edge_sdk.pipelines.detector_boxes import Detections
from edge_sdk.pipelines.detector_pyramid import to_nchw
from runtimes.base import Closing, Session

log = logging.getLogger(__name__)

SCORE_CLIP = 100.0  # MediaPipe clips raw scores to +-100 before the sigmoid
NUM_KEYPOINTS = 6
# Aligned box from the eyes alone (e: distance between the eyes; u: unit vector at right
# angles to the eye line, towards the mouth): centre at eyes' midpoint + ALIGN_DOWN * e * u,
# ALIGN_WIDTH * e wide, ALIGN_HEIGHT * e high. Eyes because both detectors place them
# alike (within ~2 px on the astronaut), while MTCNN's mouth corners and BlazeFace's mouth
# centre sit 6-10 px apart. Fitted to MTCNN's box on examples/astronaut.png.
ALIGN_DOWN = 0.34
ALIGN_WIDTH = 2.04
ALIGN_HEIGHT = 2.62


@dataclass(frozen=True)
class BlazeFaceConfig:
    """Tunables: ``min_face`` (pixels of the input image) drops smaller faces, like
    MTCNN's; ``min_score``/``nms_iou`` default to the bundle's (MediaPipe's) values;
    ``align`` replaces each box by :func:`aligned_boxes` of its keypoints."""

    min_face: int = 20
    min_score: float | None = None
    nms_iou: float | None = None
    align: bool = False


@dataclass(frozen=True)
class Letterbox:
    """Where the image sits in the square input: ``x_in = x * scale_x + pad_x``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    size: int


def generate_anchors(entry: dict[str, Any]) -> np.ndarray:
    """Anchor centres (n, 2) as (x, y) fractions of the input, MediaPipe's order.

    Fixed-size SSD anchors: consecutive layers of one stride share a grid and each puts
    ``anchors_per_layer`` anchors on every cell, row by row.
    """
    size = int(entry["input_size"])
    strides = [int(s) for s in entry["strides"]]
    per_layer = int(entry["anchors_per_layer"])
    if size <= 0 or not strides or min(strides) <= 0 or per_layer <= 0:
        raise BundleError(f"blazeface anchor settings are invalid: {entry}")
    parts = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = -(-size // strides[i])
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        parts.append(np.repeat(grid, (j - i) * per_layer, axis=0))
        i = j
    return np.concatenate(parts).astype(np.float32)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """``image`` (H, W, 3 uint8) scaled to fit a ``size`` square, centred, black padding.

    Shrinking halves the image by 2x2 area averages (no aliasing) while it is at least
    twice too large, then resizes bilinearly by less than 2x. One area resize by a
    fractional factor took 1.0 ms (640x480 -> 192 px) and 3.0 ms (1280x720), as long as
    the network itself; OpenCV's 2x area path is ~0.06 ms on 512x512. An odd last row or
    column is dropped before a halving, and the returned scales account for it.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    used_h, used_w, factor = height, width, 1  # input pixels kept; current shrink factor
    while max(image.shape[:2]) >= 2 * size and min(image.shape[:2]) >= 2:
        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        used_h -= (image.shape[0] - h) * factor
        used_w -= (image.shape[1] - w) * factor
        image = cv2.resize(image[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        factor *= 2
    height, width = used_h, used_w
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(new_w / width, new_h / height, pad_x, pad_y, size)


def decode(
    regressors: np.ndarray,
    classificators: np.ndarray,
    anchors: np.ndarray,
    size: int,
    min_score: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw tensors of one image -> (boxes (n, 4) x1 y1 x2 y2, scores (n,), keypoints
    (n, 6, 2)) in input pixels, for anchors scoring at least ``min_score``.

    MediaPipe's decoding with ``reverse_output_order`` and all scales equal to the input
    size: box centre and keypoints are pixel offsets from the anchor centre, box width and
    height are pixels.
    """
    if regressors.shape != (anchors.shape[0], 4 + 2 * NUM_KEYPOINTS):
        raise BundleError(
            f"regressors {regressors.shape} do not match {anchors.shape[0]} anchors x 16"
        )
    logits = np.clip(classificators.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    finite = np.isfinite(regressors).all(axis=1)  # a broken runtime's NaN never becomes a box
    keep = np.nonzero((scores >= min_score) & finite)[0]
    raw, centre = regressors[keep].astype(np.float32), anchors[keep] * size
    cx, cy = raw[:, 0] + centre[:, 0], raw[:, 1] + centre[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + centre[:, None, :]
    return boxes, scores[keep], points


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of (n, 4) and (m, 4) x1 y1 x2 y2 boxes (no +1)."""
    w = np.clip(np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: the best remaining detection takes every other one
    overlapping it by more than ``iou`` and becomes their score-weighted average (boxes
    and keypoints); its score stays the best one. Many anchors fire on one face, and
    averaging them is steadier than keeping one. Overlaps are computed one kept detection
    at a time (memory O(n), whatever number of anchors pass the score threshold)."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    remaining = np.arange(len(order))
    out_boxes, out_scores, out_points = [], [], []
    while remaining.size:
        best = remaining[0]
        overlap = iou_matrix(boxes[best : best + 1], boxes[remaining])[0]
        take = overlap > iou
        take[0] = True
        group, remaining = remaining[take], remaining[~take]
        weights = scores[group].astype(np.float64)
        total = weights.sum()
        out_boxes.append((boxes[group] * weights[:, None]).sum(0) / total)
        out_points.append((keypoints[group] * weights[:, None, None]).sum(0) / total)
        out_scores.append(scores[best])
    if not out_scores:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
        )
    return (
        np.asarray(out_boxes, np.float32),
        np.asarray(out_scores, np.float32),
        np.asarray(out_points, np.float32),
    )


def eyes_and_mouth(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eyes' midpoint, mouth centre), each (n, 2), from MTCNN's five landmarks (eyes,
    nose, mouth corners) or BlazeFace's six keypoints (eyes, nose, mouth centre, ears)."""
    if landmarks.ndim != 3 or landmarks.shape[2] != 2 or landmarks.shape[1] not in (5, 6):
        raise InputError(
            f"landmarks must be (n, 5, 2) (MTCNN) or (n, 6, 2) (BlazeFace), got {landmarks.shape}"
        )
    eyes = landmarks[:, :2].mean(axis=1)
    mouth = landmarks[:, 3:5].mean(axis=1) if landmarks.shape[1] == 5 else landmarks[:, 3]
    return eyes, mouth


def aligned_boxes(landmarks: np.ndarray) -> np.ndarray:
    """One box geometry per face from its eyes (and the mouth's side), for either detector.

    Heads were built on MTCNN-shaped boxes; BlazeFace's own boxes are looser (IoU
    0.72-0.76 with MTCNN's on the astronaut), so a head fed them crops differently. This
    box is laid out from the eyes with constants (:data:`ALIGN_WIDTH` etc.) fitted to
    MTCNN's box, so both detectors' faces give the same crops. The mouth only says which
    side of the eye line is down.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    eyes, mouth = eyes_and_mouth(points)
    across = points[:, 1] - points[:, 0]
    spacing = np.linalg.norm(across, axis=1)
    if np.any(spacing <= 0) or not np.all(np.isfinite(points)):
        raise InputError("landmarks with coincident or non-finite eyes cannot be aligned")
    down = np.stack([-across[:, 1], across[:, 0]], axis=1) / spacing[:, None]
    side = np.sign(np.einsum("ij,ij->i", down, mouth - eyes))
    down *= np.where(side == 0, 1.0, side)[:, None]
    centre = eyes + ALIGN_DOWN * spacing[:, None] * down
    half = np.stack([ALIGN_WIDTH * spacing, ALIGN_HEIGHT * spacing], axis=1) / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


@dataclass(frozen=True)
class BlazeFaceDetections(Detections):
    """Detections plus the keypoint names; ``landmarks`` are (n, 6, 2) BlazeFace keypoints."""

    keypoint_names: tuple[str, ...] = ()


class BlazeFaceDetector(Closing):
    """One BlazeFace graph behind a Session (any backend), MTCNNDetector's interface.

    ``entry`` is the bundle's ``config["blazeface"][graph]`` (anchors, thresholds, input
    size); ``owned`` are the runtime sessions ``close`` frees (default: ``session``).
    """

    def __init__(
        self,
        session: Session,
        entry: dict[str, Any],
        preprocessing: Preprocessing,
        config: BlazeFaceConfig | None = None,
        *,
        owned: Sequence[Session] | None = None,
    ) -> None:
        self.session = session
        self.entry = dict(entry)
        self.preprocessing = preprocessing
        self.config = config or BlazeFaceConfig()
        self.size = int(entry["input_size"])
        if entry.get("resize") != "letterbox":
            raise BundleError(f"blazeface resize rule {entry.get('resize')!r} is not 'letterbox'")
        if tuple(preprocessing.size) != (self.size, self.size):
            raise BundleError(
                f"blazeface preprocessing size {preprocessing.size} != input {self.size}"
            )
        self.anchors = generate_anchors(entry)
        self.keypoint_names = tuple(entry.get("keypoints", ()))
        self._owned = (session,) if owned is None else tuple(owned)

    def smallest_face(self, height: int, width: int) -> float:
        """Smallest face width (pixels) this model found in a ``height`` x ``width`` image
        (the family's measured ``min_face_fraction`` of the longer side): faces below it
        need a model with a larger input, or MTCNN."""
        return float(self.entry["min_face_fraction"]) * max(height, width)

    def close(self) -> None:
        """Close the graph's session (idempotent); it then refuses to run (ClosedError)."""
        for session in self._owned:
            session.close()

    def raw(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], Letterbox]:
        """The graph's raw outputs for an RGB uint8 image, and where the image sat."""
        _check_image(image)
        canvas, box = letterbox(image, self.size)
        out = self.session.run({"image": to_nchw(canvas[None], self.preprocessing)})
        return out, box

    def detect(self, image: np.ndarray, timings: dict[str, float] | None = None) -> Detections:
        """All faces in an RGB uint8 image; an empty Detections when there is none.

        ``timings`` receives milliseconds per stage (``letterbox``+``network`` as
        ``network``, ``decode``), as MTCNNDetector reports its stages.
        """
        start = time.perf_counter()
        out, box = self.raw(image)
        mid = time.perf_counter()
        found = self.decode(out, box, image.shape)
        if timings is not None:
            timings["network"] = (mid - start) * 1e3
            timings["decode"] = (time.perf_counter() - mid) * 1e3
        return found

    def decode(
        self, out: dict[str, np.ndarray], box: Letterbox, shape: tuple[int, ...]
    ) -> Detections:
        """Raw outputs -> detections in the image's pixels (see :func:`decode`)."""
        min_score = self.config.min_score
        min_score = float(self.entry["min_score"]) if min_score is None else min_score
        iou = self.config.nms_iou
        iou = float(self.entry["nms_iou"]) if iou is None else iou
        boxes, scores, points = decode(
            out["regressors"][0], out["classificators"][0], self.anchors, self.size, min_score
        )
        boxes, scores, points = weighted_nms(boxes, scores, points, iou)
        offset = np.array([box.pad_x, box.pad_y], dtype=np.float32)
        scale = np.array([box.scale_x, box.scale_y], dtype=np.float32)
        boxes = ((boxes.reshape(-1, 2, 2) - offset) / scale).reshape(-1, 4)
        points = (points - offset) / scale
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = sides >= self.config.min_face
        boxes, scores, points = boxes[keep], scores[keep], points[keep]
        if self.config.align and len(scores):
            boxes = aligned_boxes(points)
        height, width = shape[:2]
        boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
        return BlazeFaceDetections(
            boxes.astype(np.float32),
            scores.astype(np.float32),
            points.astype(np.float32),
            keypoint_names=self.keypoint_names,
        )


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an RGB image (H, W, 3), got {getattr(image, 'shape', image)}")
    if image.dtype != np.uint8:
        raise InputError(f"expected uint8 pixels, got {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise InputError(f"empty image {image.shape}")


def blazeface_graphs(bundle: ModelBundle) -> tuple[str, ...]:
    """The BlazeFace graphs a bundle carries (``config["blazeface"]``), default first."""
    entries = bundle.manifest.config.get("blazeface")
    if not isinstance(entries, dict) or not entries:
        return ()
    default = bundle.manifest.config.get("detector_default")
    names = sorted(entries, key=lambda n: n != default)
    return tuple(n for n in names if n in {g.name for g in bundle.manifest.graphs})


def open_blazeface(
    bundle: ModelBundle,
    device: DeviceInfo,
    graph: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    config: BlazeFaceConfig | None = None,
    threads: int | None = None,
) -> tuple[BlazeFaceDetector, dict[str, str]]:
    """The detector of one BlazeFace graph of ``bundle`` (default: the bundle's default,
    full range) and its backend, as :func:`edge_sdk.pipelines.face.open_detector` returns.

    ``threads``: the runtime's intra-op thread hint (None: its default)."""
    known = blazeface_graphs(bundle)
    if not known:
        raise BundleError(f"bundle {bundle.manifest.family} carries no BlazeFace graph")
    name = graph or known[0]
    if name not in known:
        raise BundleError(f"bundle has no BlazeFace graph {name!r}; it has {list(known)}")
    hints = None if threads is None else {name: threads}
    sessions = open_graphs(bundle, (name,), device, backend, precision, None, hints)
    manifest = bundle.manifest
    try:
        detector = BlazeFaceDetector(
            sessions[name],
            manifest.config["blazeface"][name],
            manifest.preprocessing[name],
            config,
            owned=(sessions.opened[name],),
        )
    except BaseException:
        sessions.close()
        raise
    return detector, describe(sessions)


# Names for ``load(detector=...)`` / ``--detector``: MTCNN, or one BlazeFace graph.
DETECTOR_CHOICES = ("auto", "mtcnn", "blazeface-short", "blazeface-full", "blazeface-back")
BLAZEFACE_FAMILY = "face-blazeface"


class FaceDetector(Protocol):
    """What every face pipeline needs of a detector (MTCNNDetector, BlazeFaceDetector)."""

    config: Any

    def detect(self, image: np.ndarray, timings: dict[str, float] | None = None) -> Detections: ...

    def close(self) -> None: ...


# The frame size ``auto`` judges BlazeFace's smallest face at (a kiosk/robot camera's 640x480).
AUTO_FRAME_SIDE = 640


def _full_range_floor() -> float:
    """Smallest face (px) BlazeFace full range finds in an AUTO_FRAME_SIDE-wide frame, as the
    family records it (``min_face_fraction``)."""
    from edge_sdk.models.face_blazeface.family import MODELS

    return MODELS["full"].min_face_fraction * AUTO_FRAME_SIDE


def open_named_detector(
    name: str,
    device: DeviceInfo,
    backend: str | None = None,
    precision: str | None = None,
    min_face: int | None = None,
) -> tuple[FaceDetector, dict[str, str]]:
    """Open a detector by its :data:`DETECTOR_CHOICES` name from the cached default bundles.

    ``mtcnn``: the face-fer7 bundle's cascade. ``blazeface-*``: that graph of the
    face-blazeface bundle, with :func:`aligned_boxes` on (heads get MTCNN-shaped crops).
    ``auto``: BlazeFace full range (5-15x faster than MTCNN, ``benchmarks/detectors.py``),
    or MTCNN, with a logged reason, when BlazeFace's weights are not installed or when
    ``min_face`` asks for faces smaller than full range finds in a 640 px frame
    (:data:`AUTO_FRAME_SIDE`; MTCNN's pyramid reaches down to 12 px).
    """
    from edge_sdk.defaults import default_bundle
    from edge_sdk.errors import WeightsError
    from edge_sdk.pipelines.face import open_detector

    if name not in DETECTOR_CHOICES:
        raise InputError(f"unknown detector {name!r}; choose one of {list(DETECTOR_CHOICES)}")
    if name == "auto" and min_face is not None and min_face < _full_range_floor():
        log.info("detector auto: MTCNN, min_face %d px is below BlazeFace full range's", min_face)
        return open_detector(default_bundle(), device, backend, precision)
    if name == "auto":
        try:
            bundle = default_bundle(BLAZEFACE_FAMILY)
        except WeightsError as exc:
            log.warning("detector auto: MTCNN, BlazeFace is unavailable (%s)", exc)
            return open_detector(default_bundle(), device, backend, precision)
        return open_blazeface(bundle, device, None, backend, precision, BlazeFaceConfig(align=True))
    if name == "mtcnn":
        return open_detector(default_bundle(), device, backend, precision)
    graph = name.replace("-", "_")
    return open_blazeface(
        default_bundle(BLAZEFACE_FAMILY),
        device,
        graph,
        backend,
        precision,
        BlazeFaceConfig(align=True),
    )
