"""The result of a multi-modality ``predict`` call (a face-only call returns its
FacePrediction): one typed result per modality given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_sdk.pipelines.audio_video import AudioPrediction
from edge_sdk.pipelines.dialog import DialogPrediction
from edge_sdk.pipelines.face import FacePrediction
from edge_sdk.pipelines.scene import ScenePrediction
from edge_sdk.pipelines.video import VideoPrediction


@dataclass(frozen=True)
class Prediction:
    """Typed results of one ``predict`` call, one field per modality given (others None).

    ``timings_ms`` holds each modality's total and the call's ``total``; every modality's
    result has its own per-stage timings and the backend/precision of each graph it ran.
    """

    face: FacePrediction | None = None
    scene: ScenePrediction | None = None
    audio: AudioPrediction | None = None
    video: VideoPrediction | None = None
    dialog: DialogPrediction | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form with the modalities that ran."""
        out: dict[str, Any] = {
            name: result.to_dict()
            for name in ("face", "scene", "audio", "video", "dialog")
            if (result := getattr(self, name)) is not None
        }
        out["timings_ms"] = dict(self.timings_ms)
        return out
