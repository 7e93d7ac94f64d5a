"""bench(): latency of every graph of a bundle, and of its pipeline stages, on this machine.

Per graph and backend: warm-up runs, then N timed runs at the manifest's ``opt`` sizes
(p50/p90/p99); throughput along the batch dim (the dynamic dim leading every input and
output) at several batch sizes; and how cost grows with each other dynamic dim (dialog
length, audio frames, video frames, image size), swept over its min..max profile while the
other dims stay at ``opt``. For a face-pipeline bundle, the pipeline's own stages (decode,
detect, classify) on real images. Peak RSS and the thread settings are recorded, since a
latency figure means nothing without the machine and the threads it ran on.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.checks.feeds import (
    DEFAULT_MAX_ELEMENTS,
    batch_dim,
    dims_at,
    fit_dims,
    generate_feeds,
    largest_input,
)
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import EdgeSDKError, InputError
from edge_sdk.manifest import GraphSpec
from runtimes.base import Session
from runtimes.selection import open_graph

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)
SWEEP_POINTS = 5
EXAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"

StepCallback = Callable[[int, int, str], None]


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


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def process_threads() -> int | None:
    """OS threads of this process right now (Linux ``/proc``), else None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def machine_info(device: DeviceInfo) -> dict[str, Any]:
    """CPU, GPU, runtime versions and thread settings, recorded with every figure."""
    info: dict[str, Any] = {
        "cpu": device.cpu.model or platform.processor() or platform.machine(),
        "architecture": device.cpu.architecture,
        "logical_cores": device.cpu.logical_cores or os.cpu_count(),
        "gpus": [g.name for g in device.gpus],
        "jetson": device.jetson.model if device.jetson else None,
        "python": platform.python_version(),
        "onnxruntime": device.onnxruntime_version,
        "torch": device.torch_version,
        "numpy": np.__version__,
        "EDGE_SDK_THREADS": os.environ.get("EDGE_SDK_THREADS", "0 (runtime default)"),
    }
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def _describe(session: Session) -> str:
    return f"{session.backend}/{session.precision}"


def batch_sizes(graph: GraphSpec, wanted: Sequence[int], max_elements: int) -> list[int]:
    """The wanted batch sizes that fit the graph's batch range and ``max_elements``."""
    dim = batch_dim(graph)
    if dim is None:
        return []
    limits = graph.dims[dim]
    opt = dims_at(graph, "opt")
    sizes = []
    for size in sorted(set(wanted)):
        if limits.min <= size <= limits.max and (
            largest_input(graph, {**opt, dim: size}) <= max_elements
        ):
            sizes.append(size)
    return sizes


def sweep_values(graph: GraphSpec, dim: str, points: int, max_elements: int) -> list[int]:
    """About ``points`` values from min to max of ``dim`` (geometric), within the cap."""
    limits = graph.dims[dim]
    low, high = max(limits.min, 1), limits.max
    if high <= low:
        return [low]
    raw = np.geomspace(low, high, num=points)
    values = sorted({round(float(v)) for v in raw} | {limits.opt})
    opt = dims_at(graph, "opt")
    return [v for v in values if largest_input(graph, {**opt, dim: v}) <= max_elements]


def _open_sessions(
    bundle: ModelBundle,
    graph: str,
    device: DeviceInfo,
    backends: Sequence[str | None],
    precision: str | None,
) -> list[Session]:
    sessions = []
    for backend in backends:
        sessions.append(open_graph(bundle, graph, device, backend=backend, precision=precision))
    return sessions


