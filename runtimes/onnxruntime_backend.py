"""ONNX Runtime backends, one per execution provider (TensorRT EP, CUDA EP, CPU).

Sessions are created from the hash-checked bytes of the artifact. ``InferenceSession.run``
is thread-safe on one session, so one session serves every caller.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import ONNXRUNTIME_DISTS, DeviceInfo, module_version
from edge_sdk.errors import BackendError
from edge_sdk.manifest import CPU_INT8_TARGET, Artifact, GraphSpec
from runtimes.base import BaseSession, Support, register_backend


class OrtSession(BaseSession):
    """One ``onnxruntime.InferenceSession`` behind the Session protocol."""

    def __init__(
        self,
        graph: GraphSpec,
        session: object,
        backend: str,
        precision: str,
        single_threaded: bool = False,
    ) -> None:
        super().__init__(graph, backend, precision)
        # True when opened with one intra-op thread: each call runs on its caller's thread,
        # so concurrent calls from several threads use several cores (the detector does).
        self.single_threaded = single_threaded
        self._session = session
        self.inputs = tuple(i.name for i in session.get_inputs())  # type: ignore[attr-defined]
        self.outputs = tuple(o.name for o in session.get_outputs())  # type: ignore[attr-defined]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:  # closed by another thread since run() checked
            self.check_open()
        values = session.run(self.outputs, feeds)  # type: ignore[attr-defined]
        return dict(zip(self.outputs, values, strict=True))

    def _release(self) -> None:
        """Drop the InferenceSession: ORT frees its arena and graph when the last reference
        goes (a call still running holds its own reference until it returns)."""
        self._session = None


def session_options(onnxruntime: Any) -> Any:
    """Options for small vision graphs called between numpy/OpenCV steps, measured on 2 cores.

    * Threads: ``EDGE_SDK_THREADS`` or ORT's default (one per physical core).
    * No spinning: by default ORT's pool threads busy-wait after every run, taking the
      cores from the OpenCV/numpy work between the detector's calls, from the detector's
      own helper threads and from other processes. With one other busy process on the
      2-core machine the MTCNN cascade took 167 ms spinning against 44 ms not; idle, the
      medians were no better with spinning and the p90 worse.
    * ORT_ENABLE_ALL: the NCHWc layout and Conv fusions help the MTCNN convolutions.
    * Sequential execution: the graphs are chains; a parallel executor only adds threads.
    * Memory pattern and arena stay on: turning them off for the varying input shapes
      (pyramid levels, crop batches) made no measurable difference.
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("EDGE_SDK_THREADS", "0"))
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def cpu_session(model: bytes, *, threads: int | None = None, optimize: bool = True) -> Any:
    """A bare ONNX Runtime CPU session of ``model`` bytes, set up as the runtime sets up its
    own, for the tools that run graphs outside a bundle (export parity, calibration, its
    gate and timings): what they measure is then what deployment runs.

    ``threads`` and ``optimize=False`` (graph optimisations disabled) pick other kernel
    paths, as another CPU or thread count would; the export parity tests run both.
    """
    import onnxruntime

    options = session_options(onnxruntime)
    if threads is not None:
        options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OrtBackend:
    """ONNX Runtime with one execution provider."""

    name: str
    rank: int
    provider: str
    needs_gpu: bool
    automatic: bool = True
    formats: frozenset[str] = frozenset({"onnx"})

    @property
    def cpu_runtime(self) -> bool:
        """Runs on the host CPU, so selection by measurement may time it against others."""
        return not self.needs_gpu

    def is_available(self) -> bool:
        if importlib.util.find_spec("onnxruntime") is None:
            return False
        import onnxruntime

        return self.provider in onnxruntime.get_available_providers()

    def version(self) -> str | None:
        """ONNX Runtime's version (whichever build is installed), None without it."""
        return module_version("onnxruntime", *ONNXRUNTIME_DISTS)

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support:
        if not self.is_available():
            return Support(False, f"onnxruntime on this machine lacks {self.provider}")
        if self.needs_gpu and not device.gpus:
            return Support(False, f"{self.provider} needs an NVIDIA GPU; none was found")
        if artifact.target == CPU_INT8_TARGET and self.needs_gpu:
            return Support(False, "U8S8 INT8 made for CPU kernels; GPUs read the symmetric form")
        if artifact.target == CPU_INT8_TARGET:
            return Support(True, f"ONNX Runtime {self.provider}, INT8 ONNX for CPU kernels")
        return Support(True, f"ONNX Runtime {self.provider}, {artifact.precision} ONNX")

    def open(
        self,
        bundle: ModelBundle,
        graph: GraphSpec,
        artifact: Artifact,
        *,
        threads: int | None = None,
    ) -> OrtSession:
        import onnxruntime

        options = session_options(onnxruntime)
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            session = onnxruntime.InferenceSession(
                bundle.read_artifact(artifact), options, providers=[self.provider]
            )
        # ORT's pybind errors (InvalidProtobuf, Fail, InvalidGraph, ...) share no public base.
        except Exception as exc:
            raise BackendError(f"ONNX Runtime cannot open {artifact.path}: {exc}") from exc
        return OrtSession(graph, session, self.name, artifact.precision, threads == 1)


register_backend(OrtBackend("ort-tensorrt", 10, "TensorrtExecutionProvider", True))
register_backend(OrtBackend("ort-cuda", 20, "CUDAExecutionProvider", True))
register_backend(OrtBackend("ort-cpu", 50, "CPUExecutionProvider", False))
