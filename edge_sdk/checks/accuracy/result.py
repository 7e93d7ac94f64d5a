"""The result of an accuracy check and how it is judged and summarised: thresholds, the
title and summary lines reports and tables share, and ``--label-map`` values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.datasets.base import CLASSIFICATION, MULTILABEL, VALENCE_AROUSAL_TASK
from edge_sdk.datasets.labels import canonical
from edge_sdk.errors import InputError
from edge_sdk.metrics import Metrics

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
