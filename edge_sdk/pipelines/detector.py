"""MTCNN face detection (Zhang et al., 2016): image pyramid, three cascaded nets, NMS.

The algorithm is plain numpy/OpenCV around three Sessions, so the ONNX Runtime graphs
and the PyTorch reference run through exactly the same pre- and post-processing; only
the networks differ. Boxes are (x1, y1, x2, y2) in pixels of the input image.

Where the time goes (512x512 astronaut, ORT CPU, 2 cores, ``benchmarks/face.py``): P-Net
~50% of detection, R-Net ~30% (a third of it cropping 137 candidates), the pyramid ~13%.
The nets' graphs are exported in forms that keep ORT in its blocked conv layout (see
:mod:`edge_sdk.models.mtcnn`); what is left in P-Net is mostly the convolutions and the
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
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from edge_sdk.manifest import Preprocessing
from runtimes.base import Closing, Session

PNET_STRIDE = 2
PNET_CELL = 12
# Longest side the cascade works on (Full HD frames run at full resolution); a larger
# image is detected on a downscaled copy, so its smallest findable face grows in
# proportion (min_face 20 -> 80 px on an 8K frame).
DETECT_MAX_SIDE = 1920
# Largest pyramid level (pixels) P-Net runs on in one call; larger ones go in strips.
PNET_STRIP_PIXELS = 1 << 17
_NMS_PAIRWISE_MAX = 1024  # 1024^2 float32 overlaps: 4 MB per temporary


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
    """Scale, centre and transpose in one output buffer (see :func:`_normalize_into`)."""
    shape = (*pixels.shape[:-3], pixels.shape[-1], *pixels.shape[-3:-1])
    out = np.empty(shape, dtype=np.float32)
    _normalize_into(out, pixels, prep)
    return out


def _normalize_into(out: np.ndarray, pixels: np.ndarray, prep: Preprocessing) -> None:
    """Write normalised ``pixels`` (..., H, W, C) into ``out`` (..., C, H, W), possibly a view.

    The same float32 operations as ``(x * scale - mean) / std`` followed by a transpose,
    without three temporaries; dividing by a std of exactly 1 is skipped, it cannot change
    a float. Inputs other than uint8 and float32 are rounded to float32 first, as
    ``astype`` did. Writing into a view lets the packed P-Net canvas be filled in place.
    """
    if pixels.dtype not in (np.uint8, np.float32):
        pixels = pixels.astype(np.float32)
    np.multiply(np.moveaxis(pixels, -1, -3), np.float32(prep.scale), out=out)
    out -= np.asarray(prep.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(prep.std, dtype=np.float32)
    if np.any(std != 1):
        out /= std.reshape(-1, 1, 1)


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


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(width, height) of the pyramid level at ``scale``, as the reference computes it."""
    return int(width * scale + 1), int(height * scale + 1)


def _extra_threads() -> int:
    """Helper threads: one per further usable core, at most three."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(cores, 4) - 1)


_WORKERS = _extra_threads()
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor | None:
    """The helper pool of this process, made on first use (None on one core)."""
    global _POOL
    if not _WORKERS:
        return None
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="edge-sdk-detector")
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the inherited executor has no threads and would never run work."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


T = TypeVar("T")
R = TypeVar("R")


def fan_out(work: Callable[[T], R], parts: Sequence[T], parallel: bool = True) -> list[R]:
    """``[work(p) for p in parts]``, the first part in the calling thread, the rest on the pool.

    Only for work that releases the GIL (OpenCV, ONNX Runtime) and never fans out itself
    (pool threads must not wait on the pool). The results are the same as in a loop.
    """
    pool = _pool() if parallel and len(parts) > 1 else None
    if pool is None:
        return [work(part) for part in parts]
    futures = [pool.submit(work, part) for part in parts[1:]]
    first = work(parts[0])
    return [first, *(future.result() for future in futures)]


def shares(parallel: bool) -> int:
    """How many pieces to cut parallel work into: the calling thread plus the pool's."""
    return _WORKERS + 1 if parallel and _WORKERS else 1


def deal(weights: Sequence[float], k: int) -> list[list[int]]:
    """Indices of ``weights`` dealt to ``k`` shares, heaviest first to the least loaded
    (longest-processing-time order); no share is empty while there are enough items."""
    k = max(1, min(k, len(weights)))
    loads = [0.0] * k
    parts: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(len(weights)), key=lambda j: -weights[j]):
        lightest = loads.index(min(loads))
        parts[lightest].append(i)
        loads[lightest] += weights[i]
    return parts


