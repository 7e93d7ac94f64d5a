"""PyTorch truth carried in the bundle: the export examples and what PyTorch answered.

Export runs the PyTorch module on each graph's example inputs to check ONNX parity; those
inputs and outputs are kept as one hashed artifact per graph (``GRAPH.reference.npz``,
format ``reference``), so a device without torch (a Jetson, a kiosk) can still compare
every runtime it has, TensorRT included, with PyTorch itself rather than with another
runtime (:mod:`runtimes.recorded_backend`, ``edge-sdk verify``).

The file is a plain ``.npz`` (read with ``allow_pickle=False``) holding, for example ``i``,
``e{i}.in.{input}`` and ``e{i}.out.{output}``. It is untrusted like every artifact: names,
dtypes and shapes are checked against the graph's specs before use.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import BundleError
from edge_sdk.manifest import GraphSpec, TensorSpec

REFERENCE_FORMAT = "reference"
MAX_EXAMPLES = 16
MAX_REFERENCE_BYTES = 256 << 20  # uncompressed arrays of one graph's examples


@dataclass(frozen=True)
class RecordedExample:
    """One example input of a graph and PyTorch's outputs for it."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def reference_path(graph: str) -> str:
    """The artifact path of ``graph``'s recorded outputs inside a bundle."""
    return f"{graph}.reference.npz"


def encode_examples(examples: Sequence[RecordedExample]) -> bytes:
    """The ``.npz`` bytes of ``examples`` (uncompressed: small, and quick to hash)."""
    arrays: dict[str, np.ndarray] = {}
    for index, example in enumerate(examples):
        arrays.update({f"e{index}.in.{k}": v for k, v in example.inputs.items()})
        arrays.update({f"e{index}.out.{k}": v for k, v in example.outputs.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_examples(data: bytes, graph: GraphSpec, where: str) -> tuple[RecordedExample, ...]:
    """Parse and check recorded examples for ``graph``; BundleError names what is wrong."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            names = list(archive.files)
            sizes = _uncompressed_size(data)
            if sizes > MAX_REFERENCE_BYTES:
                raise BundleError(
                    f"{where}: {sizes} bytes of arrays (at most {MAX_REFERENCE_BYTES})"
                )
            arrays = {name: archive[name] for name in names}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{where}: not a readable reference .npz ({exc})") from exc
    examples = []
    for index in range(MAX_EXAMPLES + 1):
        prefix = f"e{index}."
        if not any(n.startswith(prefix) for n in names):
            break
        if index == MAX_EXAMPLES:
            raise BundleError(f"{where}: more than {MAX_EXAMPLES} examples")
        inputs = _part(arrays, f"{prefix}in.", graph.inputs, where)
        outputs = _part(arrays, f"{prefix}out.", graph.outputs, where)
        examples.append(RecordedExample(inputs, outputs))
    known = {
        f"e{i}.{direction}.{spec.name}"
        for i in range(len(examples))
        for direction, specs in (("in", graph.inputs), ("out", graph.outputs))
        for spec in specs
    }
    if not examples or set(names) - known:
        raise BundleError(f"{where}: unexpected arrays {sorted(set(names) - known)[:5]}")
    return tuple(examples)


def _uncompressed_size(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sum(info.file_size for info in archive.infolist())


def _part(
    arrays: dict[str, np.ndarray], prefix: str, specs: Sequence[TensorSpec], where: str
) -> dict[str, np.ndarray]:
    part = {}
    for spec in specs:
        key = prefix + spec.name
        if key not in arrays:
            raise BundleError(f"{where}: {key} is missing")
        value = arrays[key]
        if value.dtype != np.dtype(spec.dtype) or value.ndim != len(spec.shape) or any(
            isinstance(d, int) and d != n for d, n in zip(spec.shape, value.shape, strict=True)
        ):
            raise BundleError(
                f"{where}: {key} is {value.dtype}{list(value.shape)}, the graph declares "
                f"{spec.dtype}{list(spec.shape)}"
            )
        part[spec.name] = value
    return part
