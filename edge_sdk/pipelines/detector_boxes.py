"""Box arithmetic of the MTCNN cascade: NMS, squaring, regression, crops, scaling back.

Plain numpy/OpenCV on (x1, y1, x2, y2) pixel boxes, shared by every stage of
:class:`edge_sdk.pipelines.detector.MTCNNDetector` whatever runtime runs the nets; the
detector's working copy of a large image and the mapping of its detections back to the
input's pixels are here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_sdk.pipelines.detector_parallel import fan_out, shares

_NMS_PAIRWISE_MAX = 1024  # 1024^2 float32 overlaps: 4 MB per temporary


@dataclass(frozen=True)
class Detections:
    """Faces found in one image: boxes (n, 4), scores (n,), landmarks (n, 5, 2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


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


def crop_resize(
    image: np.ndarray, boxes: np.ndarray, size: int, parallel: bool = False
) -> np.ndarray:
    """Crops (zero-padded where a box leaves the image) resized to size x size, RGB float.

    ``image`` may be uint8 or already float32 (the detector passes one float copy to both
    refinement stages, so no window is converted twice). A box inside the image is
    resized straight from its window; only boxes that leave the image pay for a
    zero-padded patch. With ``parallel`` the boxes are dealt to the calling thread and
    the pool (each crop is written to its own row, so the result is the same).
    """
    if image.dtype != np.float32:
        image = image.astype(np.float32)
    crops = np.zeros((boxes.shape[0], size, size, 3), dtype=np.float32)
    corners = np.trunc(boxes[:, :4]).astype(np.int64).tolist()
    k = min(shares(parallel), len(corners)) or 1
    rows = list(range(len(corners)))
    fan_out(
        lambda part: _crop_rows(image, corners, part, crops),
        [rows[i::k] for i in range(k)],
        parallel,
    )
    return crops


def _crop_rows(
    image: np.ndarray, corners: list[list[int]], rows: list[int], crops: np.ndarray
) -> None:
    """Fill ``crops[i]`` for each row ``i`` from its integer box corners."""
    height, width = image.shape[:2]
    size = crops.shape[1]
    for i in rows:
        x1, y1, x2, y2 = corners[i]
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw < 2 or bh < 2:
            continue
        sx1, sy1 = max(x1, 0), max(y1, 0)
        sx2, sy2 = min(x2 + 1, width), min(y2 + 1, height)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        window = image[sy1:sy2, sx1:sx2]
        if sx2 - sx1 != bw or sy2 - sy1 != bh:
            patch = np.zeros((bh, bw, 3), dtype=np.float32)
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = window
            window = patch
        cv2.resize(window, (size, size), dst=crops[i], interpolation=cv2.INTER_AREA)


def working_copy(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` itself when its longer side is within ``max_side`` (or no bound is set),
    else an area-downscaled copy whose longer side is ``max_side``."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    ratio = max_side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_input_pixels(
    found: Detections, work_shape: tuple[int, ...], image_shape: tuple[int, ...]
) -> Detections:
    """Detections on a resized copy (``work_shape``) in the pixels of the original image.

    Pixel centres are mapped as ``cv2.resize`` maps them, ``x = (x' + 0.5) / s - 0.5`` per
    axis, and boxes are clipped to the image as on the copy. A copy of the image's own size
    returns ``found`` unchanged.
    """
    (work_h, work_w), (height, width) = work_shape[:2], image_shape[:2]
    if (work_h, work_w) == (height, width):
        return found
    scale = np.array([width / work_w, height / work_h], dtype=np.float64)
    boxes = (found.boxes.reshape(-1, 2, 2) + 0.5) * scale - 0.5
    boxes = np.clip(boxes.reshape(-1, 4), 0, [width - 1, height - 1, width - 1, height - 1])
    landmarks = (found.landmarks + 0.5) * scale - 0.5
    return Detections(boxes.astype(np.float32), found.scores, landmarks.astype(np.float32))
