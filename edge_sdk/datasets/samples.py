"""The typed records of the data set adapters: samples, data sets, requests and formats.

Every format reader produces :class:`Sample` objects from a :class:`ReadRequest`, registers a
:class:`DatasetFormat`, and :func:`edge_sdk.datasets.read_dataset` returns a :class:`Dataset`;
the records live apart from the reading and label mapping so that each of those modules (and
the format modules) can name them without importing the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_sdk.metrics import (
    DIMENSIONS,
    ClassificationMetrics,
    MultiLabelMetrics,
    ValenceArousalMetrics,
)

VALENCE_AROUSAL = DIMENSIONS  # labels=("valence", "arousal") asks for the regression task
CLASSIFICATION = ClassificationMetrics.task
MULTILABEL = MultiLabelMetrics.task
VALENCE_AROUSAL_TASK = ValenceArousalMetrics.task
Policy = Literal["error", "skip"]
FilePolicy = Literal["error", "skip", "keep"]


@dataclass(frozen=True)
class Sample:
    """One labelled item of a data set.

    Attributes:
        paths: media files (one image, one clip, one wav); empty when the pixels are inline
            (FER2013, see ``image``).
        source: where it was read, ``"file:line"`` or the media path, for error messages.
        native: the data set's own label name, or a tuple of names (multi-label); None if the
            item carries only valence/arousal.
        label: index into :attr:`Dataset.labels` (single-label data sets), set by
            :func:`read_dataset`.
        targets: multi-hot vector over :attr:`Dataset.labels` (multi-label data sets).
        valence, arousal: in [-1, 1] (each format documents its rescaling), None if absent.
        box: (x1, y1, x2, y2) pixels of the face (AffectNet) or body (EMOTIC) in the image.
        image: inline pixels (FER2013: 48 x 48 uint8 grey).
        dialog_id, utterance_id, speaker, text, start, end: conversation data (MELD,
            IEMOCAP); times in seconds.
        split: the published split the item belongs to.
        extra: other annotation fields (AffectNet landmarks, EMOTIC dominance, MELD
            sentiment, ...), as read.
    """

    paths: tuple[Path, ...]
    source: str
    native: str | tuple[str, ...] | None = None
    label: int | None = None
    targets: tuple[int, ...] | None = None
    valence: float | None = None
    arousal: float | None = None
    box: tuple[float, float, float, float] | None = None
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    dialog_id: str | None = None
    utterance_id: str | None = None
    speaker: str | None = None
    text: str | None = None
    start: float | None = None
    end: float | None = None
    split: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def path(self) -> Path | None:
        """The first media file, or None for inline pixels."""
        return self.paths[0] if self.paths else None

    def face_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The face box a "faces given" run cuts: the sample's own, else the whole image
        (aligned-face data sets, FER2013 rows, folder crops)."""
        return self.box if self.box is not None else (0.0, 0.0, float(width), float(height))


@dataclass(frozen=True)
class Dataset:
    """Samples of one data set, labelled in ``labels`` order.

    Attributes:
        format: the registered format name.
        path: what was read.
        task: ``"classification"``, ``"multilabel"`` or ``"valence_arousal"`` (the task
            names of :func:`edge_sdk.metrics.compute_metrics`).
        labels: class names (index order of ``Sample.label`` / ``Sample.targets``), or the
            dimensions ``("valence", "arousal")``.
        samples: in the file's order (conversations: dialog by dialog, in utterance order).
        mapping: the data set's label name -> the label it was mapped to (None: left out).
        skipped: reason -> count of samples (or, multi-label, of label occurrences) left out.
    """

    format: str
    path: Path
    task: str
    labels: tuple[str, ...]
    samples: tuple[Sample, ...]
    mapping: Mapping[str, str | None] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def y_true(self) -> np.ndarray:
        """Targets for :func:`edge_sdk.metrics.compute_metrics`: (n,) int64 class indices,
        (n, k) int8 multi-hot vectors, or (n, 2) float64 valence/arousal."""
        return _TARGETS[self.task](self)

    def valence_arousal(self) -> np.ndarray:
        """(n, 2) float64 valence/arousal, NaN where a sample has none."""
        nan = float("nan")
        rows = [
            (nan if s.valence is None else s.valence, nan if s.arousal is None else s.arousal)
            for s in self.samples
        ]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)

    def counts(self) -> dict[str, int]:
        """Samples (single-label) or positives (multi-label) per label."""
        if self.task == VALENCE_AROUSAL_TASK:
            return {}
        truth = self.y_true()
        per = (
            truth.sum(axis=0) if truth.ndim == 2 else np.bincount(truth, minlength=len(self.labels))
        )
        return {name: int(c) for name, c in zip(self.labels, per, strict=True)}

    def dialogs(self) -> dict[str, tuple[int, ...]]:
        """Dialog id -> indices of its samples, in utterance order (MELD, IEMOCAP, JSONL)."""
        groups: dict[str, list[int]] = {}
        for i, sample in enumerate(self.samples):
            if sample.dialog_id is not None:
                groups.setdefault(sample.dialog_id, []).append(i)
        return {k: tuple(v) for k, v in groups.items()}


_TARGETS: dict[str, Callable[[Dataset], np.ndarray]] = {
    CLASSIFICATION: lambda d: np.asarray([s.label for s in d.samples], dtype=np.int64),
    MULTILABEL: lambda d: np.asarray([s.targets for s in d.samples], dtype=np.int8).reshape(
        len(d.samples), len(d.labels)
    ),
    VALENCE_AROUSAL_TASK: lambda d: np.asarray(
        [(s.valence, s.arousal) for s in d.samples], dtype=np.float64
    ).reshape(-1, 2),
}


@dataclass(frozen=True)
class ReadRequest:
    """What :func:`read_dataset` passes to a format's reader.

    Attributes:
        path: the file or folder the user named.
        split: a published split to keep (each format documents its names), or None.
        media_root: where media files live, when not the published place beside the
            annotations.
        labels: the requested label order (JSONL integer labels index into it).
        extensions: file suffixes to list (folder layouts).
    """

    path: Path
    split: str | None = None
    media_root: Path | None = None
    labels: tuple[str, ...] | None = None
    extensions: tuple[str, ...] | None = None

    @property
    def valence_arousal(self) -> bool:
        """Whether ``labels`` asks for the valence/arousal regression task."""
        return self.labels is not None and tuple(n.lower() for n in self.labels) == VALENCE_AROUSAL


@dataclass(frozen=True)
class DatasetFormat:
    """A published layout, registered by name.

    Attributes:
        name: what users pass as ``format``.
        description: one line for listings.
        read: ReadRequest -> samples with ``native`` label names.
        labels: the data set's label vocabulary in its own order (the default label order
            of :func:`read_dataset`); None when the names come from the data (folders, JSONL).
        ignored: label names that are not emotion classes (AffectNet "none", IEMOCAP "xxx"):
            always left out of classification, counted in ``Dataset.skipped``.
        multi_label: True (EMOTIC), False, or None when the data decides (JSONL).
        valence_arousal: whether the annotations can carry valence/arousal.
    """

    name: str
    description: str
    read: Callable[[ReadRequest], Iterable[Sample]]
    labels: tuple[str, ...] | None = None
    ignored: tuple[str, ...] = ()
    multi_label: bool | None = False
    valence_arousal: bool = False
