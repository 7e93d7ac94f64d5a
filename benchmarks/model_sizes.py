"""Sizes of every registered family: parameters, FLOPs and ONNX Runtime CPU latency per graph.

Each family is built the way ``edge-sdk export`` builds it (recipe families through
:func:`edge_sdk.models.training.build_from_checkpoint` at each named config, untrained
weights; ``face-fer7`` through its fixed pretrained builder), written by our exporter to a
temporary bundle, and every inference graph is then measured on **one sample**: the graph's
first export example (the one the exporter traces) cut to 1 along its leading dynamic
dimension (batch, utterances or dialogs).

* parameters: ``sum(p.numel() for p in module.parameters())`` of the exported module (buffers
  such as BatchNorm statistics or stored prompt prototypes are not parameters). The total row
  adds the graphs, so a sub-network that two graphs both hold (av-fbp's audio encoder) counts
  twice there, as it does in the bundle; the training model's count is given beside it.
* FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` on the PyTorch module at that input.
  It counts matrix multiplications, convolutions and attention as 2 x multiply-accumulates and
  ignores element-wise work (activations, normalisation, pooling, softmax, bias additions).
* latency: the bundle's ONNX file opened by the SDK's ``ort-cpu`` backend (the deployment
  path: all graph optimisations, ``EDGE_SDK_THREADS`` intra-op threads, default = ORT's
  choice), one sample per call. After ``--warmup`` untimed runs, ``--rounds`` rounds of
  ``--repeats`` runs alternate between the graphs; "median" is the lowest per-round median
  (a busy neighbour on a shared machine inflates whole rounds), "p90" is over all runs.

Run ``python benchmarks/model_sizes.py [--markdown] [--family NAME] [--repeats N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def count_parameters(module: Any) -> int:
    """Number of parameters of an ``nn.Module`` (tied parameters once, buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: Any, inputs: Sequence[Any]) -> int:
    """FLOPs of one forward pass of ``module(*inputs)`` as FlopCounterMode counts them.

    Matmul, convolution and attention kernels count 2 x multiply-accumulates; element-wise
    operations, reductions and bias additions count nothing.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return int(counter.get_total_flops())


def one_sample(graph: Any) -> dict[str, np.ndarray]:
    """The graph's first export example cut to 1 along every dynamic leading dimension."""
    example = graph.examples[0]
    return {
        t.name: example[t.name][:1] if isinstance(t.shape[0], str) else example[t.name]
        for t in graph.spec.inputs
    }


@dataclass(frozen=True)
class Timing:
    """How latency is sampled: per graph, ``rounds`` x ``repeats`` runs after ``warmup``."""

    warmup: int = 5
    repeats: int = 20
    rounds: int = 5


@dataclass(frozen=True)
class GraphRow:
    """Measured figures of one inference graph."""

    family: str
    config: str
    graph: str
    inputs: str
    params: int
    flops: int
    onnx_bytes: int
    ms_median: float
    ms_p90: float


@dataclass(frozen=True)
class BuildRows:
    """All graphs of one (family, config) plus the training model's parameter count."""

    family: str
    config: str
    graphs: tuple[GraphRow, ...]
    training_params: int | None

    @property
    def has_total_row(self) -> bool:
        """Several graphs to add, or a training model whose count belongs in the total."""
        return len(self.graphs) > 1 or self.training_params is not None

    @property
    def total(self) -> GraphRow:
        """Sum over the graphs (latency: each graph run once, one after the other)."""
        return GraphRow(
            self.family,
            self.config,
            "all graphs",
            "",
            sum(g.params for g in self.graphs),
            sum(g.flops for g in self.graphs),
            sum(g.onnx_bytes for g in self.graphs),
            sum(g.ms_median for g in self.graphs),
            sum(g.ms_p90 for g in self.graphs),
        )


def describe_inputs(feeds: dict[str, np.ndarray]) -> str:
    """``name 1x3x64x64, other 1x4`` (int inputs marked with their dtype)."""
    parts = []
    for name, array in feeds.items():
        shape = "x".join(str(d) for d in array.shape)
        kind = "" if array.dtype == np.float32 else f" {array.dtype}"
        parts.append(f"{name} {shape}{kind}")
    return ", ".join(parts)


def builds(selected: Sequence[str]) -> Iterator[tuple[str, str, Any, int | None]]:
    """(family, config, FamilyBuild, training-model params) for every family and config."""
    import torch

    from edge_sdk.models.families import families
    from edge_sdk.models.training import build_from_checkpoint

    for family in families():
        if selected and family.name not in selected:
            continue
        if family.recipe is None:
            yield family.name, "fixed", family.build(None), None
            continue
        for name, config in family.recipe.configs.items():
            build = build_from_checkpoint(family, None, name)  # what `edge-sdk export` does
            torch.manual_seed(0)
            training = count_parameters(family.recipe.make_model(config))
            yield family.name, name, build, training


def time_rounds(
    sessions: Sequence[tuple[Any, dict[str, np.ndarray]]], warmup: int, repeats: int, rounds: int
) -> list[list[list[float]]]:
    """Milliseconds per run: ``[graph][round][run]``, after ``warmup`` untimed runs each.

    Rounds alternate between the graphs, so a burst of load from another process on a
    shared machine spoils some rounds of every graph rather than all runs of one.
    """
    for session, feeds in sessions:
        for _ in range(warmup):
            session.run(feeds)
    samples: list[list[list[float]]] = [[] for _ in sessions]
    for _ in range(rounds):
        for (session, feeds), per_graph in zip(sessions, samples, strict=True):
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                session.run(feeds)
                runs.append((time.perf_counter() - start) * 1e3)
            per_graph.append(runs)
    return samples


