"""Selection by measurement: which CPU runtime and thread count run a graph fastest here.

The static order (ONNX Runtime's CPU provider, then OpenVINO) is a guess: which CPU runtime
wins depends on the graph, its shapes and the CPU. On the project's 2-core AMD EPYC,
OpenVINO ran BlazeFace full range in 3.3 ms against ONNX Runtime's 6.8 ms, and ONNX
Runtime ran the face classifier faster on one thread than on two. So, for each graph fed
one steady shape, every usable CPU candidate is timed once per machine, with the runtime's
default threads and with one thread, and the fastest is opened; the figures are kept in
:class:`runtimes.timing_cache.TimingCache`, so later processes only read them.

Rules, each for a reason:

* Only steady-shape graphs are measured (:func:`steady_shape`): OpenVINO compiles a model
  per input shape (70-140 ms each), which a graph fed many shapes (MTCNN's pyramid levels
  and crop batches) pays again and again and a timing at one shape would hide.
* A candidate displaces the static choice only when it is :data:`MARGIN` faster, so noise
  between two near-equal runtimes does not flip the choice from one process to the next.
* Only CPU candidates are compared: an accelerator ranked ahead of them keeps its place.
* ``EDGE_SDK_SELECTION=static`` turns measurement off (the static order, nothing timed).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BackendError, EdgeSDKError, InputError
from edge_sdk.manifest import Artifact, GraphSpec
from edge_sdk.reference_outputs import REFERENCE_FORMAT, decode_examples
from runtimes.base import Session, get_backend
from runtimes.timing_cache import TimingCache, machine_key, timing_key

log = logging.getLogger(__name__)

SELECTION_ENV = "EDGE_SDK_SELECTION"
SELECTION_MODES = ("measured", "static")
T = TypeVar("T")
MARGIN = 1.10  # a candidate must be 10% faster than the static choice to replace it
WARMUP = 3  # untimed calls per variant first (OpenVINO compiles on the first)
ROUNDS = 15  # timed calls per variant, interleaved across variants


@dataclass(frozen=True)
class Variant:
    """One way to open a graph: a backend, one of its artifacts and a thread hint."""

    backend: str
    path: str  # the artifact's path: with backend and threads, what tells variants apart
    threads: int | None
    artifact: Artifact = field(compare=False, repr=False)

    def label(self) -> str:
        """``backend/precision`` plus ``/1t`` on one thread, for logs and reasons."""
        hint = "" if self.threads is None else f"/{self.threads}t"
        return f"{self.backend}/{self.artifact.precision}{hint}"


@dataclass(frozen=True)
class Choice:
    """The variant to open, every timing behind it (ms), and whether it was measured now."""

    variant: Variant
    timings: dict[Variant, float]
    fresh: bool

    def reason(self) -> str:
        """Why this variant: the figures, fastest first."""
        figures = ", ".join(
            f"{v.label()} {ms:.3g} ms" if math.isfinite(ms) else f"{v.label()} failed"
            for v, ms in sorted(self.timings.items(), key=lambda i: i[1])
        )
        return f"measured here: {figures}"


def selection_mode() -> str:
    """``EDGE_SDK_SELECTION`` (default ``measured``); an unknown value is an InputError."""
    mode = os.environ.get(SELECTION_ENV, "measured").strip().lower() or "measured"
    if mode not in SELECTION_MODES:
        raise InputError(f"{SELECTION_ENV}={mode!r}; use one of {list(SELECTION_MODES)}")
    return mode


def steady_shape(graph: GraphSpec) -> bool:
    """True when the graph is usually fed one shape: every input dim is fixed except a
    leading batch dim whose usual (opt) size is its smallest (one image, one face)."""
    for spec in graph.inputs:
        for index, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                continue
            limits = graph.dims[dim]
            if index != 0 or limits.opt != limits.min:
                return False
    return True


def variants(
    candidates: Sequence[tuple[str, Artifact]], threads: int | None, cores: int
) -> list[Variant]:
    """The variants to time, static choice first: each candidate with the caller's thread
    hint, or (no hint, several cores, no ``EDGE_SDK_THREADS``) with default threads and one."""
    hints: tuple[int | None, ...] = (threads,)
    if threads is None and cores > 1 and "EDGE_SDK_THREADS" not in os.environ:
        hints = (None, 1)
    return [
        Variant(name, artifact.path, hint, artifact)
        for name, artifact in candidates
        for hint in hints
    ]


def lead(items: Sequence[T], ms: Callable[[T], float]) -> T:
    """The first of ``items`` (static order) unless another is :data:`MARGIN` faster, then
    the fastest; ``inf`` (could not run) never leads. The one margin rule, for the thread
    hint within a runtime, for the runtime, and for ``edge-sdk devices``' ranking."""
    timed = [item for item in items if math.isfinite(ms(item))]
    if not timed:
        raise BackendError("no variant could be timed")
    first, fastest = timed[0], min(timed, key=ms)
    return fastest if ms(fastest) * MARGIN < ms(first) else first


def per_candidate(ordered: Sequence[Variant], timings: dict[Variant, float]) -> list[Variant]:
    """Each candidate's variant to open (default threads unless one thread leads), in the
    static order; candidates none of whose variants ran are left out."""
    cost = {v: timings.get(v, math.inf) for v in ordered}
    groups: dict[tuple[str, str], list[Variant]] = {}
    for variant in ordered:
        groups.setdefault((variant.backend, variant.path), []).append(variant)
    return [
        lead(group, cost.__getitem__)
        for group in groups.values()
        if any(math.isfinite(cost[v]) for v in group)
    ]


