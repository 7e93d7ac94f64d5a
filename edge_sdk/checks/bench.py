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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.checks.bench_results import (
    BenchResult,
    GraphTiming,
    Latency,
    StageTiming,
    SweepPoint,
    time_calls,
)
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


@dataclass(frozen=True)
class _GraphPlan:
    """What to time for one graph: the batch sizes and the (dim, value) sweep points."""

    spec: GraphSpec
    sizes: tuple[int, ...]
    swept: tuple[tuple[str, int], ...]


def _plan(
    specs: Sequence[GraphSpec],
    batches: Sequence[int],
    sweep: bool,
    sweep_points: int,
    max_elements: int,
) -> list[_GraphPlan]:
    plan = []
    for spec in specs:
        swept: list[tuple[str, int]] = []
        if sweep:
            lead = batch_dim(spec)
            for dim in sorted(spec.dims):
                if dim != lead:
                    swept += [(dim, v) for v in sweep_values(spec, dim, sweep_points, max_elements)]
        plan.append(_GraphPlan(spec, tuple(batch_sizes(spec, batches, max_elements)), tuple(swept)))
    return plan


@dataclass
class _Rows:
    """What the graph timings collect, in measurement order."""

    graphs: list[GraphTiming] = field(default_factory=list)
    batches: list[GraphTiming] = field(default_factory=list)
    sweeps: list[SweepPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _time_session(
    session: Session,
    plan: _GraphPlan,
    opt: dict[str, int],
    seed: int,
    warmup: int,
    runs: int,
    rows: _Rows,
    step: Callable[[str], None],
) -> None:
    """One graph on one opened session: opt sizes, each batch size, each sweep point."""
    spec, lead, name = plan.spec, batch_dim(plan.spec), _describe(session)

    def timed(dims: dict[str, int], size: str) -> Latency:
        feeds = generate_feeds(spec, dims, seed, size).runs[0]
        return time_calls(lambda: session.run(feeds), warmup, runs)

    latency = timed(opt, "opt")
    items = opt[lead] if lead else 1
    rows.graphs.append(GraphTiming(spec.name, name, opt, items, latency, peak_rss_mb()))
    step(f"{spec.name} {name} opt")
    for size in plan.sizes if lead is not None else ():
        dims = {**opt, lead: size}
        latency = timed(dims, f"batch{size}")
        rows.batches.append(GraphTiming(spec.name, name, dims, size, latency, peak_rss_mb()))
        step(f"{spec.name} {name} batch {size}")
    for dim, value in plan.swept:
        dims = {**opt, dim: value}
        latency = timed(dims, f"{dim}{value}")
        rows.sweeps.append(SweepPoint(spec.name, name, dim, value, dims, latency))
        step(f"{spec.name} {name} {dim}={value}")


def _time_graphs(
    bundle: ModelBundle,
    device: DeviceInfo,
    plan: list[_GraphPlan],
    backends: Sequence[str | None],
    precision: str | None,
    options: dict[str, int],
    step: Callable[[str], None],
) -> _Rows:
    """Every planned graph on every backend; each graph's sessions are closed after it."""
    rows = _Rows()
    max_elements = options["max_elements"]
    for graph in plan:
        spec = graph.spec
        opt, capped = fit_dims(spec, dims_at(spec, "opt"), max_elements)
        if capped:
            rows.notes.append(
                f"{spec.name}: opt sizes shrunk to {opt} to fit {max_elements} values"
            )
        with ExitStack() as stack:
            sessions = [
                stack.enter_context(
                    open_graph(bundle, spec.name, device, backend=backend, precision=precision)
                )
                for backend in backends
            ]
            for session in sessions:
                _time_session(
                    session, graph, opt, options["seed"], options["warmup"], options["runs"],
                    rows, step,
                )
    return rows


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
    plan = _plan(specs, batches, sweep, sweep_points, max_elements)
    per_backend = sum(1 + len(g.sizes) + len(g.swept) for g in plan)
    total = per_backend * len(backends) + len(stage_images) * len(backends)
    done = 0

    def step(description: str) -> None:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, total, description)

    options = {"warmup": warmup, "runs": runs, "seed": seed, "max_elements": max_elements}
    rows = _time_graphs(bundle, device, plan, backends, precision, options, step)
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
        graphs=tuple(rows.graphs),
        batches=tuple(rows.batches),
        sweeps=tuple(rows.sweeps),
        stages=tuple(stages),
        peak_rss_mb=peak_rss_mb(),
        notes=tuple(rows.notes),
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
        with pipeline:
            used = ", ".join(f"{g}={b}" for g, b in sorted(pipeline.backends.items()))
            for label, data in inputs.items():
                samples = _stage_samples(pipeline, data, warmup, runs)
                for stage, values in samples.items():
                    rows.append(
                        StageTiming(label, stage, backend or "auto", used, Latency(tuple(values)))
                    )
                step(f"pipeline {backend or 'auto'} {label}")
    return rows


def _stage_samples(
    pipeline: Any, data: bytes, warmup: int, runs: int
) -> dict[str, list[float]]:
    """Per-stage times of ``runs`` calls after ``warmup``, plus ``e2e`` (the wall clock)."""
    for _ in range(warmup):
        pipeline.predict(data)
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        start = time.perf_counter()
        result = pipeline.predict(data)
        samples.setdefault("e2e", []).append((time.perf_counter() - start) * 1e3)
        for stage, ms in result.timings_ms.items():
            samples.setdefault(stage, []).append(float(ms))
    return samples


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
