"""check_accuracy(): a labelled data set through a Recognizer, scored as each community reports.

The data set is read by :func:`edge_sdk.datasets.read_dataset` in its own label order; every
sample goes through the ``predict`` modality that fits it, and the answers are scored by
:func:`edge_sdk.metrics.compute_metrics` (WAR/UAR, macro/weighted F1 and the confusion matrix
for single-label sets; AP per class and mAP for multi-label ones; RMSE/PCC/CCC for
valence/arousal). The result is a structured object; nothing is printed.

Which modality (``AccuracyResult.modality``):

* ``dialog``: every sample has a ``dialog_id`` (MELD, IEMOCAP, JSONL) and a dialog family is
  loaded. Dialogs are grouped by :meth:`Dataset.dialogs` in utterance order and sent as
  ``predict(dialog=[Utterance(text, audio, frames, speaker), ...])``; a dialog longer than the
  family's ``max_utterances`` is scored in consecutive chunks of that length.
* images (``Sample.image``, FER2013's inline 48 x 48 grey face, or an image file):
  ``scene`` for CAER-S / EMOTIC and multi-label sets when a scene family is loaded, otherwise
  ``face``. ``face`` takes the largest detected face, or, when the sample has a face box
  (AffectNet, JSONL ``box``), the detected face whose centre lies in that box with the best
  overlap. ``scene`` passes the sample's box as the caller's box: EMOTIC's is the body box
  (its head box is the detected face whose centre lies inside it, else the head implied by
  the body box under the scene family's documented expansion, counted in ``notes``),
  AffectNet's a head box; without a box the largest detected head is taken.
* clips (audio or video files): ``audio`` with an audio-video family (the sample's ``.wav``,
  else ``<clip stem>.wav`` beside the video, plus the video when a face family gives the
  per-frame features the audio-video family fuses),
  else ``video``: per-frame faces with the largest face of each frame, probabilities
  (or valence/arousal) averaged over the frames that have one.

``faces="given"`` skips the detector for ``face``: the face heads run on the sample's box, or
on the whole image (FER2013 and RAF-DB aligned crops are already faces; published FER2013
figures feed the whole 48 x 48 image), each family applying its own crop rule.

Labels are matched by name (:func:`edge_sdk.datasets.labels.map_labels`: case and synonyms,
so MELD's "joy" meets "happy"). A data set label with samples that the bundle lacks is an
:class:`InputError` before anything runs, unless ``label_map`` merges it (``{"contempt":
"disgust"}``, a bundle label) or drops it (``None``), or ``unmapped="skip"`` leaves it out.
The scored labels are the data set's, in its order, followed by the bundle's labels the data
set lacks, so a prediction of those counts as wrong rather than being dropped.

A sample for which the modality finds no face (or no person) is a miss: single-label sets
score it as the extra class ``"(no face)"`` (a column of the confusion matrix, never a true
class, so it lowers WAR, UAR and recall; macro F1 is averaged over the real classes only),
multi-label sets as all-zero scores; valence/arousal cannot score it and leave it out. Every
miss is counted in ``no_face``. A sample whose input cannot be read (an ``InputError``:
undecodable image, audio outside the exported length) is treated the same way and counted in
``failed`` with its message; if every sample fails, the first message is raised.

The recognizer may be a server's (:func:`edge_sdk.connect`): every prediction then runs there,
``concurrency`` requests at a time (samples or dialog chunks; answers keep the data set's
order), and the result reports the throughput. ``faces="given"`` runs the face heads in this
process and needs a local recognizer; EMOTIC's head boxes come from the body box when the
detector is not in this process (counted in ``notes``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_sdk.checks.jobs import run_jobs
from edge_sdk.datasets._io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from edge_sdk.datasets.base import (
    CLASSIFICATION,
    MULTILABEL,
    VALENCE_AROUSAL,
    VALENCE_AROUSAL_TASK,
    Dataset,
    Sample,
    get_format,
)
from edge_sdk.datasets.labels import canonical, map_labels
from edge_sdk.errors import InputError
from edge_sdk.metrics import ClassificationMetrics, Metrics, compute_metrics

StepCallback = Callable[[int, int, str], None]
MISS_LABEL = "(no face)"
SCENE_FORMATS = ("caer-s", "emotic")
FACE_BOX_FORMATS = ("affectnet",)  # Sample.box is a face (head) box; elsewhere a body box
CATEGORICAL_STAGES = ("classify", "zero_shot")
VA_STAGE = "valence_arousal"
MAX_PROBLEMS = 20
TASK_CHOICES = ("auto", "classification", "valence-arousal")
FACE_MODES = ("detect", "given")

# name -> (task, score prefix, "min" or "max"); rmse/pcc/ccc apply to every dimension.
THRESHOLDS: dict[str, tuple[str, str, str]] = {
    "min_war": (CLASSIFICATION, "war", "min"),
    "min_uar": (CLASSIFICATION, "uar", "min"),
    "min_macro_f1": (CLASSIFICATION, "macro_f1", "min"),
    "min_weighted_f1": (CLASSIFICATION, "weighted_f1", "min"),
    "min_map": (MULTILABEL, "map", "min"),
    "max_rmse": (VALENCE_AROUSAL_TASK, "rmse_", "max"),
    "min_pcc": (VALENCE_AROUSAL_TASK, "pcc_", "min"),
    "min_ccc": (VALENCE_AROUSAL_TASK, "ccc_", "min"),
}


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class AccuracyResult:
    """What :func:`check_accuracy` measured.

    Attributes:
        bundles: ``family/variant`` of every loaded bundle.
        modality: the route the samples took (``face``, ``scene``, ``audio``, ``video`` or
            ``dialog``; see the module docs).
        dataset: format, path, split, task, samples read and why any were left out.
        metrics: the :mod:`edge_sdk.metrics` result; single-label sets with a miss have the
            extra class ``"(no face)"`` as their last label.
        mapping: data set label -> the bundle label it was scored as (None: left out).
        extra_labels: bundle labels the data set lacks (scored as wrong answers).
        samples: samples evaluated (after ``limit``).
        no_face: samples without a face / person (or failed), scored as misses.
        failed: samples whose input could not be read (part of ``no_face``).
        problems: the first messages of failed samples (``source: message``).
        notes: other counts, e.g. EMOTIC head boxes taken from the body box.
        limit, seed: the sampling asked for.
        seconds: wall time of the predictions.
        concurrency: predictions in flight at a time.
        server: the server's URL when the predictions ran on one (else None).
        backends: backend/precision of each graph that ran.
        thresholds: the floors/ceilings judged (name -> value).
        failures: one line per threshold missed.
    """

    bundles: tuple[str, ...]
    modality: str
    dataset: dict[str, Any]
    metrics: Metrics
    mapping: dict[str, str | None]
    extra_labels: tuple[str, ...]
    samples: int
    no_face: int
    failed: int
    problems: tuple[str, ...]
    notes: dict[str, int] = field(default_factory=dict)
    limit: int | None = None
    seed: int = 0
    seconds: float = 0.0
    backends: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    failures: tuple[str, ...] = ()
    concurrency: int = 1
    server: str | None = None

    @property
    def passed(self) -> bool:
        """No threshold missed (True when none was given)."""
        return not self.failures

    @property
    def task(self) -> str:
        """The metrics task (classification, multilabel, valence_arousal)."""
        return self.metrics.task

    @property
    def throughput(self) -> float:
        """Samples scored per second of wall time."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def context(self) -> dict[str, Any]:
        """What was evaluated, for reports (``write_accuracy_report(context=...)``)."""
        return {
            "bundles": list(self.bundles),
            "modality": self.modality,
            "dataset": dict(self.dataset),
            "samples": self.samples,
            "scored": self.metrics.n,
            "no_face": self.no_face,
            "failed": self.failed,
            "problems": list(self.problems),
            "notes": dict(self.notes),
            "label_mapping": dict(self.mapping),
            "extra_bundle_labels": list(self.extra_labels),
            "limit": self.limit,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "ms_per_sample": round(1000.0 * self.seconds / max(self.samples, 1), 3),
            "samples_per_second": round(self.throughput, 3),
            "concurrency": self.concurrency,
            "server": self.server,
            "backends": dict(self.backends),
            "thresholds": dict(self.thresholds),
            "failures": list(self.failures),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``check``, ``passed``, ``context`` and ``metrics`` (what ``--json``
        prints and ``--report`` writes as ``accuracy.json``)."""
        return {
            "check": "accuracy",
            "passed": self.passed,
            "context": self.context(),
            "metrics": self.metrics.to_dict(),
        }


# --------------------------------------------------------------------------- thresholds
def check_thresholds(thresholds: Mapping[str, float | None] | None, task: str) -> dict[str, float]:
    """The given thresholds (None values dropped), refused when unknown or for another task."""
    chosen = {k: float(v) for k, v in (thresholds or {}).items() if v is not None}
    for name, value in chosen.items():
        if name not in THRESHOLDS:
            raise InputError(f"unknown threshold {name!r}; known: {sorted(THRESHOLDS)}")
        wanted = THRESHOLDS[name][0]
        if wanted != task:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} applies to {wanted} data sets; this one is scored as {task}")
        if not math.isfinite(value):
            raise InputError(f"threshold {name} must be a finite number, got {value}")
    return chosen


def judge(metrics: Metrics, thresholds: Mapping[str, float]) -> tuple[str, ...]:
    """One line per threshold the metrics miss (NaN misses every threshold)."""
    failures = []
    scores = metrics.scores
    for name, limit in thresholds.items():
        _, prefix, kind = THRESHOLDS[name]
        keys = [k for k in scores if k.startswith(prefix)] if prefix.endswith("_") else [prefix]
        for key in keys:
            value = float(scores[key])
            ok = value >= limit if kind == "min" else value <= limit
            if not ok or math.isnan(value):
                sign = "<" if kind == "min" else ">"
                failures.append(f"{key} {value:.4f} {sign} {name} {limit:g}")
    return tuple(failures)


# --------------------------------------------------------------------------- recognizer
def open_recognizer(source: Any, **load_options: Any) -> tuple[Any, bool]:
    """(Recognizer, whether this call opened it) for a Recognizer (local or a server's),
    bundle(s) or None."""
    from edge_sdk.api import Recognizer, load

    if isinstance(source, Recognizer) or getattr(source, "remote", False):
        return source, False
    return load(source, **load_options), True


def _categorical_head(recognizer: Any) -> Any | None:
    return next((h for h in recognizer.face_heads if h.stage in CATEGORICAL_STAGES), None)


def _va_head(recognizer: Any) -> Any | None:
    return next((h for h in recognizer.face_heads if h.stage == VA_STAGE), None)


def _pipeline(recognizer: Any, modality: str) -> Any | None:
    return next((p for p in recognizer.pipelines if p.modality == modality), None)


def _families(recognizer: Any) -> str:
    return ", ".join(b.manifest.family for b in recognizer.bundles)


def dataset_labels_for(
    recognizer: Any, format_name: str, task: str = "auto"
) -> tuple[str, ...] | None:
    """The ``labels`` argument of :func:`read_dataset` for a check: ``("valence",
    "arousal")`` for the regression task, None (the data set's own order) otherwise.

    ``task="auto"`` picks valence/arousal when the recognizer's only face answer is
    valence/arousal (face-caf without a categorical face family), nothing else categorical
    is loaded and the format carries valence/arousal.
    """
    if task not in TASK_CHOICES:
        raise InputError(f"task must be one of {TASK_CHOICES}, got {task!r}")
    if task == "valence-arousal":
        return VALENCE_AROUSAL
    if task == "classification":
        return None
    fmt = get_format(format_name)
    others = any(p.modality != "face" for p in recognizer.pipelines)
    only_va = _va_head(recognizer) is not None and _categorical_head(recognizer) is None
    return VALENCE_AROUSAL if only_va and not others and fmt.valence_arousal else None


# --------------------------------------------------------------------------- routing
def _kind(sample: Sample) -> str:
    if sample.image is not None:
        return "image"
    suffixes = {p.suffix.lower() for p in sample.paths}
    if suffixes & set(IMAGE_EXTENSIONS):
        return "image"
    if suffixes & set(VIDEO_EXTENSIONS + AUDIO_EXTENSIONS):
        return "clip"
    return "unknown"


def choose_modality(recognizer: Any, dataset: Dataset) -> str:
    """The route of every sample (module docs); InputError when nothing loaded fits."""
    served = set(recognizer.modalities)
    va = dataset.task == VALENCE_AROUSAL_TASK
    answers_face = (_va_head if va else _categorical_head)(recognizer) is not None
    if not va and "dialog" in served and all(s.dialog_id is not None for s in dataset.samples):
        return "dialog"
    kinds = Counter(_kind(s) for s in dataset.samples)
    if len(kinds) > 1:
        raise InputError(
            f"the data set mixes kinds of media ({dict(kinds)}); evaluate images and clips "
            "separately"
        )
    kind = next(iter(kinds))
    what = "valence/arousal" if va else "its labels"
    if kind == "image":
        scene_first = dataset.format in SCENE_FORMATS or dataset.task == MULTILABEL
        order = ("scene", "face") if scene_first else ("face", "scene")
        for route in order:
            if route == "face" and answers_face:
                return "face"
            if route == "scene" and "scene" in served and not va:
                return "scene"
    elif kind == "clip":
        if "audio" in served and not va:
            return "audio"
        if answers_face:
            return "video"
    raise InputError(
        f"no loaded bundle scores {what} on {dataset.format} {kind}s (loaded: "
        f"{_families(recognizer)}); load a family for that modality"
    )


def bundle_labels(recognizer: Any, modality: str) -> tuple[str, tuple[str, ...]]:
    """(family, labels) of the family that answers ``modality``."""
    if modality in ("face", "video"):
        head = _categorical_head(recognizer)
        return head.family, tuple(head.labels)
    pipeline = _pipeline(recognizer, modality)
    return pipeline.family, tuple(pipeline.labels)


# --------------------------------------------------------------------------- label space
@dataclass(frozen=True)
class LabelSpace:
    """The scored columns: the data set's labels (its order) then the bundle's others.

    ``columns[j]`` is a display name, ``bundle_of[j]`` the bundle label scored there;
    ``column_of`` maps every kept data set label to its column.
    """

    columns: tuple[str, ...]
    bundle_of: tuple[str, ...]
    column_of: dict[str, int]
    mapping: dict[str, str | None]
    extra: tuple[str, ...]
    dropped: dict[str, str]


def label_space(
    dataset: Dataset,
    family: str,
    labels: Sequence[str],
    label_map: Mapping[str, str | None] | None = None,
    unmapped: str = "error",
) -> LabelSpace:
    """Map the data set's labels onto a bundle's by name; InputError for a label with samples
    that has no counterpart (unless ``label_map`` or ``unmapped="skip"`` says otherwise)."""
    if unmapped not in ("error", "skip"):
        raise InputError(f"unmapped must be 'error' or 'skip', got {unmapped!r}")
    index = map_labels(dataset.labels, labels, label_map, strict_overrides=True)
    counts = dataset.counts()
    overridden = {k.strip().lower() for k in (label_map or {})}
    lost = [n for n in dataset.labels if index[n] is None and counts.get(n, 0) > 0]
    lost = [n for n in lost if n.lower() not in overridden]
    if lost and unmapped == "error":
        shown = ", ".join(f"{n!r} ({counts[n]} sample{'s' * (counts[n] != 1)})" for n in lost)
        raise InputError(
            f"data set label{'s' if len(lost) > 1 else ''} {shown} of {dataset.format} "
            f"{'have' if len(lost) > 1 else 'has'} no counterpart among {family}'s labels "
            f"{list(labels)}; merge with --label-map {lost[0]}=<bundle label>, leave out with "
            f"--label-map {lost[0]}= or --unmapped skip"
        )
    columns: list[str] = []
    bundle_of: list[str] = []
    column_of: dict[str, int] = {}
    dropped = {}
    for name in dataset.labels:
        target = index[name]
        if target is None:
            by_map = name.lower() in overridden
            dropped[name] = "left out by the label map" if by_map else "not a label of the bundle"
            continue
        if labels[target] in bundle_of:
            column_of[name] = bundle_of.index(labels[target])  # merged (label_map / synonym)
            continue
        column_of[name] = len(columns)
        # a data set label scored as a differently named bundle label shows both names
        same = canonical(name) == canonical(labels[target])
        columns.append(name if same else f"{name} ({labels[target]})")
        bundle_of.append(labels[target])
    extra = tuple(lab for lab in labels if lab not in bundle_of)
    if not columns:
        raise InputError(f"no label of {dataset.format} maps onto {family}'s labels {list(labels)}")
    columns += extra
    bundle_of += extra
    mapping = {n: None if index[n] is None else labels[index[n]] for n in dataset.labels}
    return LabelSpace(tuple(columns), tuple(bundle_of), column_of, mapping, extra, dropped)


def _relabel(dataset: Dataset, space: LabelSpace) -> tuple[list[Sample], np.ndarray, Counter]:
    """Samples kept, their targets over ``space.columns`` and why others were left out."""
    skipped: Counter[str] = Counter()
    truth = dataset.y_true()
    kept, rows = [], []
    k = len(space.columns)
    for sample, target in zip(dataset.samples, truth, strict=True):
        if dataset.task == CLASSIFICATION:
            name = dataset.labels[int(target)]
            if name not in space.column_of:
                skipped[f"label {name!r}: {space.dropped[name]}"] += 1
                continue
            kept.append(sample)
            rows.append(space.column_of[name])
        else:
            vector = np.zeros(k, dtype=np.int8)
            for j in np.flatnonzero(target):
                name = dataset.labels[int(j)]
                if name in space.column_of:
                    vector[space.column_of[name]] = 1
                else:
                    skipped[f"label {name!r}: {space.dropped[name]} (occurrences)"] += 1
            kept.append(sample)
            rows.append(vector)
    if not kept:
        raise InputError(f"no {dataset.format} sample is left to score ({dict(skipped)})")
    if dataset.task == CLASSIFICATION:
        return kept, np.asarray(rows, dtype=np.int64), skipped
    return kept, np.asarray(rows, dtype=np.int8).reshape(len(kept), k), skipped


# --------------------------------------------------------------------------- sampling
def _draw(dataset: Dataset, limit: int | None, seed: int, dialog: bool) -> Dataset:
    """A seeded subset of at most ``limit`` samples (whole dialogs, in their order)."""
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    rng = np.random.default_rng(seed)
    if not dialog:
        chosen = np.sort(rng.choice(len(dataset), size=limit, replace=False))
        return dataclasses.replace(dataset, samples=tuple(dataset.samples[i] for i in chosen))
    groups = list(dataset.dialogs().values())
    picked: list[int] = []
    for g in rng.permutation(len(groups)):
        room = limit - len(picked)
        if room <= 0:
            break
        picked.extend(groups[g][:room])  # a cut dialog keeps its first utterances
    return dataclasses.replace(dataset, samples=tuple(dataset.samples[i] for i in picked))


# --------------------------------------------------------------------------- predictors
def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _inside(box: Sequence[float], outer: Sequence[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def pick_box(boxes: Sequence[Sequence[float]], given: Sequence[float] | None) -> int | None:
    """Index of the largest box, or with ``given`` of the best-overlapping box whose centre
    lies inside it; None when there is none."""
    if not len(boxes):
        return None
    if given is None:
        return max(range(len(boxes)), key=lambda i: _area(boxes[i]))
    inside = [i for i in range(len(boxes)) if _inside(boxes[i], given)]
    if not inside:
        return None
    return max(inside, key=lambda i: (_iou(boxes[i], given), _area(boxes[i])))


def head_from_body(body: Sequence[float]) -> list[float]:
    """The head box whose documented expansion (:func:`body_box_from_head`) is ``body``'s
    width: a square of a third of the body width, centred, a quarter head below its top."""
    from edge_sdk.preprocess.windows import BODY_ABOVE_HEADS, BODY_WIDTH_HEADS

    x1, y1, x2, y2 = (float(v) for v in body)
    side = max((x2 - x1) / BODY_WIDTH_HEADS, 1.0)
    centre = (x1 + x2) / 2
    top = y1 + BODY_ABOVE_HEADS * side
    return [centre - side / 2, top, centre + side / 2, min(top + side, max(y2, top + 1.0))]


def _image(sample: Sample) -> Any:
    return sample.image if sample.image is not None else str(sample.path)


def _media(sample: Sample) -> tuple[str | None, str | None]:
    """(wav, video) files of a clip sample that exist (``<video stem>.wav`` as fallback)."""
    audio = next(
        (p for p in sample.paths if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()), None
    )
    video = next(
        (p for p in sample.paths if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()), None
    )
    if audio is None and video is not None and video.with_suffix(".wav").is_file():
        audio = video.with_suffix(".wav")
    return (None if audio is None else str(audio)), (None if video is None else str(video))


Answer = dict[str, float] | tuple[float, float] | None


class _Runner:
    """Runs one sample (or dialog) through the chosen route; answers are label -> p dicts,
    (valence, arousal) pairs, or None for a miss."""

    def __init__(self, recognizer: Any, modality: str, va: bool, faces: str, fmt: str) -> None:
        if faces not in FACE_MODES:
            raise InputError(f"faces must be one of {FACE_MODES}, got {faces!r}")
        self.recognizer = recognizer
        self.modality = modality
        self.va = va
        self.faces = faces
        self.format = fmt
        self.notes: Counter[str] = Counter()
        self._notes_lock = threading.Lock()  # samples may run on several threads

    def _face_answer(self, face: Any) -> Answer:
        if self.va:
            return None if face.valence is None else (face.valence, face.arousal)
        return dict(face.probabilities) if face.probabilities else None

    def face(self, sample: Sample) -> Answer:
        if self.faces == "given":
            return self._given_face(sample)
        prediction = self.recognizer.predict(face=_image(sample))
        index = pick_box([f.box for f in prediction.faces], sample.box)
        return None if index is None else self._face_answer(prediction.faces[index])

    def _given_face(self, sample: Sample) -> Answer:
        from edge_sdk.pipelines.common import Timer
        from edge_sdk.pipelines.detector import Detections
        from edge_sdk.pipelines.face import faces_from_detections
        from edge_sdk.preprocess.image import load_image

        pixels = load_image(_image(sample))
        height, width = pixels.shape[:2]
        box = sample.box if sample.box is not None else (0.0, 0.0, float(width), float(height))
        found = Detections(
            boxes=np.asarray([box], dtype=np.float32),
            scores=np.ones(1, dtype=np.float32),
            landmarks=np.zeros((1, 5, 2), dtype=np.float32),
        )
        prediction = faces_from_detections(pixels, found, self.recognizer.face_heads, {}, Timer())
        return self._face_answer(prediction.faces[0])

    def scene(self, sample: Sample) -> Answer:
        from edge_sdk.preprocess.image import load_image

        if sample.box is None:
            people = self.recognizer.predict(scene=_image(sample)).scene.people
            index = pick_box([p.head_box for p in people], None)
            return None if index is None else dict(people[index].probabilities)
        pixels = load_image(_image(sample))
        if self.format in FACE_BOX_FORMATS:
            request = {"image": pixels, "head_boxes": [list(sample.box)]}
        else:
            body = list(sample.box)
            detector = self.recognizer.detector
            heads = [] if detector is None else detector.detect(pixels).boxes.tolist()
            index = pick_box(heads, body)
            if index is None:
                head = head_from_body(body)
                with self._notes_lock:
                    self.notes["head box from the body box (no face inside it)"] += 1
            else:
                head = heads[index]
            request = {"image": pixels, "head_boxes": [head], "body_boxes": [body]}
        people = self.recognizer.predict(scene=request).scene.people
        return dict(people[0].probabilities) if people else None

    def audio(self, sample: Sample) -> Answer:
        wav, video = _media(sample)
        if wav is None:
            raise InputError(
                "no .wav for this clip (audio is read from WAV files: extract it beside the "
                "clip, e.g. ffmpeg -i clip.avi -ac 1 -ar 16000 clip.wav)"
            )
        # the fused graph needs per-frame face features from a face family of the right width
        encoder = getattr(_pipeline(self.recognizer, "audio"), "encoder", None)
        use_video = video if encoder is not None else None
        return dict(self.recognizer.predict(audio=wav, video=use_video).audio.probabilities)

    def video(self, sample: Sample) -> Answer:
        _, video = _media(sample)
        if video is None:
            raise InputError("no video file for this sample")
        frames = self.recognizer.predict(video=video).video.frames
        answers = []
        for frame in frames:
            index = pick_box([f.box for f in frame.faces], None)
            if index is not None and (answer := self._face_answer(frame.faces[index])):
                answers.append(answer)
        if not answers:
            return None
        if self.va:
            return tuple(float(v) for v in np.mean(np.asarray(answers), axis=0))
        names = list(answers[0])
        mean = np.mean([[a[n] for n in names] for a in answers], axis=0)
        return {n: float(p) for n, p in zip(names, mean, strict=True)}

    def dialog(self, samples: Sequence[Sample]) -> list[Answer]:
        from edge_sdk.pipelines.dialog import Utterance

        utterances = []
        for sample in samples:
            wav, video = _media(sample)
            utterances.append(
                Utterance(text=sample.text, audio=wav, frames=video, speaker=sample.speaker)
            )
        result = self.recognizer.predict(dialog=utterances).dialog
        return [dict(u.probabilities) for u in result.utterances]


# --------------------------------------------------------------------------- check
def check_accuracy(
    recognizer_or_bundle: Any,
    dataset: Dataset,
    *,
    limit: int | None = None,
    seed: int = 0,
    on_step: StepCallback | None = None,
    label_map: Mapping[str, str | None] | None = None,
    unmapped: str = "error",
    faces: str = "detect",
    thresholds: Mapping[str, float | None] | None = None,
    concurrency: int = 1,
    **load_options: Any,
) -> AccuracyResult:
    """Run ``dataset`` through a Recognizer and score it (see the module docs).

    Args:
        recognizer_or_bundle: a :class:`~edge_sdk.api.Recognizer`, or what
            :func:`edge_sdk.load` takes (a bundle directory, a ModelBundle, a list, None for
            the default bundle); ``load_options`` go to ``load`` (backend, precision...).
        dataset: from :func:`edge_sdk.datasets.read_dataset` in the data set's own label
            order (``labels=("valence", "arousal")`` for the regression task; see
            :func:`dataset_labels_for`).
        limit: score a seeded random subset of this many samples (dialog sets: whole
            dialogs in a seeded order, the last one cut to fit).
        seed: the subset's seed.
        on_step: ``(done, total, description)`` after each sample or dialog.
        label_map: data set label -> bundle label it counts as, or None to leave it out.
        unmapped: ``"error"`` (default) or ``"skip"`` for data set labels the bundle lacks.
        faces: ``"detect"`` (the face detector, as deployed) or ``"given"`` (the sample's
            box or the whole image; face modality only).
        thresholds: e.g. ``{"min_war": 0.6}``; names in :data:`THRESHOLDS`, for the data
            set's task (others are refused before anything runs).
        concurrency: predictions in flight at a time (samples or dialog chunks), for a
            server's recognizer or a local one with several workers.

    Raises:
        InputError: labels the bundle lacks, no loaded family for the data's modality,
            thresholds for another task, or every sample failed.
    """
    chosen_thresholds = check_thresholds(thresholds, dataset.task)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InputError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    recognizer, owned = open_recognizer(recognizer_or_bundle, **load_options)
    try:
        return _check(
            recognizer, dataset, limit, seed, on_step, label_map, unmapped, faces,
            chosen_thresholds, concurrency,
        )  # fmt: skip
    finally:
        if owned:
            recognizer.close()


def _check(
    recognizer: Any,
    dataset: Dataset,
    limit: int | None,
    seed: int,
    on_step: StepCallback | None,
    label_map: Mapping[str, str | None] | None,
    unmapped: str,
    faces: str,
    thresholds: dict[str, float],
    concurrency: int = 1,
) -> AccuracyResult:
    va = dataset.task == VALENCE_AROUSAL_TASK
    modality = choose_modality(recognizer, dataset)
    if faces == "given" and modality != "face":
        raise InputError(f"faces='given' applies to the face modality, not {modality}")
    if faces == "given" and getattr(recognizer, "remote", False):
        raise InputError(
            "faces='given' runs the face heads in this process; score through a server with "
            "faces='detect' (as deployed)"
        )
    skipped: Counter[str] = Counter(dataset.skipped)
    space = None
    if va:
        if label_map:
            raise InputError("--label-map does not apply to valence/arousal")
        subset = _draw(dataset, limit, seed, modality == "dialog")
        samples, truth = list(subset.samples), subset.y_true()
    else:
        family, labels = bundle_labels(recognizer, modality)
        space = label_space(dataset, family, labels, label_map, unmapped)
        subset = _draw(dataset, limit, seed, modality == "dialog")
        samples, truth, dropped = _relabel(subset, space)
        skipped.update(dropped)
    runner = _Runner(recognizer, modality, va, faces, dataset.format)
    answers, problems, failed, seconds = _run_all(runner, samples, on_step, concurrency)
    if failed == len(samples):
        raise InputError(f"every sample failed; first: {problems[0]}")
    metrics, no_face = _score(dataset.task, space, truth, answers)
    info = {
        "format": dataset.format,
        "path": str(dataset.path),
        "task": dataset.task,
        "labels": list(dataset.labels),
        "read": len(dataset),
        "skipped": dict(skipped),
    }
    split = {s.split for s in samples}
    if len(split) == 1 and None not in split:
        info["split"] = split.pop()
    return AccuracyResult(
        bundles=tuple(f"{b.manifest.family}/{b.manifest.variant}" for b in recognizer.bundles),
        modality=modality,
        dataset=info,
        metrics=metrics,
        mapping={} if space is None else dict(space.mapping),
        extra_labels=() if space is None else space.extra,
        samples=len(samples),
        no_face=no_face,
        failed=failed,
        problems=tuple(problems[:MAX_PROBLEMS]),
        notes=dict(runner.notes),
        limit=limit,
        seed=seed,
        seconds=seconds,
        backends=dict(recognizer.backends),
        thresholds=thresholds,
        failures=judge(metrics, thresholds),
        concurrency=concurrency,
        server=getattr(recognizer, "url", None) if getattr(recognizer, "remote", False) else None,
    )


def _run_all(
    runner: _Runner,
    samples: list[Sample],
    on_step: StepCallback | None,
    concurrency: int = 1,
) -> tuple[list[Answer], list[str], int, float]:
    """Every sample's answer (None: miss), the failure messages, their count, seconds.

    Jobs (one sample, or one chunk of a dialog) run ``concurrency`` at a time; answers and
    messages keep the samples' order whatever order the jobs finish in.
    """
    answers: list[Answer] = [None] * len(samples)
    problems: list[tuple[int, str]] = []
    failed = 0
    total = len(samples)
    jobs: list[tuple[list[int], str]] = []  # (sample indices, description)
    if runner.modality == "dialog":
        groups: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            groups.setdefault(str(sample.dialog_id), []).append(i)
        pipeline = _pipeline(runner.recognizer, "dialog")
        size = max(1, int(getattr(pipeline, "max_utterances", None) or 1 << 30))
        for dialog_id, members in groups.items():
            jobs += [(members[i : i + size], f"dialog {dialog_id}")
                     for i in range(0, len(members), size)]  # fmt: skip

        def run(chunk: list[int]) -> list[Answer]:
            return runner.dialog([samples[i] for i in chunk])

        def problem(chunk: list[int], what: str, exc: Exception) -> str:
            return f"{what} ({samples[chunk[0]].source}): {exc}"
    else:
        predict = getattr(runner, runner.modality)
        jobs = [([i], os.path.basename(s.source)) for i, s in enumerate(samples)]

        def run(chunk: list[int]) -> list[Answer]:
            return [predict(samples[chunk[0]])]

        def problem(chunk: list[int], what: str, exc: Exception) -> str:
            return f"{samples[chunk[0]].source}: {exc}"

    start = time.perf_counter()
    done = 0
    for (chunk, what), outcome in run_jobs(lambda j: run(j[0]), jobs, concurrency, InputError):
        if isinstance(outcome, InputError):
            failed += len(chunk)
            problems.append((chunk[0], problem(chunk, what, outcome)))
        else:
            for i, answer in zip(chunk, outcome, strict=True):
                answers[i] = answer
        done += len(chunk)
        if on_step is not None:
            on_step(done, total, what)
    seconds = time.perf_counter() - start
    return answers, [m for _, m in sorted(problems, key=lambda p: p[0])], failed, seconds


def _score(
    task: str, space: LabelSpace | None, truth: np.ndarray, answers: list[Answer]
) -> tuple[Metrics, int]:
    """Metrics over the answers (misses as the module docs say) and the miss count."""
    misses = [a is None for a in answers]
    no_face = int(sum(misses))
    if task == VALENCE_AROUSAL_TASK:
        keep = [i for i, miss in enumerate(misses) if not miss]
        pred = np.asarray([answers[i] for i in keep], dtype=np.float64).reshape(-1, 2)
        return compute_metrics(task, truth[keep], pred, labels=VALENCE_AROUSAL), no_face
    assert space is not None
    k = len(space.columns)
    width = k + 1 if (no_face and task == CLASSIFICATION) else k
    scores = np.zeros((len(answers), width), dtype=np.float64)
    for i, answer in enumerate(answers):
        if answer is None:
            if width > k:
                scores[i, k] = 1.0
            continue
        scores[i, :k] = [answer.get(name, 0.0) for name in space.bundle_of]
    names = space.columns + ((MISS_LABEL,) if width > k else ())
    metrics = compute_metrics(task, truth, scores, labels=names)
    if width > k and isinstance(metrics, ClassificationMetrics):
        real = np.asarray(metrics.f1[:k], dtype=np.float64)
        macro = float(np.nanmean(real)) if np.isfinite(real).any() else float("nan")
        metrics = dataclasses.replace(metrics, macro_f1=macro)
    return metrics, no_face


def default_title(result: AccuracyResult) -> str:
    """``accuracy <bundles> on <format>[ <split>]`` for tables and reports."""
    split = result.dataset.get("split")
    where = result.dataset["format"] + (f" {split}" if split else "")
    return f"accuracy {', '.join(result.bundles)} on {where}"


def summary_rows(result: AccuracyResult) -> list[tuple[str, str]]:
    """(name, value) lines a person reads first."""
    rows = [
        ("bundles", ", ".join(result.bundles)),
        ("data set", f"{result.dataset['format']} {result.dataset['path']}"),
        ("modality", result.modality),
        ("task", result.task),
        ("samples", f"{result.samples} of {result.dataset['read']} read"
         + (f" (limit {result.limit}, seed {result.seed})" if result.limit else "")),
        ("no face (misses)", str(result.no_face)),
        ("failed inputs", str(result.failed)),
        ("seconds", f"{result.seconds:.2f} ({1000 * result.seconds / max(result.samples, 1):.1f}"
         " ms per sample)"),
        ("throughput", f"{result.throughput:.2f} samples/s ({result.concurrency} in flight"
         + (f", server {result.server})" if result.server else ")")),
    ]  # fmt: skip
    if result.extra_labels:
        rows.append(("bundle labels not in the data set", ", ".join(result.extra_labels)))
    renamed = {k: v for k, v in result.mapping.items() if v is None or canonical(k) != canonical(v)}
    if renamed:
        rows.append(("label mapping", ", ".join(f"{k}->{v}" for k, v in renamed.items())))
    if result.dataset.get("skipped"):
        rows.append(
            ("left out", ", ".join(f"{k}: {v}" for k, v in result.dataset["skipped"].items()))
        )
    for note, count in result.notes.items():
        rows.append((note, str(count)))
    for name, value in result.thresholds.items():
        rows.append((f"threshold {name}", f"{value:g}"))
    if result.failures:
        rows.append(("thresholds missed", "; ".join(result.failures)))
    if result.problems:
        rows.append(("first failed input", result.problems[0]))
    return rows


def parse_label_map(items: Sequence[str] | None) -> dict[str, str | None]:
    """``["contempt=disgust", "other="]`` -> ``{"contempt": "disgust", "other": None}``."""
    out: dict[str, str | None] = {}
    for item in items or ():
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise InputError(f"--label-map {part!r}: expected DATASET_LABEL=BUNDLE_LABEL")
            key, value = (s.strip() for s in part.split("=", 1))
            if not key:
                raise InputError(f"--label-map {part!r}: the data set label is empty")
            out[key] = value or None
    return out
