"""The Manifest: everything that travels with an exported model, as a frozen dataclass.

Nothing about a model is ever inferred from a file or model name: labels, tensor specs,
preprocessing, artifact hashes, provenance and the weights' licence are all written here
by the exporter and read back by :class:`edge_sdk.bundle.ModelBundle`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
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
        depth = _nesting_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise ManifestError(
                f"manifest nests {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"
            )
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
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
            raise ManifestError(f"schema_version: expected an integer, got {_shown(version)}")
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


# --- The schema of manifest.json --------------------------------------------------------
# A manifest is untrusted input: whoever hands over a bundle wrote it. Before any dataclass
# is built, every field's JSON type and bounds are checked here, one table per object, and
# a failure names the field (``graphs[2].inputs[0].shape[1]``). The bounds are generous
# for real models and refuse what would hang, divide by zero, exhaust memory or silently
# compute nonsense further down (a pyramid that never shrinks, a zero std, labels that do
# not match the scores).

MAX_MANIFEST_BYTES = 4 << 20  # exported manifests are 10-60 kB (the inline tokenizer)
MAX_JSON_DEPTH = 32  # exported manifests nest 6-8 levels
MAX_ITEMS = 10_000  # entries of one JSON list or object
MAX_NAME = 256  # names, labels, tags
MAX_TEXT = 1 << 16  # free text (attribution, origin, provenance)
MAX_PATH = 255  # artifact paths
MAX_RANK = 8
MAX_DIM = 2**31 - 1  # ONNX dims are int64; runtimes index tensors with int32
MAX_SIDE = 8192  # preprocessing sizes and margins, in pixels
COLORS = {"rgb": 3, "bgr": 3, "gray": 1}  # colour order -> channels
INTERPOLATIONS = frozenset({"linear", "area", "cubic", "nearest"})
LAYOUTS = frozenset({"NCHW"})
# Outputs whose last dimension scores the classes in ``labels`` order.
CLASS_KINDS = frozenset({"logits", "probabilities", "multilabel_logits"})
# The MTCNN pyramid (edge_sdk.pipelines.detector): min_face below P-Net's 12 px window
# divides by zero or scans sub-window faces; a scale_factor of 1 never shrinks the
# pyramid (it hung, memory growing), near 0 skips every face size.
DETECTOR_MIN_FACE = (12, 4096)
DETECTOR_SCALE_FACTOR = (0.1, 0.95)

_Check = Callable[[Any, str], None]
_PATH_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")
_DIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # also lone surrogates from \u escapes
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def bundle_path_problem(relative: Any) -> str | None:
    """Why ``relative`` cannot name a file of a bundle, or None when it can.

    Only plain relative POSIX paths of portable names pass: nothing absolute, no drive,
    backslash, NUL, ``.``/``..`` or hidden part, so no runtime or OS can resolve it
    anywhere but inside the bundle directory, and one file has one spelling.
    """
    if not isinstance(relative, str):
        return f"expected a string, got {_shown(relative)}"
    if not relative:
        return "empty path"
    if len(relative) > MAX_PATH:
        return f"longer than {MAX_PATH} characters"
    for part in relative.split("/"):
        if not _PATH_PART.fullmatch(part):
            return (
                f"part {_shown(part)} is not a plain file name (letters, digits, . _ + -; "
                "not starting with a dot)"
            )
    return None


def path_error(relative: Any, where: str = "artifact path") -> ManifestError | None:
    """The error for a path that fails :func:`bundle_path_problem`, or None."""
    why = bundle_path_problem(relative)
    if why is None:
        return None
    return ManifestError(
        f"{where} {_shown(relative)} leaves the bundle directory or is not a plain relative "
        f"path ({why})"
    )


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting of JSON ``text`` (strings skipped), found without recursion,
    so a 200,000-deep document is refused before ``json.loads`` recurses into it."""
    brackets = _BRACKET.findall(_JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key given twice would mean different things to different
    JSON readers, so it is refused."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = sorted({k for k, _ in pairs if k in seen or seen.add(k)})
        raise ManifestError(f"manifest repeats keys {twice[:5]} in one object")
    return data


def _shown(value: Any) -> str:
    """``value`` as JSON, cut short: it may be huge or hostile."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(where: str, text: str) -> ManifestError:
    return ManifestError(f"{where}: {text}" if where else f"manifest: {text}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _integer(lo: int, hi: int) -> _Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _problem(where, f"expected an integer, got {_shown(value)}")
        if not lo <= value <= hi:
            raise _problem(where, f"must be an integer in [{lo}, {hi}], got {value}")

    return check


def _number(lo: float, hi: float, *, above: bool = False) -> _Check:
    """A finite number in [lo, hi] (``above``: lo itself excluded)."""

    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _problem(where, f"expected a number, got {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _problem(where, f"must be a finite number, got {value}")
        if value < lo or value > hi or (above and value == lo):
            raise _problem(where, f"must be in {'(' if above else '['}{lo:g}, {hi:g}], got {value}")

    return check


def _text(
    *,
    min_len: int = 0,
    max_len: int = MAX_NAME,
    pattern: re.Pattern[str] | None = None,
    what: str = "",
    lines: bool = False,
) -> _Check:
    """A string; single-line without control characters unless ``lines``; NUL never."""
    control = _CONTROL_IN_TEXT if lines else _CONTROL

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise _problem(where, f"expected a string, got {_shown(value)}")
        if not min_len <= len(value) <= max_len:
            raise _problem(where, f"must be {min_len}-{max_len} characters, got {len(value)}")
        if control.search(value):
            raise _problem(where, f"control character in {_shown(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise _problem(where, f"expected {what}, got {_shown(value)}")

    return check


def _one_of(values: Iterable[str], what: str) -> _Check:
    known = sorted(values)

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or value not in known:
            raise _problem(where, f"unknown {what} {_shown(value)}; known: {known}")

    return check


def _boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _problem(where, f"expected true or false, got {_shown(value)}")


def _nullable(check: _Check) -> _Check:
    def nullable(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return nullable


def _list_of(
    item: _Check, *, min_len: int = 0, max_len: int = MAX_ITEMS, unique: bool = False
) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _problem(where, f"expected a list, got {_shown(value)}")
        if not min_len <= len(value) <= max_len:
            wanted = str(min_len) if min_len == max_len else f"{min_len}-{max_len}"
            raise _problem(where, f"must have {wanted} entries, got {len(value)}")
        for i, entry in enumerate(value):
            item(entry, f"{where}[{i}]")
        if unique and len(set(value)) != len(value):
            seen: set[Any] = set()
            twice = sorted({v for v in value if v in seen or seen.add(v)})
            raise _problem(where, f"repeats {twice[:5]}")

    return check


def _mapping(value_check: _Check, *, key: _Check | None = None, max_len: int = MAX_ITEMS) -> _Check:
    key_check = key or _text(min_len=1)

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _problem(where, f"expected an object, got {_shown(value)}")
        if len(value) > max_len:
            raise _problem(where, f"must have at most {max_len} entries, got {len(value)}")
        for k, v in value.items():
            key_check(k, f"{where} key")
            value_check(v, _join(where, k))

    return check


def _object(
    required: dict[str, _Check],
    optional: dict[str, _Check] | None = None,
    *,
    rule: _Check | None = None,
    open_ended: bool = False,
) -> _Check:
    """An object with these fields; others are refused (a typo would be silently ignored)
    unless ``open_ended``, where they may hold any JSON. ``rule`` checks across fields."""
    optional = optional or {}
    known = {**required, **optional}

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _problem(where, f"expected an object, got {_shown(value)}")
        for name in required:
            if name not in value:
                raise ManifestError(f"{where or 'manifest'} lacks required field {name!r}")
        for name, entry in value.items():
            if name in known:
                known[name](entry, _join(where, name))
            elif open_ended:
                _text(min_len=1)(name, f"{where} key")
                _json_value(entry, _join(where, name))
            else:
                raise _problem(where, f"unknown field {_shown(name)}; known: {sorted(known)}")
        if rule is not None:
            rule(value, where)

    return check


def _record(cls: type, checks: dict[str, _Check], *, rule: _Check | None = None) -> _Check:
    """The object that becomes dataclass ``cls``: a field is required where ``cls`` has no
    default. ``checks`` names every field (tests compare it with ``cls``)."""
    fixed = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    check = _object(
        {k: v for k, v in checks.items() if k in fixed},
        {k: v for k, v in checks.items() if k not in fixed},
        rule=rule,
    )
    check.fields = frozenset(checks)  # type: ignore[attr-defined]
    return check


def _json_value(value: Any, where: str, *, finite: bool = True) -> None:
    """Any JSON (free-form config): bounded depth and size, no NUL; numbers finite unless
    ``finite`` is False (gate reports may record an infinite error). Walked without
    recursion."""
    stack = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _problem(at, f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            if len(item) > MAX_ITEMS:
                raise _problem(at, f"must have at most {MAX_ITEMS} entries, got {len(item)}")
            for k, v in item.items():
                if not isinstance(k, str) or _CONTROL.search(k):
                    raise _problem(at, f"bad key {_shown(k)}")
                stack.append((v, _join(at, k), depth + 1))
        elif isinstance(item, list):
            if len(item) > MAX_ITEMS:
                raise _problem(at, f"must have at most {MAX_ITEMS} entries, got {len(item)}")
            stack.extend((v, f"{at}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, str):
            if _CONTROL_IN_TEXT.search(item):
                raise _problem(at, f"control character in {_shown(item)}")
        elif isinstance(item, float):
            if finite and not math.isfinite(item):
                raise _problem(at, f"must be a finite number, got {item}")
        elif item is not None and not isinstance(item, (bool, int)):
            raise _problem(at, f"not a JSON value: {type(item).__name__}")


def _json_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _problem(where, f"expected an object, got {_shown(value)}")
    _json_value(value, where)


def _report(value: Any, where: str) -> None:
    _json_value(value, where, finite=False)


def _relative_path(value: Any, where: str) -> None:
    error = path_error(value, f"{where}: path")
    if error is not None:
        raise error


def _dim(value: Any, where: str) -> None:
    if isinstance(value, str):
        _text(min_len=1, max_len=64, pattern=_DIM_NAME, what="a dimension name")(value, where)
    else:
        _integer(1, MAX_DIM)(value, where)


def _ordered(value: dict[str, Any], where: str) -> None:
    if not value["min"] <= value["opt"] <= value["max"]:
        raise _problem(where, f"must satisfy min <= opt <= max, got {value}")


def _channels_agree(value: dict[str, Any], where: str) -> None:
    channels = COLORS[value["color"]]
    wanted = "1" if channels == 1 else f"1 or {channels}"
    for key in ("mean", "std"):
        if key in value and len(value[key]) not in (1, channels):
            raise _problem(
                _join(where, key),
                f"has {len(value[key])} values; colour {value['color']!r} needs {wanted}",
            )


_NAME = _text(min_len=1)
_HEX64 = _text(pattern=re.compile("[0-9a-f]{64}"), what="64 lowercase hex digits")
_FREE_TEXT = _text(max_len=MAX_TEXT, lines=True)
_FINITE = _number(-math.inf, math.inf)
_GRAPH_NAME = _text(
    min_len=1, max_len=64, pattern=_PATH_PART, what="a graph name (letters, digits, . _ + -)"
)
_TENSOR = _record(
    TensorSpec,
    {
        "name": _NAME,
        "dtype": _one_of(DTYPES, "dtype"),
        "shape": _list_of(_dim, max_len=MAX_RANK),
        "kind": _nullable(_one_of(OUTPUT_KINDS, "output kind")),
    },
)
_DIM_RANGE = _record(
    DimRange, {k: _integer(0, MAX_DIM) for k in ("min", "opt", "max")}, rule=_ordered
)
_GRAPH = _record(
    GraphSpec,
    {
        "name": _GRAPH_NAME,
        "architecture": _NAME,
        "inputs": _list_of(_TENSOR, min_len=1, max_len=64),
        "outputs": _list_of(_TENSOR, min_len=1, max_len=64),
        "dims": _mapping(
            _DIM_RANGE, key=_text(min_len=1, max_len=64, pattern=_DIM_NAME, what="a dim name")
        ),
        "config": _json_object,
    },
)
_ARTIFACT = _record(
    Artifact,
    {
        "path": _relative_path,
        "sha256": _HEX64,
        "format": _one_of(ARTIFACT_FORMATS, "format"),
        "graph": _GRAPH_NAME,
        "precision": _one_of(PRECISIONS, "precision"),
        "target": _NAME,
        "built_with": _mapping(_NAME, max_len=64),
    },
)
_PREPROCESSING = _record(
    Preprocessing,
    {
        "size": _list_of(_integer(1, MAX_SIDE), min_len=2, max_len=2),
        "color": _one_of(COLORS, "colour order"),
        "scale": _number(0.0, 1.0, above=True),
        "mean": _list_of(_number(-255.0, 255.0), min_len=1, max_len=4),
        "std": _list_of(_number(0.0, 255.0, above=True), min_len=1, max_len=4),
        "interpolation": _one_of(INTERPOLATIONS, "interpolation"),
        "layout": _one_of(LAYOUTS, "layout"),
        "crop": _object({}, {"square": _boolean, "margin_px": _integer(0, MAX_SIDE)}),
    },
    rule=_channels_agree,
)
_WEIGHT = _record(
    WeightSource,
    {
        "name": _NAME,
        "license": _NAME,
        "attribution": _FREE_TEXT,
        "origin": _FREE_TEXT,
        "sha256": _HEX64,
    },
)
_COUNT = _integer(0, 2**31 - 1)
_CALIBRATION = _record(
    Calibration,
    {
        "method": _NAME,
        "sample_count": _COUNT,
        "data_sha256": _text(max_len=MAX_NAME),
        "holdout_count": _COUNT,
        "seed": _nullable(_integer(-(2**63), 2**63 - 1)),
        "source": _FREE_TEXT,
        "graphs": _mapping(_report, max_len=64),
        "thresholds": _mapping(_FINITE, max_len=64),
        "passed": _boolean,
        "forced": _boolean,
    },
)
# Free-form, but what the SDK reads from it is checked like any other field.
_CONFIG = _object(
    {},
    {
        "pipeline": _NAME,
        "detector": _object(
            {},
            {
                "min_face": _integer(*DETECTOR_MIN_FACE),
                "scale_factor": _number(*DETECTOR_SCALE_FACTOR),
                "thresholds": _list_of(_number(0.0, 1.0), min_len=3, max_len=3),
            },
        ),
        "tokenizer": _object(
            {"kind": _one_of({"inline", "package"}, "tokenizer kind")},
            {
                "json": _text(max_len=MAX_MANIFEST_BYTES, lines=True),
                "package": _NAME,
                "path": _relative_path,
                "sha256": _HEX64,
            },
        ),
    },
    open_ended=True,
)
_MANIFEST = _record(
    Manifest,
    {
        "schema_version": _integer(min(SUPPORTED_SCHEMA_VERSIONS), max(SUPPORTED_SCHEMA_VERSIONS)),
        "family": _NAME,
        "variant": _NAME,
        "labels": _list_of(_NAME, min_len=1, unique=True),
        "graphs": _list_of(_GRAPH, min_len=1, max_len=64),
        "artifacts": _list_of(_ARTIFACT),
        "preprocessing": _mapping(_PREPROCESSING, max_len=64),
        "weights": _list_of(_WEIGHT, max_len=256),
        "provenance": _mapping(_FREE_TEXT, max_len=256),
        "calibration": _nullable(_CALIBRATION),
        "parity": _mapping(_FINITE),
        "config": _CONFIG,
    },
)
# Every record of the schema, by dataclass (tests check each names every field).
SCHEMA_RECORDS: dict[type, _Check] = {
    TensorSpec: _TENSOR,
    DimRange: _DIM_RANGE,
    GraphSpec: _GRAPH,
    Artifact: _ARTIFACT,
    Preprocessing: _PREPROCESSING,
    WeightSource: _WEIGHT,
    Calibration: _CALIBRATION,
    Manifest: _MANIFEST,
}


def check_schema(data: Any) -> None:
    """Check parsed manifest JSON against the schema; ManifestError names the field."""
    _MANIFEST(data, "")
