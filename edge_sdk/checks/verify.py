"""verify(): the same inputs through every runnable (backend, precision) of a bundle.

Like Polygraphy's comparator: each graph gets one reference run and every other usable
candidate from :func:`runtimes.selection.rank_candidates` is compared with it, output by
output, over the same feeds. The reference is the PyTorch module when torch is installed;
on a device without torch (a Jetson, a kiosk) the PyTorch outputs the bundle recorded at
export (:mod:`edge_sdk.reference_outputs`), fed their own recorded inputs, so on-device
runtimes, TensorRT included, are still judged against PyTorch; only for ``--data`` feeds or
a bundle without recorded outputs, the most conservative ONNX Runtime FP32 candidate. The
result is a structured object; nothing is printed.

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
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from calibration.gate import as_rows, kind_figures
from edge_sdk.bundle import ModelBundle
from edge_sdk.checks.feeds import DEFAULT_MAX_ELEMENTS, SIZES, FeedSet, feeds_for_sizes
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import GraphSpec, Manifest
from edge_sdk.parity import ParityRule, check_parity, rules_from_manifest
from edge_sdk.reference_outputs import REFERENCE_FORMAT, decode_examples
from runtimes.base import Session, get_backend
from runtimes.selection import Candidate, rank_candidates

REFERENCE_BACKEND = "torch"
RECORDED_BACKEND = "torch-recorded"  # PyTorch outputs stored at export (runtimes.recorded_backend)
FP16_TOLERANCE = 1e-2
# INT8 defaults when a bundle's calibration record has no thresholds (calibration.gate's).
INT8_DEFAULTS = {
    "min_agreement": 0.99,
    "max_prob_diff": 0.25,
    "max_ccc_delta": 0.02,
    "min_cosine": 0.98,
    "max_metric_drop": 0.02,
}
REL_FLOOR = 1e-6  # |reference| below this counts as this when reporting relative error
CLASS_KINDS = ("logits", "probabilities")

StepCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one (graph, precision); ``None`` means "not judged".

    Attributes:
        atol, rtol: element-wise rule ``|c - r| <= atol + rtol * |r|`` (FP32, FP16).
        min_agreement: least top-1 / decision agreement with the reference.
        max_prob_diff: largest probability difference on class or score outputs.
        max_ccc_delta: largest ``1 - CCC`` per column of regression outputs.
        min_cosine: least cosine similarity of embedding rows.
        max_metric_drop: largest accuracy drop against labels (``--data`` with labels).
        source: where the figures came from, shown to users.
    """

    precision: str
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    max_prob_diff: float | None = None
    max_ccc_delta: float | None = None
    min_cosine: float | None = None
    max_metric_drop: float | None = None
    source: str = "default"
    rules: dict[str, ParityRule] | None = None

    @property
    def elementwise(self) -> bool:
        """Whether outputs are judged element by element."""
        return self.atol is not None or self.rtol is not None or self.rules is not None

    def element_rule(self, kind: str) -> ParityRule:
        """The element-wise rule for an output of ``kind``."""
        if self.rules is not None:
            return self.rules[kind]
        return ParityRule(self.atol or 0.0, self.rtol or 0.0, "element")

    def describe(self) -> str:
        """Short form for tables: ``atol=1e-05 rtol=1e-05 (manifest ...)``."""
        parts = [
            f"{key}={value:g}"
            for key, value in asdict(self).items()
            if key not in ("precision", "source", "rules") and value is not None
        ]
        if self.rules is not None:
            parts += [
                f"{kind}: atol={r.atol:g} rtol={r.rtol:g}x{r.scale}"
                for kind, r in sorted(self.rules.items())
            ]
        return f"{' '.join(parts)} ({self.source})"


@dataclass(frozen=True)
class ToleranceOverrides:
    """Command-line overrides; a field left ``None`` keeps the manifest's figure."""

    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    max_prob_diff: float | None = None
    max_metric_drop: float | None = None

    def apply(self, tolerance: Tolerance) -> Tolerance:
        """``tolerance`` with every given override; atol/rtol only where judged element-wise."""
        keys = ["min_agreement", "max_prob_diff", "max_metric_drop"]
        if tolerance.elementwise:
            keys += ["atol", "rtol"]
        changes: dict[str, Any] = {
            k: getattr(self, k) for k in keys if getattr(self, k) is not None
        }
        if not changes:
            return tolerance
        if tolerance.rules is not None and ("atol" in changes or "rtol" in changes):
            # --atol/--rtol replace the per-kind rules with NumPy's element-wise rule.
            changes = {"atol": 0.0, "rtol": 0.0, **changes, "rules": None}
        return replace(tolerance, **changes, source=f"{tolerance.source}, overridden")


