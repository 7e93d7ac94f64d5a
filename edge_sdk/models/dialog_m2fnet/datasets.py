"""M2FNet on labelled conversations (``edge-sdk train dialog-m2fnet --data meld:PATH``).

The data set adapter of the ``dialog-m2fnet`` family (:class:`DatasetTraining`): MELD and
IEMOCAP utterances, regrouped into their dialogs in utterance order and cut, like
``check accuracy``'s dialog route, into chunks of at most ``max_utterances``; each chunk is
one row of the batch. Every modality is prepared as :class:`edge_sdk.pipelines.dialog.
DialogPipeline` prepares it at run time, with the same functions:

* text: the bundle's tokenizer (:func:`~edge_sdk.models.dialog_m2fnet.text.tokenize`); empty
  or whitespace-only text is an absent modality (``Utterance.modalities``);
* audio: the utterance's WAV (``media_of``: the sample's ``.wav``, else ``<clip stem>.wav``
  beside its clip, as ``check accuracy`` finds it) through ``audio_log_mel`` with the
  family's MelConfig; longer than ``max_audio_frames`` is unreadable, as deployed;
* visual: the clip's frames (``load_frames``), at most ``max_frames`` spread by
  ``subsample``, the shared MTCNN detector of the default bundle (the detector a Recognizer
  uses when no loaded bundle has one), the scene and the ``max_faces`` most confident faces
  cut by ``face_tensor`` under the bundle's Preprocessing, face areas over frame area.

Training batches get the paper's audio augmentation inside the model (training mode only,
:mod:`edge_sdk.models.dialog_m2fnet.augment`). :func:`predict_as_deployed` runs the four
parts as the pipeline chains its four graphs (the audio encoder once per group of equal
length, unpadded), so validation scores what ``check accuracy`` scores on the bundle:
weighted F1, WAR and UAR over utterances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edge_sdk.datasets.samples import Sample
from edge_sdk.errors import InputError
from edge_sdk.manifest import Preprocessing
from edge_sdk.models.dialog_m2fnet.data import IGNORE
from edge_sdk.models.dialog_m2fnet.modules import M2FNet, M2FNetConfig, mel_config

FORMATS = ("meld", "iemocap")
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


def preprocessing_for(config: M2FNetConfig) -> dict[str, Preprocessing]:
    """The bundle's ``scene`` and ``face`` Preprocessing (written by ``export_build``)."""
    image = {"scale": 1.0 / 255.0, "mean": IMAGE_MEAN, "std": IMAGE_STD, "layout": "NCHW"}
    return {
        "scene": Preprocessing(size=(config.scene_size,) * 2, color="rgb", **image),
        "face": Preprocessing(
            size=(config.face_size,) * 2, color="rgb", crop={"square": True}, **image
        ),
    }


def dialog_key(sample: Sample) -> str:
    """The conversation a sample belongs to: MELD reuses dialogue ids across its splits."""
    return f"{sample.split or ''}/{sample.dialog_id}"


def _utterance_order(sample: Sample) -> tuple[float, str]:
    """MELD numbers utterances; IEMOCAP's turn names do not sort in time, its start does."""
    if sample.utterance_id is not None and sample.utterance_id.isdigit():
        return float(sample.utterance_id), ""
    return (sample.start if sample.start is not None else 0.0), str(sample.utterance_id)


