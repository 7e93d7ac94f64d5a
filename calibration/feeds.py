"""Feeds per graph from whatever data the user has: the one feed source of the SDK.

Every source returns the same thing, :class:`CollectedFeeds`: for each graph, a list of
single-sample feeds as the graph sees them in deployment, plus a hash of the data (and, from
an ``.npz``, optional labels). ``edge-sdk calibrate`` and ``edge-sdk verify --data`` both
read ``--data`` here (:func:`edge_sdk.checks.feeds.load_feeds` groups the samples into
runs). Sources never re-implement a family's preprocessing: images run through the FP32
pipeline with recording sessions, generated data comes from the family's own
``synthetic_batch``, and ``.npz`` files hold graph feeds that were recorded elsewhere.

Sources (``--data``), by the bundle pipeline's modality:
    face, scene: an image folder or list file;
    audio (audio-video): a WAV folder or list file; ``clip.mp4``/``.avi`` beside
        ``clip.wav`` makes it an audio-video clip;
    dialog: a JSONL file, one dialog a line (text, audio path, frames, speaker);
    ``synthetic``: the family's generated training distribution (recipe families).
    ``FILE.npz``: arrays named ``GRAPH/INPUT``, first axis = samples, plus optional
        ``GRAPH/OUTPUT:labels`` (:func:`calibration.sources.read_npz_feeds`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.reader import RecordingSession, split_batches
from calibration.sources import (
    AUDIO_SUFFIXES,
    VIDEO_SUFFIXES,
    files_sha256,
    image_paths,
    media_paths,
    read_npz_feeds,
    sample,
)
from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import InputError
from edge_sdk.pipelines.common import run_batched
from runtimes.base import Closing, Session
from runtimes.selection import open_graph

Feed = dict[str, np.ndarray]
RunGraph = Callable[[str, Feed], dict[str, np.ndarray]]


@dataclass(frozen=True)
class CollectedFeeds:
    """Single-sample feeds per graph and where they came from.

    Attributes:
        feeds: graph -> one feed per sample (batch axis of 1 kept).
        data_sha256: hash of the data drawn (the calibration record).
        source: ``modality:PATH``, ``synthetic`` or ``npz:PATH``.
        items: images, generated samples or npz rows drawn.
        labels: graph -> output -> integer classes, one entry per output row over the
            samples in order (only an ``.npz`` carries them).
    """

    feeds: dict[str, list[Feed]]
    data_sha256: str
    source: str
    items: int
    labels: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def count(self, graph: str) -> int:
        return len(self.feeds.get(graph, []))


class FP32Runner(Closing):
    """Runs any graph of a bundle in FP32 on ONNX Runtime's CPU provider: ``run(graph,
    feeds)``. Sessions open on first use; ``close`` (or the ``with`` block) frees them."""

    def __init__(self, bundle: ModelBundle, device: DeviceInfo) -> None:
        self._bundle, self._device = bundle, device
        self._sessions: dict[str, Session] = {}

    def __call__(self, graph: str, feeds: Feed) -> dict[str, np.ndarray]:
        if graph not in self._sessions:
            self._sessions[graph] = open_graph(
                self._bundle, graph, self._device, backend="ort-cpu", precision="fp32"
            )
        spec = self._bundle.manifest.graph(graph)
        return run_batched(self._sessions[graph], spec, feeds)

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


def fp32_runner(bundle: ModelBundle, device: DeviceInfo) -> FP32Runner:
    """Run any graph of ``bundle`` in FP32 on ONNX Runtime's CPU provider (opened lazily)."""
    return FP32Runner(bundle, device)


def _image_calls(data: str, modality: str) -> list[tuple[dict[str, Any], list[Path]]]:
    return [({modality: str(p)}, [p]) for p in image_paths(data)]


def _audio_calls(data: str, modality: str) -> list[tuple[dict[str, Any], list[Path]]]:
    """WAV files; a video with the same stem beside a WAV makes it an audio-video clip."""
    calls = []
    for wav in media_paths(data, AUDIO_SUFFIXES):
        video = next((v for v in map(wav.with_suffix, VIDEO_SUFFIXES) if v.is_file()), None)
        kwargs: dict[str, Any] = {"audio": str(wav)}
        if video is not None:
            kwargs["video"] = str(video)
        calls.append((kwargs, [wav] + ([video] if video else [])))
    return calls


def _dialog_calls(data: str, modality: str) -> list[tuple[dict[str, Any], list[Path]]]:
    """JSONL, one dialog a line: ``{"utterances": [{"text", "audio", "frames", "speaker"}]}``.

    ``audio`` and ``frames`` (a video file or a list of image files) are paths relative to
    the JSONL file.
    """
    path = Path(data)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        raise InputError(f"dialog calibration data must be a .jsonl file, got {path}")
    calls = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            turns = record["utterances"] if isinstance(record, dict) else record
            utterances = [_utterance(path.parent, turn) for turn in turns]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{number}: not a dialog ({exc})") from exc
        calls.append(({"dialog": utterances}, [path]))
    return calls


def _utterance(base: Path, turn: dict[str, Any]) -> dict[str, Any]:
    out = {"text": turn.get("text"), "speaker": turn.get("speaker")}
    if turn.get("audio"):
        out["audio"] = str(base / turn["audio"])
    frames = turn.get("frames")
    if isinstance(frames, str):
        out["frames"] = str(base / frames)
    elif frames:
        out["frames"] = [str(base / f) for f in frames]
    return out


