"""Streams that stay real-time: detect every N frames, track in between, smooth per face.

:class:`StreamRunner` turns timed frames (:class:`~edge_sdk.streams.frames.TimedFrame`) into
per-frame results. On frame 0, every ``detect_every``-th frame after the last detection, and
on any frame where a shown face's template match fails, the Recognizer's shared face
detector runs and the :class:`~edge_sdk.streams.tracking.FaceTracker` pairs its boxes with
the tracks; on the other frames the tracker carries the boxes (template match + Kalman).
Every shown box, detected or carried, then goes through the Recognizer's face heads (the
same crops and batched inference as ``predict``, without detecting again), and each track's
probabilities are smoothed (:class:`~edge_sdk.streams.smoothing.EmotionSmoother`).

The runner drives the Recognizer's public ``detector`` and ``face_heads`` on the caller's
thread; it needs a local Recognizer (a server connection has neither) and is not itself
thread-safe: one runner per stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.pipelines.common import Timer
from edge_sdk.pipelines.detector import Detections
from edge_sdk.pipelines.face import Face, FacePrediction, faces_from_detections
from edge_sdk.streams.frames import TimedFrame, TimedFrameStream
from edge_sdk.streams.smoothing import EmotionSmoother, SmoothingConfig
from edge_sdk.streams.tracking import FaceTracker, Track, TrackerConfig


@dataclass(frozen=True)
class StreamConfig:
    """How a stream is processed.

    Attributes:
        detect_every: run the detector on one frame in this many (1: every frame, the old
            behaviour); a lost face triggers a detection sooner.
        tracker: association, birth/death and following rules.
        smoothing: per-track smoothing of the probabilities.
    """

    detect_every: int = 5
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)

    def __post_init__(self) -> None:
        value = self.detect_every
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"detect_every must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class TrackedFace:
    """One shown face on one frame.

    Attributes:
        track_id: the face's id, stable while it is tracked.
        source: ``"detected"``, ``"tracked"`` (template match) or ``"predicted"`` (Kalman).
        face: this frame's raw result for the box (every face family's fields).
        label: the smoothed expression label (None when no categorical family is loaded).
        probabilities: the smoothed probabilities, in the family's label order.
    """

    track_id: int
    source: str
    face: Face
    label: str | None
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the face's fields with label/probabilities smoothed and the
        frame's own answer as ``raw_label``/``raw_probabilities``."""
        raw = self.face.to_dict()
        return {
            "track_id": self.track_id,
            "source": self.source,
            **raw,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "raw_label": raw["label"],
            "raw_probabilities": raw["probabilities"],
        }


