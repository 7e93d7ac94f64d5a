"""Frames with the time they show, and a camera stand-in for tests and benchmarks.

:class:`TimedFrameStream` is :class:`edge_sdk.preprocess.frame_stream.FrameStream` (source
timestamps, live sources that drop frames instead of lagging; its module says how).
:class:`PacedCapture` replays frames as a camera would (one every ``1 / fps`` seconds
whether or not anyone reads), for tests and benchmarks of the live path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.preprocess.frame_stream import CLOCKS, TimedFrame
from edge_sdk.preprocess.frame_stream import FrameStream as TimedFrameStream

__all__ = ["CLOCKS", "PacedCapture", "TimedFrame", "TimedFrameStream"]


class PacedCapture:
    """A ``cv2.VideoCapture``-like camera replaying ``frames`` at ``fps`` in real time.

    Frame k becomes due ``k / fps`` seconds after the first ``read()``; ``read()`` returns the
    newest due frame, waiting for the next one when the reader is ahead. A reader that falls
    behind misses frames as on a real sensor. After the last frame ``read()`` fails (the
    camera went away).
    """

    def __init__(self, frames: Sequence[np.ndarray], fps: float) -> None:
        if not frames:
            raise InputError("PacedCapture needs at least one frame")
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"PacedCapture fps must be > 0, got {fps!r}")
        self.frames, self.fps = frames, float(fps)
        self._start: float | None = None
        self._next = 0
        self._open = True

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        """Whether the camera is still there."""
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next frame due (see the class docs); (False, None) after the last."""
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = int((now - self._start) * self.fps)  # newest frame already produced
        k = max(self._next, due)
        if k >= len(self.frames):
            time.sleep(1.0 / self.fps)
            return False, None
        wait = self._start + k / self.fps - now
        if wait > 0:
            time.sleep(wait)
        self._next = k + 1
        return True, self.frames[k]

    def get(self, prop: int) -> float:
        """CAP_PROP_FPS, CAP_PROP_FRAME_WIDTH/HEIGHT; 0 for anything else."""
        height, width = self.frames[0].shape[:2]
        return {
            cv2.CAP_PROP_FPS: self.fps,
            cv2.CAP_PROP_FRAME_WIDTH: float(width),
            cv2.CAP_PROP_FRAME_HEIGHT: float(height),
        }.get(prop, 0.0)

    def release(self) -> None:
        """Close the camera."""
        self._open = False