def pick(ordered: Sequence[Variant], timings: dict[Variant, float]) -> Variant:
    """The variant to open: each candidate's own (:func:`per_candidate`), then the one that
    leads them (:func:`lead`)."""
    return lead(per_candidate(ordered, timings), timings.__getitem__)


def measurement_feeds(bundle: ModelBundle, graph: GraphSpec) -> dict[str, np.ndarray]:
    """One call's inputs at the graph's usual shape: the first example recorded at export
    (the export's parity inputs) cut to the opt batch, else seeded noise like it. Dense
    vision graphs take as long on any values; the shape is what matters."""
    shapes = {
        spec.name: tuple(d if isinstance(d, int) else graph.dims[d].opt for d in spec.shape)
        for spec in graph.inputs
    }
    recorded = [
        a for a in bundle.manifest.artifacts_for(graph.name) if a.format == REFERENCE_FORMAT
    ]
    if recorded:
        example = decode_examples(bundle.read_artifact(recorded[0]), graph, recorded[0].path)[0]
        feeds = {name: example.inputs[name][: shape[0]] for name, shape in shapes.items()}
        if all(feeds[name].shape == shape for name, shape in shapes.items()):
            return feeds
    rng = np.random.default_rng(0)
    return {
        spec.name: rng.uniform(-1, 1, shapes[spec.name]).astype(spec.dtype)
        if np.dtype(spec.dtype).kind == "f"
        else np.zeros(shapes[spec.name], spec.dtype)
        for spec in graph.inputs
    }


def time_variants(
    bundle: ModelBundle, graph: GraphSpec, chosen: Sequence[Variant], rounds: int = ROUNDS
) -> dict[Variant, float]:
    """Median ms per variant on :func:`measurement_feeds`, calls interleaved so load from
    other processes spreads over all variants. A variant that fails to open or run is
    logged and gets ``inf`` (cached like a figure, so it is not tried again and again)."""
    feeds = measurement_feeds(bundle, graph)
    sessions: dict[Variant, Session] = {}
    samples: dict[Variant, list[float]] = {v: [] for v in chosen}
    failed: set[Variant] = set()

    def drop(variant: Variant, exc: Exception) -> None:
        log.warning("cannot time %s for %s: %s", variant.label(), graph.name, exc)
        failed.add(variant)
        session = sessions.pop(variant, None)
        if session is not None:
            session.close()

    try:
        for variant in chosen:
            try:
                sessions[variant] = get_backend(variant.backend).open(
                    bundle, graph, variant.artifact, threads=variant.threads
                )
                for _ in range(WARMUP):
                    sessions[variant].run(feeds)
            except EdgeSDKError as exc:
                drop(variant, exc)
        for _ in range(rounds):
            for variant, session in list(sessions.items()):
                start = time.perf_counter()
                try:
                    session.run(feeds)
                except EdgeSDKError as exc:
                    drop(variant, exc)
                    continue
                samples[variant].append((time.perf_counter() - start) * 1e3)
    finally:
        for session in sessions.values():
            session.close()
    return {v: math.inf if v in failed else statistics.median(samples[v]) for v in chosen}


def choose(
    bundle: ModelBundle,
    graph: GraphSpec,
    candidates: Sequence[tuple[str, Artifact]],
    device: DeviceInfo,
    threads: int | None = None,
    *,
    cache: TimingCache | None = None,
    remeasure: bool = False,
) -> Choice | None:
    """The measured choice among ``candidates`` (usable CPU ones, static order), or None
    when there is nothing to choose between or the graph is not steady-shaped.

    Cached figures are used when all variants have one (unless ``remeasure``); otherwise
    all are timed now and stored.
    """
    if not steady_shape(graph):
        return None
    ordered = variants(candidates, threads, device.cpu.logical_cores or 1)
    if len(ordered) < 2:
        return None
    cache = cache or TimingCache()
    keys = _keys(ordered, device)
    stored = {} if remeasure else cache.read()
    if all(keys[v] in stored for v in ordered):
        timings = {v: stored[keys[v]] for v in ordered}
        if all(math.isinf(ms) for ms in timings.values()):
            return None
        return Choice(pick(ordered, timings), timings, fresh=False)
    timings = time_variants(bundle, graph, ordered)
    cache.update({keys[v]: ms for v, ms in timings.items()})
    if all(math.isinf(ms) for ms in timings.values()):
        return None
    choice = Choice(pick(ordered, timings), timings, fresh=True)
    log.info("graph %s: %s -> %s", graph.name, choice.reason(), choice.variant.label())
    return choice


def cached_timings(
    candidates: Sequence[tuple[str, Artifact]], device: DeviceInfo, cache: TimingCache | None = None
) -> dict[tuple[str, str], float]:
    """Cached ms per ``(backend, artifact path)`` of the variant :func:`pick` would open for
    it, for display (``edge-sdk devices``); nothing is measured."""
    stored = (cache or TimingCache()).read()
    ordered = variants(candidates, None, device.cpu.logical_cores or 1)
    keys = _keys(ordered, device)
    timings = {v: stored[keys[v]] for v in ordered if keys[v] in stored}
    return {(v.backend, v.path): timings[v] for v in per_candidate(ordered, timings)}


def _keys(ordered: Sequence[Variant], device: DeviceInfo) -> dict[Variant, str]:
    """Each variant's timing-cache key on this machine."""
    machine = machine_key(device)
    return {
        v: timing_key(
            machine, v.artifact.sha256, v.backend, get_backend(v.backend).version(), v.threads
        )
        for v in ordered
    }
