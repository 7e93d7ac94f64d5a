"""check_accuracy(): route every sample, run the jobs (``concurrency`` at a time), score the
answers with misses counted as the package docs say, and judge the thresholds."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edge_sdk.checks.accuracy.audio import answer_audio
from edge_sdk.checks.accuracy.dialog import answer_dialog, chunk_size
from edge_sdk.checks.accuracy.face import answer_face, answer_video
from edge_sdk.checks.accuracy.labels import LabelSpace, draw, label_space, relabel
from edge_sdk.checks.accuracy.result import AccuracyResult, check_thresholds, judge
from edge_sdk.checks.accuracy.routing import (
    Answer,
    Route,
    StepCallback,
    bundle_labels,
    choose_modality,
    open_recognizer,
)
from edge_sdk.checks.accuracy.scene import answer_scene
from edge_sdk.checks.jobs import run_jobs
from edge_sdk.datasets.base import (
    CLASSIFICATION,
    VALENCE_AROUSAL,
    VALENCE_AROUSAL_TASK,
    Dataset,
    Sample,
)
from edge_sdk.errors import InputError
from edge_sdk.metrics import ClassificationMetrics, Metrics, compute_metrics

MISS_LABEL = "(no face)"
MAX_PROBLEMS = 20
# The answer function of each route that takes one sample at a time (dialog takes chunks).
SAMPLE_ROUTES: dict[str, Callable[[Route, Sample], Answer]] = {
    "face": answer_face,
    "scene": answer_scene,
    "audio": answer_audio,
    "video": answer_video,
}


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
    """Run ``dataset`` through a Recognizer and score it (see the package docs).

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
        subset = draw(dataset, limit, seed, modality == "dialog")
        samples, truth = list(subset.samples), subset.y_true()
    else:
        family, labels = bundle_labels(recognizer, modality)
        space = label_space(dataset, family, labels, label_map, unmapped)
        subset = draw(dataset, limit, seed, modality == "dialog")
        samples, truth, dropped = relabel(subset, space)
        skipped.update(dropped)
    route = Route(recognizer, modality, va, faces, dataset.format)
    answers, problems, failed, seconds = _run_all(route, samples, on_step, concurrency)
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
        notes=dict(route.notes),
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
    route: Route,
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
    if route.modality == "dialog":
        groups: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            groups.setdefault(str(sample.dialog_id), []).append(i)
        size = chunk_size(route)
        for dialog_id, members in groups.items():
            jobs += [(members[i : i + size], f"dialog {dialog_id}")
                     for i in range(0, len(members), size)]  # fmt: skip

        def run(chunk: list[int]) -> list[Answer]:
            return answer_dialog(route, [samples[i] for i in chunk])

        def problem(chunk: list[int], what: str, exc: Exception) -> str:
            return f"{what} ({samples[chunk[0]].source}): {exc}"
    else:
        answer_sample = SAMPLE_ROUTES[route.modality]
        jobs = [([i], os.path.basename(s.source)) for i, s in enumerate(samples)]

        def run(chunk: list[int]) -> list[Answer]:
            return [answer_sample(route, samples[chunk[0]])]

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