def dialog_chunks(samples: Sequence[Sample], max_utterances: int) -> list[list[int]]:
    """Sample indices per batch row: each dialog in utterance order, cut into chunks of at
    most ``max_utterances`` (``check accuracy``'s chunks)."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        if sample.dialog_id is None:
            raise InputError(f"{sample.source}: not part of a dialog (no dialog id)")
        groups.setdefault(dialog_key(sample), []).append(i)
    rows = []
    for members in groups.values():
        members.sort(key=lambda i: _utterance_order(samples[i]))
        rows += [members[i : i + max_utterances] for i in range(0, len(members), max_utterances)]
    return rows


@lru_cache(maxsize=1)
def shared_detector() -> Any:
    """The MTCNN detector a Recognizer falls back to (the default bundle's), once a process."""
    from edge_sdk.defaults import default_bundle
    from edge_sdk.device import DeviceProbe
    from edge_sdk.pipelines.face import open_detector

    return open_detector(default_bundle(), DeviceProbe().probe())[0]


def _unreadable(sample: Sample, exc: Exception) -> Exception:
    from edge_sdk.training.faces import UnreadableSampleError

    return UnreadableSampleError(sample.source, str(exc))


def _mel(config: M2FNetConfig, sample: Sample, wav: str) -> np.ndarray:
    from edge_sdk.preprocess.audio import audio_log_mel

    try:
        mel = audio_log_mel(wav, mel_config(config))
    except (InputError, OSError) as exc:
        raise _unreadable(sample, exc) from exc
    if mel.shape[1] > config.max_audio_frames:
        raise _unreadable(
            sample, InputError(f"audio longer than {config.max_audio_frames} log-mel frames")
        )
    return mel


def _clip(config: M2FNetConfig, sample: Sample, video: str) -> list[np.ndarray]:
    from edge_sdk.preprocess.video import load_frames, subsample

    try:
        frames = load_frames(video, name=f"{sample.source} frames")
    except (InputError, OSError) as exc:
        raise _unreadable(sample, exc) from exc
    return [frames[j] for j in subsample(len(frames), config.max_frames)]


def visual_inputs(config: M2FNetConfig, clips: Sequence[list[np.ndarray]]) -> dict[str, Any]:
    """The ``visual_encoder`` feeds of these clips, as ``DialogPipeline._visual`` builds them."""
    from edge_sdk.preprocess.face import face_tensor

    prep = preprocessing_for(config)
    scene_prep, face_prep = dataclasses.replace(prep["scene"], crop={}), prep["face"]
    detector = shared_detector()
    found = [[detector.detect(frame) for frame in clip] for clip in clips]
    count = len(clips)
    frames_n = max([len(c) for c in clips] + [1])
    faces_n = max([1] + [min(len(d), config.max_faces) for ds in found for d in ds])
    s, fs = scene_prep.size, face_prep.size
    out = {
        "scene": np.zeros((count, frames_n, 3, *s), dtype=np.float32),
        "frame_mask": np.zeros((count, frames_n), dtype=np.float32),
        "faces": np.zeros((count, frames_n, faces_n, 3, *fs), dtype=np.float32),
        "face_areas": np.zeros((count, frames_n, faces_n), dtype=np.float32),
        "face_mask": np.zeros((count, frames_n, faces_n), dtype=np.float32),
    }
    for u, (clip, detections) in enumerate(zip(clips, found, strict=True)):
        for f, (frame, det) in enumerate(zip(clip, detections, strict=True)):
            height, width = frame.shape[:2]
            whole = np.array([[0, 0, width, height]], dtype=np.float32)
            out["scene"][u, f] = face_tensor(frame, whole, scene_prep)[0]
            out["frame_mask"][u, f] = 1.0
            order = np.argsort(-det.scores, kind="stable")[: config.max_faces]
            if order.size:
                boxes = det.boxes[order]
                out["faces"][u, f, : order.size] = face_tensor(frame, boxes, face_prep)
                box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                out["face_areas"][u, f, : order.size] = np.clip(box_area / (width * height), 0, 1)
                out["face_mask"][u, f, : order.size] = 1.0
    return out


def _utterance_media(
    config: M2FNetConfig, samples: Sequence[Sample]
) -> tuple[list[np.ndarray | None], list[list[np.ndarray] | None]]:
    """Each utterance's log-mel and frames (None where the data set has none)."""
    from edge_sdk.checks.accuracy.routing import media_of

    mels: list[np.ndarray | None] = []
    clips: list[list[np.ndarray] | None] = []
    for sample in samples:
        wav, video = media_of(sample)
        mels.append(None if wav is None else _mel(config, sample, wav))
        clips.append(None if video is None else _clip(config, sample, video))
    return mels, clips


def dialog_batch(
    config: M2FNetConfig, samples: Sequence[Sample], augment: bool, rng: np.random.Generator
) -> dict[str, Tensor]:
    """Samples -> the recipe's batch (dialog chunks as rows) plus ``order``: the flat
    (row * width + position) of each given sample, in the given order.

    ``augment`` needs nothing here: the model augments the log-mels in training mode.
    """
    from edge_sdk.models.dialog_m2fnet.text import tokenize
    from edge_sdk.pipelines.dialog_input import Utterance

    rows = dialog_chunks(samples, config.max_utterances)
    width = max(len(r) for r in rows)
    slots = len(rows) * width
    flat: list[int | None] = [None] * slots  # sample index of each (row, position)
    order = np.zeros(len(samples), dtype=np.int64)
    for r, members in enumerate(rows):
        for p, i in enumerate(members):
            flat[r * width + p] = i
            order[i] = r * width + p
    mels, clips = _utterance_media(config, samples)
    presence = np.zeros((slots, 3), dtype=np.float32)
    labels = np.full(slots, IGNORE, dtype=np.int64)
    texts = [""] * slots
    for slot, i in enumerate(flat):
        if i is None:
            continue
        sample = samples[i]
        utterance = Utterance(text=sample.text, audio=mels[i], frames=clips[i])
        presence[slot] = utterance.modalities()
        if not presence[slot].any():
            raise _unreadable(sample, InputError("no text, no audio and no clip"))
        texts[slot] = sample.text if presence[slot, 0] else ""
        labels[slot] = -1 if sample.label is None else sample.label
    if (labels == -1).any():
        raise InputError("dialog-m2fnet trains on labelled utterances only")
    tokens = tokenize(texts, config.text_model, config.max_tokens)
    frames = max([m.shape[1] for m in mels if m is not None] + [1])
    mel = np.zeros((slots, config.n_mels, frames), dtype=np.float32)
    mel_mask = np.zeros((slots, frames), dtype=np.float32)
    with_clip = [slot for slot, i in enumerate(flat) if i is not None and clips[i] is not None]
    for slot, i in enumerate(flat):
        if i is not None and mels[i] is not None:
            mel[slot, :, : mels[i].shape[1]] = mels[i]
            mel_mask[slot, : mels[i].shape[1]] = 1.0
    visual = visual_inputs(config, [clips[flat[s]] for s in with_clip])  # type: ignore[index,misc]
    padded = {k: np.zeros((slots, *v.shape[1:]), dtype=np.float32) for k, v in visual.items()}
    for k, v in visual.items():
        padded[k][with_clip] = v
    batch = {
        **tokens,
        "mel": mel,
        "mel_mask": mel_mask,
        **padded,
        "modality_mask": presence.reshape(len(rows), width, 3),
        "utterance_mask": (np.asarray(flat, dtype=object) != None)  # noqa: E711
        .astype(np.float32)
        .reshape(len(rows), width),
        "labels": labels.reshape(len(rows), width),
        "order": order,
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def _audio_as_deployed(model: M2FNet, mel: Tensor, mel_mask: Tensor) -> Tensor:
    """Audio features per utterance, each group of equal length run unpadded (as deployed)."""
    out = torch.zeros((mel.shape[0], model.config.audio_dim), dtype=mel.dtype)
    lengths = mel_mask.sum(-1).long().tolist()
    for length in sorted(set(lengths) - {0}):
        members = [i for i, n in enumerate(lengths) if n == length]
        clip = mel[members][:, :, :length]
        out[members] = model.audio(clip, torch.ones(len(members), length, dtype=mel.dtype))
    return out


def predict_as_deployed(model: M2FNet, batch: dict[str, Tensor]) -> np.ndarray:
    """(n, 7) probabilities of the given samples, the four parts chained as the pipeline
    chains the four graphs (absent modalities hold zeros that the mask hides)."""
    dialogs, width = batch["utterance_mask"].shape
    present = batch["modality_mask"].reshape(-1, 3)
    text = model.text(batch["input_ids"], batch["attention_mask"]) * present[:, :1]
    audio = _audio_as_deployed(model, batch["mel"], batch["mel_mask"]) * present[:, 1:2]
    visual = model.visual(
        batch["scene"], batch["frame_mask"], batch["faces"], batch["face_areas"],
        batch["face_mask"],
    ) * present[:, 2:]  # fmt: skip

    def per_dialog(x: Tensor) -> Tensor:
        return x.reshape(dialogs, width, -1)

    logits = model.dialog(
        per_dialog(text), per_dialog(audio), per_dialog(visual), batch["modality_mask"],
        batch["utterance_mask"],
    )  # fmt: skip
    flat = logits.reshape(dialogs * width, -1)[batch["order"]]
    return torch.softmax(flat.double(), dim=-1).detach().cpu().numpy()
