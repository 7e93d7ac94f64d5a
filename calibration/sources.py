"""Where calibration (and check) inputs come from: media folders or list files, or an
``.npz`` of graph feeds, sampled by seed.

Sampling is seeded and the selection is hashed, so the manifest's calibration record says
exactly which data produced the scales. :func:`read_npz_feeds` is the one reader of the
``GRAPH/INPUT`` format, for ``calibrate`` and for ``verify --data`` alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.manifest import GraphSpec, Manifest

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
T = TypeVar("T")
DATA_KEY_SEPARATOR = "/"  # npz keys: "<graph>/<input>"; labels: "<graph>/<output>:labels"
LABELS_SUFFIX = ":labels"


AUDIO_SUFFIXES = frozenset({".wav"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})


def image_paths(source: str | Path) -> list[Path]:
    """Images under a folder (recursively) or listed in a text file (one path a line)."""
    return media_paths(source, IMAGE_SUFFIXES)


def media_paths(source: str | Path, suffixes: frozenset[str]) -> list[Path]:
    """Files with ``suffixes`` under a folder (recursively) or listed in a text file.

    Relative paths in a list file are relative to the file; blank lines and ``#``
    comments are ignored. The result is sorted so sampling is reproducible.
    """
    root = Path(source)
    if root.is_dir():
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    elif root.is_file():
        found = []
        for number, line in enumerate(root.read_text(encoding="utf-8").splitlines(), 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry) if Path(entry).is_absolute() else root.parent / entry
            if not path.is_file():
                raise InputError(f"{root}:{number}: listed file {entry!r} does not exist")
            found.append(path)
    else:
        raise InputError(f"calibration data {root} is neither a folder nor a list file")
    if not found:
        raise InputError(f"calibration data {root} holds no {sorted(suffixes)} files")
    return found


def sample(items: Sequence[T], count: int | None, seed: int) -> list[T]:
    """Up to ``count`` items drawn without replacement by ``seed`` (all when None)."""
    if count is None or count >= len(items):
        return list(items)
    if count <= 0:
        raise InputError(f"calibration count must be positive, got {count}")
    picks = np.random.default_rng(seed).choice(len(items), size=count, replace=False)
    return [items[i] for i in sorted(picks)]


def files_sha256(paths: Sequence[Path]) -> str:
    """One hash over the selected files' names and bytes (the calibration record)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class GraphArrays:
    """One graph's arrays from an ``.npz`` of feeds, first axis = samples.

    Attributes:
        inputs: input name -> every sample of it.
        labels: output name -> integer ground truth per sample (optional in the file).
        samples: the shared first-axis length.
    """

    inputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    samples: int

    def feeds(self, rows: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """Single-sample feeds (batch axis kept) for ``rows``."""
        return [{name: array[i : i + 1] for name, array in self.inputs.items()} for i in rows]

    def labels_for(self, rows: Sequence[int]) -> dict[str, np.ndarray]:
        """Integer labels of ``rows``, one entry per output row, concatenated."""
        index = list(rows)
        return {k: v[index].reshape(-1).astype(np.int64) for k, v in self.labels.items()}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npz of arrays: {exc}") from exc


def _graph_arrays(path: Path, graph: GraphSpec, arrays: dict[str, np.ndarray]) -> GraphArrays:
    keys = {t.name: f"{graph.name}{DATA_KEY_SEPARATOR}{t.name}" for t in graph.inputs}
    present = [k for k in keys.values() if k in arrays]
    if len(present) != len(keys):
        missing = sorted(set(keys.values()) - set(present))
        raise InputError(f"{path}: graph {graph.name!r} lacks arrays {missing}")
    lengths = {arrays[k].shape[0] if arrays[k].ndim else -1 for k in keys.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise InputError(f"{path}: inputs of graph {graph.name!r} differ in sample count")
    total = lengths.pop()
    prefix = f"{graph.name}{DATA_KEY_SEPARATOR}"
    outputs = {t.name for t in graph.outputs}
    labelled = {
        key[len(prefix) : -len(LABELS_SUFFIX)]: key
        for key in arrays
        if key.startswith(prefix) and key.endswith(LABELS_SUFFIX)
    }
    unknown = sorted(key for output, key in labelled.items() if output not in outputs)
    if unknown:
        raise InputError(f"{path}: labels for unknown outputs: {unknown}")
    for key in labelled.values():
        if arrays[key].shape[:1] != (total,):
            raise InputError(f"{path}: {key} must have {total} rows, one per sample")
    return GraphArrays(
        {name: arrays[key] for name, key in keys.items()},
        {output: arrays[key] for output, key in labelled.items()},
        total,
    )


def read_npz_feeds(path: str | Path, manifest: Manifest) -> dict[str, GraphArrays]:
    """The graphs an ``.npz`` of feeds reaches: ``GRAPH/INPUT`` arrays (first axis =
    samples) and optional ``GRAPH/OUTPUT:labels`` integer classes.

    Every key must name a graph of the bundle and a graph's inputs come all or none, so a
    misspelt key is an error rather than a graph silently left without data.
    """
    path = Path(path)
    arrays = _load_npz(path)
    names = [g.name for g in manifest.graphs]
    for key in arrays:
        graph_name, sep, rest = key.partition(DATA_KEY_SEPARATOR)
        if not sep or not rest:
            raise InputError(f"{path}: key {key!r} is not '<graph>/<input>'")
        if graph_name not in names:
            raise InputError(f"{path}: key {key!r} names no graph of the bundle ({names})")
    found = {
        graph.name: _graph_arrays(path, graph, arrays)
        for graph in manifest.graphs
        if any(f"{graph.name}{DATA_KEY_SEPARATOR}{t.name}" in arrays for t in graph.inputs)
    }
    if not found:
        raise InputError(f"{path}: no arrays named GRAPH/INPUT for any graph of the bundle")
    return found
