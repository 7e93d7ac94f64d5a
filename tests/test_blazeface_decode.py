"""BlazeFace post-processing on hand-made tensors: anchors, decoding, weighted NMS, letterbox.

The LiteRT parity tests run our decoding on both runtimes' tensors, so a decoding mistake
shared by both (x and y swapped, a wrong anchor order) would pass there; these pin the
arithmetic to hand-computed values. No model file needed.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.errors import BundleError, InputError
from edge_sdk.pipelines.blazeface import (
    BlazeFaceDetector,
    decode,
    generate_anchors,
    letterbox,
    weighted_nms,
)

SHORT = {"input_size": 128, "strides": [8, 16, 16, 16], "anchors_per_layer": 2}


def test_anchor_order_is_row_major_with_repeats_per_cell() -> None:
    """MediaPipe's layout: 16x16 cells x 2 anchors, then 8x8 cells x 6, row by row."""
    anchors = generate_anchors(SHORT)
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], anchors[1])  # two anchors on the first cell
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])  # next cell: x moves first
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])  # second row
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    with pytest.raises(BundleError):
        generate_anchors({"input_size": 128, "strides": [], "anchors_per_layer": 2})


def test_decode_offsets_box_and_keypoints_from_the_anchor_in_pixels() -> None:
    """Centre (x, y) and keypoints are pixel offsets from the anchor, size in pixels."""
    anchors = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    regressors = np.zeros((2, 16), dtype=np.float32)
    regressors[0, :4] = [4.0, -2.0, 20.0, 10.0]
    regressors[0, 4:6] = [1.0, 3.0]  # first keypoint
    logits = np.array([[2.0], [-2.0]], dtype=np.float32)  # sigmoid 0.88 and 0.12
    boxes, scores, points = decode(regressors, logits, anchors, 128, 0.5)
    # anchor 0 at (32, 96) px; centre (36, 94); 20 x 10 box
    np.testing.assert_allclose(boxes, [[26.0, 89.0, 46.0, 99.0]])
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-2.0))], rtol=1e-6)
    np.testing.assert_allclose(points[0, 0], [33.0, 99.0])
    np.testing.assert_allclose(points[0, 1], [32.0, 96.0])
    regressors[0, 0] = np.nan
    assert decode(regressors, logits, anchors, 128, 0.5)[0].shape == (0, 4)


def test_weighted_nms_averages_overlapping_detections_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.6, 0.7], dtype=np.float32)
    points = np.repeat(boxes[:, None, :2], 6, axis=1)
    out_boxes, out_scores, out_points = weighted_nms(boxes, scores, points, 0.3)
    np.testing.assert_allclose(out_scores, [0.9, 0.7])
    np.testing.assert_allclose(out_boxes[0], [0.4, 0.4, 10.4, 10.4], rtol=1e-6)
    np.testing.assert_allclose(out_boxes[1], boxes[2])
    np.testing.assert_allclose(out_points[0, 0], [0.4, 0.4], rtol=1e-6)
    empty = weighted_nms(boxes[:0], scores[:0], points[:0], 0.3)
    assert empty[0].shape == (0, 4) and empty[2].shape == (0, 6, 2)


def test_letterbox_centres_the_image_and_maps_back() -> None:
    image = np.full((90, 160, 3), 255, dtype=np.uint8)
    canvas, box = letterbox(image, 128)
    assert canvas.shape == (128, 128, 3)
    assert (box.pad_x, box.pad_y) == (0, 28) and box.scale_x == pytest.approx(0.8)
    assert canvas[27].max() == 0 and canvas[28].min() == 255 and canvas[100].max() == 0


class _Never:
    def run(self, feeds):  # pragma: no cover - refused before any run
        raise AssertionError("should not run")

    def close(self) -> None:
        pass


def test_detector_refuses_non_rgb_uint8_images() -> None:
    from edge_sdk.manifest import Preprocessing

    entry = {**SHORT, "resize": "letterbox", "min_score": 0.5, "nms_iou": 0.3}
    prep = Preprocessing(size=(128, 128), color="rgb", scale=1 / 127.5, mean=(1.0,))
    detector = BlazeFaceDetector(_Never(), entry, prep)
    with pytest.raises(InputError, match="RGB"):
        detector.detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(InputError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(BundleError, match="letterbox"):
        BlazeFaceDetector(_Never(), {**entry, "resize": "stretch"}, prep)
