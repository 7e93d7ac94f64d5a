"""Real-time streams: source timestamps, frame dropping on live sources, face tracks with
stable ids between sparse detections, and per-track emotion smoothing.

Start with :func:`stream` (a file or camera -> per-frame :class:`StreamFrame`) or
:class:`StreamRunner` (your own frames).
"""

from edge_sdk.streams.frames import PacedCapture, TimedFrame, TimedFrameStream
from edge_sdk.streams.kalman import BoxKalman, KalmanConfig
from edge_sdk.streams.runner import (
    StreamConfig,
    StreamFrame,
    StreamRunner,
    TrackedFace,
    stream,
)
from edge_sdk.streams.smoothing import EmotionSmoother, SmoothingConfig
from edge_sdk.streams.tracking import FaceTracker, Track, TrackerConfig

__all__ = [
    "BoxKalman",
    "EmotionSmoother",
    "FaceTracker",
    "KalmanConfig",
    "PacedCapture",
    "SmoothingConfig",
    "StreamConfig",
    "StreamFrame",
    "StreamRunner",
    "TimedFrame",
    "TimedFrameStream",
    "Track",
    "TrackedFace",
    "TrackerConfig",
    "stream",
]