def summarise(rounds: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(lowest per-round median, 90th percentile of all runs) in ms."""
    everything = [ms for runs in rounds for ms in runs]
    return min(statistics.median(r) for r in rounds), float(np.percentile(everything, 90))


def measure(
    family: str, config: str, build: Any, training_params: int | None, timing: Timing
) -> BuildRows:
    """Export ``build`` to a temporary bundle and measure each of its graphs."""
    import torch

    from export.family_export import write_bundle
    from runtimes import get_backend

    backend = get_backend("ort-cpu")
    with tempfile.TemporaryDirectory(prefix="edge-sdk-sizes-") as tmp:
        bundle = write_bundle(family, build, Path(tmp) / f"{family}-{config}")
        onnx = {a.graph: a for a in bundle.manifest.artifacts if a.format == "onnx"}
        feeds = [one_sample(graph) for graph in build.graphs]
        sessions = [
            (backend.open(bundle, graph.spec, onnx[graph.spec.name]), feed)
            for graph, feed in zip(build.graphs, feeds, strict=True)
        ]
        samples = time_rounds(sessions, timing.warmup, timing.repeats, timing.rounds)
        sizes = [bundle.artifact_path(onnx[g.spec.name]).stat().st_size for g in build.graphs]
    rows = []
    for graph, feed, size, rounds in zip(build.graphs, feeds, sizes, samples, strict=True):
        tensors = [torch.from_numpy(feed[t.name]) for t in graph.spec.inputs]
        rows.append(
            GraphRow(
                family,
                config,
                graph.spec.name,
                describe_inputs(feed),
                count_parameters(graph.module),
                count_flops(graph.module, tensors),
                size,
                *summarise(rounds),
            )
        )
    return BuildRows(family, config, tuple(rows), training_params)


def human(value: float, unit: str = "") -> str:
    """3 significant digits with k/M/G prefixes: 1234567 -> '1.23 M'."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def cells(row: GraphRow) -> list[str]:
    """Formatted cells after family/config/graph/input."""
    return [
        human(row.params),
        human(row.flops),
        f"{row.onnx_bytes / 2**20:.2f}",
        f"{row.ms_median:.2f}",
        f"{row.ms_p90:.2f}",
    ]


HEADERS = ("family", "config", "graph", "input (one sample)", "params", "FLOPs", "ONNX MiB")
LATENCY = ("CPU ms median", "CPU ms p90")


def total_note(build: BuildRows) -> str:
    if build.training_params is None:
        return "sum of the graphs"
    return f"sum of the graphs (training model: {human(build.training_params)} params)"


def markdown(results: Sequence[BuildRows]) -> str:
    """A GitHub Markdown table, one row per graph and a bold total per (family, config)."""
    header = (*HEADERS, *LATENCY)
    right = {"params", "FLOPs", "ONNX MiB", *LATENCY}
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if h in right else "---" for h in header) + " |",
    ]
    for build in results:
        for row in build.graphs:
            lines.append(
                "| "
                + " | ".join(
                    [row.family, row.config, row.graph, row.inputs.replace("|", "/"), *cells(row)]
                )
                + " |"
            )
        if build.has_total_row:
            total = build.total
            bold = [f"**{c}**" for c in cells(total)]
            lines.append(
                "| "
                + " | ".join([total.family, total.config, "**all**", total_note(build), *bold])
                + " |"
            )
    return "\n".join(lines)


def machine() -> str:
    """CPU model, core count, threads and library versions."""
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    threads = os.environ.get("EDGE_SDK_THREADS", "default")
    return (
        f"{cpu}, {os.cpu_count()} cores (EDGE_SDK_THREADS={threads}); "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def rich_table(results: Sequence[BuildRows], timing: Timing) -> Any:
    from rich.table import Table

    table = Table(
        title=f"Model sizes, one sample; latency over {timing.rounds} rounds of "
        f"{timing.repeats} runs: lowest round median / p90 of all runs"
    )
    for name in (*HEADERS, *LATENCY):
        right = name not in HEADERS[:4]
        table.add_column(name, justify="right" if right else "left")
    for build in results:
        for i, row in enumerate(build.graphs):
            last = i == len(build.graphs) - 1 and not build.has_total_row
            table.add_row(
                row.family, row.config, row.graph, row.inputs, *cells(row), end_section=last
            )
        if build.has_total_row:
            total = build.total
            table.add_row(
                total.family,
                total.config,
                "[bold]all[/bold]",
                total_note(build),
                *(f"[bold]{c}[/bold]" for c in cells(total)),
                end_section=True,
            )
    table.caption = (
        "FLOPs: FlopCounterMode, matmul/conv/attention = 2 x MACs, element-wise ops ignored. "
        "ms: ONNX Runtime CPU (SDK ort-cpu backend)."
    )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", default=[], help="only this family (repeat)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per graph and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the graphs")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per graph first")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)

    import warnings

    from rich.console import Console

    from edge_sdk.models.families import families

    known = sorted(f.name for f in families())
    unknown = sorted(set(args.family) - set(known))
    if unknown:
        parser.error(f"unknown family {unknown}; known: {known}")

    warnings.filterwarnings("ignore")  # exporter/tracer notices would bury the table
    console = Console()
    if not console.is_terminal:  # piped or redirected: rich would assume 80 columns
        console = Console(width=200)
    timing = Timing(args.warmup, args.repeats, args.rounds)
    results = []
    with console.status("building, exporting and timing") as status:
        for family, config, build, training in builds(args.family):
            status.update(f"{family} {config}")
            results.append(measure(family, config, build, training, timing))
    console.print(f"[bold]machine[/bold]: {machine()}")
    console.print(rich_table(results, timing))
    if args.markdown:
        print()
        print(f"Machine: {machine()}.")
        print()
        print(markdown(results))


if __name__ == "__main__":
    main()
