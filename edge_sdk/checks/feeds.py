"""Inputs for checks: seeded feeds generated from a graph's spec, or the user's ``--data``.

``--data`` is read by the SDK's one feed source, :func:`calibration.feeds.collect_feeds`
(what ``edge-sdk calibrate`` reads); here its single-sample feeds are grouped into runs.

The manifest gives every input's dtype and shape, and a min/opt/max profile for each named
dynamic dimension; generated feeds use those sizes. A size whose largest input would exceed
``max_elements`` is shrunk (largest dims first, never below the profile's minimum), so that
a detector exported for 4096 px images can still be checked in seconds; the sizes actually
used are recorded with every result.

Value conventions (the manifest records no value ranges, so these are fixed here):
floating inputs are uniform in [-1, 1]; inputs named ``*mask`` are 0/1 prefix masks along
their last axis with at least one valid position per row (the first row fully valid);
other integer inputs are token ids in [1, V) where V is the graph config's ``*vocab_size``
entry (2 when it has none).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import InputError
from edge_sdk.manifest import GraphSpec

SIZES = ("opt", "min", "max")
DEFAULT_MAX_ELEMENTS = 1 << 22  # 4 Mi values (16 MiB float32) per input tensor


@dataclass(frozen=True)
class FeedSet:
    """Inputs for one graph at one size: one or more runs, and where they came from.

    Attributes:
        graph: graph name.
        size: ``"opt"``/``"min"``/``"max"`` for generated feeds, ``"data"`` for ``--data``.
        dims: the value of every named dynamic dimension (of the first run for data).
        runs: feeds, one dict (input name -> array) per ``Session.run`` call.
        capped: True when the size was shrunk to respect ``max_elements``.
        labels: output name -> integer ground truth, one entry per row of that output
            concatenated over the runs (only from ``--data``).
        source: ``generated`` or a description of the data.
    """

    graph: str
    size: str
    dims: dict[str, int]
    runs: tuple[dict[str, np.ndarray], ...]
    capped: bool = False
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "generated"

    @property
    def label(self) -> str:
        """Short description for tables: ``opt (batch=1)`` or ``data (40 samples)``."""
        if self.size == "data":
            return f"data ({self.samples} samples)"
        dims = ", ".join(f"{k}={v}" for k, v in sorted(self.dims.items()))
        capped = ", capped" if self.capped else ""
        return f"{self.size} ({dims}{capped})" if dims else self.size

    @property
    def samples(self) -> int:
        """Items over all runs (leading axis of the first input)."""
        return sum(next(iter(run.values())).shape[0] if run else 0 for run in self.runs)


def input_shape(graph: GraphSpec, name: str, dims: dict[str, int]) -> tuple[int, ...]:
    """Concrete shape of input ``name`` with the named dims filled in."""
    spec = next(t for t in graph.inputs if t.name == name)
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)


def largest_input(graph: GraphSpec, dims: dict[str, int]) -> int:
    """Element count of the graph's largest input at ``dims``."""
    return max((math.prod(input_shape(graph, t.name, dims)) for t in graph.inputs), default=0)


