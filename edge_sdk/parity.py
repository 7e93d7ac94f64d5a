"""FP32 parity rules: how far ONNX Runtime may be from PyTorch, per output kind.

This is the one place that says what each tolerance is and why. Export judges every
graph output by the rule of its kind (declared by the family on the output's
:class:`~edge_sdk.manifest.TensorSpec`), writes the rules into the manifest
(``config.parity_rules``) and ``edge-sdk verify`` judges FP32 candidates by the same rules.

Why per kind and scale, not one absolute number: two correct FP32 runtimes differ in the
last bits of every multiply-add (blocked vs. plain GEMM, FMA, another CPU's SIMD width,
ORT's fused kernels), and that difference grows with the magnitude of what is summed.
An absolute 1e-4 on Exp-CLIP's logits (100 x a cosine, values up to ~50) is a relative
1e-6 demand: it passed on one Intel Xeon and failed on an AMD EPYC at 1.11e-4. So:

- ``probabilities`` and ``binary`` (softmax/sigmoid outputs) live in [0, 1]; their scale
  is fixed, so they are judged absolutely: ``atol`` 1e-5 (Polygraphy's default atol).
- ``logits``, ``multilabel_logits``, ``regression`` and ``embedding`` have a scale set by
  the model: each element may differ by ``atol + rtol * peak``, where ``peak`` is the
  largest ``|reference|`` of that output in that run. ``rtol`` 1e-4 sits inside the
  "rtol 1e-3 / atol 1e-5" class ONNX Runtime's own backend tests use. Measured on an AMD
  EPYC (ORT 1.32, every family's tiny and edge export, each with ORT's default kernels,
  one intra-op thread and graph optimisations disabled): the worst scaled output used 1.1%
  of its allowance (MiniLM's text embeddings), i.e. about 1e-6 of the peak; the worst
  probability 19% (P-Net's face score, 1.9e-6). A real export bug (a wrong op, layout or
  constant) moves outputs by percents of their scale.
- ``embedding`` rows must also keep their direction: cosine >= 1 - 1e-6 per row
  (what consumers of features read; a row of zeros counts as cosine 1 with a zero row).

A rule's ``scale`` is ``"unit"`` (the allowed error is ``atol + rtol``), ``"peak"`` or
``"element"`` (NumPy's ``isclose``: ``atol + rtol * |reference|`` per element, the rule of
``--atol/--rtol`` overrides and FP16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_sdk.errors import ManifestError
from edge_sdk.manifest import OUTPUT_KINDS

SCALES = ("unit", "peak", "element")


@dataclass(frozen=True)
class ParityRule:
    """Allowed FP32 difference for one output kind: ``|d| <= atol + rtol * scale``."""

    atol: float
    rtol: float
    scale: str
    min_cosine: float | None = None

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ManifestError(f"parity rule scale must be one of {SCALES}, got {self.scale!r}")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ManifestError(f"parity rule {name} must be in [0, 1], got {value!r}")
        if self.min_cosine is not None and not 0.0 <= self.min_cosine <= 1.0:
            raise ManifestError(f"parity rule min_cosine must be in [0, 1]: {self.min_cosine!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


_BOUNDED = ParityRule(atol=1e-5, rtol=0.0, scale="unit")
_SCALED = ParityRule(atol=1e-5, rtol=1e-4, scale="peak")

DEFAULT_RULES: dict[str, ParityRule] = {
    "probabilities": _BOUNDED,
    "binary": _BOUNDED,
    "logits": _SCALED,
    "multilabel_logits": _SCALED,
    "regression": _SCALED,
    "embedding": ParityRule(atol=1e-5, rtol=1e-4, scale="peak", min_cosine=1 - 1e-6),
}
assert set(DEFAULT_RULES) == OUTPUT_KINDS


@dataclass(frozen=True)
class ParityCheck:
    """One output of one run against its reference under a rule.

    Attributes:
        max_abs: largest element-wise ``|candidate - reference|``.
        scale: the rule's scale for this run (1 for ``unit``, peak ``|reference|``; for
            ``element`` the ``|reference|`` where the worst ratio occurred).
        allowed: ``atol + rtol * scale`` there.
        ratio: ``max_abs / allowed``; <= 1 passes the element-wise part.
        min_cosine: worst row cosine (embeddings only).
        non_finite: NaN/Inf values in either array.
    """

    kind: str
    max_abs: float
    scale: float
    allowed: float
    ratio: float
    min_cosine: float | None
    non_finite: int
    passed: bool

    def describe(self) -> str:
        text = f"max |diff| {self.max_abs:.3g} vs allowed {self.allowed:.3g} ({self.kind}"
        if self.scale != 1.0:
            text += f", peak |ref| {self.scale:.3g}"
        if self.min_cosine is not None:
            text += f", min cosine 1-{1 - self.min_cosine:.2g}"
        if self.non_finite:
            text += f", {self.non_finite} NaN/Inf"
        return text + ")"


def rule_scale(rule: ParityRule, reference: np.ndarray) -> float | np.ndarray:
    """The magnitude ``rtol`` multiplies: 1, the peak finite ``|reference|``, or
    ``|reference|`` itself (``element``)."""
    if rule.scale == "unit":
        return 1.0
    magnitude = np.abs(reference)
    if rule.scale == "element":
        return magnitude
    finite = magnitude[np.isfinite(magnitude)]
    return float(finite.max()) if finite.size else 0.0


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine of each row (last axis); two zero rows count as identical."""
    ref = reference.reshape(-1, reference.shape[-1]) if reference.ndim else reference.reshape(1, 1)
    new = candidate.reshape(ref.shape)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(new, axis=1)
    dots = np.sum(ref * new, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(new, axis=1) == 0)
    return np.where(both_zero, 1.0, dots / np.maximum(norms, np.finfo(np.float64).tiny))


