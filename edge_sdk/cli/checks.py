"""Checks of a bundle: ``verify`` (parity across backends and precisions), ``bench``
(latency) and ``check accuracy`` (a labelled data set), sharing one body (:func:`run_check`):
open what is checked, run it with progress, write the report, print JSON or tables, exit 1
on a failed check."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from edge_sdk.cli.base import console, errors, fail
from edge_sdk.cli.common import (
    Backend,
    BundleArgument,
    Digest,
    Graphs,
    JsonTables,
    Precision,
    connect,
    export_default_once,
    names,
    open_bundle,
)
from edge_sdk.errors import EdgeSDKError, InputError
from edge_sdk.reports.tables import fit

Subject = TypeVar("Subject")
StepCallback = Callable[[int, int, str], None]


def run_check(
    title: str,
    *,
    report: Path | None,
    as_json: bool,
    open_subject: Callable[[], AbstractContextManager[Subject]],
    measure: Callable[[Subject, StepCallback], Any],
    write_report: Callable[[Any, Path], Path],
    tables: Callable[[Any], Iterable[Table]],
    failures: Callable[[Any], Sequence[str]] | None = None,
) -> None:
    """The body every check shares, so they fail, report and print alike.

    matplotlib is required up front when ``report`` is asked for (not after minutes of
    work); ``open_subject()`` opens what is checked (a probed device and bundle, or a
    recognizer and a data set) and closes it after ``measure``, which runs with a progress
    bar on a terminal. Then the report is written, the result printed as ``--json`` or
    tables, and, with ``failures``, a result that did not pass prints each failure and
    exits 1. An EdgeSDKError is one red line and exit 2.
    """
    from edge_sdk.reports.jsonio import dumps
    from edge_sdk.reports.progress import progress_steps

    try:
        if report is not None:
            from edge_sdk.reports.plots import require_matplotlib

            require_matplotlib()
        with (
            open_subject() as subject,
            progress_steps(title, errors, enabled=errors.is_terminal) as on_step,
        ):
            result = measure(subject, on_step)
        page = write_report(result, report) if report is not None else None
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    if as_json:
        console.out(dumps(result.to_dict()), end="")
    else:
        for table in tables(result):
            console.print(fit(table))
        if page is not None:
            console.print(f"report: {page}", soft_wrap=True)
    if failures is not None and not result.passed:
        for line in failures(result):
            errors.print(f"[bold red]FAIL[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


def probe_and_open(bundle: Path | None, quiet: bool, digest: str | None) -> tuple[Any, Any]:
    """(this device's DeviceInfo, the given or default bundle, pinned to ``digest``)."""
    from edge_sdk.device import DeviceProbe

    info = DeviceProbe().probe()
    return info, open_bundle(bundle, quiet=quiet, digest=digest)


# ------------------------------------------------------------------------------- verify
VerifyBackends = Annotated[
    str | None, typer.Option(help="Only these backends, comma-separated (e.g. ort-cpu).")
]
Precisions = Annotated[
    str | None, typer.Option(help="Only these precisions, comma-separated (fp32,int8).")
]
FeedData = Annotated[
    str | None,
    typer.Option(help="FILE.npz (GRAPH/INPUT arrays), an image folder/list, or synthetic."),
]
Count = Annotated[int | None, typer.Option(min=1, help="Samples to draw from --data.")]
Sizes = Annotated[str, typer.Option(help="Profile points for generated inputs (opt,min,max).")]
FeedSeed = Annotated[int, typer.Option(help="Seed of generated inputs.")]
LargestInput = Annotated[
    int, typer.Option(min=1, help="Largest generated input, in values (sizes shrink).")
]
Atol = Annotated[float | None, typer.Option(min=0.0, help="Override atol (fp32/fp16).")]
Rtol = Annotated[float | None, typer.Option(min=0.0, help="Override rtol (fp32/fp16).")]
MinAgreement = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="Override least top-1 agreement.")
]
MaxProbDiff = Annotated[
    float | None, typer.Option(min=0.0, help="Override largest probability difference.")
]
MaxMetricDrop = Annotated[
    float | None, typer.Option(min=0.0, help="Override largest accuracy drop (labels).")
]
Strict = Annotated[bool, typer.Option(help="Judge INT8 agreement on generated inputs too.")]
VerifyReport = Annotated[
    Path | None, typer.Option(help="Write verify.json, PNG plots and index.html here.")
]


