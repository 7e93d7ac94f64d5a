"""Recorded graph inputs and the reader that hands them to a calibrator.

Calibration data must be what each graph sees in deployment: pyramid levels for a
detector stage, detector crops for a classifier. Rather than a second copy of each
pipeline's preprocessing, the FP32 pipeline runs over the calibration inputs with its
sessions wrapped in :class:`RecordingSession`, which keeps every feed it passes on.
"""

from __future__ import annotations

import threading

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from runtimes.base import Closing, Session


class RecordingSession(Closing):
    """A Session that stores a copy of every feed, then runs the wrapped session.

    ``close`` closes the wrapped session (the recorder itself holds only the feeds).
    """

    def __init__(self, inner: Session) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.backend = inner.backend
        self.precision = inner.precision
        self.inputs = inner.inputs
        self.outputs = inner.outputs
        self.thread_safe = inner.thread_safe
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self._inner.run(feeds)

    def close(self) -> None:
        self._inner.close()


def split_batches(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """One feed per sample: batched crops become single-sample feeds (batch axis kept)."""
    samples = []
    for feed in feeds:
        first = next(iter(feed.values()))
        for i in range(first.shape[0]):
            samples.append({k: v[i : i + 1] for k, v in feed.items()})
    return samples


class FeedReader(CalibrationDataReader):
    """ONNX Runtime's calibration contract over a fixed list of feeds: get_next(), rewind()."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._position = 0

    def __len__(self) -> int:
        return len(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._feeds):
            return None
        self._position += 1
        return self._feeds[self._position - 1]

    def rewind(self) -> None:
        self._position = 0
