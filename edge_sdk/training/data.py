"""Training data: ``FORMAT:PATH`` sources, the seeded validation split, teacher embeddings, and
the batches the loop draws (in DataLoader worker processes when asked).

Sources are read by :func:`edge_sdk.datasets.read_dataset`, the reader ``check accuracy`` uses,
with the family's label order, so a label the model lacks fails the same way in both.

Sample ids (:func:`sample_id`) are what the split and the teacher file key on: the media file's
path relative to the data set root (the folder given, or the folder of the annotation file
given), POSIX separators, e.g. ``Image/aligned/train_00001_aligned.jpg`` for RAF-DB or
``happy/img3.png`` for a folder set; inline pixels (FER2013 rows) are ``fer2013.csv:<line>``.

Validation split rule (:func:`in_validation`): a sample is held out iff the first 8 bytes of
``sha256(f"{seed}:{sample_id}")``, read as a big-endian integer and divided by 2**64, are below
the fraction. It depends on nothing but the seed and the id: not on file order, worker count
or machine, and adding samples never moves the existing ones.

Teacher file (Exp-CLIP): a NumPy ``.npz`` read with ``allow_pickle=False`` holding ``ids``, a
1-D unicode array of sample ids, and ``embeddings``, a 2-D float array (one row per id, width =
the family's teacher width, finite values). Ids must be unique; a training sample without an
id is skipped and counted (an error with ``strict``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.datasets.base import Dataset, Sample, get_format, read_dataset
from edge_sdk.errors import InputError
from edge_sdk.models.families import DatasetTraining
from edge_sdk.training.faces import UnreadableSampleError

TEACHER_KEY = "teacher"  # Sample.extra key the loop fills from the teacher file


@dataclass(frozen=True)
class DataSource:
    """A data set named on the command line: ``FORMAT:PATH`` with an optional ``#SPLIT``."""

    format: str
    path: Path
    split: str | None = None

    def __str__(self) -> str:
        return f"{self.format}:{self.path}" + (f"#{self.split}" if self.split else "")


def parse_source(text: str | DataSource) -> DataSource:
    """``"rafdb:/data/basic#train"`` -> DataSource; unknown formats and missing paths fail.

    Raises:
        InputError: no ``:``, an unknown format (the known ones listed) or a path that
            does not exist.
    """
    if isinstance(text, DataSource):
        source = text
    else:
        name, sep, rest = str(text).partition(":")
        if not sep or not name.strip() or not rest.strip():
            raise InputError(f"data source {text!r} is not FORMAT:PATH (e.g. rafdb:/data/basic)")
        path, _, split = rest.partition("#")
        source = DataSource(get_format(name).name, Path(path), split or None)
    if not source.path.exists():
        raise InputError(f"data source {source}: path {source.path} does not exist")
    return source


def read_source(
    source: DataSource, training: DatasetTraining, labels: Sequence[str], options: Any
) -> Dataset:
    """The samples of ``source`` in the model's label order (or valence/arousal), with the
    run's ``strict``, ``label_map`` and ``unmapped`` options.

    Raises:
        InputError: a format the family does not train on, or any reader error.
    """
    if source.format not in training.formats:
        raise InputError(
            f"this family trains on {list(training.formats)}, not {source.format} ({source})"
        )
    return read_dataset(
        source.path,
        source.format,
        labels=tuple(labels),
        split=source.split,
        label_map=options.label_map or None,
        unmapped=options.unmapped,
        missing_files="error" if options.strict else "skip",
    )


def data_root(dataset: Dataset) -> Path:
    """The folder sample ids are relative to."""
    return dataset.path if dataset.path.is_dir() else dataset.path.parent