def verify(
    bundle: BundleArgument = None,
    backends: VerifyBackends = None,
    precisions: Precisions = None,
    data: FeedData = None,
    count: Count = None,
    sizes: Sizes = "opt,min,max",
    seed: FeedSeed = 0,
    max_elements: LargestInput = 1 << 22,
    graphs: Graphs = None,
    atol: Atol = None,
    rtol: Rtol = None,
    min_agreement: MinAgreement = None,
    max_prob_diff: MaxProbDiff = None,
    max_metric_drop: MaxMetricDrop = None,
    strict: Strict = False,
    report: VerifyReport = None,
    as_json: JsonTables = False,
    digest: Digest = None,
) -> None:
    """Run the same inputs through every backend and precision; exit 1 if any output differs."""
    from edge_sdk.checks.feeds import load_feeds
    from edge_sdk.checks.verify import ToleranceOverrides
    from edge_sdk.checks.verify import verify as run_verify
    from edge_sdk.reports.tables import verify_tables
    from edge_sdk.reports.writers import write_verify_report

    def open_subject() -> AbstractContextManager[tuple[Any, ...]]:
        info, opened = probe_and_open(bundle, as_json, digest)
        feeds = load_feeds(data, opened, info, count, seed) if data else None
        overrides = ToleranceOverrides(atol, rtol, min_agreement, max_prob_diff, max_metric_drop)
        return nullcontext((info, opened, feeds, overrides))

    def measure(subject: tuple[Any, ...], on_step: StepCallback) -> Any:
        info, opened, feeds, overrides = subject
        return run_verify(
            opened, info, backends=names(backends), precisions=names(precisions), data=feeds,
            sizes=tuple(names(sizes) or ()), seed=seed, max_elements=max_elements,
            overrides=overrides, graphs=names(graphs), strict=strict, on_step=on_step,
        )  # fmt: skip

    run_check(
        "verify", report=report, as_json=as_json, open_subject=open_subject, measure=measure,
        write_report=write_verify_report, tables=verify_tables,
        failures=lambda result: result.failures(),
    )  # fmt: skip


# -------------------------------------------------------------------------------- bench
BenchBackends = Annotated[
    str | None, typer.Option(help="Backends side by side, comma-separated; default: auto.")
]
Warmup = Annotated[int, typer.Option(min=0, help="Untimed runs first.")]
Runs = Annotated[int, typer.Option(min=1, help="Timed runs per measurement.")]
Batches = Annotated[str, typer.Option(help="Batch sizes for throughput.")]
Sweep = Annotated[bool, typer.Option(help="Time each dynamic dim over its range.")]
SweepPoints = Annotated[int, typer.Option(min=2, help="Values per swept dim.")]
StageImages = Annotated[
    list[Path] | None, typer.Option(help="Images for the pipeline stages (repeatable).")
]
Threads = Annotated[
    int | None, typer.Option(min=0, help="ONNX Runtime intra-op threads (0 = default).")
]
SkipLarger = Annotated[
    int, typer.Option(min=1, help="Skip sizes whose largest input exceeds this.")
]
BenchReport = Annotated[
    Path | None, typer.Option(help="Write bench.json, PNG plots and index.html here.")
]


