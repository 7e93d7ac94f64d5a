"""The Backend protocol and its registry.

Every runtime (ONNX Runtime per execution provider, the PyTorch reference, later TensorRT)
registers one object here; nothing else in the SDK branches on backend names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BackendError, ClosedError
from edge_sdk.manifest import Artifact, GraphSpec


@dataclass(frozen=True)
class Support:
    """Whether a backend can run an artifact on a device, and why (shown to users)."""

    ok: bool
    reason: str


@runtime_checkable
class Session(Protocol):
    """An opened graph. ``run`` maps input names to arrays and returns every output by name.

    Like Polygraphy's runners (activate/infer/deactivate) a session has a lifetime: ``close``
    frees what the runtime holds (ORT session, TensorRT context and device buffers), is
    idempotent, and a closed session's ``run`` raises :class:`~edge_sdk.errors.ClosedError`;
    ``with`` closes it at the end of the block.
    """

    backend: str
    precision: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    thread_safe: bool

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


_C = TypeVar("_C", bound="Closing")


class Closing:
    """``with`` support for anything with a ``close()``: the block's end closes it."""

    def close(self) -> None:
        """Release what the object holds (subclasses say what)."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BaseSession(Closing):
    """What every backend's session shares: names from the graph, feed checks, the lifecycle.

    A backend implements ``_infer`` (feeds already checked) and ``_release`` (free the
    runtime's objects, called once by the first ``close``). Why one base: each backend
    checked its feeds itself, and a closed session must refuse work the same way in all.
    """

    thread_safe = True

    def __init__(self, graph: GraphSpec, backend: str, precision: str) -> None:
        self.graph = graph
        self.backend = backend
        self.precision = precision
        self.inputs = tuple(t.name for t in graph.inputs)
        self.outputs = tuple(t.name for t in graph.outputs)
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once ``close`` ran; ``run`` then raises ClosedError."""
        return self._closed

    def check_open(self) -> None:
        """ClosedError naming the graph and backend when the session was closed."""
        if self._closed:
            raise ClosedError(
                f"the {self.backend} session of graph {self.graph.name!r} is closed; "
                "open the graph again"
            )

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check the session is open and the feeds fit the manifest, then infer."""
        self.check_open()
        check_feeds(self.graph, feeds)
        return self._infer(feeds)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the runtime's objects once; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        """Free what the runtime holds (nothing by default)."""


class Backend(Protocol):
    """A runtime that can open some artifacts on some devices.

    ``rank`` orders candidates: lower runs first when several backends can serve a graph.
    ``automatic`` is False for reference backends that run only when asked for by name;
    ``formats`` are the artifact formats it reads at all (others are not even candidates).
    ``version()`` is the runtime library's version, None where it is absent (or, for a
    backend that needs no library, always), so ``devices``/``doctor`` print one line per
    backend without knowing any library by name.
    """

    name: str
    rank: int
    automatic: bool
    formats: frozenset[str]

    def is_available(self) -> bool: ...

    def version(self) -> str | None: ...

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support: ...

    def open(
        self,
        bundle: ModelBundle,
        graph: GraphSpec,
        artifact: Artifact,
        *,
        threads: int | None = None,
    ) -> Session:
        """Open ``artifact``. ``threads``: a hint for runtimes with a per-session CPU thread
        pool (ONNX Runtime): 1 lets a caller that fans calls out over its own threads use
        the cores without two pools fighting over them; others ignore it."""
        ...


_REGISTRY: dict[str, Backend] = {}
# Modules that register backends on import; importing them must not need optional libraries.
_BACKEND_MODULES = (
    "runtimes.onnxruntime_backend",
    "runtimes.openvino_backend",
    "runtimes.tensorrt_backend",
    "runtimes.torch_backend",
    "runtimes.recorded_backend",
)


def register_backend(backend: Backend) -> Backend:
    """Add a backend to the registry (module import time)."""
    if backend.name in _REGISTRY:
        raise ValueError(f"backend {backend.name!r} registered twice")
    _REGISTRY[backend.name] = backend
    return backend


def _ensure_loaded() -> None:
    for module in _BACKEND_MODULES:
        importlib.import_module(module)


def all_backends() -> tuple[Backend, ...]:
    """Every registered backend in rank order, available or not."""
    _ensure_loaded()
    return tuple(sorted(_REGISTRY.values(), key=lambda b: (b.rank, b.name)))


def available_backends() -> tuple[Backend, ...]:
    """Registered backends whose libraries import on this machine, in rank order."""
    return tuple(b for b in all_backends() if b.is_available())


def get_backend(name: str) -> Backend:
    """Look a backend up by name; unknown names list the known ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def check_feeds(graph: GraphSpec, feeds: dict[str, np.ndarray]) -> None:
    """Refuse missing inputs, wrong ranks/dtypes and sizes outside the manifest's profile."""
    for spec in graph.inputs:
        if spec.name not in feeds:
            raise BackendError(f"graph {graph.name!r} needs input {spec.name!r}")
        array = feeds[spec.name]
        if array.dtype != np.dtype(spec.dtype):
            raise BackendError(
                f"{graph.name}.{spec.name}: dtype {array.dtype}, expected {spec.dtype}"
            )
        if array.ndim != len(spec.shape):
            raise BackendError(
                f"{graph.name}.{spec.name}: shape {array.shape}, expected {spec.shape}"
            )
        for size, dim in zip(array.shape, spec.shape, strict=True):
            if isinstance(dim, int) and size != dim:
                raise BackendError(
                    f"{graph.name}.{spec.name}: shape {array.shape}, expected {spec.shape}"
                )
            if isinstance(dim, str):
                limits = graph.dims[dim]
                if not limits.min <= size <= limits.max:
                    raise BackendError(
                        f"{graph.name}.{spec.name}: {dim}={size} outside the exported range "
                        f"[{limits.min}, {limits.max}]"
                    )
