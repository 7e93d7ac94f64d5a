"""Dialog pipeline (M2FNet): a conversation -> one emotion per utterance, re-scored as it grows.

A dialog is a list of :class:`Utterance` (text, optional audio, optional frames, optional
speaker). Each utterance is encoded once by the utterance-level graphs, batched over the
utterances of a call:

* text -> the bundle's tokenizer (checked against the manifest's record) -> ``text_encoder``;
* audio -> the shared log-mel front-end -> ``audio_encoder`` (batched by equal length: the
  encoder is not exactly padding-invariant, so no utterance is padded);
* frames -> at most ``max_frames`` evenly spread frames; per frame the scene (whole frame) and
  up to ``max_faces`` faces from the shared detector with their area / frame area ->
  ``visual_encoder`` (frames and faces padded, with masks).

Then ``dialog`` scores every utterance over the whole dialog. A modality an utterance lacks is
marked absent in ``modality_mask``: the graph replaces it by the learned "missing" embedding it
was trained with (random modality dropout), never by silent zeros. An utterance needs at least
one modality; text that is empty or only whitespace counts as absent. The speaker is carried
into the result (M2FNet does not model speakers).

:class:`RunningDialog` keeps each utterance's features, so adding an utterance encodes only
that one and re-runs the dialog graph over all of them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle, sha256_file
from edge_sdk.errors import BundleError, InputError
from edge_sdk.manifest import Manifest
from edge_sdk.pipelines.base import AudioPipeline
from edge_sdk.pipelines.common import Timer, run_batched, softmax
from edge_sdk.pipelines.detector import MTCNNDetector
from edge_sdk.pipelines.dialog_input import (
    MAX_DIALOG_BYTES,
    MAX_DIALOG_LINES,
    Utterance,
    read_dialog_jsonl,
)
from edge_sdk.pipelines.face import categories
from edge_sdk.pipelines.registry import register_pipeline
from edge_sdk.preprocess.audio import MelConfig, audio_log_mel
from edge_sdk.preprocess.face import face_tensor
from edge_sdk.preprocess.video import load_frames, subsample

GRAPHS = ("text_encoder", "audio_encoder", "visual_encoder", "dialog")
MODALITIES = ("text", "audio", "visual")


@dataclass(frozen=True)
class UtteranceResult:
    """The emotion of one utterance in the context of the dialog so far."""

    index: int
    speaker: str | None
    text: str | None
    label: str
    probabilities: dict[str, float]
    modalities: tuple[str, ...]
    faces: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "index": self.index,
            "speaker": self.speaker,
            "text": self.text,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "modalities": list(self.modalities),
            "faces": self.faces,
        }


@dataclass(frozen=True)
class DialogPrediction:
    """Every utterance's emotion, timings per stage and the backend of each graph."""

    utterances: tuple[UtteranceResult, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "utterances": [u.to_dict() for u in self.utterances],
            "utterance_count": len(self.utterances),
            "timings_ms": dict(self.timings_ms),
            "backends": dict(self.backends),
        }


@dataclass(frozen=True)
class EncodedUtterance:
    """Utterance-level features (absent modalities hold zeros that the mask hides)."""

    utterance: Utterance
    text: np.ndarray
    audio: np.ndarray
    visual: np.ndarray
    present: np.ndarray  # (3,) float32: text, audio, visual
    faces: int


def check_tokenizer(record: Mapping[str, Any], text_model: str) -> None:
    """Refuse a bundle whose tokenizer differs from the one this SDK would tokenize with."""
    from edge_sdk.models.dialog_m2fnet.text import minilm_dir, tiny_tokenizer_json

    kind = record.get("kind")
    if kind == "inline":
        if record.get("json") != tiny_tokenizer_json():
            raise BundleError("the bundle's inline tokenizer differs from the SDK's tiny one")
    elif kind == "package":
        path = minilm_dir().parent / str(record.get("path", ""))  # relative to the package
        if not path.is_file() or sha256_file(path) != record.get("sha256"):
            raise BundleError(f"tokenizer file {path} is missing or does not match the bundle")
    else:
        raise BundleError(f"unknown tokenizer record kind {kind!r} for {text_model}")