def bench(
    bundle: BundleArgument = None,
    backends: BenchBackends = None,
    precision: Precision = None,
    warmup: Warmup = 3,
    runs: Runs = 20,
    batches: Batches = "1,2,4,8,16,32",
    sweep: Sweep = True,
    sweep_points: SweepPoints = 5,
    image: StageImages = None,
    threads: Threads = None,
    max_elements: SkipLarger = 1 << 22,
    graphs: Graphs = None,
    report: BenchReport = None,
    as_json: JsonTables = False,
    digest: Digest = None,
) -> None:
    """Latency per graph and pipeline stage: p50/p90/p99, throughput, cost vs size, RSS."""
    from edge_sdk.checks.bench import bench as run_bench
    from edge_sdk.reports.tables import bench_tables
    from edge_sdk.reports.writers import write_bench_report

    try:
        sizes = [int(b) for b in names(batches) or []]
    except ValueError as exc:
        raise fail(InputError(f"--batches takes integers, got {batches!r}")) from exc
    if threads is not None:
        os.environ["EDGE_SDK_THREADS"] = str(threads)  # read when each session is opened

    def measure(subject: tuple[Any, Any], on_step: StepCallback) -> Any:
        info, opened = subject
        chosen: list[str | None] = list(names(backends) or [None])
        return run_bench(
            opened, info, backends=chosen, precision=precision, warmup=warmup, runs=runs,
            batches=sizes, sweep=sweep, sweep_points=sweep_points, images=image or (),
            max_elements=max_elements, graphs=names(graphs), on_step=on_step,
        )  # fmt: skip

    run_check(
        "bench", report=report, as_json=as_json,
        open_subject=lambda: nullcontext(probe_and_open(bundle, as_json, digest)),
        measure=measure, write_report=write_bench_report, tables=bench_tables,
    )  # fmt: skip


# ----------------------------------------------------------------------------- accuracy
AccuracyBundles = Annotated[
    list[Path] | None,
    typer.Argument(help="Bundle directories (several: one Recognizer); default: face-fer7."),
]
DatasetPath = Annotated[
    Path, typer.Option(help="Annotation file or data set folder, as --format reads it.")
]
Format = Annotated[
    str,
    typer.Option(
        "--format",
        help="fer2013, rafdb, affectnet, caer-s, emotic, meld, iemocap, afew, folder, jsonl.",
    ),
]
Split = Annotated[str | None, typer.Option(help="A published split, e.g. PrivateTest.")]
MediaRoot = Annotated[
    Path | None, typer.Option(help="Where the media live, if not in the published place.")
]
Limit = Annotated[
    int | None, typer.Option(min=1, help="Score a seeded random subset of N samples.")
]
SubsetSeed = Annotated[int, typer.Option(help="Seed of the --limit subset.")]
LabelMap = Annotated[
    list[str] | None,
    typer.Option(
        help="DATASET_LABEL=BUNDLE_LABEL (or DATASET_LABEL= to leave it out); repeatable."
    ),
]
Unmapped = Annotated[str, typer.Option(help="Data set labels the bundle lacks: error or skip.")]
MissingFiles = Annotated[
    str, typer.Option(help="Missing media: error, skip, or keep (score without it).")
]
Task = Annotated[str, typer.Option(help="auto, classification or valence-arousal.")]
Faces = Annotated[
    str, typer.Option(help="detect (as deployed) or given (sample box / whole image).")
]
MinWar = Annotated[float | None, typer.Option(help="Least WAR (accuracy).")]
MinUar = Annotated[float | None, typer.Option(help="Least UAR (balanced accuracy).")]
MinF1 = Annotated[float | None, typer.Option(help="Least macro F1.")]
MinMap = Annotated[float | None, typer.Option(help="Least mAP (multi-label).")]
MaxRmse = Annotated[float | None, typer.Option(help="Largest RMSE of valence and of arousal.")]
MinCcc = Annotated[float | None, typer.Option(help="Least CCC of valence and of arousal.")]
AccuracyReport = Annotated[
    Path | None, typer.Option(help="Write accuracy.json, confusion.png and index.html here.")
]
AccuracyServer = Annotated[
    str | None,
    typer.Option(help="Score on an `edge-sdk serve` server (http://host:8000) instead."),
]
Concurrency = Annotated[
    int, typer.Option(min=1, help="Predictions in flight at a time (with --server).")
]