def check_parity(
    kind: str, reference: np.ndarray, candidate: np.ndarray, rule: ParityRule | None = None
) -> ParityCheck:
    """Judge ``candidate`` against ``reference`` by the rule of ``kind`` (or ``rule``)."""
    rule = rule or DEFAULT_RULES[kind]
    ref = np.asarray(reference, dtype=np.float64)
    new = np.asarray(candidate, dtype=np.float64)
    if ref.shape != new.shape:
        raise ValueError(f"shape {new.shape} vs reference {ref.shape}")
    non_finite = int(np.sum(~np.isfinite(ref)) + np.sum(~np.isfinite(new)))
    finite = np.isfinite(ref) & np.isfinite(new)
    diff = np.abs(ref - new)[finite]
    max_abs = float(diff.max()) if diff.size else 0.0
    allowed_all = np.broadcast_to(rule.atol + rule.rtol * rule_scale(rule, ref), ref.shape)
    allowed_all = allowed_all[finite]
    if diff.size:
        ratios = diff / np.maximum(allowed_all, np.finfo(np.float64).tiny)
        worst = int(np.argmax(ratios))
        ratio, allowed = float(ratios[worst]), float(allowed_all[worst])
    else:
        ratio, allowed = 0.0, rule.atol
    scale = (allowed - rule.atol) / rule.rtol if rule.rtol else 1.0
    cosine = None
    if rule.min_cosine is not None and ref.size and non_finite == 0:
        cosine = float(row_cosines(ref, new).min())
    passed = non_finite == 0 and ratio <= 1.0
    if cosine is not None and cosine < rule.min_cosine:
        passed = False
    return ParityCheck(kind, max_abs, scale, allowed, ratio, cosine, non_finite, passed)


def rules_to_manifest(rules: Mapping[str, ParityRule] = DEFAULT_RULES) -> dict[str, Any]:
    """The rules as written into ``manifest.config.parity_rules``."""
    return {kind: rule.to_dict() for kind, rule in sorted(rules.items())}


def rules_from_manifest(config: Mapping[str, Any]) -> dict[str, ParityRule]:
    """The bundle's rules (``config.parity_rules``), validated; defaults where absent."""
    declared = config.get("parity_rules")
    if declared is None:
        return dict(DEFAULT_RULES)
    if not isinstance(declared, dict):
        raise ManifestError("config.parity_rules must be an object of kind -> rule")
    rules = dict(DEFAULT_RULES)
    for kind, value in declared.items():
        if kind not in OUTPUT_KINDS:
            raise ManifestError(f"config.parity_rules: unknown output kind {kind!r}")
        if not isinstance(value, dict) or set(value) - {"atol", "rtol", "scale", "min_cosine"}:
            raise ManifestError(f"config.parity_rules.{kind} must hold atol, rtol, scale")
        try:
            rules[kind] = ParityRule(
                atol=_number(value.get("atol"), f"{kind}.atol"),
                rtol=_number(value.get("rtol"), f"{kind}.rtol"),
                scale=value.get("scale"),
                min_cosine=(
                    None
                    if value.get("min_cosine") is None
                    else _number(value["min_cosine"], f"{kind}.min_cosine")
                ),
            )
        except ManifestError as exc:
            raise ManifestError(f"config.parity_rules.{kind}: {exc}") from exc
    return rules


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"config.parity_rules.{field} must be a number, got {value!r}")
    return float(value)