def tolerance_for(
    manifest: Manifest, graph: str, precision: str, overrides: ToleranceOverrides | None = None
) -> Tolerance:
    """The tolerance a (graph, precision) is judged by: manifest figures, then overrides.

    Lookup: ``config.tolerances[<graph>.<precision>]`` or ``config.tolerances[<precision>]``
    (explicit per-bundle figures) else, by precision, the parity rules per output kind
    (FP32, ``config.parity_rules``), 1e-2 (FP16), the calibration record's gate thresholds
    (INT8).
    """
    explicit = manifest.config.get("tolerances", {})
    declared = explicit.get(f"{graph}.{precision}") or explicit.get(precision)
    if isinstance(declared, dict):
        numeric = set(Tolerance.__dataclass_fields__) - {"precision", "source"}
        fields = {k: float(v) for k, v in declared.items() if k in numeric}
        tolerance = Tolerance(precision, **fields, source="manifest config.tolerances")
    elif precision == "fp32":
        source = "manifest parity_rules" if "parity_rules" in manifest.config else "default"
        tolerance = Tolerance(
            precision, rules=rules_from_manifest(manifest.config), source=f"{source} by kind"
        )
    elif precision == "fp16":
        tolerance = Tolerance(precision, FP16_TOLERANCE, FP16_TOLERANCE, source="default fp16")
    else:
        recorded = dict(getattr(manifest.calibration, "thresholds", None) or {})
        figures = {**INT8_DEFAULTS, **{k: v for k, v in recorded.items() if k in INT8_DEFAULTS}}
        source = "manifest calibration.thresholds" if recorded else "default int8 gate"
        tolerance = Tolerance(precision, **{k: float(v) for k, v in figures.items()}, source=source)
    return overrides.apply(tolerance) if overrides else tolerance


def output_kinds(manifest: Manifest, graph: GraphSpec) -> dict[str, str]:
    """How each output of ``graph`` is read, as the family declared it at export."""
    return graph.output_kinds()


