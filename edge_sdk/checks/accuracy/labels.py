"""The label space of a check (the data set's labels mapped onto a bundle's by name) and
the seeded subset of samples that is scored."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.datasets.base import CLASSIFICATION, Dataset, Sample
from edge_sdk.datasets.labels import canonical, map_labels
from edge_sdk.errors import InputError


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


def relabel(dataset: Dataset, space: LabelSpace) -> tuple[list[Sample], np.ndarray, Counter]:
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


def draw(dataset: Dataset, limit: int | None, seed: int, dialog: bool) -> Dataset:
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
