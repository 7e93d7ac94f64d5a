"""The parts a Manifest is made of: tensor specs, graphs, artifacts, preprocessing, weights.

Each part is a frozen dataclass that checks its own invariants when built, and the fixed
vocabularies (formats, precisions, dtypes, output kinds) live beside them. They sit apart from
:mod:`edge_sdk.manifest` so that the JSON schema (:mod:`edge_sdk.manifest_schema`) can name
their fields without importing the Manifest that uses the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_sdk.errors import ManifestError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# "onnx-data": the external weights file of an ONNX artifact (the model names it, the
# manifest hashes it; edge_sdk.bundle checks every such reference).
# "reference": the export examples and PyTorch's outputs for them (edge_sdk.reference_outputs).
ARTIFACT_FORMATS = frozenset(
    {
        "onnx",
        "onnx-data",
        "safetensors",
        "tensorrt",
        "calibration-cache",
        "timing-cache",
        "json",
        "reference",
    }
)
PRECISIONS = frozenset({"fp32", "fp16", "int8"})
# ``Artifact.target`` of the U8S8 INT8 ONNX made for ONNX Runtime's CPU kernels
# (calibration.cpu_int8); GPU providers and TensorRT read the symmetric "any" form.
CPU_INT8_TARGET = "cpu"
DTYPES = frozenset({"float32", "float16", "int64", "int32", "uint8", "bool"})
# How a graph output is read (parity rules in edge_sdk.parity, INT8 gate, verify).
OUTPUT_KINDS = frozenset(
    {"logits", "probabilities", "binary", "regression", "embedding", "multilabel_logits"}
)
# Outputs whose last dimension scores the classes in ``labels`` order.
CLASS_KINDS = frozenset({"logits", "probabilities", "multilabel_logits"})


@dataclass(frozen=True)
class DimRange:
    """Profile of one named dynamic dimension (TensorRT optimisation profiles use min/opt/max)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.opt <= self.max:
            raise ManifestError(f"dimension range must satisfy 0 <= min <= opt <= max: {self}")


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, dtype and shape, where strings name dynamic dims."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    kind: str | None = None  # outputs only: one of OUTPUT_KINDS

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ManifestError(f"tensor {self.name!r}: unknown dtype {self.dtype!r}")
        if self.kind is not None and self.kind not in OUTPUT_KINDS:
            raise ManifestError(
                f"tensor {self.name!r}: unknown output kind {self.kind!r}; "
                f"known: {sorted(OUTPUT_KINDS)}"
            )

    @property
    def dynamic_dims(self) -> tuple[str, ...]:
        """Names of the dimensions whose size varies at run time."""
        return tuple(d for d in self.shape if isinstance(d, str))


@dataclass(frozen=True)
class GraphSpec:
    """One computational graph of a bundle (e.g. a detector stage or a classifier).

    ``architecture`` and ``config`` let the PyTorch reference rebuild the module without
    guessing; ``dims`` gives the min/opt/max profile of every named dynamic dimension.
    """

    name: str
    architecture: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: dict[str, DimRange] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        named = {d for t in self.inputs + self.outputs for d in t.dynamic_dims}
        missing = sorted(d for t in self.inputs for d in t.dynamic_dims if d not in self.dims)
        if missing:
            raise ManifestError(f"graph {self.name!r}: dynamic dims without a profile: {missing}")
        unused = sorted(set(self.dims) - named)
        if unused:
            raise ManifestError(f"graph {self.name!r}: profiles for unknown dims: {unused}")

    def output_kinds(self) -> dict[str, str]:
        """How each output is read (``OUTPUT_KINDS``), as the family declared at export."""
        missing = [t.name for t in self.outputs if t.kind is None]
        if missing:
            raise ManifestError(
                f"graph {self.name!r}: outputs {missing} declare no kind (a bundle from an "
                "older edge-sdk): re-export it"
            )
        return {t.name: str(t.kind) for t in self.outputs}


@dataclass(frozen=True)
class Artifact:
    """A file of the bundle: which graph it implements, in which format and precision."""

    path: str
    sha256: str
    format: str
    graph: str
    precision: str = "fp32"
    target: str = "any"
    built_with: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in ARTIFACT_FORMATS:
            raise ManifestError(f"artifact {self.path!r}: unknown format {self.format!r}")
        if self.precision not in PRECISIONS:
            raise ManifestError(f"artifact {self.path!r}: unknown precision {self.precision!r}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ManifestError(f"artifact {self.path!r}: sha256 must be 64 lowercase hex digits")


@dataclass(frozen=True)
class Preprocessing:
    """How raw input becomes the graph's input tensor; identical in training and deployment."""

    size: tuple[int, int]
    color: str
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    interpolation: str = "linear"
    layout: str = "NCHW"
    crop: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightSource:
    """Where a set of weights came from and the terms under which it may be redistributed."""

    name: str
    license: str
    attribution: str
    origin: str
    sha256: str


@dataclass(frozen=True)
class Calibration:
    """Record of an INT8 calibration: method, how many samples, which data, what the gate saw.

    Attributes:
        method: calibration method (per graph in ``graphs`` when ``auto`` chose per graph).
        sample_count: samples the scales were computed from (all graphs together).
        data_sha256: hash of the calibration data selection.
        holdout_count: samples kept out of calibration for the accuracy gate.
        seed: sampling seed, so the selection can be repeated.
        source: what the data was (``images:DIR``, ``synthetic``, ``npz:FILE``).
        graphs: per quantised graph: method, quantised op types, gate figures, passed;
            ``transforms`` (exact FP32 rewrites applied before quantising) and
            ``quantized_outputs: false`` only where used, so older records read the same.
        thresholds: the gate's thresholds.
        passed: whether every graph passed the gate.
        forced: True when a failing calibration was kept with ``--force``.
    """

    method: str
    sample_count: int
    data_sha256: str
    holdout_count: int = 0
    seed: int | None = None
    source: str = ""
    graphs: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    passed: bool = True
    forced: bool = False