@register_pipeline("dialog-m2fnet")
class DialogPipeline(AudioPipeline):
    """M2FNet: utterance encoders (batched per call) + the dialog graph over all utterances."""

    modality = "dialog"
    opens = GRAPHS

    def configure(self, manifest: Manifest) -> None:
        config = manifest.config
        try:
            model = config["model"]
            self.mel = MelConfig(**config["mel"])
            self.text_model = str(model["text_model"])
            self.max_tokens = int(config.get("max_tokens", model["max_tokens"]))
            self.max_frames = int(model["max_frames"])
            self.max_faces = int(model["max_faces"])
            self.max_audio_frames = int(model["max_audio_frames"])
            self.max_utterances = int(model["max_utterances"])
            self.dims = {
                "text": int(model["text_dim"]),
                "audio": int(model["audio_dim"]),
                "visual": int(model["visual_dim"]),
            }
            tokenizer = config["tokenizer"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{self.family} config is incomplete: {exc!r}") from exc
        check_tokenizer(tokenizer, self.text_model)
        self.scene_prep = dataclasses.replace(manifest.preprocessing["scene"], crop={})
        self.face_prep = manifest.preprocessing["face"]

    def start(self, bundle: ModelBundle, backend: str | None) -> None:
        self.detector: MTCNNDetector | None = None
        self.detector_backends: dict[str, str] = {}

    def bind(self, detector: MTCNNDetector, backends: dict[str, str]) -> None:
        """Use the Recognizer's shared face detector for the utterances' faces."""
        self.detector, self.detector_backends = detector, dict(backends)

    # ------------------------------------------------------------------------------ encoding
    def _texts(self, utterances: Sequence[Utterance], rows: list[int]) -> np.ndarray:
        from edge_sdk.models.dialog_m2fnet.text import tokenize

        texts = [utterances[i].text or "" for i in rows]
        tokens = tokenize(texts, self.text_model, self.max_tokens)
        return run_batched(self.sessions["text_encoder"], self.graphs["text_encoder"], tokens)[
            "embeddings"
        ]

    def _audio(self, utterances: Sequence[Utterance], rows: list[int]) -> np.ndarray:
        mels = []
        for i in rows:
            try:
                mel = audio_log_mel(
                    utterances[i].audio, self.mel, max_seconds=self.max_audio_seconds
                )
            except InputError as exc:
                raise InputError(f"utterance {i}: {exc}") from exc
            if mel.shape[1] > self.max_audio_frames:
                seconds = self.max_audio_frames * self.mel.hop_length / self.mel.sample_rate
                raise InputError(
                    f"utterance {i}: audio longer than the {seconds:.1f} s "
                    f"({self.max_audio_frames} frames) this bundle was exported for"
                )
            mels.append(mel)
        # The audio encoder is not exactly padding-invariant (its second convolution sees the
        # first one's response to zeroed padding frames), so utterances are batched only with
        # others of the same length: an utterance's features never depend on its neighbours.
        out = np.zeros((len(mels), self.dims["audio"]), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for j, m in enumerate(mels):
            by_length.setdefault(m.shape[1], []).append(j)
        graph = self.graphs["audio_encoder"]
        for length, members in by_length.items():
            feeds = {
                "mel": np.stack([mels[j] for j in members]),
                "mel_mask": np.ones((len(members), length), dtype=np.float32),
            }
            values = run_batched(self.sessions["audio_encoder"], graph, feeds)["audio_features"]
            out[members] = values
        return out

    def _visual(
        self, utterances: Sequence[Utterance], rows: list[int], timer: Timer
    ) -> tuple[np.ndarray, list[int]]:
        if self.detector is None:
            raise InputError("no face detector is bound: frames cannot be analysed")
        clips = []
        for i in rows:
            frames = load_frames(utterances[i].frames, name=f"utterance {i} frames")
            clips.append([frames[j] for j in subsample(len(frames), self.max_frames)])
        with timer("detect"):
            found = [[self.detector.detect(frame) for frame in clip] for clip in clips]
        frames_n = max(len(c) for c in clips)
        faces_n = max(1, max(min(len(d), self.max_faces) for ds in found for d in ds))
        s, fs = self.scene_prep.size, self.face_prep.size
        scene = np.zeros((len(clips), frames_n, 3, *s), dtype=np.float32)
        frame_mask = np.zeros((len(clips), frames_n), dtype=np.float32)
        faces = np.zeros((len(clips), frames_n, faces_n, 3, *fs), dtype=np.float32)
        areas = np.zeros((len(clips), frames_n, faces_n), dtype=np.float32)
        face_mask = np.zeros((len(clips), frames_n, faces_n), dtype=np.float32)
        counts = []
        with timer("visual_crops"):
            for u, (clip, detections) in enumerate(zip(clips, found, strict=True)):
                seen = 0
                for f, (frame, det) in enumerate(zip(clip, detections, strict=True)):
                    height, width = frame.shape[:2]
                    whole = np.array([[0, 0, width, height]], dtype=np.float32)
                    scene[u, f] = face_tensor(frame, whole, self.scene_prep)[0]
                    frame_mask[u, f] = 1.0
                    order = np.argsort(-det.scores, kind="stable")[: self.max_faces]
                    if order.size:
                        boxes = det.boxes[order]
                        faces[u, f, : order.size] = face_tensor(frame, boxes, self.face_prep)
                        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                        areas[u, f, : order.size] = np.clip(box_area / (width * height), 0, 1)
                        face_mask[u, f, : order.size] = 1.0
                        seen += int(order.size)
                counts.append(seen)
        feeds = {
            "scene": scene,
            "frame_mask": frame_mask,
            "faces": faces,
            "face_areas": areas,
            "face_mask": face_mask,
        }
        graph = self.graphs["visual_encoder"]
        out = run_batched(self.sessions["visual_encoder"], graph, feeds)
        return out["visual_features"], counts

    def encode(
        self, utterances: Sequence[Utterance], timer: Timer | None = None
    ) -> list[EncodedUtterance]:
        """Utterance-level features for each utterance (each encoder batched over them)."""
        timer = timer or Timer()
        if not utterances:
            raise InputError("a dialog needs at least one utterance (got 0)")
        presence = np.array([u.modalities() for u in utterances], dtype=bool)
        for i, row in enumerate(presence):
            if not row.any():
                raise InputError(
                    f"utterance {i} has no modality: give text (non-empty), audio or frames"
                )
        count = len(utterances)
        features = {m: np.zeros((count, self.dims[m]), dtype=np.float32) for m in MODALITIES}
        faces = [0] * count
        for column, modality in enumerate(MODALITIES):
            rows = [i for i in range(count) if presence[i, column]]
            if not rows:
                continue
            with timer(modality):
                if modality == "visual":
                    values, counts = self._visual(utterances, rows, timer)
                    for i, c in zip(rows, counts, strict=True):
                        faces[i] = c
                elif modality == "audio":
                    values = self._audio(utterances, rows)
                else:
                    values = self._texts(utterances, rows)
            features[modality][rows] = values
        return [
            EncodedUtterance(
                utterances[i],
                features["text"][i],
                features["audio"][i],
                features["visual"][i],
                presence[i].astype(np.float32),
                faces[i],
            )
            for i in range(count)
        ]

    def score(
        self, encoded: Sequence[EncodedUtterance], timer: Timer | None = None
    ) -> DialogPrediction:
        """Run the dialog graph over all encoded utterances."""
        timer = timer or Timer()
        if not encoded:
            raise InputError("a dialog needs at least one utterance (got 0)")
        if len(encoded) > self.max_utterances:
            raise InputError(
                f"dialog has {len(encoded)} utterances; {self.family} scores at most "
                f"{self.max_utterances} (start a new dialog or export a larger max_utterances)"
            )
        feeds = {
            "text_features": np.stack([e.text for e in encoded])[None],
            "audio_features": np.stack([e.audio for e in encoded])[None],
            "visual_features": np.stack([e.visual for e in encoded])[None],
            "modality_mask": np.stack([e.present for e in encoded])[None],
            "utterance_mask": np.ones((1, len(encoded)), dtype=np.float32),
        }
        with timer("dialog"):
            logits = self.sessions["dialog"].run(feeds)["logits"][0]
        results = []
        for i, (item, probs) in enumerate(zip(encoded, softmax(logits), strict=True)):
            label, probabilities = categories(self.labels, probs)
            present = tuple(m for m, p in zip(MODALITIES, item.present, strict=True) if p)
            results.append(
                UtteranceResult(
                    index=i,
                    speaker=item.utterance.speaker,
                    text=item.utterance.text,
                    label=label,
                    probabilities=probabilities,
                    modalities=present,
                    faces=item.faces,
                )
            )
        backends = dict(self.backends)
        if any(e.present[2] for e in encoded):
            backends.update(self.detector_backends)
        return DialogPrediction(tuple(results), timer.finish(), backends)

    def predict(self, dialog: Sequence[Any]) -> DialogPrediction:
        """Encode every utterance and score the dialog."""
        utterances = to_utterances(dialog)
        timer = Timer()
        return self.score(self.encode(utterances, timer), timer)


def to_utterances(dialog: Any, base: Path | None = None) -> list[Utterance]:
    """A sequence of Utterance / mappings / strings -> list of Utterance (checked)."""
    if isinstance(dialog, RunningDialog):
        return dialog.utterances
    if isinstance(dialog, (str, bytes, Mapping)) or not isinstance(dialog, Sequence):
        raise InputError(
            f"a dialog is a list of utterances, got {type(dialog).__name__}"
        )
    if not dialog:
        raise InputError("a dialog needs at least one utterance (got 0)")
    return [Utterance.from_value(v, i, base) for i, v in enumerate(dialog)]


class RunningDialog:
    """A dialog that grows one utterance at a time and is re-scored after each.

    Each utterance is encoded once, when added; :meth:`add` then re-runs the dialog graph
    over every utterance so far (earlier utterances' emotions may change with the context).
    Safe to share between threads: additions are serialised.
    """

    def __init__(self, pipeline: DialogPipeline) -> None:
        self.pipeline = pipeline
        self._encoded: list[EncodedUtterance] = []
        self._lock = threading.Lock()

    @property
    def utterances(self) -> list[Utterance]:
        """The utterances so far."""
        with self._lock:
            return [e.utterance for e in self._encoded]

    def __len__(self) -> int:
        return len(self._encoded)

    def add(self, utterance: Any) -> DialogPrediction:
        """Append one utterance (Utterance, mapping or text) and re-score the dialog."""
        with self._lock:
            item = Utterance.from_value(utterance, len(self._encoded))
            if len(self._encoded) >= self.pipeline.max_utterances:
                raise InputError(
                    f"the dialog already has {len(self._encoded)} utterances, the most "
                    f"{self.pipeline.family} scores; start a new dialog"
                )
            timer = Timer()
            encoded = self.pipeline.encode([item], timer)
            prediction = self.pipeline.score([*self._encoded, *encoded], timer)
            self._encoded.extend(encoded)
            return prediction

    def predict(self) -> DialogPrediction:
        """Re-score the dialog as it stands (no new encoding)."""
        with self._lock:
            return self.pipeline.score(self._encoded)


__all__ = [
    "DialogPipeline",
    "DialogPrediction",
    "EncodedUtterance",
    "MAX_DIALOG_BYTES",
    "MAX_DIALOG_LINES",
    "RunningDialog",
    "Utterance",
    "UtteranceResult",
    "check_tokenizer",
    "read_dialog_jsonl",
    "to_utterances",
]