def sample_id(sample: Sample, root: Path) -> str:
    """Stable id of a sample (module docs): media path relative to ``root``, or file:line."""
    if sample.path is None:
        file, _, line = sample.source.rpartition(":")
        return f"{_relative(Path(file), root)}:{line}"
    return _relative(sample.path, root)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def in_validation(identifier: str, fraction: float, seed: int) -> bool:
    """Whether the sample with this id is held out (module docs give the rule)."""
    digest = hashlib.sha256(f"{seed}:{identifier}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def split_dataset(
    dataset: Dataset, fraction: float, seed: int, group: Callable[[Any], str] | None = None
) -> tuple[Dataset, Dataset]:
    """(train, validation) by :func:`in_validation`; both keep the data set's order. With
    ``group`` the rule is applied to each sample's unit key, so a unit stays whole.

    Raises:
        InputError: a fraction outside (0, 1), or a side left empty.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"val_split must lie in (0, 1), got {fraction}")
    root = data_root(dataset)
    held = [
        in_validation(group(s) if group else sample_id(s, root), fraction, seed)
        for s in dataset.samples
    ]
    val = tuple(s for s, h in zip(dataset.samples, held, strict=True) if h)
    train = tuple(s for s, h in zip(dataset.samples, held, strict=True) if not h)
    if not val or not train:
        raise InputError(
            f"val_split {fraction} (seed {seed}) leaves {len(train)} training and {len(val)} "
            f"validation samples of {len(dataset)}; change the fraction or give --val"
        )
    return replace(dataset, samples=train), replace(dataset, samples=val)


# --------------------------------------------------------------------------- teacher file
@dataclass(frozen=True)
class TeacherTable:
    """Teacher embeddings by sample id, read from a ``.npz`` (module docs)."""

    path: Path
    ids: dict[str, int]
    embeddings: np.ndarray
    sha256: str


def load_teachers(path: str | Path, width: int) -> TeacherTable:
    """Read and check a teacher file.

    Raises:
        InputError: unreadable file, missing ``ids``/``embeddings``, pickled objects,
            duplicate ids, a row count or width that does not fit, non-finite values.
    """
    from edge_sdk.bundle import sha256_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"teacher file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as handle:
            missing = [k for k in ("ids", "embeddings") if k not in handle.files]
            if missing:
                raise InputError(f"teacher file {path} lacks {missing} (has {handle.files})")
            ids, embeddings = handle["ids"], handle["embeddings"]
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"teacher file {path} is not a readable .npz of arrays: {exc}") from exc
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise InputError(f"teacher file {path}: 'ids' must be a 1-D string array, got {ids.dtype}")
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
        raise InputError(
            f"teacher file {path}: 'embeddings' must be a 2-D float array, got "
            f"{embeddings.dtype} {embeddings.shape}"
        )
    if embeddings.shape[0] != ids.shape[0]:
        raise InputError(
            f"teacher file {path}: {ids.shape[0]} ids but {embeddings.shape[0]} embeddings"
        )
    if embeddings.shape[1] != width:
        raise InputError(
            f"teacher file {path}: embeddings are {embeddings.shape[1]} wide, the model's "
            f"projection gives {width}"
        )
    if not np.isfinite(embeddings).all():
        raise InputError(f"teacher file {path}: embeddings hold NaN or Inf")
    duplicates = [k for k, n in Counter(ids.tolist()).items() if n > 1]
    if duplicates:
        raise InputError(f"teacher file {path}: duplicate ids, e.g. {duplicates[0]!r}")
    return TeacherTable(
        path,
        {k: i for i, k in enumerate(ids.tolist())},
        embeddings.astype(np.float32),
        sha256_file(path),
    )


def attach_teachers(
    dataset: Dataset, table: TeacherTable, strict: bool, skipped: Counter[str]
) -> Dataset:
    """Samples with their teacher vector in ``extra["teacher"]``; others skipped or fatal."""
    root = data_root(dataset)
    kept = []
    for sample in dataset.samples:
        key = sample_id(sample, root)
        row = table.ids.get(key)
        if row is None:
            if strict:
                raise InputError(
                    f"{sample.source}: no teacher embedding for sample id {key!r} in "
                    f"{table.path}"
                )
            skipped["no teacher embedding"] += 1
            continue
        extra = {**sample.extra, TEACHER_KEY: table.embeddings[row]}
        kept.append(replace(sample, extra=extra))
    if not kept:
        first = sample_id(dataset.samples[0], root)
        raise InputError(
            f"no sample of {dataset.path} has a teacher embedding (first id {first!r})"
        )
    return replace(dataset, samples=tuple(kept))


# --------------------------------------------------------------------------- batches
@dataclass
class Batch:
    """What one loader step yields: the batch (None if every sample failed), the indices of
    the samples in it, and the samples left out as (source, reason)."""

    tensors: dict[str, Any] | None
    indices: list[int]
    failures: list[tuple[str, str]] = field(default_factory=list)


class BatchSource:
    """A map-style dataset whose items are whole batches (a list of sample indices each).

    Built by the family's ``batch_from_samples`` inside the worker process; a batch that
    fails is rebuilt sample by sample so that only the unreadable samples drop out.
    """

    def __init__(
        self,
        training: DatasetTraining,
        config: Any,
        samples: Sequence[Sample],
        plan: Sequence[Sequence[int]],
        augment: bool,
        seed: Sequence[int],
    ) -> None:
        self.training = training
        self.config = config
        self.samples = list(samples)
        self.plan = [list(p) for p in plan]
        self.augment = augment
        self.seed = list(seed)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> Batch:
        chosen = self.plan[index]
        rng = np.random.default_rng([*self.seed, index])
        build = self.training.batch_from_samples
        try:
            return Batch(
                build(self.config, [self.samples[i] for i in chosen], self.augment, rng), chosen
            )
        except UnreadableSampleError:
            pass
        good, failures = [], []
        for i in chosen:
            try:
                build(self.config, [self.samples[i]], False, np.random.default_rng(0))
                good.append(i)
            except UnreadableSampleError as exc:
                failures.append((exc.source, exc.reason))
        tensors = (
            build(self.config, [self.samples[i] for i in good], self.augment, rng) if good else None
        )
        return Batch(tensors, good, failures)


def group_units(samples: Sequence[Any], group: Callable[[Any], str] | None) -> list[list[int]]:
    """Sample indices per unit, units in order of first appearance (one sample each
    without ``group``)."""
    if group is None:
        return [[i] for i in range(len(samples))]
    units: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        units.setdefault(group(sample), []).append(i)
    return list(units.values())


def batch_plan(
    count: int,
    batch_size: int,
    shuffle_seed: Sequence[int] | None,
    units: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Index lists of ``batch_size`` units (the last may be short); units (default: one
    sample each) are shuffled when seeded and never split between batches."""
    grouped = [list(u) for u in units] if units is not None else [[i] for i in range(count)]
    order = np.arange(len(grouped))
    if shuffle_seed is not None:
        order = np.random.default_rng(list(shuffle_seed)).permutation(len(grouped))
    return [
        [i for u in order[j : j + batch_size] for i in grouped[u]]
        for j in range(0, len(grouped), batch_size)
    ]


def loader(source: BatchSource, workers: int) -> Any:
    """A torch DataLoader over whole batches (``workers`` processes; 0 = this process)."""
    from torch.utils.data import DataLoader

    return DataLoader(
        source,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_identity,
        persistent_workers=False,
    )


def _identity(item: Batch) -> Batch:
    return item
