"""Calibrate a bundle to INT8 with ONNX Runtime, gate it, and record it in the manifest.

For every graph the family policy quantises: split the recorded feeds into calibration
and held-out samples (seeded), quantise with each candidate method, run FP32 and INT8 on
the held-out samples, and keep the method whose figures pass the gate (``auto`` keeps the
best of those that pass). The INT8 model is added to the bundle as ``GRAPH.int8.onnx``
next to the FP32 one, and the calibration record (method, counts, data hash, figures,
thresholds) goes into the manifest, so ``edge-sdk devices`` and the selection policy see it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calibration.cpu_int8 import CpuTrial, check_mode, decide, median_latencies
from calibration.feeds import CollectedFeeds, Feed, collect_feeds
from calibration.gate import GateThresholds, OutputFigures, compare_runs
from calibration.policy import METHODS, FamilyPolicy, policy_for
from calibration.quantize import quantize_graph
from calibration.rewrites import prepare_for_int8
from edge_sdk.bundle import BundleWriter, ModelBundle
from edge_sdk.device import DeviceInfo, DeviceProbe
from edge_sdk.errors import CalibrationError
from edge_sdk.manifest import CPU_INT8_TARGET, Artifact, Calibration
from runtimes.onnxruntime_backend import cpu_session

log = logging.getLogger(__name__)

MIN_SAMPLES = 8  # one calibration batch; fewer is refused rather than guessing scales
WARN_SAMPLES = 300  # below a few hundred samples, ranges are noisy: say so


@dataclass(frozen=True)
class MethodTrial:
    """One method tried on one graph: its gate figures."""

    method: str
    figures: tuple[OutputFigures, ...]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.figures)

    @property
    def badness(self) -> float:
        """Lower is better: failures first, then how far the figures are from perfect."""
        total = 0.0
        for f in self.figures:
            total += 10.0 * len(f.failures)
            total += (1 - f.agreement) if f.agreement is not None else 0.0
            total += f.max_prob_diff or 0.0
            total += f.ccc_delta or 0.0
            total += (1 - f.min_cosine) if f.min_cosine is not None else 0.0
        return total


@dataclass(frozen=True)
class GraphCalibration:
    """The outcome for one graph: counts, every trial, and the kept one."""

    graph: str
    calibration_samples: int
    holdout_samples: int
    trials: tuple[MethodTrial, ...]
    chosen: MethodTrial
    transforms: tuple[str, ...] = ()  # exact FP32 rewrites applied before quantising
    quantized_outputs: bool = True
    cpu: CpuTrial | None = None  # the CPU INT8 form (calibration.cpu_int8), when tried

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "method": self.chosen.method,
            "calibration_samples": self.calibration_samples,
            "holdout_samples": self.holdout_samples,
            "passed": self.chosen.passed,
            "outputs": {f.output: f.to_dict() for f in self.chosen.figures},
            "tried": {t.method: t.passed for t in self.trials},
        }
        # Only when used, so records of plain calibrations read as before.
        if self.transforms:
            data["transforms"] = list(self.transforms)
        if not self.quantized_outputs:
            data["quantized_outputs"] = False
        if self.cpu is not None:
            data["cpu"] = self.cpu.to_dict()
        return data


@dataclass(frozen=True)
class CalibrationResult:
    """What ``calibrate_bundle`` did; ``bundle`` is None when the gate refused to write."""

    graphs: tuple[GraphCalibration, ...]
    record: Calibration
    bundle: ModelBundle | None

    @property
    def passed(self) -> bool:
        return all(g.chosen.passed for g in self.graphs)


class GateFailedError(CalibrationError):
    """INT8 figures below the thresholds; carries the result so callers can show them."""

    def __init__(self, message: str, result: CalibrationResult) -> None:
        super().__init__(message)
        self.result = result


def _split(feeds: list[Feed], holdout: float, seed: int) -> tuple[list[Feed], list[Feed]]:
    order = np.random.default_rng(seed).permutation(len(feeds))
    held = max(1, round(len(feeds) * holdout))
    return [feeds[i] for i in order[held:]], [feeds[i] for i in order[:held]]


def _run_all(session: object, feeds: list[Feed]) -> list[dict[str, np.ndarray]]:
    names = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
    return [
        dict(zip(names, session.run(names, feed), strict=True))  # type: ignore[attr-defined]
        for feed in feeds
    ]


def _methods(requested: str, policy: FamilyPolicy) -> tuple[str, ...]:
    if requested == "auto":
        return METHODS
    if requested == "default":
        return (policy.method,)
    if requested not in METHODS:
        raise CalibrationError(
            f"unknown method {requested!r}; expected auto, default or one of {METHODS}"
        )
    return (requested,)


def _check_counts(graph: str, calib: list[Feed], source: str) -> None:
    if len(calib) < MIN_SAMPLES:
        raise CalibrationError(
            f"graph {graph!r}: only {len(calib)} calibration samples from {source} "
            f"(at least {MIN_SAMPLES}, one batch, are needed; a few hundred are advised)"
        )
    if len(calib) < WARN_SAMPLES:
        log.warning(
            "graph %r: %d calibration samples; ranges from fewer than %d are noisy",
            graph,
            len(calib),
            WARN_SAMPLES,
        )


def _masked(
    runs: list[dict[str, np.ndarray]], feeds: list[Feed], masks: dict[str, str]
) -> list[dict[str, np.ndarray]]:
    """Outputs with padded rows removed: ``masks`` maps an output to the input whose zero
    entries mark padding (a dialog's padded utterances), whose outputs mean nothing."""
    if not masks:
        return runs
    kept = []
    for run, feed in zip(runs, feeds, strict=True):
        run = dict(run)
        for output, mask_input in masks.items():
            run[output] = run[output][np.asarray(feed[mask_input]) != 0]
        kept.append(run)
    return kept


def calibrate_graph(
    graph: str,
    fp32_model: bytes,
    calib: list[Feed],
    holdout: list[Feed],
    methods: tuple[str, ...],
    policy: FamilyPolicy,
    thresholds: GateThresholds,
    cpu_int8: str = "auto",
) -> tuple[GraphCalibration, tuple[bytes, bytes, bytes | None]]:
    """Quantise one graph with each method, gate each, keep the best.

    Then, unless ``cpu_int8`` is ``never``, the CPU form with the kept method is gated and
    timed against FP32 (:mod:`calibration.cpu_int8`); it never fails the calibration.

    With ``policy.center_activations`` the graph is first rewritten (exactly, in FP32; see
    :mod:`calibration.rewrites`) from the calibration feeds; the gate still compares
    against the original FP32 model.

    Returns the summary and the kept (INT8 model, range cache, CPU form or None) bytes.
    """
    masks = policy.masks.get(graph, {})
    fp32_session = cpu_session(fp32_model)
    reference = _masked(_run_all(fp32_session, holdout), holdout, masks)
    source, transforms = fp32_model, ()
    if policy.center_activations:
        source, transforms = prepare_for_int8(fp32_model, calib)
    trials: list[tuple[MethodTrial, bytes]] = []
    for method in methods:
        try:
            model, ranges = quantize_graph(
                source,
                calib,
                method,
                policy.op_types,
                policy.exclude_nodes.get(graph, ()),
                quantize_outputs=policy.quantize_outputs,
            )
        except CalibrationError as exc:
            if len(methods) == 1:
                raise CalibrationError(f"graph {graph!r}: {exc}") from exc
            log.warning("graph %r: %s; method %s left out", graph, exc, method)
            continue
        outputs = _masked(_run_all(cpu_session(model), holdout), holdout, masks)
        figures = compare_runs(
            reference, outputs, policy.kinds[graph], thresholds, policy.tie_margin
        )
        trials.append((MethodTrial(method, tuple(figures)), (model, ranges)))
    if not trials:
        raise CalibrationError(f"graph {graph!r}: no calibration method could compute ranges")
    best, model = min(trials, key=lambda pair: pair[0].badness)
    cpu_trial, cpu_model = None, None
    if cpu_int8 != "never":
        cpu_trial, cpu_model = _cpu_form(
            graph, source, fp32_session, calib, holdout, reference, best.method, policy,
            thresholds, cpu_int8,
        )
    summary = GraphCalibration(
        graph,
        len(calib),
        len(holdout),
        tuple(t for t, _ in trials),
        best,
        transforms,
        policy.quantize_outputs,
        cpu_trial,
    )
    return summary, (*model, cpu_model)


def _cpu_form(
    graph: str,
    source: bytes,
    fp32_session: object,
    calib: list[Feed],
    holdout: list[Feed],
    reference: list[dict[str, np.ndarray]],
    method: str,
    policy: FamilyPolicy,
    thresholds: GateThresholds,
    mode: str,
) -> tuple[CpuTrial | None, bytes | None]:
    """The CPU INT8 form of one graph: quantised, gated like the TensorRT form, timed."""
    masks = policy.masks.get(graph, {})
    try:
        model, _ = quantize_graph(
            source, calib, method, (), policy.exclude_nodes.get(graph, ()), form="cpu"
        )
    # The form is optional: whatever stops ONNX Runtime's quantiser from making it (its
    # errors share no base class) leaves the TensorRT form and FP32 as they are.
    except Exception as exc:  # noqa: BLE001
        log.warning("graph %r: CPU INT8 form not made (%s: %s)", graph, type(exc).__name__, exc)
        return None, None
    int8_session = cpu_session(model)
    outputs = _masked(_run_all(int8_session, holdout), holdout, masks)
    figures = compare_runs(reference, outputs, policy.kinds[graph], thresholds, policy.tie_margin)
    passed = all(f.passed for f in figures)
    fp32_ms, int8_ms = median_latencies([fp32_session, int8_session], holdout)
    kept, reason = decide(passed, fp32_ms / int8_ms if int8_ms > 0 else 0.0, mode)
    log.info("graph %r: CPU INT8 form %s (%s)", graph, "kept" if kept else "not kept", reason)
    return CpuTrial(tuple(figures), fp32_ms, int8_ms, kept, reason), model if kept else None


def calibrate_bundle(
    bundle_dir: str | Path,
    data: str,
    *,
    method: str = "default",
    count: int | None = None,
    seed: int = 0,
    holdout: float = 0.2,
    holdout_data: str | None = None,
    thresholds: GateThresholds | None = None,
    force: bool = False,
    device: DeviceInfo | None = None,
    cpu_int8: str = "auto",
) -> CalibrationResult:
    """Add INT8 artifacts for every graph the family policy quantises; see module doc.

    Args:
        bundle_dir: the FP32 bundle; INT8 artifacts and the record are added in place.
        data: ``synthetic``, an ``.npz`` of graph feeds, or an image folder / list file.
        method: ``default`` (the family's), ``auto`` (try all, keep the best passing) or
            one of ``minmax``, ``entropy``, ``percentile``.
        count: how many items to draw from ``data`` (all when None).
        seed: sampling and split seed.
        holdout: fraction of the samples kept for the gate (ignored with ``holdout_data``).
        holdout_data: separate data for the gate; then every ``data`` sample calibrates.
        thresholds: gate thresholds; defaults as in :class:`GateThresholds`.
        force: write the INT8 artifacts even when the gate fails (recorded as forced).
        device: probed device (only used to open the FP32 pipeline that records feeds).
        cpu_int8: the CPU INT8 form per graph (:mod:`calibration.cpu_int8`): ``auto``
            keeps it where it passes the gate and is measured faster than FP32 here,
            ``always`` where it passes, ``never`` does not make it.

    Raises:
        CalibrationError: too few samples for a graph.
        GateFailedError: the gate failed and ``force`` is False (nothing is written).
    """
    check_mode(cpu_int8)
    bundle = ModelBundle.load(Path(bundle_dir))
    device = device or DeviceProbe().probe()
    thresholds = thresholds or GateThresholds()
    policy = policy_for(bundle.manifest)
    methods = _methods(method, policy)
    feedset = collect_feeds(bundle, device, data, count, seed)
    gate_set: CollectedFeeds | None = None
    if holdout_data is not None:
        gate_set = collect_feeds(bundle, device, holdout_data, None, seed + 1)
    results: list[GraphCalibration] = []
    models: dict[str, tuple[bytes, bytes, bytes | None]] = {}
    for spec in bundle.manifest.graphs:
        if spec.name in policy.skip_graphs:
            continue
        calib, held = _graph_samples(spec.name, feedset, gate_set, holdout, seed)
        fp32 = bundle.read_artifact(_fp32_artifact(bundle, spec.name))
        summary, models[spec.name] = calibrate_graph(
            spec.name, fp32, calib, held, methods, policy, thresholds, cpu_int8
        )
        results.append(summary)
    record = _record(method, policy, feedset, results, thresholds, seed, force)
    result = CalibrationResult(tuple(results), record, None)
    if not result.passed and not force:
        raise _refusal(bundle, result)
    return replace(result, bundle=_write(bundle, models, record))


def _graph_samples(
    graph: str,
    feedset: CollectedFeeds,
    gate_set: CollectedFeeds | None,
    holdout: float,
    seed: int,
) -> tuple[list[Feed], list[Feed]]:
    """Calibration and held-out samples of one graph: a seeded split of ``feedset``, or all
    of it with ``gate_set`` held out; too few of either is refused."""
    feeds = feedset.feeds.get(graph, [])
    if gate_set is None:
        calib, held = _split(feeds, holdout, seed)
    else:
        calib, held = feeds, gate_set.feeds.get(graph, [])
    _check_counts(graph, calib, feedset.source)
    if not held:
        raise CalibrationError(f"graph {graph!r}: no held-out samples for the gate")
    return calib, held


def _record(
    method: str,
    policy: FamilyPolicy,
    feedset: CollectedFeeds,
    results: list[GraphCalibration],
    thresholds: GateThresholds,
    seed: int,
    force: bool,
) -> Calibration:
    """The manifest's calibration record: method, counts, data hash, figures, thresholds."""
    passed = all(g.chosen.passed for g in results)
    return Calibration(
        method=method if method != "default" else policy.method,
        sample_count=sum(g.calibration_samples for g in results),
        data_sha256=feedset.data_sha256,
        holdout_count=sum(g.holdout_samples for g in results),
        seed=seed,
        source=feedset.source,
        graphs={g.graph: g.to_dict() for g in results},
        thresholds={**thresholds.to_dict(), "tie_margin": policy.tie_margin},
        passed=passed,
        forced=force and not passed,
    )


def _refusal(bundle: ModelBundle, result: CalibrationResult) -> GateFailedError:
    """Why nothing is written, naming each failing output (and untrained weights)."""
    message = _failure_message(result)
    if bundle.manifest.untrained:
        message += (
            "\n  the bundle holds untrained (random) weights (exported with --untrained): "
            "their outputs are near-constant, so INT8 cannot reproduce their tiny spread; "
            "calibrate a trained bundle"
        )
    return GateFailedError(message, result)


def _fp32_artifact(bundle: ModelBundle, graph: str) -> Artifact:
    for artifact in bundle.manifest.artifacts_for(graph):
        if artifact.format == "onnx" and artifact.precision == "fp32":
            return artifact
    raise CalibrationError(f"bundle has no FP32 ONNX artifact for graph {graph!r}")


def _write(
    bundle: ModelBundle,
    models: dict[str, tuple[bytes, bytes, bytes | None]],
    record: Calibration,
) -> ModelBundle:
    import onnxruntime

    writer = BundleWriter.extending(bundle)
    built_with = {"onnxruntime": onnxruntime.__version__, "quant_format": "QDQ"}
    for graph, (model, ranges, cpu_model) in models.items():
        writer.add(
            f"{graph}.int8.onnx",
            model,
            format="onnx",
            graph=graph,
            precision="int8",
            built_with=built_with,
        )
        writer.add(
            f"{graph}.int8.ranges.json",
            ranges,
            format="calibration-cache",
            graph=graph,
            precision="int8",
            built_with=built_with,
        )
        if cpu_model is None:  # not kept this time: no earlier calibration's form survives
            writer.discard(f"{graph}.int8-cpu.onnx")
        else:
            writer.add(
                f"{graph}.int8-cpu.onnx",
                cpu_model,
                format="onnx",
                graph=graph,
                precision="int8",
                target=CPU_INT8_TARGET,
                built_with={**built_with, "quant_format": "QDQ U8S8"},
            )
    return writer.finish(replace(bundle.manifest, calibration=record))


def _failure_message(result: CalibrationResult) -> str:
    lines = ["INT8 calibration failed the accuracy gate (use --force to keep it anyway):"]
    for graph in result.graphs:
        for figures in graph.chosen.figures:
            if figures.failures:
                lines.append(
                    f"  {graph.graph}.{figures.output} [{graph.chosen.method}]: "
                    + "; ".join(figures.failures)
                )
    return "\n".join(lines)
