"""What a (graph, precision) of ``edge-sdk verify`` is judged by: manifest figures, then
command-line overrides (see :mod:`edge_sdk.checks.verify` for how each precision is read)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from calibration.gate import GateThresholds
from edge_sdk.manifest import Manifest
from edge_sdk.parity import ParityRule, rules_from_manifest

FP16_TOLERANCE = 1e-2
# INT8 defaults when a bundle's calibration record has no thresholds: the gate's own.
INT8_DEFAULTS = {**GateThresholds().to_dict(), "max_metric_drop": 0.02}


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
        rules: element-wise rule per output kind (FP32, from the manifest's parity rules).
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