@dataclass(frozen=True)
class StreamFrame:
    """Result for one frame of a stream.

    Attributes:
        index: frames processed before this one.
        seconds: the frame's time (see :class:`~edge_sdk.streams.frames.TimedFrame`).
        clock: where ``seconds`` came from (``"pts"``, ``"fps"``, ``"capture"``).
        detected: whether the detector ran on this frame.
        dropped: frames a live source dropped so far (files: 0).
        faces: the shown faces, each with its track id.
        image_size: (width, height).
        timings_ms: per stage: ``detect`` and/or ``track``, one per face family, ``total``.
        captured_at: live sources: ``time.time()`` at capture.
    """

    index: int
    seconds: float
    clock: str
    detected: bool
    dropped: int
    faces: tuple[TrackedFace, ...]
    image_size: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    captured_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (one JSON line of a stream)."""
        out: dict[str, Any] = {
            "frame": self.index,
            "seconds": round(self.seconds, 6),
            "clock": self.clock,
            "detected": self.detected,
            "dropped": self.dropped,
            "faces": [f.to_dict() for f in self.faces],
            "face_count": len(self.faces),
            "no_face": not self.faces,
            "image_size": {"width": self.image_size[0], "height": self.image_size[1]},
            "timings_ms": dict(self.timings_ms),
        }
        if self.captured_at is not None:
            out["captured_at"] = self.captured_at
        return out

    def as_face_prediction(self) -> FacePrediction:
        """The faces as a FacePrediction with the smoothed labels, for code that draws or
        consumes ``predict`` results (e.g. :func:`edge_sdk.annotate.draw_faces`)."""
        faces = tuple(
            replace(f.face, label=f.label, probabilities=dict(f.probabilities))
            if f.label is not None
            else f.face
            for f in self.faces
        )
        return FacePrediction(faces, self.image_size, dict(self.timings_ms))


class StreamRunner:
    """Per-frame tracked, smoothed face results from a Recognizer (module docs).

    Args:
        recognizer: a Recognizer (or any object with its ``detector``, ``face_heads`` and
            ``backends``).
        config: detection interval, tracker and smoothing settings.
    """

    def __init__(self, recognizer: Any, config: StreamConfig | None = None) -> None:
        detector = getattr(recognizer, "detector", None)
        heads = tuple(getattr(recognizer, "face_heads", ()) or ())
        if detector is None or not heads:
            raise InputError(
                "tracking a stream needs a local Recognizer with a face family (its detector "
                "and face heads); a server connection or a Recognizer without face bundles "
                "has none"
            )
        self.detector = detector
        self.heads = heads
        backends = getattr(recognizer, "backends", {})
        self.backends = dict(backends) if isinstance(backends, dict) else {}
        self.config = config or StreamConfig()
        self.detector_calls = 0
        self.tracker = FaceTracker(self.config.tracker)
        self.smoother = EmotionSmoother(self.config.smoothing)
        self._since_detect: int | None = None

    def reset(self) -> None:
        """Forget every track (a new scene or source); ids keep counting up."""
        self.tracker.clear()
        self.smoother = EmotionSmoother(self.config.smoothing)
        self._since_detect = None

    def process(self, frame: TimedFrame) -> StreamFrame:
        """Detect or track, classify the shown faces, smooth per track."""
        bgr = frame.bgr
        if not (isinstance(bgr, np.ndarray) and bgr.ndim == 3 and bgr.shape[2] == 3
                and bgr.dtype == np.uint8):  # fmt: skip
            raise InputError(
                f"frame {frame.index}: expected BGR uint8 (H, W, 3), got "
                f"{getattr(bgr, 'dtype', type(bgr).__name__)} {getattr(bgr, 'shape', '')}"
            )
        timer = Timer()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if self.config.tracker.follow else None
        ended: list[int] = []
        due = self._since_detect is None or self._since_detect >= self.config.detect_every
        if not due:
            with timer("track"):
                due = not self.tracker.follow(frame.seconds, gray)
            ended += self.tracker.ended
        if due:
            with timer("detect"):
                found = self.detector.detect(rgb)
                self.detector_calls += 1
                self.tracker.update(found.boxes, frame.seconds, scores=found.scores,
                                    landmarks=found.landmarks, gray=gray)  # fmt: skip
            ended += self.tracker.ended
            self._since_detect = 0
        self._since_detect = (self._since_detect or 0) + 1
        for track_id in ended:
            self.smoother.forget(track_id)
        shown = self.tracker.visible()
        prediction = faces_from_detections(rgb, _as_detections(shown), self.heads,
                                           self.backends, timer)  # fmt: skip
        faces = []
        for track, face in zip(shown, prediction.faces, strict=True):
            label, probabilities = self.smoother.smooth(track.track_id, face.probabilities)
            faces.append(TrackedFace(track.track_id, track.source, face, label, probabilities))
        return StreamFrame(
            index=frame.index,
            seconds=frame.seconds,
            clock=frame.clock,
            detected=due,
            dropped=frame.dropped,
            faces=tuple(faces),
            image_size=prediction.image_size,
            timings_ms=prediction.timings_ms,
            captured_at=frame.captured_at,
        )

    def run(self, frames: Iterable[TimedFrame]) -> Iterator[StreamFrame]:
        """:meth:`process` every frame in turn."""
        for frame in frames:
            yield self.process(frame)


def _as_detections(tracks: tuple[Track, ...]) -> Detections:
    """The shown tracks' boxes in the detector's form, for the face heads."""
    if not tracks:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros((0, 5, 2), np.float32))  # fmt: skip
    return Detections(
        np.array([t.box for t in tracks], dtype=np.float32),
        np.array([t.score for t in tracks], dtype=np.float32),
        np.array([t.landmarks_px() for t in tracks], dtype=np.float32),
    )


def stream(
    recognizer: Any,
    source: str | os.PathLike[str] | int,
    config: StreamConfig | None = None,
    *,
    read_timeout: float = 5.0,
    max_frames: int | None = None,
    opener: Callable[[], Any] | None = None,
) -> Iterator[StreamFrame]:
    """Tracked, smoothed results of a video file or camera, frame by frame.

    Args:
        recognizer: see :class:`StreamRunner`.
        source: a video file or a camera index (see
            :class:`~edge_sdk.streams.frames.TimedFrameStream`).
        config: see :class:`StreamConfig`.
        read_timeout: seconds to wait for a frame before the source counts as stalled.
        max_frames: stop after this many frames.
        opener: opens the capture instead of ``cv2.VideoCapture(source)``.
    """
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1, got {max_frames!r}")
    runner = StreamRunner(recognizer, config)
    with TimedFrameStream(source, read_timeout=read_timeout, opener=opener) as frames:
        for result in runner.run(frames):
            yield result
            if max_frames is not None and result.index + 1 >= max_frames:
                return