def build_pyramid(
    pixels: np.ndarray, sizes: list[tuple[int, int]], parallel: bool = True
) -> list[np.ndarray]:
    """Area-resized float32 levels of ``pixels`` at the (width, height) ``sizes``.

    Every level is resized from the full image, exactly as the reference does. A resize
    costs about the same whatever the output size (OpenCV walks the whole source), and
    OpenCV releases the GIL, so with ``parallel`` the levels are dealt round-robin to the
    calling thread and the pool's threads; the result does not depend on how they are
    dealt.
    """

    def resize(part: list[tuple[int, int]]) -> list[np.ndarray]:
        return [cv2.resize(pixels, size, interpolation=cv2.INTER_AREA) for size in part]

    k = min(shares(parallel), len(sizes)) or 1
    levels: list[np.ndarray | None] = [None] * len(sizes)
    for i, part in enumerate(fan_out(resize, [sizes[i::k] for i in range(k)], parallel)):
        levels[i::k] = part
    return levels  # type: ignore[return-value]


def pnet_strips(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges ``[top, bottom)`` of a level for P-Net to run on one at a time.

    P-Net's memory grows with its input (~200 bytes of activations per level pixel in ONNX
    Runtime: ~200 MB for the first level of a 1920x1440 image), so a level over
    :data:`PNET_STRIP_PIXELS` is cut into full-width strips that overlap by 10 rows and
    start on even rows: every cell's 12x12 window then lies wholly inside one strip and
    the joined maps are the whole level's (bit for bit on ONNX Runtime CPU). The last
    strip ends at the level's edge and is never shorter than P-Net's 12-pixel window.
    """
    rows = max(PNET_CELL + PNET_STRIDE, PNET_STRIP_PIXELS // max(width, 1) // 2 * 2)
    overlap = PNET_CELL - PNET_STRIDE
    strips: list[tuple[int, int]] = []
    top = 0
    while height - top > rows and height - (top + rows - overlap) >= PNET_CELL:
        strips.append((top, top + rows))
        top += rows - overlap
    strips.append((top, height))
    return strips


def _join_strips(
    levels: list[np.ndarray],
    pieces: list[tuple[int, tuple[int, int]]],
    maps: list[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (prob, offsets) per level from the maps of its strips, in order: of a strip that
    does not end at the level's edge only the :func:`cell_count` rows whose windows lie
    inside it are kept (the next strip starts at the first row it left out)."""
    joined: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in levels]
    for (i, (top, bottom)), (prob, offsets) in zip(pieces, maps, strict=True):
        keep = prob.shape[0] if bottom == levels[i].shape[0] else cell_count(bottom - top)
        joined[i].append((prob[:keep], offsets[:, :keep]))
    return [
        parts[0]
        if len(parts) == 1
        else (np.concatenate([p for p, _ in parts]), np.concatenate([o for _, o in parts], 1))
        for parts in joined
    ]


def cell_count(side: int) -> int:
    """P-Net cells along one side of a level whose 12-pixel window lies inside the level.

    For an odd side the standalone map has one more cell whose window hangs one pixel
    over the edge (ceil-mode pooling); on a canvas that cell would see a neighbour's
    pixels, so it is not read back (see :func:`pack_levels`).
    """
    return (side - PNET_CELL) // PNET_STRIDE + 1


@functools.lru_cache(maxsize=32)
def pack_levels(
    sizes: tuple[tuple[int, int], ...],
) -> tuple[tuple[tuple[int, int], ...], tuple[int, int]]:
    """Top-left (x, y) of each (width, height) level on one canvas, and the canvas size.

    Levels sit at even offsets so that P-Net's stride-2 cell grid on the canvas is the
    grid of every level, and they never overlap, so any cell read back lies wholly inside
    its level. Placement is a skyline bottom-left packing in 2-pixel units, tried for a
    few canvas widths; the smallest canvas area wins (the unused ~10% is P-Net work
    wasted). Cached per pyramid: a video stream pays for it once.
    """
    units = [((w + 1) // 2, (h + 1) // 2) for w, h in sizes]
    widest = max(u[0] for u in units)
    candidates = sorted({widest + sum(u[0] for u in units[1:k]) for k in range(1, len(units) + 1)})
    best: tuple[int, list[tuple[int, int]], int, int] | None = None
    for canvas_w in candidates:
        skyline = np.zeros(canvas_w, dtype=np.int64)
        places = []
        for uw, uh in units:
            tops = np.lib.stride_tricks.sliding_window_view(skyline, uw).max(axis=1)
            x = int(np.argmin(tops))  # lowest top, leftmost among equals
            y = int(tops[x])
            skyline[x : x + uw] = y + uh
            places.append((x, y))
        area = canvas_w * int(skyline.max())
        if best is None or area < best[0]:
            best = (area, places, canvas_w, int(skyline.max()))
    assert best is not None
    _, places, canvas_w, canvas_h = best
    offsets = tuple((2 * x, 2 * y) for x, y in places)
    return offsets, (2 * canvas_w, 2 * canvas_h)


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
        return _join_strips(levels, pieces, out)  # type: ignore[arg-type]

    def _pnet_level(self, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P-Net on one level (or strip of a level) alone (the reference way)."""
        out = self.pnet.run({"image": _to_nchw(level[None], self.preprocessing)})
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
            _normalize_into(canvas[0, :, y : y + h, x : x + w], level, self.preprocessing)
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
            batch = _to_nchw(crops[start : start + step], self.preprocessing)
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
