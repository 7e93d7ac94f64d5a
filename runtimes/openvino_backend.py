"""OpenVINO backends: the bundle's ONNX graphs compiled per input shape (CPU by default).

OpenVINO reads ONNX directly, so bundles need no other artifact. A model compiled for one
static shape ran the face graphs 1.1-1.6x faster than the same model compiled with dynamic
dimensions (2-core Xeon, OpenVINO 2026.4: R-Net on 137 crops 8.2 vs 12.2 ms, P-Net on the
306x306 level 8.4 vs 12.7 ms), and compiling one costs 70-140 ms. So a session compiles
the graph for each input shape it is fed and keeps the compiled model, least recently used
dropped beyond ``max_shapes``: the detector feeds a stream of one resolution the same
pyramid levels and strips every frame, the classifier one face at a time. Crop batches
(R-Net/O-Net) take the candidate count as their batch size, so the first frames of a
stream compile a few models each; ``compiles`` counts them.

Precision is never lowered behind the caller's back: OpenVINO's CPU plugin runs FP32
models in bf16 on CPUs that have it unless told otherwise, so every model is compiled with
``INFERENCE_PRECISION_HINT=f32`` (a quantised graph still runs its QDQ parts in int8).

``openvino`` (the CPU) is picked automatically, after ONNX Runtime's CPU provider (see
:mod:`runtimes.selection`); ``openvino-auto``, ``openvino-gpu`` and ``openvino-npu`` run
only when requested by name and where OpenVINO lists that device.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo, importable, module_version
from edge_sdk.errors import BackendError
from edge_sdk.manifest import Artifact, GraphSpec
from runtimes.base import BaseSession, Support, register_backend

MAX_SHAPES = 32  # compiled shapes kept per session; each holds its own buffers
# Devices a backend may name: OpenVINO's plugins plus the AUTO meta-device, which picks
# among the present ones itself and so is "present" wherever any device is.
DEVICES = ("CPU", "GPU", "NPU", "AUTO")

ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]


def _openvino() -> Any:
    """The ``openvino`` module; BackendError when it cannot be imported here."""
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise BackendError(
            f"OpenVINO is not importable ({exc}); pip install 'edge-sdk[openvino]'"
        ) from exc


@functools.lru_cache(maxsize=1)
def _core() -> Any:
    """One ``openvino.Core`` per process: it holds the plugins, which load once."""
    return _openvino().Core()


@functools.lru_cache(maxsize=1)
def _listed_devices() -> tuple[str, ...]:
    """The devices OpenVINO finds (loads every plugin, ~20 ms after the ~0.2 s import:
    asked once per process, and only for the non-CPU backends)."""
    return tuple(_core().available_devices)


def _device_present(device: str) -> bool:
    """Whether OpenVINO lists ``device`` here (``GPU`` also matches ``GPU.0``, ``GPU.1``)."""
    listed = _listed_devices()
    if device == "AUTO":
        return bool(listed)
    return any(d == device or d.startswith(device + ".") for d in listed)


def compile_config(device: str, threads: int | None) -> dict[str, str]:
    """The properties every model is compiled with (see the module docstring).

    FP32 inference whatever the CPU offers, one stream tuned for latency (one call at a
    time per request; concurrent callers get requests of their own), and on the CPU the
    thread count (``threads``, else ``EDGE_SDK_THREADS``, else OpenVINO's default) without
    pinning threads to cores, which on a shared machine takes the cores from the numpy and
    OpenCV work between calls, as ONNX Runtime's spinning did.
    """
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        count = threads if threads is not None else int(os.environ.get("EDGE_SDK_THREADS", "0"))
        config["INFERENCE_NUM_THREADS"] = str(count)
        config["NUM_STREAMS"] = "1"
        config["ENABLE_CPU_PINNING"] = "NO"
    return config


class _Compiled:
    """One shape's compiled model and its idle infer requests (a request serves one call at
    a time, so concurrent calls each take one; they are reused, not made per call)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.outputs = tuple(port.get_any_name() for port in compiled.outputs)
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            request = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            # share_outputs=False: the arrays returned are copies the request will not reuse.
            result = request.infer(feeds, share_inputs=False, share_outputs=False)
            ports = zip(self.outputs, self.compiled.outputs, strict=True)
            return {name: result[port] for name, port in ports}
        finally:
            with self._lock:
                self._idle.append(request)


