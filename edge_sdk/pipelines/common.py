"""Helpers every pipeline shares: opening a bundle's graphs, batched runs, box checks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import InputError
from edge_sdk.manifest import GraphSpec
from runtimes.base import Closing, Session
from runtimes.selection import open_graph

Wrap = Callable[[str, Session], Session]


class Sessions(Closing, dict[str, Session]):
    """A bundle's opened graphs by name, as the pipeline runs them (wrapped when a ``wrap``
    was given), and in ``opened`` the runtime sessions behind them: ``close`` closes those,
    so a wrapper without a ``close`` of its own (calibration's recorder) still frees them."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: dict[str, Session] = {}

    def close(self) -> None:
        """Close every session opened here (each close is idempotent)."""
        for session in self.opened.values():
            session.close()


def open_graphs(
    bundle: ModelBundle,
    names: tuple[str, ...],
    device: DeviceInfo,
    backend: str | None,
    precision: str | None,
    wrap: Wrap | None = None,
    threads: dict[str, int] | None = None,
) -> Sessions:
    """Open each named graph once (ORT session creation is not safe to race: do it here).

    ``threads`` maps graph names to the backends' thread-count hint (``Backend.open``).
    When one graph cannot be opened, those opened before it are closed again.
    """
    hints = threads or {}
    sessions = Sessions()
    try:
        for name in names:
            opened = open_graph(
                bundle, name, device, backend=backend, precision=precision, threads=hints.get(name)
            )
            sessions.opened[name] = opened
            sessions[name] = opened if wrap is None else wrap(name, opened)
    except BaseException:
        sessions.close()
        raise
    return sessions


def describe(sessions: dict[str, Session]) -> dict[str, str]:
    """``{graph: "backend/precision"}`` for results and ``Recognizer.backends``."""
    return {name: f"{s.backend}/{s.precision}" for name, s in sessions.items()}


def batch_limit(graph: GraphSpec) -> int:
    """Largest size of the graph's leading (batch) axis: its profile max, or the fixed size."""
    first = graph.inputs[0].shape[0]
    return graph.dims[first].max if isinstance(first, str) else int(first)


def run_batched(
    session: Session, graph: GraphSpec, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``feeds`` whose first axis may exceed the graph's profile, in profile-sized chunks.

    Every input shares the leading batch axis; outputs are concatenated in order.
    """
    count = next(iter(feeds.values())).shape[0]
    step = batch_limit(graph)
    if count <= step:
        return session.run(feeds)
    parts = [
        session.run({k: v[start : start + step] for k, v in feeds.items()})
        for start in range(0, count, step)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def softmax(logits: np.ndarray, dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """Numerically stable softmax over the last axis, float64 inside, ``dtype`` out.

    The one softmax of the SDK: pipelines report float32 probabilities; the INT8 gate and
    ``verify`` (:mod:`calibration.gate`) keep float64 so their figures carry no rounding.
    """
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(dtype)


def sigmoid(logits: np.ndarray, dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """Logistic function, float64 inside, ``dtype`` out (see :func:`softmax`)."""
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(dtype)


def check_boxes(
    boxes: object, image_shape: tuple[int, ...], name: str = "boxes"
) -> np.ndarray:
    """Caller boxes -> (n, 4) float32 (x1, y1, x2, y2), or an InputError saying what is wrong.

    A box may reach past the image border (its window is zero-padded, as the detector's are)
    but must be finite, non-empty and overlap the image.
    """
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not numeric boxes ({exc})") from exc
    if array.size == 0:
        raise InputError(f"{name}: no boxes given (pass None to detect them)")
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"{name}: expected (n, 4) boxes as (x1, y1, x2, y2), got {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: boxes contain NaN or infinite values")
    height, width = image_shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(array):
        if x2 <= x1 or y2 <= y1:
            raise InputError(f"{name}[{i}] = {[x1, y1, x2, y2]} is empty (need x2 > x1, y2 > y1)")
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InputError(
                f"{name}[{i}] = {[x1, y1, x2, y2]} lies outside the {width}x{height} image"
            )
    return array.astype(np.float32)


class Timer:
    """Stage timings in milliseconds: ``with timer("detect"): ...``; repeated stages add up."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - begin) * 1e3
            self.stages[stage] = self.stages.get(stage, 0.0) + elapsed

    def finish(self) -> dict[str, float]:
        """The stages plus ``total`` (wall time since the timer was made)."""
        return {**self.stages, "total": (time.perf_counter() - self.start) * 1e3}
