"""av-fbp on AFEW (``edge-sdk train av-fbp --data afew:PATH --face-caf BUNDLE``).

The data set adapter of the ``av-fbp`` family. A clip's inputs are made as
:class:`edge_sdk.pipelines.audio_video.AudioVideoPipeline` makes them at run time:

* audio: the clip's WAV (``media_of``: ``<clip stem>.wav`` beside the ``.avi``, as
  ``check accuracy`` finds it) through ``audio_log_mel`` with the family's MelConfig; a clip
  outside the exported ``frames`` profile (0.5 to 8 s) is unreadable, as deployed;
* video: ``load_frames``, the shared MTCNN detector (the default bundle's, as a Recognizer of
  a face-caf and an av-fbp bundle uses), then
  :func:`~edge_sdk.pipelines.audio_video.clip_face_features` with the face bundle's own
  encoder, run by the runtime that deployment runs it with.

The face bundle is named once, by :func:`pair_face_encoder`, which returns the config to
train with: ``face_dim`` set to the bundle's feature width and its digest recorded
(``face_encoder``), so the checkpoint's config, the exported manifest and the Recognizer's
pairing check all name the very bundle whose features the model learnt. The features of a
clip do not change during training, so each process computes them once per clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edge_sdk.datasets.afew import AFEW_LABELS
from edge_sdk.datasets.samples import Sample
from edge_sdk.errors import BundleError, InputError
from edge_sdk.manifest import DimRange
from edge_sdk.models.families import DatasetTraining
from edge_sdk.preprocess.audio import MelConfig

FEATURES_OUTPUT = "features"  # face-caf's per-face embedding
AUDIO_SECONDS = (0.5, 2.0, 8.0)  # min / opt / max clip length of the graphs' frames profile
VIDEO_FRAMES = DimRange(1, 16, 256)  # the audio_video graph's video_frames profile


def mel_frames(seconds: float, mel: MelConfig) -> int:
    """Number of log-mel frames :func:`log_mel` gives for ``seconds`` of audio."""
    samples = max(round(seconds * mel.sample_rate), mel.n_fft)
    return 1 + (samples - mel.n_fft) // mel.hop_length


def frame_range(mel: MelConfig) -> DimRange:
    """The ``frames`` profile of the exported graphs (AUDIO_SECONDS of audio)."""
    return DimRange(*(mel_frames(s, mel) for s in AUDIO_SECONDS))


def pair_face_encoder(config: Any, face_bundle: str | Path) -> Any:
    """The config to train av-fbp with on the features of ``face_bundle`` (module docs).

    Args:
        config: a size name (``"tiny"``, ``"edge"``), JSON file or AvFbpConfig.
        face_bundle: the face-caf bundle (directory or ModelBundle) to deploy beside it.

    Raises:
        BundleError: the bundle has no per-face ``features`` output.
    """
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import resolve_config

    bundle = face_bundle if isinstance(face_bundle, ModelBundle) else ModelBundle.load(face_bundle)
    widths = [
        t.shape[-1]
        for g in bundle.manifest.graphs
        for t in g.outputs
        if t.name == FEATURES_OUTPUT and isinstance(t.shape[-1], int)
    ]
    if not widths:
        raise BundleError(
            f"{bundle.root} ({bundle.manifest.family}) has no per-face '{FEATURES_OUTPUT}' "
            "output for av-fbp's video stream; give a face-caf bundle"
        )
    base = resolve_config(get_family("av-fbp").recipe, config)
    return dataclasses.replace(
        base,
        face_dim=int(widths[0]),
        face_encoder=bundle.digest,
        face_encoder_family=bundle.manifest.family,
        face_bundle=str(Path(bundle.root).resolve()),
    )


@lru_cache(maxsize=2)
def _recognizer(path: str, digest: str) -> Any:
    """The face bundle opened as deployed (its digest pinned), once per process."""
    from edge_sdk.api import load

    return load(path, digest=digest)


_FEATURES: dict[tuple[str, str, int, int], np.ndarray] = {}


def clip_features(config: Any, video: str) -> np.ndarray:
    """(used frames, D) face features of a clip, computed once per process."""
    from edge_sdk.pipelines.audio_video import clip_face_features
    from edge_sdk.pipelines.common import Timer
    from edge_sdk.pipelines.video import detect_frames
    from edge_sdk.preprocess.video import load_frames

    stat = Path(video).stat()
    key = (config.face_encoder, str(video), stat.st_size, stat.st_mtime_ns)
    if key not in _FEATURES:
        recognizer = _recognizer(config.face_bundle, config.face_encoder)
        encoder = next(h for h in recognizer.face_heads if h.feature_dim == config.face_dim)
        frames = load_frames(video)
        detections = detect_frames(frames, recognizer.detector, Timer())
        _FEATURES[key] = clip_face_features(
            encoder, frames, detections, VIDEO_FRAMES.max, config.face_dim
        )
    return _FEATURES[key]


def _clip(config: Any, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(n_mels, frames) log-mel and (used frames, D) face features of one clip."""
    from edge_sdk.checks.accuracy.routing import media_of
    from edge_sdk.preprocess.audio import audio_log_mel
    from edge_sdk.training.faces import UnreadableSampleError

    wav, video = media_of(sample)
    try:
        if wav is None:
            raise InputError("no .wav beside the clip (audio is read from WAV files)")
        mel = audio_log_mel(wav, config.mel())
        allowed = frame_range(config.mel())
        if not allowed.min <= mel.shape[1] <= allowed.max:
            raise InputError(
                f"audio of {mel.shape[1]} log-mel frames is outside the exported "
                f"{allowed.min}-{allowed.max}"
            )
        features = (
            np.zeros((0, config.face_dim), np.float32)
            if video is None
            else clip_features(config, video)
        )
    except (InputError, OSError) as exc:
        raise UnreadableSampleError(sample.source, str(exc)) from exc
    return mel, features


