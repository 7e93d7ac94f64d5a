"""A video file or camera as frames stamped at the source, read on a watchdog thread.

``VideoCapture.read()`` can block forever on a dropped camera or network stream, so a reader
thread does the reading and the consumer waits with a timeout; a live source that times out
is reopened a few times before the stream gives up with an InputError. Frame times:

* files: the frame's presentation time from the container (``CAP_PROP_POS_MSEC`` read right
  after decoding it, clock ``"pts"``); where the backend gives none (0 or not increasing),
  ``index / fps`` (clock ``"fps"``). Every frame is delivered: the reader waits for a slow
  consumer.
* live sources: the monotonic time the reader received the frame, from the first frame on
  (clock ``"capture"``), plus ``captured_at`` (``time.time()``) to line results up with
  other wall-clock data. The reader keeps only the newest frame; each frame replaced before
  the consumer took it counts in ``dropped``, so a slow consumer sees the present and knows
  how much it skipped.

(Wall time taken when the consumer got a frame, as before, gave a file decoded faster or
slower than real time times unrelated to its content: frame 29 of a 2 s clip said 15.9 s.)
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.errors import InputError

CLOCKS = ("pts", "fps", "capture")


@dataclass(frozen=True)
class TimedFrame:
    """One frame and when it was shown (file) or captured (live).

    Attributes:
        index: frames delivered before this one.
        seconds: the frame's time: presentation time in a file, capture time since the
            first captured frame on a live source.
        bgr: the pixels as OpenCV gives them.
        clock: where ``seconds`` came from: ``"pts"``, ``"fps"`` (index / fps) or
            ``"capture"``.
        dropped: frames the live reader discarded so far, this one's predecessors (files: 0).
        position: the frame's number at the source (``index + dropped``).
        captured_at: live sources: ``time.time()`` at capture; files: None.
    """

    index: int
    seconds: float
    bgr: np.ndarray
    clock: str
    dropped: int = 0
    position: int = 0
    captured_at: float | None = None


@dataclass(frozen=True)
class _Grab:
    """What the reader thread hands over: pixels plus what it knew when it read them."""

    bgr: np.ndarray
    pos_msec: float
    monotonic: float
    wall: float
    position: int
    dropped: int


class FrameStream:
    """Frames of a video file or camera with source timestamps and drop counts.

    Args:
        source: a file path or a camera index (``cv2.VideoCapture(N)``, N >= 0: OpenCV
            crashes the process on some negative indices, so they are refused here); with
            ``opener`` it only says which kind of source it is (an index: live).
        read_timeout: seconds to wait for a frame before the source counts as stalled.
        reconnects: how often a stalled live source is reopened before giving up.
        opener: opens the capture instead of ``cv2.VideoCapture(source)``: a GStreamer or
            network pipeline with options, or a :class:`~edge_sdk.streams.PacedCapture`.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | int,
        read_timeout: float = 5.0,
        reconnects: int = 2,
        *,
        opener: Callable[[], Any] | None = None,
    ) -> None:
        if isinstance(source, bool) or (isinstance(source, int) and source < 0):
            raise InputError(f"camera index must be an integer >= 0, got {source!r}")
        self.source = source
        self.live = isinstance(source, int)
        self.read_timeout = read_timeout
        self.reconnects = reconnects
        self._opener = opener
        self.dropped = 0  # live: frames replaced before the consumer took them
        self._grabbed = 0
        if opener is None and not self.live and not Path(source).is_file():
            raise InputError(f"{source}: no such video file")
        self._capture = self._open()
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._thread: threading.Thread | None = None

    def _open(self) -> Any:
        if self._opener is not None:
            capture = self._opener()
            if not capture.isOpened():
                raise InputError(f"cannot open source {self.source} (its opener returned a "
                                 "closed capture)")  # fmt: skip
            return capture
        capture = cv2.VideoCapture(self.source if self.live else str(self.source))
        if not capture.isOpened():
            kind = "camera" if self.live else "video file"
            raise InputError(f"cannot open {kind} {self.source} (OpenCV could not open it)")
        return capture

    def _reader(self, capture: Any, out: queue.Queue, stop: threading.Event) -> None:
        while not stop.is_set():
            ok, frame = capture.read()
            if self.live:
                if not ok or frame is None:
                    time.sleep(0.01)  # a camera hiccup: the watchdog decides
                    continue
                now, wall = time.monotonic(), time.time()
                position, self._grabbed = self._grabbed, self._grabbed + 1
                # Only this thread puts: after taking the stale frame out there is room.
                try:
                    out.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
                out.put_nowait(_Grab(frame, math.nan, now, wall, position, self.dropped))
                continue
            item = None
            if ok and frame is not None:
                pos = float(capture.get(cv2.CAP_PROP_POS_MSEC))
                item = _Grab(frame, pos, time.monotonic(), time.time(), self._grabbed, 0)
                self._grabbed += 1
            while not stop.is_set():  # files drop nothing: wait while the consumer is behind
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is None:
                return

    def _file_time(self, index: int, pos_msec: float, last: float) -> tuple[float, str]:
        """Presentation time of file frame ``index``: the container's, else index / fps."""
        seconds = pos_msec / 1000.0
        if math.isfinite(seconds) and seconds >= 0 and (index == 0 or seconds > last):
            return seconds, "pts"
        if self.fps > 0 and math.isfinite(self.fps):
            return index / self.fps, "fps"
        raise InputError(
            f"{self.source}: frame {index} has no timestamp (the container gives no time "
            "and no frame rate)"
        )

    def __iter__(self) -> Iterator[TimedFrame]:
        capture, attempts, index = self._capture, 0, 0
        first: float | None = None
        last = -math.inf
        while True:
            frames: queue.Queue = queue.Queue(maxsize=1 if self.live else 4)
            stop = threading.Event()
            reader = threading.Thread(
                target=self._reader, args=(capture, frames, stop), daemon=True
            )
            reader.start()
            self._thread, self._capture = reader, capture
            try:
                while True:
                    try:
                        grab = frames.get(timeout=self.read_timeout)
                    except queue.Empty:
                        break
                    if grab is None:
                        return
                    attempts = 0
                    if self.live:
                        first = grab.monotonic if first is None else first
                        seconds, clock = grab.monotonic - first, "capture"
                    else:
                        seconds, clock = self._file_time(index, grab.pos_msec, last)
                    last = seconds
                    yield TimedFrame(
                        index, seconds, grab.bgr, clock, grab.dropped, grab.position,
                        grab.wall if self.live else None,
                    )  # fmt: skip
                    index += 1
            finally:
                stop.set()
            if not self.live or attempts >= self.reconnects:
                raise InputError(
                    f"{self.source}: no frame within {self.read_timeout:g} s"
                    + (f" after {attempts} reconnects" if self.live else "")
                )
            attempts += 1
            reader.join(timeout=0.5)
            if not reader.is_alive():  # never release a capture another thread still reads
                capture.release()
            capture = self._open()

    def close(self) -> None:
        """Release the source once the reader thread has finished its current read."""
        if self._thread is not None:
            self._thread.join(timeout=self.read_timeout)
            if self._thread.is_alive():
                return  # stuck in read(): leave the capture to the process exit
        self._capture.release()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
