"""Triton ``config.pbtxt`` from typed objects, and its check against Triton's own schema.

The text is written here (no protobuf needed to export), then parsed back with the
``ModelConfig`` message that ``tritonclient`` ships (:func:`parse`) whenever that package
is importable: a field Triton does not know, a misspelt enum or a wrong nesting fails at
export time with the parser's message, not when the server loads the repository.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.errors import ExportError

# Manifest dtypes -> Triton's DataType enum (model_config.proto).
DATA_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
STRING = "TYPE_STRING"  # Triton's BYTES tensors: encoded images, JSON text
KINDS = ("KIND_GPU", "KIND_CPU")
# Names and values are written between double quotes; anything that would need escaping
# (quotes, backslashes, control or non-ASCII characters) is refused instead.
_SAFE = re.compile(r"[A-Za-z0-9_.:/+=@, -]{1,256}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class TensorConfig:
    """One ``input`` or ``output`` entry; ``dims`` exclude the batch dim when batching.

    ``reshape`` is the shape the model itself sees when it differs from ``dims``: a tensor
    that is only the batch dim (``(batch,)``) is declared ``dims: [1]`` with an empty
    reshape, since Triton refuses empty ``dims``.
    """

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "tensor name")
        if self.data_type not in (*DATA_TYPES.values(), STRING):
            raise ExportError(f"tensor {self.name!r}: unknown Triton data type {self.data_type}")
        if not self.dims or any(d == 0 or d < -1 for d in self.dims):
            raise ExportError(
                f"tensor {self.name!r}: dims {list(self.dims)} must be non-empty, each a "
                "positive size or -1 (dynamic)"
            )


@dataclass(frozen=True)
class InstanceGroup:
    """Where and how many copies of a model run (``KIND_GPU``/``KIND_CPU``)."""

    kind: str
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ExportError(f"instance kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ExportError(f"instance count must be an integer >= 1, got {self.count!r}")


@dataclass(frozen=True)
class DynamicBatching:
    """Server-side batching of requests; only for models whose first dim is a batch."""

    max_queue_delay_microseconds: int = 100

    def __post_init__(self) -> None:
        delay = self.max_queue_delay_microseconds
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ExportError(f"max queue delay must be an integer >= 0 us, got {delay!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The fields of Triton's ``ModelConfig`` this exporter writes."""

    name: str
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    max_batch_size: int = 0
    platform: str | None = None
    backend: str | None = None
    default_model_filename: str | None = None
    instance_groups: tuple[InstanceGroup, ...] = ()
    dynamic_batching: DynamicBatching | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "model name")
        if self.platform is None and self.backend is None:
            raise ExportError(f"model {self.name!r} names neither a platform nor a backend")
        if self.max_batch_size < 0:
            raise ExportError(f"model {self.name!r}: max_batch_size must be >= 0")
        if self.dynamic_batching is not None and self.max_batch_size == 0:
            raise ExportError(
                f"model {self.name!r}: dynamic batching needs max_batch_size > 0 (Triton "
                "refuses it otherwise)"
            )
        names = [t.name for t in self.inputs] + [t.name for t in self.outputs]
        if not self.inputs or not self.outputs or len(set(names)) != len(names):
            raise ExportError(
                f"model {self.name!r}: needs inputs and outputs with distinct names, got {names}"
            )
        for key, value in self.parameters.items():
            _check_safe(key, "parameter key")
            _check_safe(value, f"parameter {key!r}")


def _check_name(text: str, what: str) -> None:
    if not isinstance(text, str) or not _NAME.fullmatch(text):
        raise ExportError(f"{what} {text!r} is not usable in Triton (letters, digits, _ . -)")


def _check_safe(text: str, what: str) -> None:
    if not isinstance(text, str) or not _SAFE.fullmatch(text):
        raise ExportError(f"{what} {text!r} holds characters config.pbtxt would need escaped")


def _quoted(text: str) -> str:
    return f'"{text}"'


def _dims(values: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]" if values else "[ ]"


def _tensor(tensor: TensorConfig, indent: str) -> list[str]:
    lines = [
        f"{indent}{{",
        f"{indent}  name: {_quoted(tensor.name)}",
        f"{indent}  data_type: {tensor.data_type}",
        f"{indent}  dims: {_dims(tensor.dims)}",
    ]
    if tensor.reshape is not None:
        lines.append(f"{indent}  reshape {{ shape: {_dims(tensor.reshape)} }}")
    lines.append(f"{indent}}}")
    return lines


def _entries(key: str, blocks: list[list[str]]) -> list[str]:
    lines = [f"{key} ["]
    for i, block in enumerate(blocks):
        if i < len(blocks) - 1:
            block = [*block[:-1], block[-1] + ","]
        lines += block
    return [*lines, "]"]


def render(config: ModelConfig) -> str:
    """The ``config.pbtxt`` text of ``config`` (protobuf text format, Triton's layout)."""
    lines = [f"name: {_quoted(config.name)}"]
    if config.platform is not None:
        lines.append(f"platform: {_quoted(config.platform)}")
    if config.backend is not None:
        lines.append(f"backend: {_quoted(config.backend)}")
    if config.default_model_filename is not None:
        lines.append(f"default_model_filename: {_quoted(config.default_model_filename)}")
    lines.append(f"max_batch_size: {config.max_batch_size}")
    lines += _entries("input", [_tensor(t, "  ") for t in config.inputs])
    lines += _entries("output", [_tensor(t, "  ") for t in config.outputs])
    if config.instance_groups:
        groups = [
            ["  {", f"    kind: {g.kind}", f"    count: {g.count}", "  }"]
            for g in config.instance_groups
        ]
        lines += _entries("instance_group", groups)
    if config.dynamic_batching is not None:
        delay = config.dynamic_batching.max_queue_delay_microseconds
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {delay}", "}"]
    for key, value in sorted(config.parameters.items()):
        lines += [
            "parameters {",
            f"  key: {_quoted(key)}",
            f"  value {{ string_value: {_quoted(value)} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def model_config_message() -> Any | None:
    """Triton's ``ModelConfig`` protobuf class from ``tritonclient``, or None without it."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None
    return model_config_pb2.ModelConfig


def parse(text: str, where: str = "config.pbtxt") -> Any:
    """``text`` parsed with Triton's model-config schema (needs ``tritonclient[grpc]``);
    ExportError with the parser's message when it does not conform."""
    message = model_config_message()
    if message is None:
        raise ExportError(
            "checking config.pbtxt needs Triton's schema: pip install 'tritonclient[grpc]'"
        )
    from google.protobuf import text_format

    config = message()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ExportError(f"{where} does not follow Triton's model-config schema: {exc}") from exc
    return config
