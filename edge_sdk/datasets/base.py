"""Typed samples, the registry of published layouts and :func:`read_dataset`.

A format module (``fer2013.py``, ``meld.py``, ...) registers a :class:`DatasetFormat` whose
reader turns files into :class:`Sample` objects carrying the data set's *own* label names
(``Sample.native``). :func:`read_dataset` then does everything that is the same for every
layout: missing-file checks, validation of label names against the format's vocabulary,
mapping onto the requested label order (:mod:`edge_sdk.datasets.labels`), and the choice of
task (single-label, multi-label or valence/arousal). Adding a layout touches one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_sdk.datasets.labels import map_labels
from edge_sdk.errors import InputError
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


_FORMATS: dict[str, DatasetFormat] = {}
_NOT_FORMAT_MODULES = {"base", "labels"}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Add a format (called at import time of its module)."""
    if fmt.name in _FORMATS:
        raise ValueError(f"dataset format {fmt.name!r} registered twice")
    _FORMATS[fmt.name] = fmt
    return fmt


def _load_format_modules() -> None:
    """Import every format module of this package; adding a format touches no list."""
    package = importlib.import_module("edge_sdk.datasets")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in _NOT_FORMAT_MODULES:
            importlib.import_module(f"edge_sdk.datasets.{info.name}")


def formats() -> tuple[DatasetFormat, ...]:
    """Every registered format, sorted by name."""
    _load_format_modules()
    return tuple(_FORMATS[n] for n in sorted(_FORMATS))


def get_format(name: str) -> DatasetFormat:
    """Look a format up by name (case-insensitive); unknown names list the known ones."""
    known = {f.name: f for f in formats()}
    key = name.strip().lower()
    if key not in known:
        raise InputError(f"unknown dataset format {name!r}; known: {sorted(known)}")
    return known[key]


# --------------------------------------------------------------------------- read_dataset
def read_dataset(
    path: str | Path,
    format: str,  # noqa: A002 - the user-facing name of the argument
    labels: Sequence[str] | None = None,
    *,
    split: str | None = None,
    media_root: str | Path | None = None,
    label_map: Mapping[str, str | None] | None = None,
    unmapped: Policy = "error",
    missing_files: FilePolicy = "error",
    extensions: Sequence[str] | None = None,
) -> Dataset:
    """Read a data set in one of the registered layouts (see :func:`formats`).

    Args:
        path: annotation file or data set folder, as each format documents.
        format: registered format name, e.g. ``"fer2013"``, ``"rafdb"``, ``"meld"``.
        labels: label order to map onto, normally a model's ``manifest.labels``; None keeps
            the data set's own order. ``("valence", "arousal")`` asks for the regression
            task: samples without valence/arousal are left out.
        split: keep one published split (names per format, case-insensitive).
        media_root: folder holding the media when not in the published place.
        label_map: data set label -> one of ``labels`` (or None to leave it out), for merges
            the synonym table does not make (``{"contempt": "disgust"}``).
        unmapped: a data set label with no counterpart in ``labels``: ``"error"`` (default)
            or ``"skip"`` (left out, counted in ``Dataset.skipped``).
        missing_files: a media file that does not exist: ``"error"`` (default), ``"skip"``
            or ``"keep"`` (do not check).
        extensions: file suffixes to list for folder layouts (default: images, videos and
            audio).

    Raises:
        InputError: unknown format, unreadable or malformed annotations (file and line
            named), unknown labels, missing files, or nothing left to evaluate.
    """
    fmt = get_format(format)
    for name, value, allowed in (
        ("unmapped", unmapped, ("error", "skip")),
        ("missing_files", missing_files, ("error", "skip", "keep")),
    ):
        if value not in allowed:
            raise InputError(f"{name} must be one of {allowed}, got {value!r}")
    if isinstance(labels, str):
        raise InputError(f"labels must be a sequence of names, got the string {labels!r}")
    target = tuple(labels) if labels is not None else None
    if target is not None and not target:
        raise InputError("labels is empty")
    request = ReadRequest(
        path=Path(path),
        split=split,
        media_root=Path(media_root) if media_root is not None else None,
        labels=target,
        extensions=tuple(extensions) if extensions is not None else None,
    )
    raw = list(fmt.read(request))
    if not raw:
        where = f" (split {split!r})" if split else ""
        raise InputError(f"{path}: no {fmt.name} samples found{where}")
    skipped: Counter[str] = Counter()
    raw, vocabulary = _native_vocabulary(fmt, raw)
    raw = _check_files(raw, missing_files, skipped)
    if request.valence_arousal:
        return _finish_valence_arousal(fmt, request, raw, label_map, skipped)
    multi = _is_multi_label(fmt, raw)
    finish = _finish_multilabel if multi else _finish_classification
    return finish(fmt, request, raw, vocabulary, target, label_map, unmapped, skipped)


