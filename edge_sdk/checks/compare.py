"""The compare step of ``verify``: run results -> per-output verdicts.

Every output is measured by the SDK's one comparator, :func:`calibration.gate.compare_arrays`
(the INT8 gate's own), so ``calibrate`` and ``verify`` give the same figures on the same
arrays; here they are judged by the (graph, precision)'s :class:`Tolerance`, and labelled
``--data`` adds the task metric. Nothing runs a model: the input is a
:class:`~edge_sdk.checks.run_results.RunResults`, fresh or loaded from a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from calibration.gate import compare_arrays
from edge_sdk.checks.feeds import FeedSet
from edge_sdk.checks.run_results import GraphRuns, RunnerOutputs, RunResults, Skipped
from edge_sdk.checks.tolerances import Tolerance, ToleranceOverrides, tolerance_for
from edge_sdk.errors import InputError
from edge_sdk.manifest import GraphSpec, Manifest

CLASS_KINDS = ("logits", "probabilities")


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
            see :func:`edge_sdk.checks.verify.verify`).
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
class VerifyResult:
    """Everything verify found; ``passed`` is the verdict."""

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


def check_output(
    graph: str,
    output: str,
    kind: str,
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    tolerance: Tolerance,
    labels: np.ndarray | None = None,
    judge_decisions: bool = True,
) -> OutputCheck:
    """Judge one output over ``(size label, reference, candidate)`` pairs.

    Args:
        graph, output, kind: what is compared and how it is read.
        pairs: the output from each feed set, reference first.
        tolerance: the criteria (see :class:`Tolerance`).
        labels: integer classes, one per row of the concatenated output (metric delta).
        judge_decisions: when False, missed decision-level criteria (agreement, probability,
            concordance, cosine) become advisories instead of failures.
    """
    rule = tolerance.element_rule(kind) if tolerance.elementwise else None
    found = compare_arrays(kind, pairs, tolerance, rule=rule, value_spec=".4g", limit_spec="g")
    failures = list(found.failures)
    advisories: list[str] = []
    (failures if judge_decisions else advisories).extend(found.missed)
    metric_delta = None
    ref_all, new_all = found.reference_rows, found.candidate_rows
    usable = labels is not None and kind in CLASS_KINDS and ref_all is not None
    if usable and new_all is not None and len(labels) == len(ref_all):
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
        elements=found.elements,
        max_abs=found.max_abs,
        mean_abs=found.mean_abs,
        max_rel=found.max_rel,
        worst_ratio=found.worst_ratio,
        worst_size=found.worst_size,
        by_size=found.by_size,
        non_finite=found.non_finite,
        reference_non_finite=found.reference_non_finite,
        agreement=found.figures.get("agreement"),
        max_prob_diff=found.figures.get("max_prob_diff"),
        ccc_delta=found.figures.get("ccc_delta"),
        min_cosine=found.figures.get("min_cosine"),
        metric_delta=metric_delta,
        failures=tuple(failures),
        advisories=tuple(advisories),
    )


def merge_runs(runs: Sequence[dict[str, np.ndarray]], name: str) -> np.ndarray:
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


def labels_for(feedsets: Sequence[FeedSet], output: str) -> np.ndarray | None:
    """Labels of ``output`` over every feed set, or None unless each one has them."""
    parts = [fs.labels[output] for fs in feedsets if output in fs.labels]
    if len(parts) != len(feedsets) or not parts:
        return None
    return np.concatenate(parts)


def _check_candidate(
    manifest: Manifest,
    graph: GraphSpec,
    runs: GraphRuns,
    candidate: RunnerOutputs,
    overrides: ToleranceOverrides | None,
    strict: bool,
) -> CandidateCheck:
    tolerance = tolerance_for(manifest, graph.name, candidate.precision, overrides)
    common: dict[str, Any] = {
        "graph": graph.name,
        "backend": candidate.backend,
        "precision": candidate.precision,
        "artifact": candidate.artifact,
        "reference": runs.reference.describe(),
        "tolerance": tolerance,
    }
    if candidate.error is not None:
        return CandidateCheck(**common, error=candidate.error)
    kinds = output_kinds(manifest, graph)
    from_data = any(fs.size == "data" for fs in runs.feeds)
    outputs = []
    for spec in graph.outputs:
        pairs = [
            (fs.label, merge_runs(r, spec.name), merge_runs(c, spec.name))
            for fs, r, c in zip(runs.feeds, runs.reference.outputs, candidate.outputs, strict=True)
        ]
        outputs.append(
            check_output(
                graph.name,
                spec.name,
                kinds[spec.name],
                pairs,
                tolerance,
                labels_for(runs.feeds, spec.name),
                judge_decisions=strict or tolerance.elementwise or from_data,
            )
        )
    return CandidateCheck(**common, outputs=tuple(outputs))


def compare_results(
    results: RunResults,
    manifest: Manifest,
    *,
    overrides: ToleranceOverrides | None = None,
    strict: bool = False,
) -> VerifyResult:
    """Judge every candidate's outputs against its graph's reference.

    Args:
        results: what the run step recorded (or :meth:`RunResults.load` read back).
        manifest: the bundle's manifest: output kinds and tolerances come from it.
        overrides: tolerance overrides (command line).
        strict: judge INT8 decision-level criteria on generated inputs too (see
            :func:`edge_sdk.checks.verify.verify`).
    """
    name = f"{manifest.family}/{manifest.variant}"
    if results.bundle != name:
        raise InputError(f"run results are of bundle {results.bundle}, not {name}")
    checks: list[CandidateCheck] = []
    references: dict[str, str] = {}
    feed_labels: dict[str, list[str]] = {}
    errors = list(results.errors)
    for runs in results.graphs:
        references[runs.graph] = runs.reference.describe()
        feed_labels[runs.graph] = [fs.label for fs in runs.feeds]
        if runs.reference.error is not None:
            errors.append(
                f"{runs.graph}: reference {runs.reference.describe()} failed: "
                f"{runs.reference.error}"
            )
            continue
        graph = manifest.graph(runs.graph)
        for candidate in runs.candidates:
            checks.append(_check_candidate(manifest, graph, runs, candidate, overrides, strict))
    return VerifyResult(
        bundle=results.bundle,
        root=results.root,
        device=results.device,
        references=references,
        feeds=feed_labels,
        candidates=tuple(checks),
        skipped=results.skipped,
        errors=tuple(errors),
    )
