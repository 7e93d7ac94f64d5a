"""What :func:`edge_sdk.checks.bench.bench` measured: latencies and the rows of its tables."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Timed samples in milliseconds and their summary."""

    samples_ms: tuple[float, ...]

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile in ms (NaN without samples)."""
        return float(np.percentile(self.samples_ms, q)) if self.samples_ms else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples_ms)) if self.samples_ms else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Summary plus the raw samples."""
        return {
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "mean_ms": self.mean,
            "min_ms": min(self.samples_ms, default=float("nan")),
            "max_ms": max(self.samples_ms, default=float("nan")),
            "runs": len(self.samples_ms),
            "samples_ms": list(self.samples_ms),
        }


def time_calls(call: Callable[[], object], warmup: int, runs: int) -> Latency:
    """``warmup`` untimed calls, then ``runs`` timed ones (wall clock, perf_counter)."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return Latency(tuple(samples))


@dataclass(frozen=True)
class GraphTiming:
    """One graph at one size on one backend.

    ``items`` is the batch size along the batch dim (1 when the graph has none);
    throughput is items per second at the median latency.
    """

    graph: str
    backend: str
    dims: dict[str, int]
    items: int
    latency: Latency
    rss_mb: float

    @property
    def throughput(self) -> float:
        p50 = self.latency.p50
        return self.items * 1e3 / p50 if p50 > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "backend": self.backend,
            "dims": dict(self.dims),
            "items": self.items,
            "throughput_per_s": self.throughput,
            "peak_rss_mb_after": self.rss_mb,
            **self.latency.to_dict(),
        }


@dataclass(frozen=True)
class SweepPoint:
    """Latency with one dynamic dim at ``value`` and every other dim at ``opt``."""

    graph: str
    backend: str
    dim: str
    value: int
    dims: dict[str, int]
    latency: Latency

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "backend": self.backend,
            "dim": self.dim,
            "value": self.value,
            "dims": dict(self.dims),
            **self.latency.to_dict(),
        }


@dataclass(frozen=True)
class StageTiming:
    """One pipeline stage (or ``e2e``, the wall clock of the whole call) on one input.

    ``runtime`` is the backend asked for (``auto`` = selection's choice); ``backends`` says
    which backend/precision ran each graph.
    """

    input: str
    stage: str
    runtime: str
    backends: str
    latency: Latency

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "stage": self.stage,
            "runtime": self.runtime,
            "backends": self.backends,
            **self.latency.to_dict(),
        }


@dataclass(frozen=True)
class BenchResult:
    """Everything :func:`bench` measured."""

    bundle: str
    root: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    graphs: tuple[GraphTiming, ...]
    batches: tuple[GraphTiming, ...] = ()
    sweeps: tuple[SweepPoint, ...] = ()
    stages: tuple[StageTiming, ...] = ()
    peak_rss_mb: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "check": "bench",
            "bundle": self.bundle,
            "root": self.root,
            "machine": dict(self.machine),
            "settings": dict(self.settings),
            "peak_rss_mb": self.peak_rss_mb,
            "graphs": [g.to_dict() for g in self.graphs],
            "batches": [b.to_dict() for b in self.batches],
            "sweeps": [s.to_dict() for s in self.sweeps],
            "stages": [s.to_dict() for s in self.stages],
            "notes": list(self.notes),
        }
