"""Context / body / head windows of one person for the scene families (CocoER step 1).

The three windows are cut and resized by :func:`edge_sdk.preprocess.face.face_tensor` (one crop
routine for every image family), with the manifest's Preprocessing minus its face crop rule: a
window is exactly its box, zero-padded where a box leaves the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.manifest import Preprocessing
from edge_sdk.preprocess.face import face_tensor

WINDOW_NAMES = ("context", "body", "head")
# Body box from a head box when no person detector is available: an adult is roughly 7-8
# heads tall and 2.5-3 head widths across the shoulders, so take 3 head widths centred on the
# head and from a quarter head above its top down to 7 head heights below it.
BODY_WIDTH_HEADS = 3.0
BODY_ABOVE_HEADS = 0.25
BODY_BELOW_HEADS = 7.0


def body_box_from_head(head_box: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Documented expansion of a head box (x1, y1, x2, y2) to a body box, clipped to the image.

    x: ``BODY_WIDTH_HEADS`` head widths centred on the head; y: from ``BODY_ABOVE_HEADS``
    head heights above the head's top to ``BODY_BELOW_HEADS`` head heights below it.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(head_box, dtype=np.float64)[:4])
    if x2 <= x1 or y2 <= y1:
        raise InputError(f"head box {[x1, y1, x2, y2]} is empty")
    height, width = image_shape[:2]
    head_w, head_h, centre = x2 - x1, y2 - y1, (x1 + x2) / 2
    half = BODY_WIDTH_HEADS * head_w / 2
    top, bottom = y1 - BODY_ABOVE_HEADS * head_h, y1 + BODY_BELOW_HEADS * head_h
    box = np.array([centre - half, top, centre + half, bottom])
    return np.clip(box, [0, 0, 0, 0], [width, height, width, height]).astype(np.float32)


def scene_windows(
    image: np.ndarray,
    head_box: np.ndarray,
    body_box: np.ndarray | None,
    prep: Preprocessing,
) -> dict[str, np.ndarray]:
    """RGB uint8 image + boxes -> {"context", "body", "head"}: (1, C, H, W) float32 each.

    Args:
        image: (H, W, 3) RGB uint8 (see :func:`edge_sdk.preprocess.image.load_image`).
        head_box: (x1, y1, x2, y2) in pixels.
        body_box: (x1, y1, x2, y2), or None for :func:`body_box_from_head`.
        prep: the windows' Preprocessing (size, colour, scale, mean/std); its crop rule is
            ignored: windows are the boxes themselves.
    """
    height, width = image.shape[:2]
    head = np.asarray(head_box, dtype=np.float32)[:4]
    body = (
        body_box_from_head(head, image.shape)
        if body_box is None
        else np.asarray(body_box, dtype=np.float32)[:4]
    )
    boxes = np.stack([np.array([0, 0, width, height], dtype=np.float32), body, head])
    crops = face_tensor(image, boxes, dataclasses.replace(prep, crop={}))
    return {name: crops[i : i + 1] for i, name in enumerate(WINDOW_NAMES)}