def av_batch(
    config: Any, samples: Sequence[Sample], augment: bool, rng: np.random.Generator
) -> dict[str, Tensor]:
    """Right-padded log-mels and face features with their lengths / masks, and labels.

    No augmentation: the review names none for av-fbp, and the modality dropout of the loss
    already trains the audio-only path.
    """
    if not config.face_encoder:
        raise InputError(
            "av-fbp trains on a data set with the features of the face bundle it will be "
            "deployed beside: pair it first (pair_face_encoder(config, FACE_CAF_BUNDLE), "
            "--face-caf BUNDLE)"
        )
    clips = [_clip(config, s) for s in samples]
    frames = max(m.shape[1] for m, _ in clips)
    faces = max([1] + [f.shape[0] for _, f in clips])
    mel = np.zeros((len(clips), 1, config.n_mels, frames), dtype=np.float32)
    features = np.zeros((len(clips), faces, config.face_dim), dtype=np.float32)
    face_mask = np.zeros((len(clips), faces), dtype=bool)
    for i, (m, f) in enumerate(clips):
        mel[i, 0, :, : m.shape[1]] = m
        features[i, : f.shape[0]] = f
        face_mask[i, : f.shape[0]] = True
    return {
        "mel": torch.from_numpy(mel),
        "mel_lengths": torch.tensor([m.shape[1] for m, _ in clips], dtype=torch.int64),
        "face_features": torch.from_numpy(features),
        "face_mask": torch.from_numpy(face_mask),
        "labels": torch.tensor([s.label for s in samples], dtype=torch.int64),
    }


def av_predict(model: Any, batch: dict[str, Tensor]) -> np.ndarray:
    """(n, 7) probabilities as the pipeline gives them: each clip unpadded, through the
    fused graph when a frame had a face, else the ``audio_only`` graph."""
    rows = []
    for i, length in enumerate(batch["mel_lengths"].tolist()):
        a = model.audio_embedding(batch["mel"][i : i + 1, :, :, :length])
        used = int(batch["face_mask"][i].sum())
        if used:
            v = model.video_embedding(batch["face_features"][i : i + 1, :used])
            rows.append(model.fused_logits(a, v))
        else:
            rows.append(model.audio_head(a))
    return torch.softmax(torch.cat(rows).double(), dim=-1).detach().cpu().numpy()


def afew_labels(config: Any) -> tuple[str, ...]:
    """The 7 AFEW classes, the logits' order."""
    return AFEW_LABELS


DATASETS = DatasetTraining(
    task="classification",
    formats=("afew",),
    labels=afew_labels,
    batch_from_samples=av_batch,
    predict=av_predict,
    main_metric="war",  # EmotiW reports accuracy
)
