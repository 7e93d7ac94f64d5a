"""From raw samples with the data set's own label names to a :class:`Dataset` of one task.

:func:`edge_sdk.datasets.read_dataset` reads a layout, then hands the samples here: label
names are checked against the format's vocabulary and spelled as it spells them, mapped onto
the requested label order (:func:`edge_sdk.datasets.labels.map_labels`), and each sample gets
its class index (single-label), multi-hot vector (multi-label) or is kept for valence/arousal;
what is left out is counted by reason in ``Dataset.skipped``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from edge_sdk.datasets.labels import map_labels
from edge_sdk.datasets.samples import (
    CLASSIFICATION,
    MULTILABEL,
    VALENCE_AROUSAL,
    VALENCE_AROUSAL_TASK,
    Dataset,
    DatasetFormat,
    Policy,
    ReadRequest,
    Sample,
)
from edge_sdk.errors import InputError


def native_vocabulary(
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


def is_multi_label(fmt: DatasetFormat, raw: list[Sample]) -> bool:
    """The format's answer, or (JSONL) the data's: label lists throughout, never mixed."""
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


class _Tally:
    """Where each label of a data set went while it was finished: ignored and dropped ones
    counted in ``skipped``, those the target lacks held (count, first sample) until
    :meth:`settle` fails on them or counts them, per ``unmapped``. ``unit`` says what is
    counted: samples, or label occurrences for multi-label sets."""

    def __init__(self, fmt: DatasetFormat, plan: _LabelPlan, skipped: Counter[str], unit: str):
        self.fmt, self.plan, self.skipped = fmt, plan, skipped
        self.suffix = "" if unit == "samples" else f" ({unit})"
        self.lost: Counter[str] = Counter()
        self.first: dict[str, Sample] = {}

    def place(self, name: str, sample: Sample) -> int | None:
        """The target index of ``name``; None when it has none (and is counted or held)."""
        where = self.plan.place(name)
        if where == "ignored":
            self.skipped[f"ignored label {name!r}{self.suffix}"] += 1
        elif where == "dropped":
            self.skipped[f"label {name!r} dropped by label_map{self.suffix}"] += 1
        elif where == "lost":
            self.lost[name] += 1
            self.first.setdefault(name, sample)
        else:
            return int(where)
        return None

    def settle(self, unmapped: Policy) -> None:
        """Fail on the first label the target lacks, or count them all as skipped."""
        for name, count in self.lost.items():
            if unmapped == "error":
                raise _unmapped_error(self.fmt, name, self.first[name], count, self.plan.target)
            self.skipped[f"unmapped label {name!r}{self.suffix}"] += count

    def dataset(
        self, request: ReadRequest, task: str, vocabulary: tuple[str, ...], kept: list[Sample]
    ) -> Dataset:
        plan = self.plan
        report = _mapping_report(vocabulary, plan.target, plan.index)
        return Dataset(
            self.fmt.name, request.path, task, plan.target, tuple(kept), report, dict(self.skipped)
        )


def finish_classification(
    fmt: DatasetFormat,
    request: ReadRequest,
    raw: list[Sample],
    vocabulary: tuple[str, ...],
    target: tuple[str, ...] | None,
    label_map: Mapping[str, str | None] | None,
    unmapped: Policy,
    skipped: Counter[str],
) -> Dataset:
    """One class index per sample; an unmapped label fails or is skipped per ``unmapped``."""
    tally = _Tally(fmt, _LabelPlan.build(fmt, vocabulary, target, label_map), skipped, "samples")
    kept = []
    for sample in raw:
        if sample.native is None:
            raise InputError(f"{sample.source}: no emotion label")
        index = tally.place(sample.native, sample)
        if index is not None:
            kept.append(replace(sample, label=index))
    tally.settle(unmapped)
    if not kept:
        raise InputError(f"{request.path}: no samples left after label mapping ({dict(skipped)})")
    return tally.dataset(request, CLASSIFICATION, vocabulary, kept)


def finish_multilabel(
    fmt: DatasetFormat,
    request: ReadRequest,
    raw: list[Sample],
    vocabulary: tuple[str, ...],
    target: tuple[str, ...] | None,
    label_map: Mapping[str, str | None] | None,
    unmapped: Policy,
    skipped: Counter[str],
) -> Dataset:
    """One multi-hot vector per sample; label occurrences left out are counted."""
    plan = _LabelPlan.build(fmt, vocabulary, target, label_map)
    tally = _Tally(fmt, plan, skipped, "occurrences")
    kept = []
    for sample in raw:
        vector = [0] * len(plan.target)
        for name in _natives(sample):
            index = tally.place(name, sample)
            if index is not None:
                vector[index] = 1
        kept.append(replace(sample, targets=tuple(vector)))
    tally.settle(unmapped)
    return tally.dataset(request, MULTILABEL, vocabulary, kept)


def finish_valence_arousal(
    fmt: DatasetFormat,
    request: ReadRequest,
    raw: list[Sample],
    label_map: Mapping[str, str | None] | None,
    skipped: Counter[str],
) -> Dataset:
    """The samples that carry both valence and arousal (no label mapping applies)."""
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