# What ``--data`` holds for each pipeline modality, and how it becomes predict() calls.
_CALLS: dict[str, Callable[[str, str], list[tuple[dict[str, Any], list[Path]]]]] = {
    "face": _image_calls,
    "scene": _image_calls,
    "audio": _audio_calls,
    "dialog": _dialog_calls,
}


def pipeline_feeds(
    bundle: ModelBundle, device: DeviceInfo, data: str, count: int | None, seed: int
) -> CollectedFeeds:
    """Run the bundle's FP32 pipeline over sampled inputs, recording what every graph sees.

    The pipeline does its own preprocessing (detection, crops, resampling, log-mel,
    tokenisation), so calibration never keeps a second copy of it.
    """
    # TODO(lead): this is calibration's one import of the public API (a dependency-rule
    # breach, issue #14 item 5). Recording needs the Recognizer's composition (the shared
    # detector, bind/bind_encoder, predict's modality dispatch); once that lives in
    # edge_sdk.pipelines (api.Recognizer wrapping it), import it from there instead.
    from edge_sdk.api import Recognizer
    from edge_sdk.pipelines.registry import pipeline_class

    modality = pipeline_class(bundle).modality
    calls = sample(_CALLS[modality](data, modality), count, seed)
    recorders: dict[str, RecordingSession] = {}

    def record(name: str, session: Session) -> Session:
        recorders[name] = RecordingSession(session)
        return recorders[name]

    with Recognizer(
        bundle, device, backend="ort-cpu", precision="fp32", wrap=record, workers=1
    ) as recognizer:
        for kwargs, _ in calls:
            recognizer.predict(**kwargs)
    feeds = {name: split_batches(rec.feeds) for name, rec in recorders.items()}
    files = sorted({p for _, paths in calls for p in paths})
    return CollectedFeeds(feeds, files_sha256(files), f"{modality}:{data}", len(calls))


def _recipe_config(bundle: ModelBundle) -> tuple[Any, Any]:
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import config_from_json

    family = get_family(bundle.manifest.family)
    if family.recipe is None or "model" not in bundle.manifest.config:
        raise InputError(
            f"{bundle.manifest.family} has no generated training distribution; "
            "calibrate it with real data (an image folder or an .npz of feeds)"
        )
    config = config_from_json(family.recipe, json.dumps(bundle.manifest.config["model"]))
    return family.recipe, config


def _tensor_dict(batch: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in batch.items()}


def graph_feeds_from_batch(
    bundle: ModelBundle, batch: dict[str, np.ndarray], run: RunGraph
) -> dict[str, list[Feed]]:
    """Split a generated batch into single-sample feeds of every graph that can take it.

    A graph takes the batch when every input name is a batch key of matching dtype. A
    family whose graphs are chained (a dialog graph over encoder outputs) supplies
    ``calibration_feeds(batch, run)`` in its recipe module, which may run upstream graphs.
    """
    from edge_sdk.models.families import get_family

    family = get_family(bundle.manifest.family)
    hook = family.recipe.calibration_feeds if family.recipe else None
    if hook is not None:
        return {graph: split_batches([feed]) for graph, feed in hook(batch, run).items()}
    out: dict[str, list[Feed]] = {}
    for graph in bundle.manifest.graphs:
        names = [t.name for t in graph.inputs]
        if all(n in batch for n in names):
            typed = {t.name: batch[t.name].astype(t.dtype) for t in graph.inputs}
            out[graph.name] = split_batches([typed])
    return out


def synthetic_feeds(
    bundle: ModelBundle, device: DeviceInfo, count: int | None, seed: int
) -> CollectedFeeds:
    """Feeds drawn from the family's own generated distribution (``synthetic_batch``)."""
    import torch

    recipe, config = _recipe_config(bundle)
    total = count or 256
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    batch = _tensor_dict(recipe.synthetic_batch(config, rng, total))
    with fp32_runner(bundle, device) as run:
        feeds = graph_feeds_from_batch(bundle, batch, run)
    digest = hashlib.sha256(f"synthetic:{bundle.manifest.family}:{seed}:{total}".encode())
    return CollectedFeeds(feeds, digest.hexdigest(), "synthetic", total)


def npz_feeds(bundle: ModelBundle, data: str, count: int | None, seed: int) -> CollectedFeeds:
    """Feeds stored as ``GRAPH/INPUT`` arrays (first axis = samples) in an ``.npz`` file,
    with their ``GRAPH/OUTPUT:labels`` when the file has them; rows drawn by ``seed``."""
    feeds: dict[str, list[Feed]] = {}
    labels: dict[str, dict[str, np.ndarray]] = {}
    for graph, arrays in read_npz_feeds(data, bundle.manifest).items():
        rows = sample(range(arrays.samples), count, seed)
        feeds[graph] = arrays.feeds(rows)
        if arrays.labels:
            labels[graph] = arrays.labels_for(rows)
    items = max(map(len, feeds.values()))
    return CollectedFeeds(feeds, files_sha256([Path(data)]), f"npz:{data}", items, labels)


def collect_feeds(
    bundle: ModelBundle, device: DeviceInfo, data: str, count: int | None, seed: int
) -> CollectedFeeds:
    """Pick the source from ``data``: ``synthetic``, an ``.npz`` file, or images."""
    if data == "synthetic":
        return synthetic_feeds(bundle, device, count, seed)
    if data.endswith(".npz"):
        return npz_feeds(bundle, data, count, seed)
    return pipeline_feeds(bundle, device, data, count, seed)