def accuracy(
    bundles: AccuracyBundles = None,
    dataset: DatasetPath = ...,
    fmt: Format = ...,
    split: Split = None,
    media_root: MediaRoot = None,
    limit: Limit = None,
    seed: SubsetSeed = 0,
    label_map: LabelMap = None,
    unmapped: Unmapped = "error",
    missing_files: MissingFiles = "error",
    task: Task = "auto",
    faces: Faces = "detect",
    backend: Backend = None,
    precision: Precision = None,
    min_war: MinWar = None,
    min_uar: MinUar = None,
    min_f1: MinF1 = None,
    min_map: MinMap = None,
    max_rmse: MaxRmse = None,
    min_ccc: MinCcc = None,
    report: AccuracyReport = None,
    as_json: JsonTables = False,
    server: AccuracyServer = None,
    concurrency: Concurrency = 1,
) -> None:
    """Score a labelled data set (published layouts): WAR/UAR, F1, mAP, RMSE/PCC/CCC."""
    from edge_sdk.checks.accuracy import check_accuracy, parse_label_map

    thresholds = {
        "min_war": min_war,
        "min_uar": min_uar,
        "min_macro_f1": min_f1,
        "min_map": min_map,
        "max_rmse": max_rmse,
        "min_ccc": min_ccc,
    }

    @contextmanager
    def open_subject() -> Iterator[tuple[Any, Any, dict[str, str | None]]]:
        mapping = parse_label_map(label_map)
        recognizer = _accuracy_recognizer(server, bundles, backend, precision, as_json)
        with recognizer:
            yield recognizer, _read_dataset(recognizer, dataset, fmt, task, split,
                                            media_root, missing_files), mapping  # fmt: skip

    def measure(subject: tuple[Any, Any, dict[str, str | None]], on_step: StepCallback) -> Any:
        recognizer, data, mapping = subject
        return check_accuracy(
            recognizer, data, limit=limit, seed=seed, on_step=on_step, label_map=mapping,
            unmapped=unmapped, faces=faces, thresholds=thresholds, concurrency=concurrency,
        )  # fmt: skip

    run_check(
        "accuracy", report=report, as_json=as_json, open_subject=open_subject, measure=measure,
        write_report=_write_accuracy_report, tables=_accuracy_tables,
        failures=lambda result: result.failures,
    )  # fmt: skip


def _accuracy_recognizer(
    server: str | None,
    bundles: list[Path] | None,
    backend: str | None,
    precision: str | None,
    quiet: bool,
) -> Any:
    """A server's recognizer, or one of the given (or the built-in) bundles."""
    from edge_sdk.checks.accuracy import open_recognizer

    if server is not None:
        return connect(server, bundles=bundles, backend=backend, precision=precision)
    if not bundles:
        export_default_once(quiet=quiet)
    recognizer, _ = open_recognizer(bundles or None, backend=backend, precision=precision)
    return recognizer


def _read_dataset(
    recognizer: Any,
    dataset: Path,
    fmt: str,
    task: str,
    split: str | None,
    media_root: Path | None,
    missing_files: str,
) -> Any:
    """The data set in the label space the recognizer's task needs."""
    from edge_sdk.checks.accuracy import dataset_labels_for
    from edge_sdk.datasets import read_dataset

    return read_dataset(
        dataset,
        fmt,
        dataset_labels_for(recognizer, fmt, task),
        split=split,
        media_root=media_root,
        missing_files=missing_files,
    )


def _write_accuracy_report(result: Any, report: Path) -> Path:
    """``index.html`` with the plots, and ``accuracy.json``: the same as ``--json``."""
    from edge_sdk.checks.accuracy import default_title, summary_rows
    from edge_sdk.reports.jsonio import write_json
    from edge_sdk.reports.writers import write_accuracy_report

    page = write_accuracy_report(
        result.metrics,
        report,
        title=default_title(result),
        context=dict(summary_rows(result)),
        passed=result.passed if result.thresholds else None,
    )
    write_json(report / "accuracy.json", result.to_dict())  # the same as --json
    return page


def _accuracy_tables(result: Any) -> list[Table]:
    """The summary (what was scored, how), then the metrics' tables."""
    from edge_sdk.checks.accuracy import default_title, summary_rows
    from edge_sdk.reports.writers import accuracy_tables

    summary = Table(title=default_title(result), show_header=False)
    for name, value in summary_rows(result):
        summary.add_row(name, escape(value))
    return [summary, *accuracy_tables(result.metrics, title="accuracy")]
