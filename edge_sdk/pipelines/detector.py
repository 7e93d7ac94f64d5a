"""MTCNN face detection (Zhang et al., 2016): image pyramid, three cascaded nets, NMS.

The algorithm is plain numpy/OpenCV around three Sessions, so the ONNX Runtime graphs
and the PyTorch reference run through exactly the same pre- and post-processing; only
the networks differ. Boxes are (x1, y1, x2, y2) in pixels of the input image.

Every step reproduces the reference cascade bit for bit (same resizes, same float32
arithmetic, same greedy NMS order); the speed-ups only remove temporaries and per-box
Python work. Most of the remaining time is the nets themselves and the exact INTER_AREA
pyramid, whose cost grows with the source image for every level.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_sdk.manifest import Preprocessing
from runtimes.base import Session

PNET_STRIDE = 2
PNET_CELL = 12
_NMS_PAIRWISE_MAX = 1024  # 1024^2 float32 overlaps: 4 MB per temporary


@dataclass(frozen=True)
class DetectorConfig:
    """Tunables of the cascade; defaults are the published MTCNN settings."""

    min_face: int = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    max_batch: int = 256


@dataclass(frozen=True)
class Detections:
    """Faces found in one image: boxes (n, 4), scores (n,), landmarks (n, 5, 2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def normalize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """RGB (..., H, W, 3) -> NCHW float32 with the manifest's scale/mean/std."""
    return _to_nchw(pixels, prep)


def _to_nchw(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Scale, centre and transpose in one output buffer: the same float32 operations as
    ``(x * scale - mean) / std`` followed by a transpose, but without three temporaries.

    Dividing by a std of exactly 1 is skipped; it cannot change a float. Inputs other than
    uint8 and float32 are rounded to float32 first, as ``astype`` did.
    """
    if pixels.dtype not in (np.uint8, np.float32):
        pixels = pixels.astype(np.float32)
    shape = (*pixels.shape[:-3], pixels.shape[-1], *pixels.shape[-3:-1])
    out = np.empty(shape, dtype=np.float32)
    np.multiply(np.moveaxis(pixels, -1, -3), np.float32(prep.scale), out=out)
    out -= np.asarray(prep.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(prep.std, dtype=np.float32)
    if np.any(std != 1):
        out /= std.reshape(-1, 1, 1)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    ``mode="min"`` divides the overlap by the smaller box (MTCNN's last stage), which
    suppresses a small box nested inside a larger one. Up to ``_NMS_PAIRWISE_MAX`` boxes
    the overlaps are computed at once (the per-box loop of numpy calls dominated the
    post-processing); beyond that the memory of the pairwise matrix is not worth it.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    if order.size > _NMS_PAIRWISE_MAX:
        return _nms_loop(boxes, order, threshold, mode)
    x1, y1, x2, y2 = (boxes[order, k] for k in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    w = np.maximum(0.0, np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1) + 1)
    h = np.maximum(0.0, np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1) + 1)
    inter = w * h
    if mode == "min":
        overlap = inter / np.minimum(area[:, None], area)
    else:
        overlap = inter / (area[:, None] + area - inter)
    survives = overlap <= threshold  # a NaN overlap suppresses, as in the loop
    alive = np.ones(order.size, dtype=bool)
    keep: list[int] = []
    for i in range(order.size):
        if alive[i]:
            keep.append(i)
            alive &= survives[i]
    return order[keep]


def _nms_loop(boxes: np.ndarray, order: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    """Greedy NMS one kept box at a time: O(n) memory for very many boxes."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[best], area[rest])
        else:
            overlap = inter / (area[best] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the nets see square crops)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + 0.5 * (w - side)
    out[:, 1] = boxes[:, 1] + 0.5 * (h - side)
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, offsets: np.ndarray, inclusive: bool) -> np.ndarray:
    """Apply the nets' box regression (offsets as fractions of the box size)."""
    extra = 1.0 if inclusive else 0.0
    w = (boxes[:, 2] - boxes[:, 0] + extra)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + extra)[:, None]
    return boxes[:, :4] + offsets * np.concatenate([w, h, w, h], axis=1)


