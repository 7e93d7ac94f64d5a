"""Typed samples, the registry of published layouts and :func:`read_dataset`.

A format module (``fer2013.py``, ``meld.py``, ...) registers a :class:`DatasetFormat` whose
reader turns files into :class:`Sample` objects carrying the data set's *own* label names
(``Sample.native``). :func:`read_dataset` then does everything that is the same for every
layout: missing-file checks, validation of label names against the format's vocabulary,
mapping onto the requested label order (:mod:`edge_sdk.datasets.labels`), and the choice of
task (single-label, multi-label or valence/arousal). Adding a layout touches one file.

The records (:class:`Sample`, :class:`Dataset`, ...) are in :mod:`edge_sdk.datasets.samples`
and the label mapping per task in :mod:`edge_sdk.datasets.tasks`; their public names are
importable from here as before.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_sdk.datasets.samples import (
    CLASSIFICATION,
    MULTILABEL,
    VALENCE_AROUSAL,
    VALENCE_AROUSAL_TASK,
    Dataset,
    DatasetFormat,
    FilePolicy,
    Policy,
    ReadRequest,
    Sample,
)
from edge_sdk.datasets.tasks import (
    finish_classification,
    finish_multilabel,
    finish_valence_arousal,
    is_multi_label,
    native_vocabulary,
)
from edge_sdk.errors import InputError

__all__ = [
    "CLASSIFICATION",
    "MULTILABEL",
    "VALENCE_AROUSAL",
    "VALENCE_AROUSAL_TASK",
    "Dataset",
    "DatasetFormat",
    "FilePolicy",
    "Policy",
    "ReadRequest",
    "Sample",
    "formats",
    "get_format",
    "read_dataset",
    "register_format",
]


_FORMATS: dict[str, DatasetFormat] = {}
_NOT_FORMAT_MODULES = {"base", "labels", "samples", "tasks"}


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
    raw, vocabulary = native_vocabulary(fmt, raw)
    raw = _check_files(raw, missing_files, skipped)
    if request.valence_arousal:
        return finish_valence_arousal(fmt, request, raw, label_map, skipped)
    multi = is_multi_label(fmt, raw)
    finish = finish_multilabel if multi else finish_classification
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
