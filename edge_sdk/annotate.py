"""Draw face boxes, landmarks and labels onto an image for ``predict --annotate``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.pipelines.face import FacePrediction

_BOX_BGR = (40, 200, 40)
_POINT_BGR = (0, 160, 255)
# Formats an annotated image may be written in, by file extension.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def draw_faces(rgb: np.ndarray, prediction: FacePrediction) -> np.ndarray:
    """A BGR copy of ``rgb`` with every face's box, landmarks and ``label p`` drawn."""
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for face in prediction.faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _BOX_BGR, thickness)
        for x, y in face.landmarks:
            cv2.circle(canvas, (round(x), round(y)), thickness + 1, _POINT_BGR, -1)
        text = f"{face.label} {face.probabilities[face.label]:.2f}"
        scale = 0.5 * thickness
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(y1 - h - base - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + w + 2, top + h + base + 2), _BOX_BGR, -1)
        cv2.putText(
            canvas,
            text,
            (x1 + 1, top + h + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


def check_image_path(path: Path) -> None:
    """Refuse a target whose extension names no image format we write, before any work
    (OpenCV would raise its own error only once the image is drawn)."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS or not cv2.haveImageWriter(f"image{suffix}"):
        raise InputError(
            f"cannot write an annotated image to {path}: {suffix or 'no extension'} is not "
            f"an image format; use one of {', '.join(IMAGE_EXTENSIONS)}"
        )


def write_annotated(path: Path, rgb: np.ndarray, prediction: FacePrediction) -> None:
    """Write the annotated image; the extension picks the format (:data:`IMAGE_EXTENSIONS`)."""
    check_image_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = cv2.imwrite(str(path), draw_faces(rgb, prediction))
    except cv2.error as exc:
        raise InputError(f"cannot write an annotated image to {path}: {exc}") from exc
    if not written:
        raise InputError(f"cannot write an annotated image to {path}")