def crop_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops (zero-padded where a box leaves the image) resized to size x size, RGB float.

    A box inside the image is resized straight from a float copy of its window; only boxes
    that leave the image pay for a zero-padded patch.
    """
    height, width = image.shape[:2]
    crops = np.zeros((boxes.shape[0], size, size, 3), dtype=np.float32)
    corners = np.trunc(boxes[:, :4]).astype(np.int64).tolist()
    for i, (x1, y1, x2, y2) in enumerate(corners):
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw < 2 or bh < 2:
            continue
        sx1, sy1 = max(x1, 0), max(y1, 0)
        sx2, sy2 = min(x2 + 1, width), min(y2 + 1, height)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        window = image[sy1:sy2, sx1:sx2]
        if sx2 - sx1 == bw and sy2 - sy1 == bh:
            patch = window.astype(np.float32)
        else:
            patch = np.zeros((bh, bw, 3), dtype=np.float32)
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = window
        crops[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return crops


def pyramid_scales(height: int, width: int, config: DetectorConfig) -> list[float]:
    """Scales at which the 12x12 P-Net window covers faces from min_face up to the image."""
    scale = PNET_CELL / config.min_face
    side = min(height, width) * scale
    scales: list[float] = []
    while side >= PNET_CELL:
        scales.append(scale)
        scale *= config.scale_factor
        side *= config.scale_factor
    return scales


class MTCNNDetector:
    """Runs the cascade with one Session per net (any backend)."""

    def __init__(
        self,
        pnet: Session,
        rnet: Session,
        onet: Session,
        preprocessing: Preprocessing,
        config: DetectorConfig | None = None,
    ) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.preprocessing = preprocessing
        self.config = config or DetectorConfig()

    def _propose(self, image: np.ndarray) -> np.ndarray:
        """Stage 1: P-Net over the pyramid -> (n, 5) square candidates with scores."""
        height, width = image.shape[:2]
        pixels = image.astype(np.float32)
        found = []
        for scale in pyramid_scales(height, width, self.config):
            size = (int(width * scale + 1), int(height * scale + 1))
            level = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            out = self.pnet.run({"image": _to_nchw(level[None], self.preprocessing)})
            cand = self._cells(out["prob"][0], out["offsets"][0], scale)
            if cand.shape[0]:
                found.append(cand)
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        cand = np.concatenate(found)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
        boxes = square(regress(cand[:, :4], cand[:, 5:9], inclusive=False))
        return np.concatenate([boxes, cand[:, 4:5]], axis=1)

    def _cells(self, prob: np.ndarray, offsets: np.ndarray, scale: float) -> np.ndarray:
        """One level's P-Net maps -> (n, 9) boxes, score, offsets after the per-level NMS."""
        ys, xs = np.nonzero(prob >= self.config.thresholds[0])
        if ys.size == 0:
            return np.zeros((0, 9), dtype=np.float32)
        cells = np.stack([xs, ys], axis=1).astype(np.float32)
        top_left = np.floor((PNET_STRIDE * cells + 1) / scale)
        bottom_right = np.floor((PNET_STRIDE * cells + PNET_CELL) / scale)
        boxes = np.concatenate([top_left, bottom_right], axis=1)
        scores = prob[ys, xs]
        keep = nms(boxes, scores, 0.5)
        regs = offsets[:, ys[keep], xs[keep]].T
        return np.concatenate([boxes[keep], scores[keep, None], regs], axis=1)

    def _run_batched(self, session: Session, crops: np.ndarray) -> dict[str, np.ndarray]:
        parts: list[dict[str, np.ndarray]] = []
        step = self.config.max_batch
        for start in range(0, crops.shape[0], step):
            batch = _to_nchw(crops[start : start + step], self.preprocessing)
            parts.append(session.run({"image": batch}))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: R-Net rescoring and regression of 24x24 crops."""
        out = self._run_batched(self.rnet, crop_resize(image, boxes, 24))
        keep = out["prob"] > self.config.thresholds[1]
        boxes, prob, offsets = boxes[keep], out["prob"][keep], out["offsets"][keep]
        order = nms(boxes, prob, 0.7)
        boxes = square(regress(boxes[order], offsets[order], inclusive=True))
        return np.concatenate([boxes, prob[order, None]], axis=1)

    def _finish(self, image: np.ndarray, boxes: np.ndarray) -> Detections:
        """Stage 3: O-Net scores, final boxes and five landmarks on 48x48 crops."""
        out = self._run_batched(self.onet, crop_resize(image, boxes, 48))
        keep = out["prob"] > self.config.thresholds[2]
        boxes, prob = boxes[keep], out["prob"][keep]
        marks, offsets = out["landmarks"][keep], out["offsets"][keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack(
            [w * marks[:, :5] + boxes[:, 0:1] - 1, h * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2
        )
        boxes = regress(boxes, offsets, inclusive=True)
        order = nms(boxes, prob, 0.7, mode="min")
        height, width = image.shape[:2]
        final = np.clip(boxes[order], 0, [width - 1, height - 1, width - 1, height - 1])
        return Detections(
            final.astype(np.float32),
            prob[order].astype(np.float32),
            points[order].astype(np.float32),
        )

    def detect(self, image: np.ndarray) -> Detections:
        """All faces in an RGB uint8 image; an empty Detections when there is none."""
        boxes = self._propose(image)
        if boxes.shape[0]:
            boxes = self._refine(image, boxes)
        if boxes.shape[0]:
            return self._finish(image, boxes)
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        )
