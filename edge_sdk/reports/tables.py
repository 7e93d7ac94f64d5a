"""Check results as rich tables: what a person reads in the terminal.

Tables must stay readable in an 80-column terminal: rich shrinks a table that is too wide by
cutting its widest columns, even inside a word (``ort-cp`` / ``u/fp32``). Every table the
command line prints goes through :func:`fit`, which lets columns wrap only between words,
and the wide tables put the graph name on a row of its own so that their words fit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
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


class Fitted:
    """A table that shrinks to the console's width only by wrapping between words.

    Each column keeps at least its longest word (the whole text of a ``no_wrap`` column);
    the widest columns give up width first. A table whose words alone are too wide is left
    to rich (which then truncates with an ellipsis).
    """

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[RenderableType]:
        yield _fitted(self.table, console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table)


def fit(table: Table) -> Fitted:
    """``table``, to print without splitting a word (see :class:`Fitted`)."""
    return Fitted(table)


def _fitted(table: Table, console: Console, options: ConsoleOptions) -> Table:
    columns = table.columns
    if not columns:
        return table
    wide = options.update_width(1 << 16)
    lows, highs = [], []
    for column in columns:
        cells: list[Any] = [column.header, *column.cells]
        if table.show_footer:
            cells.append(column.footer)
        sizes = [Measurement.get(console, wide, cell) for cell in cells]
        high = max(size.maximum for size in sizes)
        low = high if column.no_wrap else max(size.minimum for size in sizes)
        if column.width is not None:
            low = high = column.width
        lows.append(max(low, column.min_width or 0))
        highs.append(max(high, lows[-1]))
    _, right, _, left = Padding.unpack(table.padding)
    overhead = (left + right) * len(columns)
    if not table.pad_edge:
        overhead -= left + right
    if table.box is not None:
        overhead += len(columns) - 1 + (2 if table.show_edge else 0)
    room = options.max_width - overhead
    if sum(highs) <= room or sum(lows) > room:
        return table
    widths = list(highs)
    while sum(widths) > room:
        index = max(
            (i for i in range(len(widths)) if widths[i] > lows[i]), key=lambda i: widths[i]
        )
        widths[index] -= 1
    fitted = copy.copy(table)
    fitted.columns = [
        dataclasses.replace(column, width=width)
        for column, width in zip(columns, widths, strict=True)
    ]
    return fitted


def _grouped(items: Iterable[Any], key: str) -> dict[str, list[Any]]:
    """Items by the value of their attribute ``key``, in order of first appearance."""
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(getattr(item, key), []).append(item)
    return groups


def ranking_table(family: str, ranking: dict[str, list[Any]]) -> Table:
    """Backends per graph in the order selection tries them, grouped under graph rows.

    ``backend/precision`` share one column and the graph heads its own row: as five
    columns, ``torch-recorded`` next to ``TensorrtExecutionProvider`` needs 82 columns.
    """
    table = Table(title=f"{family}: backends per graph, in the order tried")
    table.add_column("order", no_wrap=True)
    table.add_column("backend/precision", no_wrap=True)
    table.add_column("reason")
    for graph, candidates in ranking.items():
        table.add_row(f"[bold]{escape(graph)}[/]", "", "")
        for i, candidate in enumerate(candidates, 1):
            order = str(i) if candidate.usable else "unusable"
            name = f"{candidate.backend}/{candidate.artifact.precision}"
            table.add_row(f"  {order}", escape(name), escape(candidate.reason))
        table.add_section()
    return table


def verify_tables(result: VerifyResult) -> list[Table]:
    """Per-output comparison table, then the candidates that were not compared.

    Rows are grouped under a row naming the graph, so that no column has to hold
    ``graph.output`` (too wide for 80 columns next to the figures). The largest relative
    difference and the NaN counts are left to ``--json`` and the report: a NaN fails the
    output and its count is in the result text.
    """
    verdict = "[green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    references = sorted({r.split(" ")[0] for r in result.references.values()})
    caption = (
        f"reference: {', '.join(references) or '-'}; device: {result.device}; "
        "err/tol: the worst |diff| over the allowed error (passes at <= 1)"
    )
    table = Table(title=f"verify {result.bundle}: {verdict}", caption=caption)
    table.add_column("graph / output", no_wrap=True)
    table.add_column("candidate", no_wrap=True)
    for column in ("max |diff|", "err/tol", "top-1"):
        table.add_column(column, justify="right")
    table.add_column("result")
    for graph, candidates in _grouped(result.candidates, "graph").items():
        table.add_row(f"[bold]{escape(graph)}[/]", "", "", "", "", "")
        for cand in candidates:
            if cand.error:
                table.add_row(
                    "  (graph)", cand.name, "", "", "", f"[bold red]ERROR[/] {escape(cand.error)}"
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
                    f"  {escape(out.output)}",
                    cand.name,
                    _num(out.max_abs),
                    _num(out.worst_ratio, ".3f"),
                    _num(out.agreement, ".4f"),
                    status,
                )
        table.add_section()
    tables = [table]
    tolerances = Table(title="tolerances", show_lines=False)
    tolerances.add_column("graph", no_wrap=True)
    tolerances.add_column("candidate", no_wrap=True)
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
            skipped.add_column(column, no_wrap=column in ("backend", "precision"))
        for (backend, precision, reason), names in grouped.items():
            skipped.add_row(backend, precision, ", ".join(names), reason)
        tables.append(skipped)
    return tables


def bench_tables(result: BenchResult) -> list[Table]:
    """Machine, per-graph latency, throughput by batch, cost vs size, pipeline stages.

    The latency table groups its backends under a row naming the graph (graph and
    backend side by side do not fit 80 columns next to the figures).
    """
    runs = result.settings.get("runs")
    title = f"bench {result.bundle} on this machine"
    # min_width: the title on one line (rich wraps a title to its table's width).
    machine = Table(title=title, show_header=False, min_width=len(title) + 4)
    for key, value in result.machine.items():
        machine.add_row(key, "-" if value in (None, []) else str(value))
    machine.add_row("peak RSS", f"{result.peak_rss_mb:.1f} MiB")
    tables = [machine]

    graphs = Table(title=f"latency per graph at opt sizes (ms, {runs} runs)")
    for column in ("graph / backend", "dims", "p50", "p90", "p99", "items/s", "RSS MiB"):
        graphs.add_column(
            column,
            justify="left" if column in ("graph / backend", "dims") else "right",
            no_wrap=column == "graph / backend",
        )
    for graph, timings in _grouped(result.graphs, "graph").items():
        graphs.add_row(f"[bold]{escape(graph)}[/]", "", "", "", "", "", "")
        for g in timings:
            graphs.add_row(
                f"  {g.backend}", _dims(g.dims), _ms(g.latency.p50), _ms(g.latency.p90),
                _ms(g.latency.p99), f"{g.throughput:.1f}", f"{g.rss_mb:.0f}",
            )  # fmt: skip
    tables.append(graphs)

    if result.batches:
        batches = Table(title="throughput at batch sizes")
        for column in ("graph", "backend", "batch", "p50 ms", "p99 ms", "ms/item", "items/s"):
            batches.add_column(
                column,
                justify="left" if column in ("graph", "backend") else "right",
                no_wrap=column in ("graph", "backend"),
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
                column,
                justify="left" if column in ("graph", "backend", "dim") else "right",
                no_wrap=column in ("graph", "backend", "dim"),
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
