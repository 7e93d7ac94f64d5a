"""Which route a check's samples take (face, scene, audio, video or dialog; the package docs
say how it is chosen) and the :class:`Route` every modality's answer function receives."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from edge_sdk.datasets._io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from edge_sdk.datasets.base import (
    MULTILABEL,
    VALENCE_AROUSAL,
    VALENCE_AROUSAL_TASK,
    Dataset,
    Sample,
    get_format,
)
from edge_sdk.errors import InputError

StepCallback = Callable[[int, int, str], None]
SCENE_FORMATS = ("caer-s", "emotic")
FACE_BOX_FORMATS = ("affectnet",)  # Sample.box is a face (head) box; elsewhere a body box
# What face heads declare they answer (edge_sdk.pipelines.face.FACE_TASKS); kept as names
# here so the check imports no pipeline code.
CATEGORICAL_TASKS = ("categories", "zero-shot categories")
VA_TASK = "valence-arousal"
TASK_CHOICES = ("auto", "classification", "valence-arousal")
FACE_MODES = ("detect", "given")
# A sample's answer: label -> probability, (valence, arousal), or None for a miss.
Answer = dict[str, float] | tuple[float, float] | None


def open_recognizer(source: Any, **load_options: Any) -> tuple[Any, bool]:
    """(Recognizer, whether this call opened it) for a Recognizer (local or a server's),
    bundle(s) or None."""
    from edge_sdk.api import Recognizer, load

    if isinstance(source, Recognizer) or getattr(source, "remote", False):
        return source, False
    return load(source, **load_options), True


def categorical_head(recognizer: Any) -> Any | None:
    """The first face head whose declared accuracy task is categorical (None when no face
    family's is)."""
    return next((h for h in recognizer.face_heads if h.accuracy_task in CATEGORICAL_TASKS), None)


def va_head(recognizer: Any) -> Any | None:
    """The first face head declaring valence/arousal as its accuracy task."""
    return next((h for h in recognizer.face_heads if h.accuracy_task == VA_TASK), None)


def pipeline_of(recognizer: Any, modality: str) -> Any | None:
    """The loaded pipeline serving ``modality`` (None when none is)."""
    return next((p for p in recognizer.pipelines if p.modality == modality), None)


def families(recognizer: Any) -> str:
    """The loaded families, for messages."""
    return ", ".join(b.manifest.family for b in recognizer.bundles)


def dataset_labels_for(
    recognizer: Any, format_name: str, task: str = "auto"
) -> tuple[str, ...] | None:
    """The ``labels`` argument of :func:`read_dataset` for a check: ``("valence",
    "arousal")`` for the regression task, None (the data set's own order) otherwise.

    ``task="auto"`` picks valence/arousal when the recognizer's only face answer is
    valence/arousal (a valence/arousal head without a categorical one), nothing else categorical
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
    only_va = va_head(recognizer) is not None and categorical_head(recognizer) is None
    return VALENCE_AROUSAL if only_va and not others and fmt.valence_arousal else None


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
    answers_face = (va_head if va else categorical_head)(recognizer) is not None
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
        f"{families(recognizer)}); load a family for that modality"
    )


def bundle_labels(recognizer: Any, modality: str) -> tuple[str, tuple[str, ...]]:
    """(family, labels) of the family that answers ``modality``."""
    if modality in ("face", "video"):
        head = categorical_head(recognizer)
        return head.family, tuple(head.labels)
    pipeline = pipeline_of(recognizer, modality)
    return pipeline.family, tuple(pipeline.labels)




class Route:
    """One check's route: the recognizer, the modality every sample takes and how answers are
    read (``va``: valence/arousal pairs; ``faces``: detect or given). Samples may run on
    several threads, so :meth:`note` counts under a lock."""

    def __init__(self, recognizer: Any, modality: str, va: bool, faces: str, fmt: str) -> None:
        if faces not in FACE_MODES:
            raise InputError(f"faces must be one of {FACE_MODES}, got {faces!r}")
        self.recognizer = recognizer
        self.modality = modality
        self.va = va
        self.faces = faces
        self.format = fmt
        self.notes: Counter[str] = Counter()
        self._notes_lock = threading.Lock()

    def note(self, what: str) -> None:
        """Count one occurrence of ``what`` (reported in ``AccuracyResult.notes``)."""
        with self._notes_lock:
            self.notes[what] += 1


def image_of(sample: Sample) -> Any:
    """The sample's inline pixels, else its image file."""
    return sample.image if sample.image is not None else str(sample.path)


def media_of(sample: Sample) -> tuple[str | None, str | None]:
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
