"""A family's INT8 settings, declared where the family is registered and carried by its bundles.

The exporter writes them into the manifest (``config["int8_policy"]``, checked by
:mod:`edge_sdk.manifest_schema`) and calibration reads them from there, so calibrating a
bundle needs neither torch nor the family's module, and a new family needs no entry in a
table elsewhere. A family that declares nothing gets :data:`DEFAULT_INT8_POLICY`: min-max
calibration of every Conv, MatMul and Gemm, no graph kept FP32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_sdk.errors import ManifestError

QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
METHODS = ("minmax", "entropy", "percentile")
# Op types a policy may name in ``op_types`` (the ones the QDQ quantiser has INT8 kernels for
# on both ONNX Runtime CPU and TensorRT).
QUANTISABLE_OPS = frozenset({*QUANTISED_OPS, "ConvTranspose", "Add", "Mul", "AveragePool"})
MANIFEST_KEY = "int8_policy"


@dataclass(frozen=True)
class Int8Policy:
    """How a family's graphs are quantised to INT8 (every decision is measured; see
    ``benchmarks/int8_decisions.md``).

    Attributes:
        method: default calibration method (one of :data:`METHODS`).
        skip_graphs: graphs kept FP32 (no INT8 artifact is written for them).
        op_types: op types given INT8 inputs; everything else stays FP32.
        exclude_nodes: graph -> ``fnmatch`` patterns of node names kept FP32 although their
            op type is quantised.
        masks: graph -> output -> input whose zero entries mark padded rows of that output
            (left out of the accuracy gate: their values mean nothing in FP32 either).
        center_activations: rewrite each graph exactly before calibrating (see
            :mod:`calibration.rewrites`), for tensors that are mostly a constant offset.
        quantize_outputs: False quantises only the inputs of the quantised ops, not their
            outputs (TensorRT's recommended placement; keeps INT8 off graph outputs).
    """

    method: str = "minmax"
    skip_graphs: tuple[str, ...] = ()
    op_types: tuple[str, ...] = QUANTISED_OPS
    exclude_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    masks: dict[str, dict[str, str]] = field(default_factory=dict)
    center_activations: bool = False
    quantize_outputs: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"INT8 method must be one of {METHODS}, got {self.method!r}")
        unknown = sorted(set(self.op_types) - QUANTISABLE_OPS)
        if unknown or not self.op_types:
            raise ValueError(
                f"INT8 op_types must be a non-empty subset of {sorted(QUANTISABLE_OPS)}, "
                f"got {list(self.op_types)}"
            )

    def to_manifest(self) -> dict[str, Any]:
        """The JSON form written to ``manifest.config["int8_policy"]``."""
        return {
            "method": self.method,
            "skip_graphs": list(self.skip_graphs),
            "op_types": list(self.op_types),
            "exclude_nodes": {g: list(p) for g, p in self.exclude_nodes.items()},
            "masks": {g: dict(m) for g, m in self.masks.items()},
            "center_activations": self.center_activations,
            "quantize_outputs": self.quantize_outputs,
        }

    @classmethod
    def from_manifest(cls, value: dict[str, Any] | None) -> Int8Policy:
        """The policy a manifest records; the default when it records none.

        ``value`` has passed the manifest schema (types and ranges); a combination the
        schema cannot see (e.g. an unknown method name) is a ManifestError.
        """
        if value is None:
            return DEFAULT_INT8_POLICY
        try:
            return cls(
                method=value.get("method", "minmax"),
                skip_graphs=tuple(value.get("skip_graphs", ())),
                op_types=tuple(value.get("op_types", QUANTISED_OPS)),
                exclude_nodes={g: tuple(p) for g, p in value.get("exclude_nodes", {}).items()},
                masks={g: dict(m) for g, m in value.get("masks", {}).items()},
                center_activations=bool(value.get("center_activations", False)),
                quantize_outputs=bool(value.get("quantize_outputs", True)),
            )
        except ValueError as exc:
            raise ManifestError(f"config.{MANIFEST_KEY}: {exc}") from exc


DEFAULT_INT8_POLICY = Int8Policy()
