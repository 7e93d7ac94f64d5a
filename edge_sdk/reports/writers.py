"""One call per check that writes a ``--report`` directory: JSON, PNGs and ``index.html``.

Layout of a report directory::

    index.html          the page, linking everything below
    <check>.json        the machine-readable result (same as ``--json``)
    *.png               the figures

:func:`write_accuracy_report` is the entry point for accuracy checks (``edge-sdk check
accuracy``): give it the metrics object of :mod:`edge_sdk.metrics` (or anything with
``scores``, ``labels``, ``to_dict()`` and optionally ``confusion``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from edge_sdk.reports import html, plots
from edge_sdk.reports.jsonio import to_jsonable, write_json
from edge_sdk.reports.tables import confusion_table, metrics_table

if TYPE_CHECKING:
    from edge_sdk.checks.bench import BenchResult
    from edge_sdk.checks.verify import VerifyResult

INDEX = "index.html"


def _fmt(value: float | None, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _verdict(out: Any) -> str:
    if out.failures:
        return "FAIL: " + "; ".join(out.failures)
    if out.advisories:
        return "pass (advisory: " + "; ".join(out.advisories) + ")"
    return "pass"


def _json_section(name: str) -> html.Section:
    return html.Section("Data", links=((name, f"{name}: the full result as JSON"),))


def write_verify_report(result: VerifyResult, directory: str | os.PathLike[str]) -> Path:
    """``verify.json``, ``parity.png`` (error per output) and ``index.html``."""
    root = Path(directory)
    write_json(root / "verify.json", result.to_dict())
    sections = [_verify_summary(result)]
    failures = result.failures()
    if failures or result.advisories():
        sections.append(
            html.Section(
                "Failures" if failures else "Advisories",
                paragraphs=tuple(failures) + tuple(f"advisory: {a}" for a in result.advisories()),
            )
        )
    sections.append(_verify_outputs(result, root))
    if result.skipped:
        sections.append(_verify_skipped(result))
    sections.append(_json_section("verify.json"))
    return html.write_page(root / INDEX, f"verify {result.bundle}", sections, status=result.passed)


def _verify_summary(result: VerifyResult) -> html.Section:
    return html.Section(
        "Summary",
        paragraphs=(
            f"bundle {result.bundle} ({result.root})",
            f"device: {result.device}",
            *(f"reference for {g}: {r}" for g, r in result.references.items()),
            *(f"inputs for {g}: {', '.join(f)}" for g, f in result.feeds.items()),
        ),
    )


def _verify_rows(result: VerifyResult) -> list[list[str]]:
    """One row per compared output (and per candidate that could not run)."""
    rows = []
    for cand in result.candidates:
        if cand.error:
            rows.append(
                [cand.graph, "-", cand.name, "-", "-", "-", "-", "-", "ERROR: " + cand.error]
            )
        for out in cand.outputs:
            rows.append(
                [
                    cand.graph,
                    out.output,
                    cand.name,
                    out.kind,
                    _fmt(out.max_abs),
                    _fmt(out.worst_ratio),
                    _fmt(out.agreement, ".4f"),
                    str(out.non_finite + out.reference_non_finite),
                    _verdict(out),
                ]
            )
    return rows


_VERIFY_COLUMNS = (
    "graph",
    "output",
    "candidate",
    "kind",
    "max |diff|",
    "err/allowed",
    "top-1 agreement",
    "NaN/Inf",
    "result",
)


def _verify_outputs(result: VerifyResult, root: Path) -> html.Section:
    """The outputs table, the tolerances table and ``parity.png``."""
    bars = [
        plots.ParityBar(
            f"{cand.graph}.{out.output} {cand.name}",
            out.max_abs,
            cand.tolerance.atol if cand.tolerance.elementwise else None,
            out.passed,
        )
        for cand in result.candidates
        for out in cand.outputs
    ]
    figures = []
    if bars:
        plots.parity_errors_png(root / "parity.png", bars)
        figures.append(
            html.Figure(
                "parity.png",
                "max |candidate - reference| per output (log scale); black ticks: allowed atol",
            )
        )
    tolerances = html.HtmlTable(
        ("graph", "candidate", "criteria (source)"),
        [[c.graph, c.name, c.tolerance.describe()] for c in result.candidates],
        caption="tolerances",
    )
    return html.Section(
        "Outputs",
        tables=(html.HtmlTable(_VERIFY_COLUMNS, _verify_rows(result)), tolerances),
        figures=figures,
    )


def _verify_skipped(result: VerifyResult) -> html.Section:
    return html.Section(
        "Not compared",
        tables=(
            html.HtmlTable(
                ("graph", "backend", "precision", "artifact", "reason"),
                [[s.graph, s.backend, s.precision, s.artifact, s.reason] for s in result.skipped],
            ),
        ),
    )


def write_bench_report(result: BenchResult, directory: str | os.PathLike[str]) -> Path:
    """``bench.json``, latency histograms, throughput and cost-vs-size plots, ``index.html``."""
    root = Path(directory)
    write_json(root / "bench.json", result.to_dict())
    figures = []
    series = {f"{g.graph} {g.backend} (opt)": g.latency.samples_ms for g in result.graphs}
    series.update(
        {
            f"pipeline {s.stage} ({s.input})": s.latency.samples_ms
            for s in result.stages
            if s.stage == "e2e"
        }
    )
    if any(series.values()):
        plots.latency_histogram_png(root / "latency.png", series, "latency per run (ms)")
        figures.append(html.Figure("latency.png", "latency histograms with p50 and p99"))
    if result.batches:
        panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for b in result.batches:
            panels.setdefault(b.graph, {}).setdefault(b.backend, []).append((b.items, b.throughput))
        plots.line_panels_png(
            root / "throughput.png",
            panels,
            title="throughput vs batch size",
            xlabel="batch",
            ylabel="items/s",
        )
        figures.append(html.Figure("throughput.png", "items per second at each batch size"))
    if result.sweeps:
        panels = {}
        for s in result.sweeps:
            panels.setdefault(s.graph, {}).setdefault(f"{s.dim} ({s.backend})", []).append(
                (s.value, s.latency.p50)
            )
        plots.cost_vs_size_png(root / "cost_vs_size.png", panels)
        figures.append(html.Figure("cost_vs_size.png", "median latency as each dynamic dim grows"))
    machine = html.HtmlTable(
        ("property", "value"),
        [[k, str(v)] for k, v in result.machine.items()]
        + [["peak RSS (MiB)", f"{result.peak_rss_mb:.1f}"]]
        + [[f"setting {k}", str(v)] for k, v in result.settings.items()],
        caption="machine and settings",
    )
    graphs = html.HtmlTable(
        ("graph", "backend", "dims", "p50 ms", "p90 ms", "p99 ms", "items/s"),
        [
            [g.graph, g.backend, _dims(g.dims), *_percentiles(g.latency), _fmt(g.throughput, ".1f")]
            for g in result.graphs
        ],
        caption="latency per graph at opt sizes",
    )
    tables = [machine, graphs]
    if result.batches:
        rows = [
            [b.graph, b.backend, str(b.items), *_percentiles(b.latency), _fmt(b.throughput, ".1f")]
            for b in result.batches
        ]
        header = ("graph", "backend", "batch", "p50 ms", "p90 ms", "p99 ms", "items/s")
        tables.append(html.HtmlTable(header, rows, caption="throughput at batch sizes"))
    if result.sweeps:
        rows = [
            [s.graph, s.backend, s.dim, str(s.value), *_percentiles(s.latency)]
            for s in result.sweeps
        ]
        header = ("graph", "backend", "dim", "value", "p50 ms", "p90 ms", "p99 ms")
        caption = "cost vs variable dims (others at opt)"
        tables.append(html.HtmlTable(header, rows, caption=caption))
    if result.stages:
        rows = [
            [s.input, s.runtime, s.stage, *_percentiles(s.latency), s.backends]
            for s in result.stages
        ]
        header = ("input", "runtime", "stage", "p50 ms", "p90 ms", "p99 ms", "backends")
        tables.append(html.HtmlTable(header, rows, caption="pipeline stages"))
    sections = [
        html.Section("Latency", paragraphs=tuple(result.notes), tables=tables, figures=figures),
        _json_section("bench.json"),
    ]
    return html.write_page(root / INDEX, f"bench {result.bundle}", sections)


def _percentiles(latency: Any) -> list[str]:
    return [_fmt(latency.p50, ".2f"), _fmt(latency.p90, ".2f"), _fmt(latency.p99, ".2f")]


def _dims(dims: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) or "-"


def accuracy_tables(metrics: Any, title: str = "accuracy") -> list[Table]:
    """Headline scores, per-class figures and the confusion matrix as rich tables."""
    tables = [metrics_table(dict(metrics.scores), title=title)]
    per_class = metrics.to_dict().get("per_class")
    if per_class:
        columns = list(next(iter(per_class.values())))
        table = Table(title=f"{title}: per class")
        table.add_column("class")
        for column in columns:
            table.add_column(column, justify="right")
        for label, values in per_class.items():
            table.add_row(label, *(_fmt(values.get(c), ".4g") for c in columns))
        tables.append(table)
    confusion = getattr(metrics, "confusion", None)
    if confusion is not None:
        tables.append(confusion_table(confusion, metrics.labels))
    return tables


def write_accuracy_report(
    metrics: Any,
    directory: str | os.PathLike[str],
    *,
    title: str = "accuracy",
    context: Mapping[str, Any] | None = None,
    name: str = "accuracy",
    passed: bool | None = None,
) -> Path:
    """``<name>.json``, ``confusion.png`` (single-label tasks) and ``index.html``.

    Args:
        metrics: a result of :func:`edge_sdk.metrics.compute_metrics` (``scores``,
            ``labels``, ``to_dict()``, ``confusion`` for classification).
        directory: the report directory (created).
        title: page title, e.g. ``"accuracy face-fer7 on FER2013 test"``.
        context: what was evaluated (bundle, data set, backend, sample count...); goes into
            the JSON and the page's summary.
        name: JSON file stem.
        passed: verdict against a floor, when the caller has one.
    """
    root = Path(directory)
    payload = {"check": name, "context": dict(context or {}), "metrics": metrics.to_dict()}
    if passed is not None:
        payload["passed"] = passed
    write_json(root / f"{name}.json", payload)
    scores = to_jsonable(dict(metrics.scores))
    sections = [
        html.Section(
            "Summary",
            paragraphs=tuple(f"{k}: {v}" for k, v in (context or {}).items()),
            tables=(
                html.HtmlTable(
                    ("metric", "value"), [[k, _fmt(v, ".4f")] for k, v in scores.items()]
                ),
            ),
        )
    ]
    per_class = metrics.to_dict().get("per_class")
    if per_class:
        columns = list(next(iter(per_class.values())))
        sections.append(
            html.Section(
                "Per class",
                tables=(
                    html.HtmlTable(
                        ("class", *columns),
                        [
                            [label, *(_fmt(v.get(c), ".4g") for c in columns)]
                            for label, v in per_class.items()
                        ],
                    ),
                ),
            )
        )
    confusion = getattr(metrics, "confusion", None)
    if confusion is not None:
        plots.confusion_matrix_png(root / "confusion.png", confusion, metrics.labels, title)
        sections.append(
            html.Section(
                "Confusion matrix",
                figures=(
                    html.Figure("confusion.png", "rows: true class; columns: predicted class"),
                ),
            )
        )
    sections.append(_json_section(f"{name}.json"))
    return html.write_page(root / INDEX, title, sections, status=passed)


def print_tables(console: Any, tables: Sequence[Table]) -> None:
    """Print each table (for command-line callers)."""
    for table in tables:
        console.print(table)
