"""Check results as rich tables: what a person reads in the terminal."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from edge_sdk.checks.bench import BenchResult
    from edge_sdk.checks.verify import VerifyResult


def _num(value: float | None, fmt: str = ".2e") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def _ms(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "-"


def verify_tables(result: VerifyResult) -> list[Table]:
    """Per-output comparison table, then the candidates that were not compared."""
    verdict = "[green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    references = sorted({r.split(" ")[0] for r in result.references.values()})
    caption = f"reference: {', '.join(references) or '-'}; device: {result.device}"
    table = Table(title=f"verify {result.bundle}: {verdict}", caption=caption)
    table.add_column("graph.output", overflow="fold")
    table.add_column("candidate", overflow="fold")
    for column in ("max |diff|", "max rel", "err/allowed", "top-1", "NaN"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("result")
    for cand in result.candidates:
        if cand.error:
            table.add_row(
                cand.graph,
                cand.name,
                "",
                "",
                "",
                "",
                "",
                f"[bold red]ERROR[/] {escape(cand.error)}",
            )
            continue
        for out in cand.outputs:
            if out.failures:
                status = "[bold red]FAIL[/] " + escape("; ".join(out.failures))
            elif out.advisories:
                status = "[yellow]pass (advisory)[/] " + escape("; ".join(out.advisories))
            else:
                status = "[green]pass[/]"
            table.add_row(
                f"{cand.graph}.{out.output}",
                cand.name,
                _num(out.max_abs),
                _num(out.max_rel),
                _num(out.worst_ratio, ".3f"),
                _num(out.agreement, ".4f"),
                str(out.non_finite + out.reference_non_finite),
                status,
            )
        table.add_section()
    tables = [table]
    tolerances = Table(title="tolerances", show_lines=False)
    tolerances.add_column("graph")
    tolerances.add_column("candidate")
    tolerances.add_column("criteria (source)")
    for cand in result.candidates:
        tolerances.add_row(cand.graph, cand.name, cand.tolerance.describe())
    if result.candidates:
        tables.append(tolerances)
    if result.skipped:
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for s in result.skipped:
            grouped.setdefault((s.backend, s.precision, s.reason), []).append(s.graph)
        skipped = Table(title="not compared")
        for column in ("backend", "precision", "graphs", "reason"):
            skipped.add_column(column)
        for (backend, precision, reason), names in grouped.items():
            skipped.add_row(backend, precision, ", ".join(names), reason)
        tables.append(skipped)
    return tables


def bench_tables(result: BenchResult) -> list[Table]:
    """Machine, per-graph latency, throughput by batch, cost vs size, pipeline stages."""
    runs = result.settings.get("runs")
    machine = Table(title=f"bench {result.bundle}: machine", show_header=False)
    for key, value in result.machine.items():
        machine.add_row(key, "-" if value in (None, []) else str(value))
    machine.add_row("peak RSS", f"{result.peak_rss_mb:.1f} MiB")
    tables = [machine]

    graphs = Table(title=f"latency per graph at opt sizes (ms, {runs} runs)")
    for column in ("graph", "backend", "dims", "p50", "p90", "p99", "items/s", "RSS MiB"):
        graphs.add_column(
            column, justify="left" if column in ("graph", "backend", "dims") else "right"
        )
    for g in result.graphs:
        graphs.add_row(
            g.graph, g.backend, _dims(g.dims), _ms(g.latency.p50), _ms(g.latency.p90),
            _ms(g.latency.p99), f"{g.throughput:.1f}", f"{g.rss_mb:.0f}",
        )  # fmt: skip
    tables.append(graphs)

    if result.batches:
        batches = Table(title="throughput at batch sizes")
        for column in ("graph", "backend", "batch", "p50 ms", "p99 ms", "ms/item", "items/s"):
            batches.add_column(
                column, justify="left" if column in ("graph", "backend") else "right"
            )
        for b in result.batches:
            batches.add_row(
                b.graph, b.backend, str(b.items), _ms(b.latency.p50), _ms(b.latency.p99),
                _ms(b.latency.p50 / b.items), f"{b.throughput:.1f}",
            )  # fmt: skip
        tables.append(batches)

    if result.sweeps:
        sweeps = Table(title="cost vs variable dims (others at opt)")
        for column in ("graph", "backend", "dim", "value", "p50 ms", "p99 ms", "x smallest"):
            sweeps.add_column(
                column, justify="left" if column in ("graph", "backend", "dim") else "right"
            )
        base: dict[tuple[str, str, str], float] = {}
        for s in result.sweeps:
            key = (s.graph, s.backend, s.dim)
            base.setdefault(key, s.latency.p50)
            ratio = s.latency.p50 / base[key] if base[key] > 0 else math.nan
            sweeps.add_row(
                s.graph, s.backend, s.dim, str(s.value), _ms(s.latency.p50), _ms(s.latency.p99),
                f"{ratio:.2f}",
            )  # fmt: skip
        tables.append(sweeps)

    if result.stages:
        used = sorted({f"{s.runtime}: {s.backends}" for s in result.stages})
        stages = Table(title=f"pipeline stages (ms per call, {runs} runs)", caption="; ".join(used))
        for column in ("input", "runtime", "stage", "p50", "p90", "p99"):
            stages.add_column(column, justify="right" if column.startswith("p") else "left")
        for s in result.stages:
            stages.add_row(
                s.input, s.runtime, s.stage, _ms(s.latency.p50), _ms(s.latency.p90),
                _ms(s.latency.p99),
            )  # fmt: skip
        tables.append(stages)
    return tables


def _dims(dims: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) or "-"


def metrics_table(metrics: Mapping[str, Any], title: str = "metrics") -> Table:
    """Name -> value rows; nested mappings (per class) become ``name.key`` rows."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            for key, inner in value.items():
                table.add_row(f"{name}.{key}", _value(inner))
        else:
            table.add_row(str(name), _value(value))
    return table


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def confusion_table(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str = "confusion matrix"
) -> Table:
    """Counts with true classes as rows and predicted classes as columns."""
    table = Table(title=title, caption="rows: true class; columns: predicted class")
    table.add_column("true \\ predicted")
    for label in labels:
        table.add_column(label, justify="right")
    for label, row in zip(labels, matrix, strict=True):
        table.add_row(label, *(str(int(v)) for v in row))
    return table