def fit_dims(
    graph: GraphSpec, dims: dict[str, int], max_elements: int
) -> tuple[dict[str, int], bool]:
    """Shrink the largest dynamic dims until every input fits ``max_elements``.

    Returns the dims and whether anything was shrunk. Dims never go below the profile's
    minimum; if even the minimum is too large the minimum is returned (and marked capped).
    """
    fitted = dict(dims)
    capped = False
    while largest_input(graph, fitted) > max_elements:
        shrinkable = [d for d, v in fitted.items() if v > graph.dims[d].min]
        if not shrinkable:
            break
        dim = max(shrinkable, key=lambda d: fitted[d])
        fitted[dim] = max(graph.dims[dim].min, (fitted[dim] * 3) // 4)
        capped = True
    return fitted, capped


def dims_at(graph: GraphSpec, size: str) -> dict[str, int]:
    """Every dynamic dim of ``graph`` at the profile point ``size`` (min, opt or max)."""
    if size not in SIZES:
        raise InputError(f"unknown size {size!r}; use one of {list(SIZES)}")
    return {name: int(getattr(limits, size)) for name, limits in graph.dims.items()}


def batch_dim(graph: GraphSpec) -> str | None:
    """The dynamic dim that leads every input and every output, if there is one.

    That dim indexes independent items (images, utterances, dialogs), so throughput is
    measured along it.
    """
    leads = {t.shape[0] if t.shape else None for t in graph.inputs + graph.outputs}
    if len(leads) == 1:
        lead = leads.pop()
        if isinstance(lead, str):
            return lead
    return None


def _vocab_size(graph: GraphSpec) -> int:
    for key, value in sorted(graph.config.items()):
        if key.endswith("vocab_size") and isinstance(value, int) and value > 1:
            return value
    return 2


def _prefix_mask(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if not shape:
        return np.ones((), dtype=dtype)
    length = shape[-1]
    rows = math.prod(shape[:-1])
    lengths = rng.integers(1, length + 1, size=rows) if length else np.zeros(rows, int)
    if rows:
        lengths[0] = length
    mask = np.arange(length)[None, :] < lengths[:, None]
    return mask.reshape(shape).astype(dtype)


def generate_feeds(
    graph: GraphSpec, dims: dict[str, int], seed: int, size: str = "opt", capped: bool = False
) -> FeedSet:
    """Seeded feeds for ``graph`` at ``dims`` (same seed, graph and size -> same arrays)."""
    stream = [seed, zlib.crc32(graph.name.encode()), zlib.crc32(size.encode())]
    rng = np.random.default_rng(stream)
    feeds: dict[str, np.ndarray] = {}
    for spec in graph.inputs:
        shape = input_shape(graph, spec.name, dims)
        dtype = np.dtype(spec.dtype)
        if spec.name.lower().endswith("mask"):
            feeds[spec.name] = _prefix_mask(rng, shape, spec.dtype)
        elif dtype.kind == "f":
            feeds[spec.name] = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            high = min(_vocab_size(graph), int(np.iinfo(dtype).max))
            feeds[spec.name] = rng.integers(min(1, high - 1), high, shape).astype(dtype)
    return FeedSet(graph.name, size, dict(dims), (feeds,), capped)


def feeds_for_sizes(
    graph: GraphSpec,
    sizes: tuple[str, ...] = SIZES,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> list[FeedSet]:
    """Generated feeds at each profile point; duplicates (e.g. min == opt) are dropped."""
    out: list[FeedSet] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    for size in sizes:
        dims, capped = fit_dims(graph, dims_at(graph, size), max_elements)
        key = tuple(sorted(dims.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(generate_feeds(graph, dims, seed, size, capped))
    return out


def group_samples(
    graph: GraphSpec, samples: list[dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], ...]:
    """Batch consecutive single-sample feeds of equal shapes along the graph's batch dim.

    Order is kept, so outputs concatenated over the runs line up with the samples. Graphs
    without a batch dim (a detector stage of batch 1) run one sample at a time.
    """
    dim = batch_dim(graph)
    if dim is None or not samples:
        return tuple(samples)
    limit = graph.dims[dim].max
    runs: list[dict[str, np.ndarray]] = []
    pending: list[dict[str, np.ndarray]] = []

    def flush() -> None:
        if pending:
            runs.append({k: np.concatenate([p[k] for p in pending]) for k in pending[0]})
            pending.clear()

    def shapes(feed: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        return {k: v.shape[1:] for k, v in feed.items()}

    for sample in samples:
        rows = next(iter(sample.values())).shape[0]
        count = sum(next(iter(p.values())).shape[0] for p in pending)
        if pending and (shapes(sample) != shapes(pending[0]) or count + rows > limit):
            flush()
        pending.append(sample)
    flush()
    return tuple(runs)


def _dims_of(graph: GraphSpec, feed: dict[str, np.ndarray]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for spec in graph.inputs:
        array = feed.get(spec.name)
        if array is None or array.ndim != len(spec.shape):
            continue
        for size, dim in zip(array.shape, spec.shape, strict=True):
            if isinstance(dim, str):
                dims.setdefault(dim, int(size))
    return dims


def load_feeds(
    data: str | Path,
    bundle: ModelBundle,
    device: DeviceInfo,
    count: int | None = None,
    seed: int = 0,
) -> dict[str, FeedSet]:
    """Feeds per graph from ``data``, drawn as ``edge-sdk calibrate`` draws them.

    ``FILE.npz`` (which may also carry labels, for metric deltas), an image folder or list
    (face-pipeline bundles) or ``synthetic`` (families trained with our code): see
    :func:`calibration.feeds.collect_feeds`; ``count`` items are drawn by ``seed``. The
    samples are batched into runs along each graph's batch dim; graphs the data does not
    reach are left to generated feeds.
    """
    # Imported here: the calibration readers pull in onnxruntime.quantization, which
    # generated-feed checks (bench, verify without --data) never need.
    from calibration.feeds import collect_feeds

    collected = collect_feeds(bundle, device, str(data), count, seed)
    result = {}
    for graph_name, samples in collected.feeds.items():
        if not samples:
            continue
        graph = bundle.manifest.graph(graph_name)
        runs = group_samples(graph, list(samples))
        result[graph_name] = FeedSet(
            graph_name,
            "data",
            _dims_of(graph, runs[0]),
            runs,
            labels=dict(collected.labels.get(graph_name, {})),
            source=collected.source,
        )
    return result