@dataclass(frozen=True)
class OutputCheck:
    """One output of one candidate against the reference, over every feed set.

    Attributes:
        graph, output: what was compared.
        kind: how it is read (``logits``, ``probabilities``, ``binary``, ``regression``,
            ``embedding``, ``multilabel_logits``).
        elements: values compared.
        max_abs, mean_abs, max_rel: element-wise differences (relative to ``|reference|``,
            floored at 1e-6).
        worst_ratio: ``max |c - r| / (atol + rtol |r|)``; <= 1 passes (element-wise only).
        worst_size: the feed set where ``max_abs`` occurred.
        by_size: ``max_abs`` per feed set.
        non_finite, reference_non_finite: NaN/Inf counts in the candidate / reference.
        agreement, max_prob_diff, ccc_delta, min_cosine: figures by kind (``None`` = n/a).
        metric_delta: candidate minus reference top-1 accuracy against labels.
        failures: why it failed; empty when it passed.
        advisories: decision-level criteria missed on generated inputs (not judged there,
            see :func:`verify`).
    """

    graph: str
    output: str
    kind: str
    elements: int
    max_abs: float
    mean_abs: float
    max_rel: float
    worst_ratio: float | None
    worst_size: str
    by_size: dict[str, float]
    non_finite: int
    reference_non_finite: int
    agreement: float | None = None
    max_prob_diff: float | None = None
    ccc_delta: float | None = None
    min_cosine: float | None = None
    metric_delta: float | None = None
    failures: tuple[str, ...] = ()
    advisories: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when no criterion failed (advisories do not fail)."""
        return not self.failures


@dataclass(frozen=True)
class CandidateCheck:
    """One (backend, artifact) of one graph and how each of its outputs compared."""

    graph: str
    backend: str
    precision: str
    artifact: str
    reference: str
    tolerance: Tolerance
    outputs: tuple[OutputCheck, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        """True when it ran and every output passed."""
        return self.error is None and all(o.passed for o in self.outputs)

    @property
    def name(self) -> str:
        """``backend/precision``."""
        return f"{self.backend}/{self.precision}"


@dataclass(frozen=True)
class Skipped:
    """A candidate that was not compared, and why."""

    graph: str
    backend: str
    precision: str
    artifact: str
    reason: str


@dataclass(frozen=True)
class VerifyResult:
    """Everything :func:`verify` found; ``passed`` is the verdict."""

    bundle: str
    root: str
    device: str
    references: dict[str, str]
    feeds: dict[str, list[str]]
    candidates: tuple[CandidateCheck, ...]
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when something was compared and everything compared passed."""
        return not self.errors and bool(self.candidates) and all(c.passed for c in self.candidates)

    def failures(self) -> list[str]:
        """One line per failure, naming the graph, output and candidate."""
        lines = list(self.errors)
        if not self.candidates and not self.errors:
            lines.append("nothing was compared: no candidate besides the reference can run here")
        for cand in self.candidates:
            if cand.error:
                lines.append(f"{cand.graph} {cand.name}: {cand.error}")
            for out in cand.outputs:
                for why in out.failures:
                    lines.append(f"{cand.graph}.{out.output} {cand.name}: {why}")
        return lines

    def advisories(self) -> list[str]:
        """Criteria missed where they are not judged (INT8 on generated inputs)."""
        return [
            f"{cand.graph}.{out.output} {cand.name}: {why}"
            for cand in self.candidates
            for out in cand.outputs
            for why in out.advisories
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (see :func:`edge_sdk.reports.jsonio.to_jsonable`)."""
        return {
            "check": "verify",
            "passed": self.passed,
            "bundle": self.bundle,
            "root": self.root,
            "device": self.device,
            "references": dict(self.references),
            "feeds": {k: list(v) for k, v in self.feeds.items()},
            "candidates": [
                {
                    **{k: v for k, v in asdict(c).items() if k != "outputs"},
                    "name": c.name,
                    "passed": c.passed,
                    "outputs": [{**asdict(o), "passed": o.passed} for o in c.outputs],
                }
                for c in self.candidates
            ],
            "skipped": [asdict(s) for s in self.skipped],
            "errors": list(self.errors),
            "failures": self.failures(),
            "advisories": self.advisories(),
        }


# --------------------------------------------------------------------------- comparison


def _judge_kind(figures: dict[str, float], tol: Tolerance) -> list[str]:
    failures = []
    rules = (
        ("agreement", tol.min_agreement, ">="),
        ("max_prob_diff", tol.max_prob_diff, "<="),
        ("ccc_delta", tol.max_ccc_delta, "<="),
        ("min_cosine", tol.min_cosine, ">="),
    )
    for key, limit, op in rules:
        if key not in figures or limit is None:
            continue
        value = figures[key]
        ok = value >= limit if op == ">=" else value <= limit
        if not ok:
            failures.append(f"{key} {value:.4g} (needs {op} {limit:g})")
    return failures


def compare_output(
    graph: str,
    output: str,
    kind: str,
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    tolerance: Tolerance,
    labels: np.ndarray | None = None,
    judge_decisions: bool = True,
) -> OutputCheck:
    """Compare one output over ``(size label, reference, candidate)`` pairs.

    Args:
        graph, output, kind: what is compared and how it is read.
        pairs: the output from each feed set, reference first.
        tolerance: the criteria (see :class:`Tolerance`).
        labels: integer classes, one per row of the concatenated output (metric delta).
        judge_decisions: when False, missed decision-level criteria (agreement, probability,
            concordance, cosine) become advisories instead of failures.
    """
    failures: list[str] = []
    advisories: list[str] = []
    by_size: dict[str, float] = {}
    ref_rows, new_rows = [], []
    max_abs = sum_abs = max_rel = 0.0
    worst_ratio: float | None = 0.0 if tolerance.elementwise else None
    worst_size = ""
    elements = non_finite = ref_non_finite = 0
    rule = tolerance.element_rule(kind)
    atol, rtol = rule.atol, rule.rtol
    for size, ref, new in pairs:
        if ref.shape != new.shape:
            failures.append(f"shape {new.shape} != reference {ref.shape} at {size}")
            continue
        ref64, new64 = ref.astype(np.float64), new.astype(np.float64)
        bad_new, bad_ref = ~np.isfinite(new64), ~np.isfinite(ref64)
        non_finite += int(bad_new.sum())
        ref_non_finite += int(bad_ref.sum())
        finite = ~(bad_new | bad_ref)
        diff = np.abs(new64 - ref64)[finite]
        elements += int(ref.size)
        size_max = float(diff.max()) if diff.size else 0.0
        by_size[size] = size_max
        if size_max >= max_abs:
            max_abs, worst_size = size_max, size
        sum_abs += float(diff.sum())
        if diff.size:
            magnitude = np.abs(ref64[finite])
            max_rel = max(max_rel, float((diff / np.maximum(magnitude, REL_FLOOR)).max()))
            if worst_ratio is not None:
                worst_ratio = max(worst_ratio, check_parity(kind, ref64, new64, rule).ratio)
        if finite.all():
            ref_rows.append(as_rows(ref64, kind))
            new_rows.append(as_rows(new64, kind))
    if non_finite:
        failures.append(f"{non_finite} NaN/Inf values")
    if ref_non_finite:
        failures.append(f"the reference has {ref_non_finite} NaN/Inf values")
    if worst_ratio is not None and worst_ratio > 1.0:
        failures.append(
            f"max |diff| {max_abs:.3g} at {worst_size} exceeds atol {atol:g} + rtol {rtol:g} "
            f"* {'|ref|' if rule.scale == 'element' else rule.scale} "
            f"({worst_ratio:.3g}x the allowed error)"
        )
    figures: dict[str, float] = {}
    metric_delta = None
    widths = {r.shape[1] for r in ref_rows}
    if ref_rows and len(widths) == 1:
        ref_all, new_all = np.concatenate(ref_rows), np.concatenate(new_rows)
        figures = kind_figures(ref_all, new_all, kind)
        missed = _judge_kind(figures, tolerance)
        if judge_decisions:
            failures += missed
        else:
            advisories += missed
        if labels is not None and kind in CLASS_KINDS and len(labels) == len(ref_all):
            ref_acc = float(np.mean(ref_all.argmax(-1) == labels))
            new_acc = float(np.mean(new_all.argmax(-1) == labels))
            metric_delta = new_acc - ref_acc
            limit = tolerance.max_metric_drop
            if limit is not None and -metric_delta > limit + 1e-12:
                failures.append(
                    f"top-1 accuracy {new_acc:.4f} vs reference {ref_acc:.4f} "
                    f"(drop {-metric_delta:.4f} > {limit:g})"
                )
    return OutputCheck(
        graph=graph,
        output=output,
        kind=kind,
        elements=elements,
        max_abs=max_abs,
        mean_abs=sum_abs / elements if elements else 0.0,
        max_rel=max_rel,
        worst_ratio=worst_ratio,
        worst_size=worst_size,
        by_size=by_size,
        non_finite=non_finite,
        reference_non_finite=ref_non_finite,
        agreement=figures.get("agreement"),
        max_prob_diff=figures.get("max_prob_diff"),
        ccc_delta=figures.get("ccc_delta"),
        min_cosine=figures.get("min_cosine"),
        metric_delta=metric_delta,
        failures=tuple(failures),
        advisories=tuple(advisories),
    )


# --------------------------------------------------------------------------- orchestration


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


def _open(bundle: ModelBundle, graph: GraphSpec, candidate: Candidate) -> Session:
    return get_backend(candidate.backend).open(bundle, graph, candidate.artifact)


def _run_all(session: Session, feedsets: Sequence[FeedSet]) -> list[list[dict[str, np.ndarray]]]:
    return [[session.run(run) for run in fs.runs] for fs in feedsets]


def _merge_runs(runs: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    """One output concatenated over a feed set's runs.

    Runs of different sizes (dialogs of different lengths) keep their last axis (classes,
    features) as rows; only when even that differs (detector maps) are they flattened.
    """
    parts = [r[name] for r in runs]
    if len(parts) == 1:
        return parts[0]
    if all(p.ndim for p in parts) and len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts)
    if all(p.ndim >= 2 for p in parts) and len({p.shape[-1] for p in parts}) == 1:
        return np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts])
    return np.concatenate([p.reshape(-1) for p in parts])


def _describe(candidate: Candidate) -> str:
    return f"{candidate.backend}/{candidate.artifact.precision} ({candidate.artifact.path})"


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
    manifest = bundle.manifest
    wanted = list(graphs) if graphs else [g.name for g in manifest.graphs]
    for name in wanted:
        manifest.graph(name)  # unknown names fail early, naming the graph
    plans = []
    skipped: list[Skipped] = []
    errors: list[str] = []
    for name in wanted:
        graph = manifest.graph(name)
        ranked = rank_candidates(manifest, name, device)
        usable = [c for c in ranked if c.usable]
        from_data = bool(data and name in data)
        reference = _reference(manifest, name, device, usable, recorded_ok=not from_data)
        chosen = []
        for c in ranked:
            if (
                reference is not None
                and c.artifact == reference.artifact
                and (c.backend == reference.backend)
            ):
                continue
            reason = None
            if not c.usable:
                reason = c.reason
            elif backends and c.backend not in backends:
                reason = "not among the requested backends"
            elif precisions and c.artifact.precision not in precisions:
                reason = "not among the requested precisions"
            if reason is None:
                chosen.append(c)
            else:
                skipped.append(
                    Skipped(name, c.backend, c.artifact.precision, c.artifact.path, reason)
                )
        if reference is None:
            errors.append(f"{name}: no reference (neither torch nor an FP32 ONNX candidate)")
            continue
        if from_data:
            feedsets = [data[name]]
        elif reference.artifact.format == REFERENCE_FORMAT:
            feedsets = [_recorded_feeds(bundle, graph, reference)]
        else:
            feedsets = feeds_for_sizes(graph, tuple(sizes), seed, max_elements)
        plans.append((graph, reference, chosen, feedsets))
    total = sum(len(f) * (1 + len(c)) for _, _, c, f in plans)
    done = 0

    def step(description: str, count: int) -> None:
        nonlocal done
        done += count
        if on_step is not None:
            on_step(done, total, description)

    checks: list[CandidateCheck] = []
    references: dict[str, str] = {}
    feed_labels: dict[str, list[str]] = {}
    for graph, reference, chosen, feedsets in plans:
        references[graph.name] = _describe(reference)
        feed_labels[graph.name] = [fs.label for fs in feedsets]
        kinds = output_kinds(manifest, graph)
        from_data = any(fs.size == "data" for fs in feedsets)
        try:
            ref_session = _open(bundle, graph, reference)
            ref_out = _run_all(ref_session, feedsets)
        except EdgeSDKError as exc:
            errors.append(f"{graph.name}: reference {_describe(reference)} failed: {exc}")
            step(f"{graph.name}: reference failed", len(feedsets) * (1 + len(chosen)))
            continue
        step(f"{graph.name}: {reference.backend} reference", len(feedsets))
        for cand in chosen:
            tolerance = tolerance_for(manifest, graph.name, cand.artifact.precision, overrides)
            common = {
                "graph": graph.name,
                "backend": cand.backend,
                "precision": cand.artifact.precision,
                "artifact": cand.artifact.path,
                "reference": _describe(reference),
                "tolerance": tolerance,
            }
            try:
                cand_out = _run_all(_open(bundle, graph, cand), feedsets)
            except EdgeSDKError as exc:
                checks.append(CandidateCheck(**common, error=str(exc)))
                step(f"{graph.name}: {cand.backend} failed", len(feedsets))
                continue
            outputs = []
            for spec in graph.outputs:
                pairs = [
                    (fs.label, _merge_runs(r, spec.name), _merge_runs(c, spec.name))
                    for fs, r, c in zip(feedsets, ref_out, cand_out, strict=True)
                ]
                outputs.append(
                    compare_output(
                        graph.name,
                        spec.name,
                        kinds[spec.name],
                        pairs,
                        tolerance,
                        _labels_for(feedsets, spec.name),
                        judge_decisions=strict or tolerance.elementwise or from_data,
                    )
                )
            checks.append(CandidateCheck(**common, outputs=tuple(outputs)))
            step(f"{graph.name}: {cand.backend}/{cand.artifact.precision}", len(feedsets))
    return VerifyResult(
        bundle=f"{manifest.family}/{manifest.variant}",
        root=str(bundle.root),
        device=_device_line(device),
        references=references,
        feeds=feed_labels,
        candidates=tuple(checks),
        skipped=tuple(skipped),
        errors=tuple(errors),
    )


def _labels_for(feedsets: Sequence[FeedSet], output: str) -> np.ndarray | None:
    parts = [fs.labels[output] for fs in feedsets if output in fs.labels]
    if len(parts) != len(feedsets) or not parts:
        return None
    return np.concatenate(parts)


def _device_line(device: DeviceInfo) -> str:
    gpus = "; ".join(g.name for g in device.gpus) or "no GPU"
    cores = device.cpu.logical_cores
    return f"{device.cpu.model or device.cpu.architecture} ({cores} cores), {gpus}"


__all__ = [
    "CandidateCheck",
    "OutputCheck",
    "Skipped",
    "Tolerance",
    "ToleranceOverrides",
    "VerifyResult",
    "compare_output",
    "output_kinds",
    "tolerance_for",
    "verify",
]