class OpenVinoSession(BaseSession):
    """The graph read once, compiled per input shape on first use (LRU, ``max_shapes``).

    Thread-safe: the cache is locked, a shape is compiled once even when several threads
    ask for it together, and each concurrent call runs on its own infer request. Opened
    with one thread (``threads=1``), each call runs on its caller's thread alone, so it is
    marked ``single_threaded`` and the detector fans its calls out as it does for ORT.
    """

    def __init__(
        self,
        graph: GraphSpec,
        model: Any,
        backend: str,
        precision: str,
        device: str,
        config: dict[str, str],
        max_shapes: int = MAX_SHAPES,
    ) -> None:
        super().__init__(graph, backend, precision)
        if max_shapes < 1:
            raise BackendError(f"max_shapes must be at least 1, got {max_shapes}")
        self.device = device
        self.config = dict(config)
        self.max_shapes = max_shapes
        self.single_threaded = config.get("INFERENCE_NUM_THREADS") == "1"
        self.compiles = 0  # models compiled so far (one per new shape, again after eviction)
        self._model = model
        self._cache: OrderedDict[ShapeKey, _Compiled] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def cached_shapes(self) -> tuple[ShapeKey, ...]:
        """The input shapes with a compiled model now, least recently used first."""
        with self._lock:
            return tuple(self._cache)

    @property
    def compiled_models(self) -> tuple[Any, ...]:
        """The ``openvino.CompiledModel`` of each cached shape (to read their properties)."""
        with self._lock:
            return tuple(entry.compiled for entry in self._cache.values())

    def _compiled_for(self, key: ShapeKey) -> _Compiled:
        """The model compiled for ``key``, compiling it (under the lock) on first use."""
        with self._lock:
            self.check_open()  # close() may have run since run() checked
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                return entry
            model = self._model.clone()
            ov = _openvino()
            try:
                model.reshape({name: ov.PartialShape(list(shape)) for name, shape in key})
                compiled = _core().compile_model(model, self.device, self.config)
            except (RuntimeError, ValueError, TypeError) as exc:
                shapes = ", ".join(f"{n}{list(s)}" for n, s in key)
                raise BackendError(
                    f"OpenVINO cannot compile graph {self.graph.name!r} for {shapes} on "
                    f"{self.device}: {exc}"
                ) from exc
            entry = _Compiled(compiled)
            missing = set(self.outputs) - set(entry.outputs)
            if missing:
                raise BackendError(
                    f"OpenVINO's {self.graph.name} lacks outputs {sorted(missing)} "
                    f"(it has {list(entry.outputs)})"
                )
            self.compiles += 1
            self._cache[key] = entry
            while len(self._cache) > self.max_shapes:
                self._cache.popitem(last=False)  # a call still running keeps its own reference
            return entry

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = tuple((name, tuple(int(d) for d in feeds[name].shape)) for name in self.inputs)
        entry = self._compiled_for(key)
        arrays = {name: np.ascontiguousarray(feeds[name]) for name in self.inputs}
        try:
            results = entry.infer(arrays)
        except RuntimeError as exc:
            raise BackendError(f"OpenVINO failed to run {self.graph.name}: {exc}") from exc
        return {name: results[name] for name in self.outputs}

    def _release(self) -> None:
        """Drop every compiled model and the read graph (a call in progress finishes on the
        references it holds; OpenVINO frees a model when its last reference goes)."""
        with self._lock:
            self._cache.clear()
            self._model = None


@dataclass(frozen=True)
class OpenVinoBackend:
    """OpenVINO on one device (``CPU``, ``GPU``, ``NPU`` or ``AUTO``) reading ONNX artifacts."""

    name: str
    rank: int
    device: str = "CPU"
    automatic: bool = True
    formats: frozenset[str] = frozenset({"onnx"})
    needs_gpu: bool = False  # CPU precision order (see runtimes.selection); GPU is Intel's
    manual_reason: str = "not picked automatically"
    max_shapes: int = MAX_SHAPES

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise BackendError(f"unknown OpenVINO device {self.device!r}; known: {DEVICES}")

    @property
    def cpu_runtime(self) -> bool:
        """Runs on the host CPU (the ``CPU`` device), so selection by measurement may time it."""
        return self.device == "CPU"

    def is_available(self) -> bool:
        if not importable("openvino"):
            return False
        if self.device == "CPU":
            return True  # the CPU plugin ships in the wheel; no need to load plugins here
        try:
            return _device_present(self.device)
        except (BackendError, RuntimeError):
            return False

    def version(self) -> str | None:
        """OpenVINO's version, None without it."""
        return module_version("openvino")

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support:
        if not importable("openvino"):
            return Support(False, "openvino is not installed (pip install 'edge-sdk[openvino]')")
        if not self.is_available():
            return Support(False, f"OpenVINO lists no {self.device} device here")
        return Support(
            True, f"OpenVINO {self.device}, {artifact.precision} ONNX compiled per input shape"
        )

    def open(
        self,
        bundle: ModelBundle,
        graph: GraphSpec,
        artifact: Artifact,
        *,
        threads: int | None = None,
    ) -> OpenVinoSession:
        """Read the graph (compiling waits for the first call's shape)."""
        data = bundle.read_artifact(artifact)
        try:
            model = _core().read_model(data)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BackendError(f"OpenVINO cannot read {artifact.path}: {exc}") from exc
        names = {n for port in model.inputs for n in port.get_names()}
        missing = [t.name for t in graph.inputs if t.name not in names]
        if missing:
            raise BackendError(f"{artifact.path} lacks inputs {missing} the manifest names")
        return OpenVinoSession(
            graph,
            model,
            self.name,
            artifact.precision,
            self.device,
            compile_config(self.device, threads),
            self.max_shapes,
        )


register_backend(OpenVinoBackend("openvino", 60))
register_backend(OpenVinoBackend("openvino-auto", 61, "AUTO", automatic=False))
register_backend(OpenVinoBackend("openvino-gpu", 62, "GPU", automatic=False))
register_backend(OpenVinoBackend("openvino-npu", 63, "NPU", automatic=False))
