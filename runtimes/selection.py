"""Selection policy: which backend runs a graph on this device, with the reason for each.

Candidates are every (backend, artifact) pair for the graph, ordered by backend rank and
then by precision preference: int8, fp16, fp32 on accelerators; on CPU the CPU INT8 form
first (written only where calibration measured it faster than FP32 and it passed the
gate, see calibration.cpu_int8), then fp32, then the TensorRT INT8 form (which ONNX
Runtime's CPU kernels ran slower than FP32). A requested backend or precision is a
constraint, never a hint: when nothing satisfies it the call fails, it is not downgraded.

The backend ranks are a static order (TensorRT 5, ORT TensorRT EP 10, ORT CUDA 20, ORT CPU
50, OpenVINO CPU 60): a second CPU runtime is tried after ONNX Runtime because which one is
faster depends on the graph, its shapes and the CPU (``benchmarks/cpu_runtimes.py``).
``measured`` latencies, where a caller has them for this graph on this device, reorder
only the candidates they cover, among the places those candidates already hold: OpenVINO
measured faster than ORT CPU takes ORT CPU's place and ORT CPU moves to OpenVINO's, while
an unmeasured candidate (TensorRT ahead of both) keeps its place.

:func:`open_graph` measures by itself (:mod:`runtimes.measured`): for a graph fed one
steady shape it times the leading CPU candidates once per machine, each with default and
one thread, caches the figures, and opens the fastest when it beats the static choice by
10%. ``EDGE_SDK_SELECTION=static`` keeps the static order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BackendError
from edge_sdk.manifest import CPU_INT8_TARGET, Artifact, Manifest
from runtimes.base import Backend, Session, all_backends, get_backend
from runtimes.measured import Choice, choose, lead, selection_mode

log = logging.getLogger(__name__)
_PRECISION_ORDER = {"int8": 0, "fp16": 1, "fp32": 2}
_CPU_PRECISION_ORDER = {"fp32": 1, "int8": 2, "fp16": 3}


def _preference(artifact: Artifact, on_gpu: bool) -> int:
    """Lower is tried first: see the module docstring."""
    if on_gpu:
        return _PRECISION_ORDER.get(artifact.precision, 9)
    if artifact.precision == "int8" and artifact.target == CPU_INT8_TARGET:
        return 0
    return _CPU_PRECISION_ORDER.get(artifact.precision, 9)


@dataclass(frozen=True)
class Candidate:
    """One way to run a graph, whether it is usable here, and why."""

    backend: str
    artifact: Artifact
    usable: bool
    reason: str

    def describe(self) -> str:
        """One line for logs and ``edge-sdk devices``."""
        mark = "ok " if self.usable else "no "
        return f"{mark}{self.backend:<13} {self.artifact.precision:<5} {self.reason}"


def rank_candidates(
    manifest: Manifest,
    graph_name: str,
    device: DeviceInfo,
    *,
    backend: str | None = None,
    precision: str | None = None,
    measured: Mapping[tuple[str, str], float] | None = None,
) -> list[Candidate]:
    """Every candidate for ``graph_name``, usable ones first in the order they would be tried.

    ``measured``: median ms of this graph per ``(backend name, artifact path)``, measured on
    this device; usable candidates it covers are reordered among their own places, fastest
    first (see the module docstring).
    """
    graph = manifest.graph(graph_name)
    backends: tuple[Backend, ...] = (get_backend(backend),) if backend else all_backends()
    ranked: list[tuple[tuple[int, int, int], Candidate]] = []
    for b in backends:
        for artifact in manifest.artifacts_for(graph_name):
            if artifact.format not in b.formats:
                continue
            support = b.supports(graph, artifact, device)
            usable, reason = support.ok, support.reason
            if usable and precision and artifact.precision != precision:
                usable, reason = False, f"precision {artifact.precision} != requested {precision}"
            if usable and backend is None and not b.automatic:
                why = getattr(b, "manual_reason", "reference only")
                usable, reason = False, f"{reason}; {why}, request it by name"
            preference = _preference(artifact, getattr(b, "needs_gpu", True))
            key = (0 if usable else 1, b.rank, preference)
            ranked.append((key, Candidate(b.name, artifact, usable, reason)))
    ordered = [c for _, c in sorted(ranked, key=lambda item: item[0])]
    return _reorder_measured(ordered, measured) if measured else ordered


def _reorder_measured(
    ordered: list[Candidate], measured: Mapping[tuple[str, str], float]
) -> list[Candidate]:
    """Sort the usable candidates ``measured`` covers by their latency, each taking one of
    the places the group held in the static order; all others stay where they were. The
    static first keeps the lead unless beaten by the margin of :func:`runtimes.measured.lead`."""
    slots = [
        i for i, c in enumerate(ordered) if c.usable and (c.backend, c.artifact.path) in measured
    ]
    if not slots:
        return ordered

    def ms(candidate: Candidate) -> float:
        return measured[(candidate.backend, candidate.artifact.path)]

    group = sorted((ordered[i] for i in slots), key=ms)
    first = lead([ordered[i] for i in slots], ms)
    group.remove(first)
    group.insert(0, first)
    result = list(ordered)
    for slot, candidate in zip(slots, group, strict=True):
        moved = ", moved by measurement" if candidate is not result[slot] else ""
        reason = f"{candidate.reason}; measured {ms(candidate):.3g} ms here{moved}"
        result[slot] = Candidate(candidate.backend, candidate.artifact, True, reason)
    return result


def open_graph(
    bundle: ModelBundle,
    graph_name: str,
    device: DeviceInfo,
    *,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    measured: Mapping[tuple[str, str], float] | None = None,
) -> Session:
    """Open ``graph_name`` with the best usable candidate; fail with every reason otherwise.

    ``threads`` is passed to the backend as its thread-count hint (see ``Backend.open``);
    ``measured`` latencies reorder the candidates they cover (see :func:`rank_candidates`).
    """
    candidates = rank_candidates(
        bundle.manifest,
        graph_name,
        device,
        backend=backend,
        precision=precision,
        measured=measured,
    )
    usable = [c for c in candidates if c.usable]
    if not usable:
        reasons = "; ".join(f"{c.backend}/{c.artifact.precision}: {c.reason}" for c in candidates)
        raise BackendError(f"no backend can run graph {graph_name!r} here ({reasons or 'none'})")
    first = usable[0]
    name, artifact, hint, reason = first.backend, first.artifact, threads, first.reason
    choice = _measured_choice(bundle, graph_name, usable, device, threads, measured)
    if choice is not None:
        variant, reason = choice.variant, choice.reason()
        name, artifact, hint = variant.backend, variant.artifact, variant.threads
    log.info("graph %s -> %s (%s)", graph_name, name, reason)
    return get_backend(name).open(bundle, bundle.manifest.graph(graph_name), artifact, threads=hint)


def cpu_candidates(usable: list[Candidate]) -> list[tuple[str, Artifact]]:
    """The usable candidates that run on the CPU and lead the order (an accelerator ranked
    first means nothing is compared), as ``(backend, artifact)`` pairs. A backend says so
    with a true ``cpu_runtime`` attribute; reference backends (torch) have none."""
    out = []
    for candidate in usable:
        if not getattr(get_backend(candidate.backend), "cpu_runtime", False):
            break
        out.append((candidate.backend, candidate.artifact))
    return out


def _measured_choice(
    bundle: ModelBundle,
    graph_name: str,
    usable: list[Candidate],
    device: DeviceInfo,
    threads: int | None,
    measured: Mapping[tuple[str, str], float] | None,
) -> Choice | None:
    """Selection by measurement (:mod:`runtimes.measured`) unless the caller passed its own
    ``measured`` figures or ``EDGE_SDK_SELECTION=static``."""
    if measured or selection_mode() != "measured":
        return None
    candidates = cpu_candidates(usable)
    return choose(bundle, bundle.manifest.graph(graph_name), candidates, device, threads)
