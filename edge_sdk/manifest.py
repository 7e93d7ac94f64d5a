"""The Manifest: everything that travels with an exported model, as a frozen dataclass.

Nothing about a model is ever inferred from a file or model name: labels, tensor specs,
preprocessing, artifact hashes, provenance and the weights' licence are all written here
by the exporter and read back by :class:`edge_sdk.bundle.ModelBundle`.

The parts of a manifest are in :mod:`edge_sdk.manifest_parts` and the schema that checks
manifest.json in :mod:`edge_sdk.manifest_schema`; their public names are importable from here
as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_sdk.errors import ManifestError
from edge_sdk.manifest_checks import (
    MAX_ITEMS,
    MAX_JSON_DEPTH,
    MAX_NAME,
    Check,
    nesting_depth,
    shown,
    unique_keys,
)
from edge_sdk.manifest_parts import (
    ARTIFACT_FORMATS,
    CLASS_KINDS,
    CPU_INT8_TARGET,
    DTYPES,
    OUTPUT_KINDS,
    PRECISIONS,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    Artifact,
    Calibration,
    DimRange,
    GraphSpec,
    Preprocessing,
    TensorSpec,
    WeightSource,
)
from edge_sdk.manifest_schema import (
    COLORS,
    DETECTOR_MIN_FACE,
    DETECTOR_SCALE_FACTOR,
    INTERPOLATIONS,
    LAYOUTS,
    MAX_DIM,
    MAX_MANIFEST_BYTES,
    MAX_PATH,
    MAX_RANK,
    MAX_SIDE,
    MAX_TEXT,
    PART_RECORDS,
    bundle_path_problem,
    manifest_record,
    path_error,
)

__all__ = [
    "ARTIFACT_FORMATS",
    "CLASS_KINDS",
    "COLORS",
    "CPU_INT8_TARGET",
    "DETECTOR_MIN_FACE",
    "DETECTOR_SCALE_FACTOR",
    "DTYPES",
    "INTERPOLATIONS",
    "LAYOUTS",
    "MAX_DIM",
    "MAX_ITEMS",
    "MAX_JSON_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_NAME",
    "MAX_PATH",
    "MAX_RANK",
    "MAX_SIDE",
    "MAX_TEXT",
    "OUTPUT_KINDS",
    "PRECISIONS",
    "SCHEMA_RECORDS",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Artifact",
    "Calibration",
    "DimRange",
    "GraphSpec",
    "Manifest",
    "Preprocessing",
    "TensorSpec",
    "WeightSource",
    "bundle_path_problem",
    "check_schema",
    "path_error",
]


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
        # bool is an int in Python: ``True in {1}`` holds
        version = self.schema_version
        if isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
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
        paths = [a.path for a in self.artifacts]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise ManifestError(f"artifacts list these paths more than once: {twice}")
        self._check_class_count()

    def _check_class_count(self) -> None:
        """Every output that scores the classes (``CLASS_KINDS``) has one score per label;
        otherwise the pipelines would pair labels with the wrong scores, or fail mid-run."""
        for i, graph in enumerate(self.graphs):
            for j, out in enumerate(graph.outputs):
                last = out.shape[-1] if out.shape else None
                if out.kind in CLASS_KINDS and isinstance(last, int) and last != len(self.labels):
                    raise ManifestError(
                        f"labels: {len(self.labels)} labels, but graphs[{i}].outputs[{j}] "
                        f"({graph.name}/{out.name}, {out.kind}) scores {last} classes"
                    )

    @property
    def untrained(self) -> bool:
        """True when the exporter marked the weights as a random initialisation
        (``provenance.weights_state``; bundles from before the mark say nothing)."""
        return self.provenance.get("weights_state") == "untrained"

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
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse manifest JSON (text, or bytes that must be UTF-8); any problem becomes a
        ManifestError. Size and nesting are bounded before parsing, so a hostile file can
        exhaust neither memory nor the parser's recursion."""
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"manifest is not UTF-8 text: {exc}") from exc
        depth = nesting_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise ManifestError(
                f"manifest nests {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"
            )
        try:
            data = json.loads(text, object_pairs_hook=unique_keys)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digits limit
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Build a Manifest from parsed JSON after :func:`check_schema` (every field's type
        and bounds, named by its path)."""
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        if "schema_version" not in data:
            raise ManifestError("manifest lacks required field 'schema_version'")
        version = data["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise ManifestError(f"schema_version: expected an integer, got {shown(version)}")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ManifestError(
                f"unknown manifest schema_version {version!r}; this SDK reads "
                f"{sorted(SUPPORTED_SCHEMA_VERSIONS)}: upgrade edge-sdk or re-export the bundle"
            )
        check_schema(data)  # version 1's schema: every field's type and bounds
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


_MANIFEST = manifest_record(Manifest)
# Every record of the schema, by dataclass (tests check each names every field).
SCHEMA_RECORDS: dict[type, Check] = {**PART_RECORDS, Manifest: _MANIFEST}


def check_schema(data: Any) -> None:
    """Check parsed manifest JSON against the schema; ManifestError names the field."""
    _MANIFEST(data, "")
