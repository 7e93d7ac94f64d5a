"""The detector's speed-ups change no result: parallel stages, packed P-Net, session options."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import cv2
import numpy as np
import pytest

from edge_sdk.pipelines import detector as det
from edge_sdk.pipelines.face import FacePipeline
from tests.conftest import ASTRONAUT_FACE, iou


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    canvas[y : y + image.shape[0], x : x + image.shape[1]] = image


def composites(astronaut: np.ndarray) -> dict[str, np.ndarray]:
    """Multi-face scenes at several scales, faces near edges and odd sizes."""
    tiled = np.full((700, 1000, 3), 90, np.uint8)
    _paste(tiled, astronaut, 0, 0)
    _paste(tiled, _scaled(astronaut, 0.5)[:, ::-1], 560, 40)
    _paste(tiled, _scaled(astronaut, 0.3), 100, 530)
    small = _scaled(astronaut, 0.7)
    _paste(tiled, small, 1000 - small.shape[1], 700 - small.shape[0])
    cut = _scaled(astronaut[70:, 150:], 0.45)  # face cut by the top edge
    _paste(tiled, cut, 1000 - cut.shape[1], 0)
    half = _scaled(astronaut, 0.6)
    pair = np.concatenate([half, half[:, ::-1]], axis=1)
    odd = cv2.resize(astronaut, (333, 517), interpolation=cv2.INTER_AREA)
    return {"tiled": tiled, "pair": np.ascontiguousarray(pair), "odd": odd}


@pytest.fixture(scope="module")
def pipeline(face_bundle, device) -> FacePipeline:
    return FacePipeline(face_bundle, device)


@pytest.fixture(scope="module")
def composites_tiled(astronaut) -> np.ndarray:
    return composites(astronaut)["tiled"]


def _variant(detector: det.MTCNNDetector, **changes) -> det.MTCNNDetector:
    config = dataclasses.replace(detector.config, **changes)
    return det.MTCNNDetector(
        detector.pnet, detector.rnet, detector.onet, detector.preprocessing, config
    )


@pytest.mark.parametrize(
    "sizes",
    [
        ((308, 308), (218, 218), (155, 155), (110, 110), (78, 78), (56, 56), (40, 40)),
        ((769, 433), (546, 307), (387, 218), (275, 155), (195, 110), (139, 78), (98, 56)),
        ((13, 17), (12, 12)),
        ((200, 1200), (142, 851), (101, 604), (72, 428), (51, 304), (36, 216)),
    ],
    ids=["square", "landscape", "tiny", "tall"],
)
def test_packed_levels_are_even_disjoint_and_dense(sizes) -> None:
    offsets, (width, height) = det.pack_levels(sizes)
    assert len(offsets) == len(sizes)
    mask = np.zeros((height, width), np.int32)
    for (w, h), (x, y) in zip(sizes, offsets, strict=True):
        assert x % det.PNET_STRIDE == 0 and y % det.PNET_STRIDE == 0
        assert x + w <= width and y + h <= height
        mask[y : y + h, x : x + w] += 1
    assert mask.max() == 1  # no pixel belongs to two levels
    used = sum(w * h for w, h in sizes)
    assert used / (width * height) > 0.7  # the canvas is not mostly wasted P-Net work


@pytest.mark.parametrize("side", range(12, 40))
def test_cell_count_is_the_standalone_map_without_the_ceil_mode_cell(pipeline, side) -> None:
    level = np.zeros((1, 3, side, side + 1), np.float32)
    prob = pipeline.detector.pnet.run({"image": level})["prob"][0]
    assert det.cell_count(side) == prob.shape[0] - side % 2
    assert det.cell_count(side + 1) == prob.shape[1] - (side + 1) % 2


@pytest.mark.parametrize("backend", [None, "torch"])
def test_packed_pnet_maps_equal_per_level_maps(face_bundle, device, astronaut, backend) -> None:
    detector = FacePipeline(face_bundle, device, backend=backend).detector
    levels, _ = detector._pyramid(astronaut.astype(np.float32))
    packed = detector._pnet_canvas(levels)  # every level on one canvas
    for level, (prob, offsets) in zip(levels, packed, strict=True):
        alone_prob, alone_offsets = detector._pnet_level(level)
        rows, cols = prob.shape
        # ORT gives the same bits; oneDNN picks shape-dependent kernels (~1e-6 apart).
        np.testing.assert_allclose(alone_prob[:rows, :cols], prob, rtol=0, atol=1e-5)
        np.testing.assert_allclose(alone_offsets[:, :rows, :cols], offsets, rtol=0, atol=1e-5)


def test_parallel_pyramid_is_bit_identical(astronaut) -> None:
    pixels = _scaled(astronaut, 1.7).astype(np.float32)
    height, width = pixels.shape[:2]
    scales = det.pyramid_scales(height, width, det.DetectorConfig())
    sizes = [det.level_size(height, width, s) for s in scales]
    serial = det.build_pyramid(pixels, sizes, parallel=False)
    parallel = det.build_pyramid(pixels, sizes, parallel=True)
    assert [lv.shape[1::-1] for lv in serial] == sizes
    for a, b in zip(serial, parallel, strict=True):
        assert np.array_equal(a, b)


def test_deal_balances_heaviest_first() -> None:
    weights = [95.0, 47.5, 24.0, 12.1, 6.1, 3.1, 1.6, 0.8, 0.4, 0.2]
    parts = det.deal(weights, 2)
    assert sorted(i for part in parts for i in part) == list(range(10))
    loads = [sum(weights[i] for i in part) for part in parts]
    assert parts[0][0] == 0 and abs(loads[0] - loads[1]) <= 1.0
    assert det.deal([3.0], 4) == [[0]]  # never an empty share
    assert det.deal([], 2) == [[]]


@pytest.mark.skipif(det.shares(True) < 2, reason="one usable core: nothing is fanned out")
def test_fanned_out_net_calls_are_bit_identical(pipeline, composites_tiled) -> None:
    """One-thread sessions called from several threads give what one call per level /
    one batch gives, bit for bit."""
    fast = pipeline.detector
    assert fast.pnet.single_threaded and fast.rnet.single_threaded and fast.config.parallel
    plain = _variant(fast, parallel=False)
    pixels = composites_tiled.astype(np.float32)
    levels, _ = fast._pyramid(pixels)
    for (a_prob, a_off), (b_prob, b_off) in zip(
        fast._pnet(levels), plain._pnet(levels), strict=True
    ):
        assert np.array_equal(a_prob, b_prob) and np.array_equal(a_off, b_off)
    rng = np.random.default_rng(4)
    corner = rng.uniform(0, 900, (301, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(12, 200, (301, 1))], axis=1)
    for session, size in ((fast.rnet, 24), (fast.onet, 48)):
        crops = det.crop_resize(pixels, boxes, size)
        got, want = fast._run_batched(session, crops), plain._run_batched(session, crops)
        assert set(got) == set(want)
        for name in want:
            assert got[name].shape[0] == 301 and np.array_equal(got[name], want[name]), name


def test_parallel_crops_are_bit_identical(astronaut) -> None:
    """Boxes inside, across and wholly outside the image, and degenerate ones."""
    rng = np.random.default_rng(3)
    corner = rng.uniform(-60, 500, (301, 2))
    side = rng.uniform(0.5, 220, (301, 1))
    boxes = np.concatenate([corner, corner + side], axis=1)
    pixels = astronaut.astype(np.float32)
    serial = det.crop_resize(pixels, boxes, 24, parallel=False)
    parallel = det.crop_resize(pixels, boxes, 24, parallel=True)
    assert np.array_equal(serial, parallel)
    assert (serial.reshape(301, -1).max(axis=1) > 0).mean() > 0.5  # most crops were filled


@pytest.mark.parametrize("packed", [False, True], ids=["parallel", "parallel+packed"])
def test_fast_cascade_finds_the_same_faces_as_the_plain_one(pipeline, astronaut, packed) -> None:
    default = pipeline.detector
    assert default.config.parallel and not default.config.packed  # the measured default
    fast = _variant(default, packed=packed)
    plain = _variant(default, packed=False, parallel=False)
    images = {"astronaut": astronaut, **composites(astronaut)}
    for name, image in images.items():
        want, got = plain.detect(image), fast.detect(image)
        assert len(got) == len(want), name
        for box, score in zip(want.boxes, want.scores, strict=True):
            best = int(np.argmax([iou(box, other) for other in got.boxes]))
            assert iou(box, got.boxes[best]) >= 0.99, name
            assert abs(score - got.scores[best]) <= 1e-4, name
    assert len(plain.detect(images["tiled"])) >= 4  # the composites really have several faces


def test_detect_reports_sub_stage_timings(pipeline, astronaut, faceless) -> None:
    timings: dict[str, float] = {}
    found = pipeline.detector.detect(astronaut, timings=timings)
    assert iou(found.boxes[0], ASTRONAUT_FACE) > 0.85
    assert set(timings) == {"pyramid", "pnet", "rnet", "onet"}
    assert all(v >= 0 for v in timings.values())
    empty: dict[str, float] = {}
    assert len(pipeline.detector.detect(faceless, timings=empty)) == 0
    assert {"pyramid", "pnet"} <= set(empty)


def test_ort_sessions_do_not_spin(pipeline) -> None:
    session = pipeline.detector.pnet._session
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_helper_pool_works_in_a_forked_child() -> None:
    assert det.fan_out(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # child: a pool inherited without its threads would hang here
        ok = det.fan_out(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("fan_out hung in a forked child")
