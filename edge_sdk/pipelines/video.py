"""Video as a sequence of face results: every frame through the face pipeline.

``predict(video=...)`` decodes the clip (:func:`edge_sdk.preprocess.video.load_frames`), runs
the shared detector on every frame and then every face family on each frame's faces. The
same per-frame detections feed the audio-video family when audio is given too, so a clip is
detected once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_sdk.pipelines.common import Timer
from edge_sdk.pipelines.detector import Detections, MTCNNDetector
from edge_sdk.pipelines.face import FaceHead, FacePrediction, make_faces


@dataclass(frozen=True)
class VideoPrediction:
    """Per-frame face results of a clip, timings per stage (for the whole clip) and FPS.

    ``fps`` is frames processed per second of wall time (decode excluded: the clip arrived
    decoded or was read from a file once).
    """

    frames: tuple[FacePrediction, ...]
    fps: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (one entry per frame)."""
        return {
            "frames": [
                {"frame": i, **{k: v for k, v in f.to_dict().items() if k != "backends"}}
                for i, f in enumerate(self.frames)
            ],
            "frame_count": len(self.frames),
            "frames_with_face": sum(1 for f in self.frames if f.faces),
            "fps": self.fps,
            "timings_ms": dict(self.timings_ms),
            "backends": dict(self.backends),
        }


def detect_frames(
    frames: Sequence[np.ndarray], detector: MTCNNDetector, timer: Timer
) -> list[Detections]:
    """Faces of every frame (one detector pass per frame; stage ``detect``)."""
    with timer("detect"):
        return [detector.detect(frame) for frame in frames]


def analyze_frames(
    frames: Sequence[np.ndarray],
    detections: Sequence[Detections],
    heads: Sequence[FaceHead],
    backends: dict[str, str],
    timer: Timer,
) -> VideoPrediction:
    """Every face family on every frame's detections, each batched over all faces of the clip.

    Per-frame results carry no timings of their own (their stages ran batched); the clip's
    ``timings_ms`` holds each stage's total.
    """
    counts = [len(found) for found in detections]
    fields: list[list[dict[str, Any]]] = [[{} for _ in range(c)] for c in counts]
    for head in heads:
        with timer(head.stage):
            crops = [
                head.crops(frame, found.boxes)
                for frame, found in zip(frames, detections, strict=True)
                if len(found)
            ]
            if not crops:
                continue
            outputs = head.infer(np.concatenate(crops))
            offset = 0
            for frame_fields, count in zip(fields, counts, strict=True):
                if count:
                    part = {k: v[offset : offset + count] for k, v in outputs.items()}
                    head.fill(part, frame_fields)
                    offset += count
    per_frame = tuple(
        FacePrediction(
            faces=make_faces(found, frame_fields),
            image_size=(int(frame.shape[1]), int(frame.shape[0])),
            backends=dict(backends),
        )
        for frame, found, frame_fields in zip(frames, detections, fields, strict=True)
    )
    timings = timer.finish()
    work = timings["total"] - timings.get("decode", 0.0)
    fps = len(frames) / (work / 1e3) if work > 0 else 0.0
    return VideoPrediction(per_frame, fps, timings, dict(backends))