def bench(
    bundle: ModelBundle,
    device: DeviceInfo,
    *,
    backends: Sequence[str | None] = (None,),
    precision: str | None = None,
    warmup: int = 3,
    runs: int = 20,
    batches: Sequence[int] = DEFAULT_BATCHES,
    sweep: bool = True,
    sweep_points: int = SWEEP_POINTS,
    images: Sequence[str | Path] = (),
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    graphs: Sequence[str] | None = None,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> BenchResult:
    """Time every graph (and the pipeline's stages) of ``bundle``.

    Args:
        bundle: an opened bundle.
        device: the probed device (selection and the machine record).
        backends: backend names to time side by side; ``None`` = the one selection picks.
        precision: require this precision (never downgraded).
        warmup, runs: untimed and timed calls per measurement.
        batches: batch sizes for the throughput table (those inside the profile).
        sweep: time each non-batch dynamic dim over its profile.
        sweep_points: about this many values per swept dim.
        images: inputs for the pipeline stages (face bundles; default: the example photo).
        max_elements: skip sizes whose largest input exceeds this many values.
        graphs: only these graphs (default: all).
        seed: seed of the generated feeds.
        on_step: ``(done, total, description)`` after each measurement.
    """
    if runs < 1 or warmup < 0:
        raise InputError(f"bench needs runs >= 1 and warmup >= 0 (got {runs}, {warmup})")
    manifest = bundle.manifest
    names = list(graphs) if graphs else [g.name for g in manifest.graphs]
    specs = [manifest.graph(n) for n in names]
    stage_images = _stage_inputs(bundle, images)
    plan = []
    for spec in specs:
        sizes = batch_sizes(spec, batches, max_elements)
        swept = []
        if sweep:
            lead = batch_dim(spec)
            for dim in sorted(spec.dims):
                if dim == lead:
                    continue
                swept += [(dim, v) for v in sweep_values(spec, dim, sweep_points, max_elements)]
        plan.append((spec, sizes, swept))
    per_backend = sum(1 + len(sizes) + len(swept) for _, sizes, swept in plan)
    total = per_backend * len(backends) + len(stage_images) * len(backends)
    done = 0

    def step(description: str) -> None:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, total, description)

    timings: list[GraphTiming] = []
    batch_rows: list[GraphTiming] = []
    sweep_rows: list[SweepPoint] = []
    notes: list[str] = []
    for spec, sizes, swept in plan:
        lead = batch_dim(spec)
        opt, capped = fit_dims(spec, dims_at(spec, "opt"), max_elements)
        if capped:
            notes.append(f"{spec.name}: opt sizes shrunk to {opt} to fit {max_elements} values")
        for session in _open_sessions(bundle, spec.name, device, backends, precision):
            name = _describe(session)
            feeds = generate_feeds(spec, opt, seed, "opt").runs[0]
            latency = time_calls(lambda s=session, f=feeds: s.run(f), warmup, runs)
            items = opt[lead] if lead else 1
            timings.append(GraphTiming(spec.name, name, opt, items, latency, peak_rss_mb()))
            step(f"{spec.name} {name} opt")
            for size in sizes:
                dims = {**opt, lead: size}
                feeds = generate_feeds(spec, dims, seed, f"batch{size}").runs[0]
                latency = time_calls(lambda s=session, f=feeds: s.run(f), warmup, runs)
                batch_rows.append(GraphTiming(spec.name, name, dims, size, latency, peak_rss_mb()))
                step(f"{spec.name} {name} batch {size}")
            for dim, value in swept:
                dims = {**opt, dim: value}
                feeds = generate_feeds(spec, dims, seed, f"{dim}{value}").runs[0]
                latency = time_calls(lambda s=session, f=feeds: s.run(f), warmup, runs)
                sweep_rows.append(SweepPoint(spec.name, name, dim, value, dims, latency))
                step(f"{spec.name} {name} {dim}={value}")
    stages: list[StageTiming] = []
    if stage_images:
        stages = _stage_timings(
            bundle, device, backends, precision, stage_images, warmup, runs, step
        )
    return BenchResult(
        bundle=f"{manifest.family}/{manifest.variant}",
        root=str(bundle.root),
        machine={**machine_info(device), "process_threads": process_threads()},
        settings={
            "warmup": warmup,
            "runs": runs,
            "batches": list(batches),
            "sweep": sweep,
            "max_elements": max_elements,
            "backends": [b or "auto" for b in backends],
            "precision": precision or "any",
            "seed": seed,
        },
        graphs=tuple(timings),
        batches=tuple(batch_rows),
        sweeps=tuple(sweep_rows),
        stages=tuple(stages),
        peak_rss_mb=peak_rss_mb(),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- pipeline stages


def _stage_inputs(bundle: ModelBundle, images: Sequence[str | Path]) -> dict[str, bytes]:
    """Encoded images for the face pipeline's stages (decode is part of the measurement)."""
    if bundle.manifest.config.get("pipeline") != "face":
        return {}
    paths = [Path(p) for p in images] or ([EXAMPLE_IMAGE] if EXAMPLE_IMAGE.is_file() else [])
    out = {}
    for path in paths:
        if not path.is_file():
            raise InputError(f"bench image {path} does not exist")
        out[path.name] = path.read_bytes()
    if not out:
        import cv2

        rng = np.random.default_rng(0)
        ok, encoded = cv2.imencode(".png", rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        if ok:
            out["noise-640x480.png"] = encoded.tobytes()
    return out


def _stage_timings(
    bundle: ModelBundle,
    device: DeviceInfo,
    backends: Sequence[str | None],
    precision: str | None,
    inputs: dict[str, bytes],
    warmup: int,
    runs: int,
    step: Callable[[str], None],
) -> list[StageTiming]:
    """Per-stage times the pipeline reports itself, plus the wall clock of each call."""
    from edge_sdk.pipelines.face import FacePipeline

    rows: list[StageTiming] = []
    for backend in backends:
        try:
            pipeline = FacePipeline(bundle, device, backend=backend, precision=precision)
        except EdgeSDKError as exc:
            raise EdgeSDKError(
                f"cannot open the face pipeline on {backend or 'auto'}: {exc}"
            ) from exc
        used = ", ".join(f"{g}={b}" for g, b in sorted(pipeline.backends.items()))
        for label, data in inputs.items():
            for _ in range(warmup):
                pipeline.predict(data)
            samples: dict[str, list[float]] = {}
            for _ in range(runs):
                start = time.perf_counter()
                result = pipeline.predict(data)
                samples.setdefault("e2e", []).append((time.perf_counter() - start) * 1e3)
                for stage, ms in result.timings_ms.items():
                    samples.setdefault(stage, []).append(float(ms))
            for stage, values in samples.items():
                rows.append(
                    StageTiming(label, stage, backend or "auto", used, Latency(tuple(values)))
                )
            step(f"pipeline {backend or 'auto'} {label}")
    return rows


__all__ = [
    "BenchResult",
    "GraphTiming",
    "Latency",
    "StageTiming",
    "SweepPoint",
    "batch_sizes",
    "bench",
    "machine_info",
    "peak_rss_mb",
    "sweep_values",
    "time_calls",
]