def _check_files(raw: list[Sample], policy: FilePolicy, skipped: Counter[str]) -> list[Sample]:
    if policy == "keep":
        return raw
    kept = []
    for sample in raw:
        absent = next((p for p in sample.paths if not p.is_file()), None)
        if absent is None:
            kept.append(sample)
        elif policy == "error":
            raise InputError(
                f"{sample.source}: missing file {absent} (missing_files='skip' leaves such "
                "samples out)"
            )
        else:
            skipped["missing file"] += 1
    if not kept:
        raise InputError(f"every sample's media file is missing (first: {raw[0].source})")
    return kept


def _native_vocabulary(
    fmt: DatasetFormat, raw: list[Sample]
) -> tuple[list[Sample], tuple[str, ...]]:
    """Samples with ``native`` spelled as in the vocabulary, and the vocabulary."""
    if fmt.labels is None:
        names: set[str] = set()
        for sample in raw:
            names.update(_natives(sample))
        return raw, tuple(sorted(names))
    spelling = {name.lower(): name for name in (*fmt.labels, *fmt.ignored)}
    out = []
    for sample in raw:
        unknown = [n for n in _natives(sample) if n.strip().lower() not in spelling]
        if unknown:
            raise InputError(
                f"{sample.source}: unknown {fmt.name} label {unknown[0]!r}; expected one of "
                f"{list(fmt.labels)}"
            )
        native = sample.native
        fixed: str | tuple[str, ...] | None = native
        if isinstance(native, tuple):
            fixed = tuple(spelling[n.strip().lower()] for n in native)
        elif native is not None:
            fixed = spelling[native.strip().lower()]
        out.append(sample if fixed == native else replace(sample, native=fixed))
    return out, fmt.labels


def _natives(sample: Sample) -> tuple[str, ...]:
    native = sample.native
    return native if isinstance(native, tuple) else () if native is None else (native,)


def _is_multi_label(fmt: DatasetFormat, raw: list[Sample]) -> bool:
    if fmt.multi_label is not None:
        return fmt.multi_label
    labelled = [s for s in raw if s.native is not None]
    if not labelled:
        return False
    multi = isinstance(labelled[0].native, tuple)
    odd = next((s for s in labelled if isinstance(s.native, tuple) != multi), None)
    if odd is not None:
        raise InputError(f"{odd.source}: mixes single labels and label lists in one file")
    return multi


def _mapping_report(
    vocabulary: tuple[str, ...], target: tuple[str, ...], index: dict[str, int | None]
) -> dict[str, str | None]:
    return {name: None if index[name] is None else target[index[name]] for name in vocabulary}


def _unmapped_error(
    fmt: DatasetFormat, name: str, first: Sample, count: int, target: tuple[str, ...]
) -> InputError:
    return InputError(
        f"{first.source}: {fmt.name} label {name!r} ({count} samples) has no counterpart in "
        f"labels {list(target)}; pass label_map={{{name!r}: <label>}} to merge it or "
        "unmapped='skip' to leave it out"
    )


@dataclass(frozen=True)
class _LabelPlan:
    """Where each native label name of a data set lands in the target vocabulary."""

    target: tuple[str, ...]
    index: Mapping[str, int | None]
    ignored: frozenset[str]
    dropped: frozenset[str]

    @classmethod
    def build(
        cls,
        fmt: DatasetFormat,
        vocabulary: tuple[str, ...],
        target: tuple[str, ...] | None,
        label_map: Mapping[str, str | None] | None,
    ) -> _LabelPlan:
        target = target or vocabulary
        index = map_labels(vocabulary, target, label_map, strict_overrides=fmt.labels is not None)
        return cls(
            target,
            index,
            frozenset(n.lower() for n in fmt.ignored),
            frozenset(k.strip().lower() for k, v in (label_map or {}).items() if v is None),
        )

    def place(self, name: str) -> int | str:
        """The target index of ``name``, or why it has none: ``ignored`` (the format's own
        non-emotion labels), ``dropped`` (mapped to None) or ``lost`` (no mapping)."""
        if name.lower() in self.ignored:
            return "ignored"
        found = self.index[name]
        if found is not None:
            return found
        return "dropped" if name.lower() in self.dropped else "lost"


