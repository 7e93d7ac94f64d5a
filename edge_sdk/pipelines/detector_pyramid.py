"""The image pyramid P-Net scans: level sizes, strips, packing and normalisation.

The scales come from :func:`edge_sdk.pipelines.detector.pyramid_scales` (the config's
``min_face`` and ``scale_factor``). Every level is area-resized from the full float image
(the reference pyramid; :mod:`edge_sdk.pipelines.detector` says why no cheaper pyramid is
used), large levels are cut into overlapping strips whose joined maps are the level's, and the
opt-in packed mode places all levels on one canvas. Normalisation writes NCHW float32 in
place, into a canvas view too.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from edge_sdk.manifest import Preprocessing
from edge_sdk.pipelines.detector_parallel import fan_out, shares

PNET_STRIDE = 2
PNET_CELL = 12
# Largest pyramid level (pixels) P-Net runs on in one call; larger ones go in strips.
PNET_STRIP_PIXELS = 1 << 17


def normalize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """RGB (..., H, W, 3) -> NCHW float32 with the manifest's scale/mean/std."""
    return to_nchw(pixels, prep)


def to_nchw(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Scale, centre and transpose in one output buffer (see :func:`normalize_into`)."""
    shape = (*pixels.shape[:-3], pixels.shape[-1], *pixels.shape[-3:-1])
    out = np.empty(shape, dtype=np.float32)
    normalize_into(out, pixels, prep)
    return out


def normalize_into(out: np.ndarray, pixels: np.ndarray, prep: Preprocessing) -> None:
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


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(width, height) of the pyramid level at ``scale``, as the reference computes it."""
    return int(width * scale + 1), int(height * scale + 1)


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


def join_strips(
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
