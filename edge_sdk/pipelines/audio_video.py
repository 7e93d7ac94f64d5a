"""Audio and audio-video pipeline (av-fbp): a clip's emotion from its sound and faces.

Audio: any WAV file or array at any sample rate and channel layout -> mono -> resampled to the
bundle's rate -> the log-mel front-end the model was trained with
(:func:`edge_sdk.preprocess.audio.audio_log_mel`, settings from ``config["mel"]``).

Video: frames -> the shared face detector -> per frame the most confident face -> the face
encoder of a face family loaded beside this bundle (its per-face embedding, e.g. face-caf's
``features``, whose width must equal ``config["face_features"]["dim"]``) -> (frames, D).
Frames without a face are left out (the exported graph takes an unpadded clip); a clip with
no face at all, or a call without video, runs the ``audio_only`` graph (the bundle's
documented fallback) and the result says why. Longer clips than the graph's profile are
subsampled evenly to its ``video_frames`` maximum; audio must lie within the ``frames``
profile (0.5 to 8 s for the shipped configs), else InputError. Before any resampling a clip
is also held to ``max_audio_seconds`` (default
:data:`~edge_sdk.preprocess.audio.MAX_AUDIO_SECONDS`; a constructor argument and attribute), so
a hostile rate or length is refused before the front-end allocates for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BundleError, InputError
from edge_sdk.manifest import Manifest
from edge_sdk.pipelines.base import AudioPipeline
from edge_sdk.pipelines.common import Timer, softmax
from edge_sdk.pipelines.detector import Detections
from edge_sdk.pipelines.face import FaceHead, categories
from edge_sdk.pipelines.registry import register_pipeline
from edge_sdk.preprocess.audio import AudioInput, MelConfig, audio_log_mel
from edge_sdk.preprocess.video import subsample

GRAPHS = ("audio_video", "audio_only")


@dataclass(frozen=True)
class AudioPrediction:
    """A clip's emotion from audio (and video when given).

    ``graph`` is the graph that ran (``audio_video`` or ``audio_only``); ``fallback`` says
    why audio alone was used (None when the fused graph ran). ``frames_used`` counts the video
    frames whose face features went into the fusion.
    """

    label: str
    probabilities: dict[str, float]
    graph: str
    fallback: str | None
    audio_seconds: float
    mel_frames: int
    video_frames: int
    frames_used: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "graph": self.graph,
            "fallback": self.fallback,
            "audio_seconds": self.audio_seconds,
            "mel_frames": self.mel_frames,
            "video_frames": self.video_frames,
            "frames_used": self.frames_used,
            "timings_ms": dict(self.timings_ms),
            "backends": dict(self.backends),
        }


def best_face(found: Detections) -> int | None:
    """Index of the most confident face of a frame, None when it has none."""
    return int(np.argmax(found.scores)) if len(found) else None


class FaceEncoderMismatchError(BundleError):
    """An av-fbp bundle trained on one face encoder's features, loaded beside another's."""


def clip_face_features(
    encoder: FaceHead,
    frames: Sequence[np.ndarray],
    detections: Sequence[Detections],
    max_frames: int,
    dim: int,
) -> np.ndarray:
    """(used frames, D) features of each frame's most confident face, at most ``max_frames``
    frames spread evenly; frames without a face are left out. The av-fbp pipeline and its
    training adapter both call this, so training sees the deployed features."""
    keep = subsample(len(frames), max_frames)
    crops = [
        encoder.crops(frames[i], detections[i].boxes[best : best + 1])
        for i in keep
        if (best := best_face(detections[i])) is not None
    ]
    if not crops:
        return np.zeros((0, dim), dtype=np.float32)
    return encoder.features(encoder.infer(np.concatenate(crops))).astype(np.float32)


@register_pipeline("av-fbp")
class AudioVideoPipeline(AudioPipeline):
    """av-fbp: log-mel + per-frame face features -> ``audio_video`` or ``audio_only``."""

    modality = "audio"
    opens = GRAPHS

    def configure(self, manifest: Manifest) -> None:
        config = manifest.config
        try:
            self.mel = MelConfig(**config["mel"])
            self.face_dim = int(config["face_features"]["dim"])
            # set when trained on a data set: the face bundle whose features it learnt
            self.encoder_digest = config["face_features"].get("encoder_digest")
            self.encoder_family = config["face_features"].get("encoder_family")
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"{self.family} config lacks mel/face_features: {exc}") from exc

    def start(self, bundle: ModelBundle, backend: str | None) -> None:
        fused = self.graphs["audio_video"]
        self.frame_range = fused.dims["frames"]
        self.max_video_frames = fused.dims["video_frames"].max
        self.encoder: FaceHead | None = None
        self.encoder_backends: dict[str, str] = {}

    def bind_encoder(self, heads: Sequence[FaceHead]) -> None:
        """Take the first face family whose embedding width equals ``face_features.dim``.

        A bundle trained on one face bundle's features (``face_features.encoder_digest``)
        takes only that bundle: another bundle of that family is refused
        (:class:`FaceEncoderMismatchError` naming both digests), since other features would
        give silently wrong answers.
        """
        if self.encoder_digest:
            same = [h for h in heads if getattr(h, "family", None) == self.encoder_family]
            for head in same:
                if getattr(head, "digest", None) == self.encoder_digest:
                    self.encoder, self.encoder_backends = head, dict(head.backends)
                    return
            if same:
                raise FaceEncoderMismatchError(
                    f"{self.family} was trained on the features of {self.encoder_family} "
                    f"bundle {self.encoder_digest}, but {self.encoder_family} bundle "
                    f"{getattr(same[0], 'digest', None)} is loaded beside it: load the "
                    f"{self.encoder_family} bundle it was trained with (or retrain)"
                )
            return
        for head in heads:
            if head.feature_dim == self.face_dim:
                self.encoder, self.encoder_backends = head, dict(head.backends)
                return

    def mel_features(self, audio: AudioInput, timer: Timer) -> np.ndarray:
        """(1, 1, n_mels, frames) checked against the graph's frames profile."""
        with timer("audio"):
            mel = audio_log_mel(audio, self.mel, max_seconds=self.max_audio_seconds)
        frames, hop = mel.shape[1], self.mel.hop_length / self.mel.sample_rate
        if not self.frame_range.min <= frames <= self.frame_range.max:
            raise InputError(
                f"audio of {frames} log-mel frames (~{frames * hop:.2f} s) is outside what "
                f"{self.family} was exported for: {self.frame_range.min}-{self.frame_range.max} "
                f"frames (~{self.frame_range.min * hop:.2f}-{self.frame_range.max * hop:.2f} s)"
            )
        return mel[None, None]

    def face_features(
        self,
        frames: Sequence[np.ndarray],
        detections: Sequence[Detections],
        timer: Timer,
    ) -> np.ndarray:
        """(1, used frames, D) features of each frame's most confident face."""
        if self.encoder is None:
            raise BundleError(
                f"{self.family} needs per-frame face features of width {self.face_dim}: load a "
                f"face family whose embedding has that width (e.g. face-caf with feature_dim "
                f"{self.face_dim}) in the same Recognizer"
            )
        with timer("face_features"):
            features = clip_face_features(
                self.encoder, frames, detections, self.max_video_frames, self.face_dim
            )
            return features[None]

    def predict(
        self,
        audio: AudioInput,
        frames: Sequence[np.ndarray] | None = None,
        detections: Sequence[Detections] | None = None,
        timer: Timer | None = None,
    ) -> AudioPrediction:
        """Score one clip; ``frames`` with their ``detections`` (from the shared detector)."""
        timer = timer or Timer()
        mel = self.mel_features(audio, timer)
        features = None
        fallback = "no video given"
        if frames is not None:
            if detections is None or len(detections) != len(frames):
                raise InputError("frames need one detection result each")
            features = self.face_features(frames, detections, timer)
            fallback = None if features.shape[1] else "no face in any video frame"
        graph = "audio_only" if fallback else "audio_video"
        feeds = {"mel": mel} if fallback else {"mel": mel, "face_features": features}
        with timer("classify"):
            logits = self.sessions[graph].run(feeds)["logits"]
        label, probabilities = categories(self.labels, softmax(logits)[0])
        backends = {graph: self.backends[graph]}
        if not fallback:
            backends.update(self.encoder_backends)
        return AudioPrediction(
            label=label,
            probabilities=probabilities,
            graph=graph,
            fallback=fallback,
            audio_seconds=mel.shape[-1] * self.mel.hop_length / self.mel.sample_rate,
            mel_frames=int(mel.shape[-1]),
            video_frames=0 if frames is None else len(frames),
            frames_used=0 if features is None else int(features.shape[1]),
            timings_ms=timer.finish(),
            backends=backends,
        )