def _finish_classification(
    fmt: DatasetFormat,
    request: ReadRequest,
    raw: list[Sample],
    vocabulary: tuple[str, ...],
    target: tuple[str, ...] | None,
    label_map: Mapping[str, str | None] | None,
    unmapped: Policy,
    skipped: Counter[str],
) -> Dataset:
    plan = _LabelPlan.build(fmt, vocabulary, target, label_map)
    lost: dict[str, list[Sample]] = {}
    kept = []
    for sample in raw:
        native = sample.native
        if native is None:
            raise InputError(f"{sample.source}: no emotion label")
        where = plan.place(native)
        if where == "ignored":
            skipped[f"ignored label {native!r}"] += 1
        elif where == "dropped":
            skipped[f"label {native!r} dropped by label_map"] += 1
        elif where == "lost":
            lost.setdefault(native, []).append(sample)
        else:
            kept.append(replace(sample, label=where))
    for name, samples in lost.items():
        if unmapped == "error":
            raise _unmapped_error(fmt, name, samples[0], len(samples), plan.target)
        skipped[f"unmapped label {name!r}"] += len(samples)
    if not kept:
        raise InputError(f"{request.path}: no samples left after label mapping ({dict(skipped)})")
    return Dataset(
        fmt.name,
        request.path,
        CLASSIFICATION,
        plan.target,
        tuple(kept),
        _mapping_report(vocabulary, plan.target, plan.index),
        dict(skipped),
    )


def _finish_multilabel(
    fmt: DatasetFormat,
    request: ReadRequest,
    raw: list[Sample],
    vocabulary: tuple[str, ...],
    target: tuple[str, ...] | None,
    label_map: Mapping[str, str | None] | None,
    unmapped: Policy,
    skipped: Counter[str],
) -> Dataset:
    plan = _LabelPlan.build(fmt, vocabulary, target, label_map)
    lost: Counter[str] = Counter()
    first: dict[str, Sample] = {}
    kept = []
    for sample in raw:
        vector = [0] * len(plan.target)
        for name in _natives(sample):
            where = plan.place(name)
            if where == "ignored":
                skipped[f"ignored label {name!r} (occurrences)"] += 1
            elif where == "dropped":
                skipped[f"label {name!r} dropped by label_map (occurrences)"] += 1
            elif where == "lost":
                lost[name] += 1
                first.setdefault(name, sample)
            else:
                vector[where] = 1
        kept.append(replace(sample, targets=tuple(vector)))
    for name, count in lost.items():
        if unmapped == "error":
            raise _unmapped_error(fmt, name, first[name], count, plan.target)
        skipped[f"unmapped label {name!r} (occurrences)"] += count
    return Dataset(
        fmt.name,
        request.path,
        MULTILABEL,
        plan.target,
        tuple(kept),
        _mapping_report(vocabulary, plan.target, plan.index),
        dict(skipped),
    )


def _finish_valence_arousal(
    fmt: DatasetFormat,
    request: ReadRequest,
    raw: list[Sample],
    label_map: Mapping[str, str | None] | None,
    skipped: Counter[str],
) -> Dataset:
    if not fmt.valence_arousal:
        raise InputError(f"{fmt.name} annotations carry no valence/arousal")
    if label_map:
        raise InputError("label_map does not apply to valence/arousal")
    kept = [s for s in raw if s.valence is not None and s.arousal is not None]
    if len(kept) < len(raw):
        skipped["no valence/arousal"] += len(raw) - len(kept)
    if not kept:
        raise InputError(f"{request.path}: no sample has valence/arousal")
    return Dataset(
        fmt.name,
        request.path,
        VALENCE_AROUSAL_TASK,
        VALENCE_AROUSAL,
        tuple(kept),
        {},
        dict(skipped),
    )
