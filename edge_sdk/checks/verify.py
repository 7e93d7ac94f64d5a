"""verify(): the same inputs through every runnable (backend, precision) of a bundle.

Like Polygraphy's comparator: each graph gets one reference run and every other usable
candidate from :func:`runtimes.selection.rank_candidates` is compared with it, output by
output, over the same feeds. The reference is the PyTorch module when torch is installed;
on a device without torch (a Jetson, a kiosk) the PyTorch outputs the bundle recorded at
export (:mod:`edge_sdk.reference_outputs`), fed their own recorded inputs, so on-device
runtimes, TensorRT included, are still judged against PyTorch; only for ``--data`` feeds or
a bundle without recorded outputs, the most conservative ONNX Runtime FP32 candidate. The
result is a structured object; nothing is printed.

Three steps, each usable alone: :func:`plan_verify` (which reference, which candidates,
which feeds), :func:`run_plan` (every runner over the same feeds, each session closed at
the end of its ``with`` block) -> :class:`~edge_sdk.checks.run_results.RunResults`, which
can be saved and reloaded, and :func:`~edge_sdk.checks.compare.compare_results` (the
verdicts). :func:`verify` chains them.

How an output is judged depends on the candidate's precision:

- FP32: element-wise by the parity rule of each output's kind, the same rules export
  checked (:mod:`edge_sdk.parity`, written into the manifest as ``config.parity_rules``):
  ``|candidate - reference| <= atol + rtol * scale``, scale 1 for probabilities and the
  output's peak ``|reference|`` for logits, regression and embeddings.
- FP16: element-wise, ``|candidate - reference| <= atol + rtol * |reference|`` for every
  element (NumPy's ``isclose`` rule), 1e-2.
- INT8: by what the output's consumers see, as the calibration gate does (top-1 agreement
  and max probability difference for class scores, decision agreement for scores,
  concordance for regression, cosine for embeddings), with the thresholds the manifest's
  calibration record carries; element-wise figures are reported but not judged.
- Always: NaN/Inf in a candidate (or the reference) fails; with ``--data`` labels, the task
  metric (top-1 accuracy) may drop by at most ``max_metric_drop``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_sdk.bundle import ModelBundle
from edge_sdk.checks.compare import (
    CandidateCheck,
    OutputCheck,
    VerifyResult,
    check_output,
    compare_results,
    output_kinds,
)
from edge_sdk.checks.feeds import DEFAULT_MAX_ELEMENTS, SIZES, FeedSet, feeds_for_sizes
from edge_sdk.checks.run_results import GraphRuns, RunnerOutputs, RunResults, Skipped
from edge_sdk.checks.tolerances import Tolerance, ToleranceOverrides, tolerance_for
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import GraphSpec, Manifest
from edge_sdk.reference_outputs import REFERENCE_FORMAT, decode_examples
from runtimes.base import get_backend
from runtimes.selection import Candidate, rank_candidates

REFERENCE_BACKEND = "torch"
RECORDED_BACKEND = "torch-recorded"  # PyTorch outputs stored at export (runtimes.recorded_backend)

StepCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class GraphPlan:
    """One graph to verify: its reference, the candidates compared with it, the feeds."""

    graph: GraphSpec
    reference: Candidate
    candidates: tuple[Candidate, ...]
    feeds: tuple[FeedSet, ...]


@dataclass(frozen=True)
class VerifyPlan:
    """What a verify run will do; ``steps`` counts runs of one feed set (progress bars)."""

    graphs: tuple[GraphPlan, ...]
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def steps(self) -> int:
        return sum(len(g.feeds) * (1 + len(g.candidates)) for g in self.graphs)


# --------------------------------------------------------------------------- plan


def _reference(
    manifest: Manifest,
    graph: str,
    device: DeviceInfo,
    usable: list[Candidate],
    recorded_ok: bool,
) -> Candidate | None:
    """PyTorch itself when torch runs here; else, with ``recorded_ok``, the PyTorch outputs
    recorded at export (the bundle's truth, on the export examples); else the last FP32
    candidate in selection order (the most conservative runtime, e.g. the CPU provider)."""
    for backend in (REFERENCE_BACKEND, RECORDED_BACKEND) if recorded_ok else (REFERENCE_BACKEND,):
        try:
            ranked = rank_candidates(manifest, graph, device, backend=backend)
        except EdgeSDKError:
            ranked = []
        found = [c for c in ranked if c.usable and c.artifact.precision == "fp32"]
        if found:
            return found[0]
    fp32 = [c for c in usable if c.artifact.precision == "fp32"]
    return fp32[-1] if fp32 else None


def _recorded_feeds(bundle: ModelBundle, graph: GraphSpec, reference: Candidate) -> FeedSet:
    """The export examples the recorded reference answers, as one feed set."""
    examples = decode_examples(
        bundle.read_artifact(reference.artifact), graph, reference.artifact.path
    )
    return FeedSet(
        graph.name, "export", {}, tuple(e.inputs for e in examples), source="export examples"
    )


def _choose(
    ranked: list[Candidate],
    reference: Candidate | None,
    backends: Sequence[str] | None,
    precisions: Sequence[str] | None,
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """The candidates compared with ``reference`` and those left out, with the reason."""
    chosen: list[Candidate] = []
    left_out: list[tuple[Candidate, str]] = []
    for c in ranked:
        if reference is not None and (c.artifact, c.backend) == (
            reference.artifact,
            reference.backend,
        ):
            continue
        if not c.usable:
            left_out.append((c, c.reason))
        elif backends and c.backend not in backends:
            left_out.append((c, "not among the requested backends"))
        elif precisions and c.artifact.precision not in precisions:
            left_out.append((c, "not among the requested precisions"))
        else:
            chosen.append(c)
    return chosen, left_out


def plan_verify(
    bundle: ModelBundle,
    device: DeviceInfo,
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    data: dict[str, FeedSet] | None = None,
    sizes: Sequence[str] = SIZES,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    graphs: Sequence[str] | None = None,
) -> VerifyPlan:
    """Pick each graph's reference, its candidates and feeds (arguments as :func:`verify`)."""
    manifest = bundle.manifest
    wanted = list(graphs) if graphs else [g.name for g in manifest.graphs]
    for name in wanted:
        manifest.graph(name)  # unknown names fail early, naming the graph
    plans: list[GraphPlan] = []
    skipped: list[Skipped] = []
    errors: list[str] = []
    for name in wanted:
        graph = manifest.graph(name)
        ranked = rank_candidates(manifest, name, device)
        from_data = bool(data and name in data)
        usable = [c for c in ranked if c.usable]
        reference = _reference(manifest, name, device, usable, recorded_ok=not from_data)
        chosen, left_out = _choose(ranked, reference, backends, precisions)
        skipped += [
            Skipped(name, c.backend, c.artifact.precision, c.artifact.path, reason)
            for c, reason in left_out
        ]
        if reference is None:
            errors.append(f"{name}: no reference (neither torch nor an FP32 ONNX candidate)")
            continue
        if data and name in data:
            feedsets = [data[name]]
        elif reference.artifact.format == REFERENCE_FORMAT:
            feedsets = [_recorded_feeds(bundle, graph, reference)]
        else:
            feedsets = feeds_for_sizes(graph, tuple(sizes), seed, max_elements)
        plans.append(GraphPlan(graph, reference, tuple(chosen), tuple(feedsets)))
    return VerifyPlan(tuple(plans), tuple(skipped), tuple(errors))


# --------------------------------------------------------------------------- run


class _Progress:
    """Counts finished feed-set runs and reports them to ``on_step``."""

    def __init__(self, total: int, on_step: StepCallback | None) -> None:
        self.total, self.done, self.on_step = total, 0, on_step

    def __call__(self, description: str, count: int) -> None:
        self.done += count
        if self.on_step is not None:
            self.on_step(self.done, self.total, description)


def _run_candidate(
    bundle: ModelBundle, graph: GraphSpec, candidate: Candidate, feedsets: Sequence[FeedSet]
) -> RunnerOutputs:
    """Every run of every feed set through one candidate; the session is closed after."""
    described = {
        "backend": candidate.backend,
        "precision": candidate.artifact.precision,
        "artifact": candidate.artifact.path,
    }
    try:
        opened = get_backend(candidate.backend).open(bundle, graph, candidate.artifact)
        with opened as session:
            outputs = tuple(tuple(session.run(run) for run in fs.runs) for fs in feedsets)
    except EdgeSDKError as exc:
        return RunnerOutputs(**described, error=str(exc))
    return RunnerOutputs(**described, outputs=outputs)


def _run_graph(bundle: ModelBundle, plan: GraphPlan, progress: _Progress) -> GraphRuns:
    name, feeds = plan.graph.name, plan.feeds
    reference = _run_candidate(bundle, plan.graph, plan.reference, feeds)
    if reference.error is not None:
        progress(f"{name}: reference failed", len(feeds) * (1 + len(plan.candidates)))
        return GraphRuns(name, feeds, reference)
    progress(f"{name}: {plan.reference.backend} reference", len(feeds))
    candidates = []
    for cand in plan.candidates:
        ran = _run_candidate(bundle, plan.graph, cand, feeds)
        candidates.append(ran)
        if ran.error is not None:
            progress(f"{name}: {cand.backend} failed", len(feeds))
        else:
            progress(f"{name}: {cand.backend}/{cand.artifact.precision}", len(feeds))
    return GraphRuns(name, feeds, reference, tuple(candidates))


def run_plan(
    bundle: ModelBundle,
    device: DeviceInfo,
    plan: VerifyPlan,
    on_step: StepCallback | None = None,
) -> RunResults:
    """Run every planned reference and candidate over its graph's feeds.

    A runner that cannot open or run is recorded with its error; when a graph's reference
    fails, its candidates are not run. ``on_step`` is ``(done, total, description)``.
    """
    progress = _Progress(plan.steps, on_step)
    manifest = bundle.manifest
    return RunResults(
        bundle=f"{manifest.family}/{manifest.variant}",
        root=str(bundle.root),
        device=_device_line(device),
        graphs=tuple(_run_graph(bundle, graph, progress) for graph in plan.graphs),
        skipped=plan.skipped,
        errors=plan.errors,
    )


def _device_line(device: DeviceInfo) -> str:
    gpus = "; ".join(g.name for g in device.gpus) or "no GPU"
    cores = device.cpu.logical_cores
    return f"{device.cpu.model or device.cpu.architecture} ({cores} cores), {gpus}"


# --------------------------------------------------------------------------- all three


def verify(
    bundle: ModelBundle,
    device: DeviceInfo,
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    data: dict[str, FeedSet] | None = None,
    sizes: Sequence[str] = SIZES,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    overrides: ToleranceOverrides | None = None,
    graphs: Sequence[str] | None = None,
    strict: bool = False,
    on_step: StepCallback | None = None,
) -> VerifyResult:
    """Compare every usable candidate of every graph with the reference.

    Args:
        bundle: an opened (hash-checked) bundle.
        device: the probed device; decides which candidates are usable.
        backends: only compare these backends (names as in ``edge-sdk devices``).
        precisions: only compare these precisions.
        data: feeds per graph (:func:`edge_sdk.checks.feeds.load_feeds`); graphs without
            data get generated feeds at ``sizes``.
        sizes: profile points for generated feeds (``opt``, ``min``, ``max``).
        seed: seed of the generated feeds.
        max_elements: cap on one generated input's element count (sizes shrink to fit).
        overrides: tolerance overrides (command line).
        graphs: only these graphs (default: all).
        strict: judge INT8 decision-level criteria on generated inputs too. By default
            they are judged only on ``data``: uniform noise is not the distribution the
            scales were calibrated for, so near-tied class scores flip and agreement on
            noise says little; on generated inputs the misses are reported as advisories
            (NaN/Inf, shape and every element-wise criterion always fail).
        on_step: ``(done, total, description)`` after each run, for progress bars.
    """
    plan = plan_verify(
        bundle,
        device,
        backends=backends,
        precisions=precisions,
        data=data,
        sizes=sizes,
        seed=seed,
        max_elements=max_elements,
        graphs=graphs,
    )
    results = run_plan(bundle, device, plan, on_step)
    return compare_results(results, bundle.manifest, overrides=overrides, strict=strict)


__all__ = [
    "CandidateCheck",
    "GraphPlan",
    "OutputCheck",
    "RunResults",
    "Skipped",
    "Tolerance",
    "ToleranceOverrides",
    "VerifyPlan",
    "VerifyResult",
    "check_output",
    "compare_results",
    "output_kinds",
    "plan_verify",
    "run_plan",
    "tolerance_for",
    "verify",
]
