"""MTCNN face detection (Zhang et al., 2016): image pyramid, three cascaded nets, NMS.

The algorithm is plain numpy/OpenCV around three Sessions, so the ONNX Runtime graphs
and the PyTorch reference run through exactly the same pre- and post-processing; only
the networks differ. Boxes are (x1, y1, x2, y2) in pixels of the input image.

Where the time goes (512x512 astronaut, ORT CPU, 2 cores, ``benchmarks/face.py``): P-Net
~50% of detection, R-Net ~30% (a third of it cropping 137 candidates), the pyramid ~13%.
The nets' graphs are exported in forms that keep ORT in its blocked conv layout (see
:mod:`edge_sdk.models.face_fer7.mtcnn`); what is left in P-Net is mostly the convolutions and the
per-channel PReLU passes over the 306x306 first level. What this module does and does
not do, as measured:

* ``parallel`` (default): the ten pyramid resizes (each reads the whole float image, so
  they cost alike; 6.3 ms one after another on an idle machine) are dealt to the calling
  thread and a small pool (3.4 ms on 2 cores; OpenCV releases the GIL). Every level is
  bit-identical to the serial run.
* Net calls fanned out (``parallel`` and a session opened single-threaded, as
  ``edge_sdk.pipelines.face.detector_threads`` asks): the P-Net levels are dealt to the
  calling thread and the pool, heaviest first to the least loaded (the first level is
  ~45% of the pixels), and the R-Net/O-Net crop batches are cut in as many pieces. A
  one-thread ORT session runs each call on its caller's thread, so two calls use two
  cores with no intra-op pool to synchronise: P-Net over the 512x512 pyramid took
  10.6-11.2 ms this way against 13.9-16.1 ms from one two-thread session (and 12.9-14.5
  ms calling that session from two threads). Results are the same as one call per level
  / one batch (tested bit for bit). Not done for PyTorch (each calling thread gets its
  own OpenMP team; the cascade ran up to 2x slower) nor through wrappers such as the INT8
  feed recorder, which lack the ``single_threaded`` mark and so see the calls in order.
* ``packed`` (opt-in): all levels on one canvas, one P-Net call. Exact, but on ORT CPU
  it costs 15-25% more P-Net CPU time than one call per level (10% padding, larger
  working sets), so it is off; it is there for runtimes where each call or each new
  input shape has a fixed cost.
* The pyramid stays the reference one (each level area-resized from the full image).
  Building levels from smaller levels (ratios 1.5-4x) or with INTER_LINEAR moved final
  boxes to IoU 0.88-0.95 against it, and even +-0.1 grey-level noise on the levels moves
  one test image to 0.94: O-Net picks among near-tied candidates, so only an exact
  pyramid keeps the results.
* The image is converted to float32 once; the pyramid and both crop stages read it.
* Large images (``max_side``, default :data:`DETECT_MAX_SIDE`) are detected on an
  area-downscaled copy and the boxes and landmarks scaled back to the input's pixels; the
  face heads still crop from the full image. The cascade's cost and memory grow with the
  first pyramid level (0.6x the image's side at ``min_face`` 20): a 12 MP photo took 3-6 s
  and 1.8 GB, mostly P-Net's activations over a 2400x1800 level, and from ~6800 px on a
  side that level leaves P-Net's exported range (4096 px). Images within ``max_side``
  are untouched, so their results stay bit-identical.
* P-Net runs a level over :data:`PNET_STRIP_PIXELS` (~360x360) in overlapping strips
  (:func:`pnet_strips`; the joined maps are the level's, bit for bit on ORT), so its
  activations stay bounded whatever the level: on a 1920x1440 working copy P-Net's peak
  fell from ~250-300 MB to ~100 MB at no measurable cost in time. Together, a 12 MP JPEG
  end to end (``benchmarks/hostile_inputs.py``) takes 0.7-1.0 s and ~235 MB above its
  starting RSS, an 8K array 0.4-0.8 s and ~165-185 MB (1.7-1.9x the frame).

The array work is in :mod:`edge_sdk.pipelines.detector_pyramid` (pyramid, strips, packing,
normalisation), :mod:`edge_sdk.pipelines.detector_boxes` (NMS, regression, crops) and
:mod:`edge_sdk.pipelines.detector_parallel` (the helper pool); their public names are
importable from here as before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.manifest import Preprocessing
from edge_sdk.pipelines.detector_boxes import (
    Detections,
    crop_resize,
    nms,
    regress,
    square,
    to_input_pixels,
    working_copy,
)
from edge_sdk.pipelines.detector_parallel import deal, fan_out, shares
from edge_sdk.pipelines.detector_pyramid import (
    PNET_CELL,
    PNET_STRIDE,
    PNET_STRIP_PIXELS,
    build_pyramid,
    cell_count,
    join_strips,
    level_size,
    normalize,
    normalize_into,
    pack_levels,
    pnet_strips,
    to_nchw,
)
from runtimes.base import Closing, Session

__all__ = [
    "DETECT_MAX_SIDE",
    "PNET_CELL",
    "PNET_STRIDE",
    "PNET_STRIP_PIXELS",
    "DetectorConfig",
    "Detections",
    "MTCNNDetector",
    "build_pyramid",
    "cell_count",
    "crop_resize",
    "deal",
    "fan_out",
    "level_size",
    "nms",
    "normalize",
    "pack_levels",
    "pnet_strips",
    "pyramid_scales",
    "regress",
    "shares",
    "square",
    "to_input_pixels",
    "working_copy",
]

# Longest side the cascade works on (Full HD frames run at full resolution); a larger
# image is detected on a downscaled copy, so its smallest findable face grows in
# proportion (min_face 20 -> 80 px on an 8K frame).
DETECT_MAX_SIDE = 1920


@dataclass(frozen=True)
class DetectorConfig:
    """Tunables of the cascade; defaults are the published MTCNN settings.

    ``parallel`` resizes the pyramid levels on several cores; ``packed`` runs P-Net once
    over all levels packed on one canvas (see the module docstring for measurements).
    Neither changes a result; both off is the plain reference cascade that the
    benchmark's PyTorch reference runs. ``max_side`` bounds the longest side the cascade
    works on (larger images are detected on a downscaled copy, boxes mapped back); None
    always works at full resolution, which P-Net's exported range limits to ~6800 px.
    """

    min_face: int = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    max_batch: int = 256
    packed: bool = False
    parallel: bool = True
    max_side: int | None = DETECT_MAX_SIDE


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


class MTCNNDetector(Closing):
    """Runs the cascade with one Session per net (any backend); ``close`` closes them.

    ``owned``: the runtime sessions ``close`` frees when the nets are wrappers of them
    (:func:`edge_sdk.pipelines.face.open_detector` passes them); default: the nets.
    """

    def __init__(
        self,
        pnet: Session,
        rnet: Session,
        onet: Session,
        preprocessing: Preprocessing,
        config: DetectorConfig | None = None,
        *,
        owned: Sequence[Session] | None = None,
    ) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.preprocessing = preprocessing
        self.config = config or DetectorConfig()
        self._owned = (pnet, rnet, onet) if owned is None else tuple(owned)

    def close(self) -> None:
        """Close the nets' sessions (idempotent); they then refuse to run (ClosedError)."""
        for session in self._owned:
            session.close()

    def _pyramid(self, pixels: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        """The pyramid levels of a float32 image and their scales."""
        height, width = pixels.shape[:2]
        scales = pyramid_scales(height, width, self.config)
        sizes = [level_size(height, width, s) for s in scales]
        return build_pyramid(pixels, sizes, self.config.parallel), scales

    def _propose(self, levels: list[np.ndarray], scales: list[float]) -> np.ndarray:
        """Stage 1: P-Net over the pyramid -> (n, 5) square candidates with scores."""
        maps = self._pnet(levels)
        found = [
            cand
            for (prob, offsets), scale in zip(maps, scales, strict=True)
            if (cand := self._cells(prob, offsets, scale)).shape[0]
        ]
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        cand = np.concatenate(found)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
        boxes = square(regress(cand[:, :4], cand[:, 5:9], inclusive=False))
        return np.concatenate([boxes, cand[:, 4:5]], axis=1)

    def _fans_out(self, session: Session) -> bool:
        """Whether calls of ``session`` are spread over the helper threads (module doc)."""
        return self.config.parallel and bool(getattr(session, "single_threaded", False))

    def _pnet(self, levels: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """P-Net's (prob, offsets) maps for every level: one call per level, or per strip
        of a level larger than :data:`PNET_STRIP_PIXELS` (fanned out when the session
        allows), or one packed canvas for all of them (``packed``)."""
        if self.config.packed and len(levels) > 1:
            return self._pnet_canvas(levels)
        pieces = [(i, span) for i, lv in enumerate(levels) for span in pnet_strips(*lv.shape[:2])]
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(pieces)

        def run(part: list[int]) -> None:
            for k in part:
                i, (top, bottom) = pieces[k]
                out[k] = self._pnet_level(levels[i][top:bottom])

        if not self._fans_out(self.pnet) or len(pieces) < 2:
            run(list(range(len(pieces))))
        else:
            weights = [(b - t) * levels[i].shape[1] for i, (t, b) in pieces]
            fan_out(run, deal(weights, shares(True)))
        return join_strips(levels, pieces, out)  # type: ignore[arg-type]

    def _pnet_level(self, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P-Net on one level (or strip of a level) alone (the reference way)."""
        out = self.pnet.run({"image": to_nchw(level[None], self.preprocessing)})
        return out["prob"][0], out["offsets"][0]

    def _pnet_canvas(self, levels: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One P-Net call over levels packed on one canvas -> (prob, offsets) per level.

        Each level's maps are the window of the canvas maps that starts at the level's
        offset / stride and has :func:`cell_count` cells per side. The canvas outside the
        levels is left at zero; no cell that is read back covers it.
        """
        sizes = tuple((lv.shape[1], lv.shape[0]) for lv in levels)
        offsets, (canvas_w, canvas_h) = pack_levels(sizes)
        canvas = np.zeros((1, 3, canvas_h, canvas_w), dtype=np.float32)
        for level, (x, y) in zip(levels, offsets, strict=True):
            h, w = level.shape[:2]
            normalize_into(canvas[0, :, y : y + h, x : x + w], level, self.preprocessing)
        out = self.pnet.run({"image": canvas})
        prob, regs = out["prob"][0], out["offsets"][0]
        maps = []
        for (w, h), (x, y) in zip(sizes, offsets, strict=True):
            rows = slice(y // PNET_STRIDE, y // PNET_STRIDE + cell_count(h))
            cols = slice(x // PNET_STRIDE, x // PNET_STRIDE + cell_count(w))
            maps.append((prob[rows, cols], regs[:, rows, cols]))
        return maps

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
        """``session`` on crops in chunks of ``max_batch`` (the graphs' batch profile); with a
        fanned-out session the crops are first cut in one piece per helper thread."""
        step = self.config.max_batch
        pieces = shares(True) if self._fans_out(session) else 1
        step = max(1, min(step, -(-crops.shape[0] // pieces)))
        starts = list(range(0, crops.shape[0], step))

        def run(start: int) -> dict[str, np.ndarray]:
            batch = to_nchw(crops[start : start + step], self.preprocessing)
            return session.run({"image": batch})

        parts = fan_out(run, starts, pieces > 1)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _refine(self, pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: R-Net rescoring and regression of 24x24 crops."""
        out = self._run_batched(self.rnet, crop_resize(pixels, boxes, 24, self.config.parallel))
        keep = out["prob"] > self.config.thresholds[1]
        boxes, prob, offsets = boxes[keep], out["prob"][keep], out["offsets"][keep]
        order = nms(boxes, prob, 0.7)
        boxes = square(regress(boxes[order], offsets[order], inclusive=True))
        return np.concatenate([boxes, prob[order, None]], axis=1)

    def _finish(self, pixels: np.ndarray, boxes: np.ndarray) -> Detections:
        """Stage 3: O-Net scores, final boxes and five landmarks on 48x48 crops."""
        out = self._run_batched(self.onet, crop_resize(pixels, boxes, 48, self.config.parallel))
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
        height, width = pixels.shape[:2]
        final = np.clip(boxes[order], 0, [width - 1, height - 1, width - 1, height - 1])
        return Detections(
            final.astype(np.float32),
            prob[order].astype(np.float32),
            points[order].astype(np.float32),
        )

    def detect(self, image: np.ndarray, timings: dict[str, float] | None = None) -> Detections:
        """All faces in an RGB uint8 image; an empty Detections when there is none.

        The image is converted to float32 once; the pyramid and both crop stages read
        that copy. An image whose longer side exceeds ``config.max_side`` is first
        area-downscaled to it, and the boxes and landmarks come back in ``image``'s
        pixels. ``timings``, when given, receives milliseconds per sub-stage (``pyramid``,
        which includes that downscale, ``pnet``, ``rnet``, ``onet``; a stage not reached is
        absent), which the benchmark prints to show where the detector's time goes.
        """
        clock = _Clock(timings)
        work = working_copy(image, self.config.max_side)
        pixels = work.astype(np.float32)
        del work
        levels, scales = self._pyramid(pixels)
        clock("pyramid")
        boxes = self._propose(levels, scales)
        del levels
        clock("pnet")
        if boxes.shape[0]:
            boxes = self._refine(pixels, boxes)
            clock("rnet")
        if boxes.shape[0]:
            found = self._finish(pixels, boxes)
            clock("onet")
            return to_input_pixels(found, pixels.shape, image.shape)
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        )


class _Clock:
    """Records the milliseconds since the previous call under a stage name (or nothing)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = (now - self.last) * 1e3
            self.last = now
