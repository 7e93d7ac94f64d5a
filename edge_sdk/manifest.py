"""The Manifest: everything that travels with an exported model, as a frozen dataclass.

Nothing about a model is ever inferred from a file or model name: labels, tensor specs,
preprocessing, artifact hashes, provenance and the weights' licence are all written here
by the exporter and read back by :class:`edge_sdk.bundle.ModelBundle`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_sdk.errors import ManifestError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

ARTIFACT_FORMATS = frozenset(
    {"onnx", "safetensors", "tensorrt", "calibration-cache", "timing-cache", "json"}
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


@dataclass(frozen=True)
class Manifest:
    """What a bundle is, in one JSON file (``manifest.json``)."""

    family: str
    variant: str
    labels: tuple[str, ...]
    graphs: tuple[GraphSpec, ...]
    artifacts: tuple[Artifact, ...]
    preprocessing: dict[str, Preprocessing]
    weights: tuple[WeightSource, ...]
    provenance: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    calibration: Calibration | None = None
    parity: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ManifestError(
                f"unknown manifest schema_version {self.schema_version!r}; this SDK reads "
                f"{sorted(SUPPORTED_SCHEMA_VERSIONS)}: upgrade edge-sdk or re-export the bundle"
            )
        names = [g.name for g in self.graphs]
        if len(set(names)) != len(names):
            raise ManifestError(f"duplicate graph names: {names}")
        for art in self.artifacts:
            if art.graph not in names:
                raise ManifestError(f"artifact {art.path!r} refers to unknown graph {art.graph!r}")

    def graph(self, name: str) -> GraphSpec:
        """The graph called ``name``; raises ManifestError when the bundle has none."""
        for g in self.graphs:
            if g.name == name:
                return g
        raise ManifestError(f"bundle {self.family}/{self.variant} has no graph {name!r}")

    def artifacts_for(self, graph: str) -> tuple[Artifact, ...]:
        """All artifacts (formats, precisions, targets) that implement ``graph``."""
        return tuple(a for a in self.artifacts if a.graph == graph)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return asdict(self)

    def to_json(self) -> str:
        """Canonical JSON text, stable across runs so the file itself can be hashed."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse manifest JSON; any structural problem becomes a ManifestError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Build a Manifest from parsed JSON, checking types and required fields."""
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ManifestError(
                f"unknown manifest schema_version {version!r}; this SDK reads "
                f"{sorted(SUPPORTED_SCHEMA_VERSIONS)}: upgrade edge-sdk or re-export the bundle"
            )
        try:
            calibration = data.get("calibration")
            return cls(
                schema_version=version,
                family=_str(data["family"]),
                variant=_str(data["variant"]),
                labels=tuple(_str(x) for x in _list(data["labels"])),
                graphs=tuple(_graph(g) for g in _list(data["graphs"])),
                artifacts=tuple(Artifact(**_obj(a)) for a in _list(data["artifacts"])),
                preprocessing={
                    _str(k): _preprocessing(v) for k, v in _obj(data["preprocessing"]).items()
                },
                weights=tuple(WeightSource(**_obj(w)) for w in _list(data["weights"])),
                provenance={_str(k): _str(v) for k, v in _obj(data["provenance"]).items()},
                calibration=Calibration(**_obj(calibration)) if calibration else None,
                parity={_str(k): float(v) for k, v in _obj(data.get("parity", {})).items()},
                config=_obj(data.get("config", {})),
            )
        except ManifestError:
            raise
        except KeyError as exc:
            raise ManifestError(f"manifest lacks required field {exc}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"manifest is malformed: {exc}") from exc


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"expected a string, got {value!r}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"expected a list, got {type(value).__name__}")
    return value


def _obj(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"expected an object, got {type(value).__name__}")
    return value


def _tensor(data: Any) -> TensorSpec:
    data = _obj(data)
    shape = tuple(d if isinstance(d, str) else int(d) for d in _list(data["shape"]))
    kind = data.get("kind")
    return TensorSpec(
        name=_str(data["name"]),
        dtype=_str(data["dtype"]),
        shape=shape,
        kind=None if kind is None else _str(kind),
    )


def _graph(data: Any) -> GraphSpec:
    data = _obj(data)
    return GraphSpec(
        name=_str(data["name"]),
        architecture=_str(data["architecture"]),
        inputs=tuple(_tensor(t) for t in _list(data["inputs"])),
        outputs=tuple(_tensor(t) for t in _list(data["outputs"])),
        dims={_str(k): DimRange(**_obj(v)) for k, v in _obj(data.get("dims", {})).items()},
        config=_obj(data.get("config", {})),
    )


def _preprocessing(data: Any) -> Preprocessing:
    data = dict(_obj(data))
    data["size"] = tuple(int(x) for x in data["size"])
    for key in ("mean", "std"):
        if key in data:
            data[key] = tuple(float(x) for x in data[key])
    return Preprocessing(**data)
