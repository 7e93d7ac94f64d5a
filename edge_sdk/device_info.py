"""The immutable description of a device: CPU, GPUs, Jetson board and installed runtimes.

These dataclasses are what :class:`edge_sdk.device.DeviceProbe` returns and what backends,
artifact selection and bundle metadata read; they live apart from the probe so that readers
need none of its parsing. ``DeviceInfo.fingerprint`` names engine files, so it stays here with
the data it is computed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Capability = tuple[int, int]


def _slug(text: str) -> str:
    """Make ``text`` safe for file names, since fingerprints name engine files."""
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-") or "unknown"


def _cap_list(cap: Capability | None) -> list[int] | None:
    return None if cap is None else [cap[0], cap[1]]


@dataclass(frozen=True)
class CpuInfo:
    """Host CPU facts that decide which CPU kernels a runtime can use.

    Attributes:
        architecture: Normalised machine name, e.g. ``"x86_64"`` or ``"aarch64"``;
            ``"unknown"`` when it cannot be determined.
        logical_cores: Number of logical processors, or None if unknown.
        model: Human-readable CPU model, or None if unknown.
        features: Sorted inference-relevant feature flags present on every core.
    """

    architecture: str
    logical_cores: int | None
    model: str | None
    features: tuple[str, ...]

    def has(self, feature: str) -> bool:
        """Return True if ``feature`` was detected, to keep call sites readable."""
        return feature in self.features

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-serialisable data for logs and bundle metadata."""
        return {
            "architecture": self.architecture,
            "logical_cores": self.logical_cores,
            "model": self.model,
            "features": list(self.features),
        }


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA-capable GPU; the capability decides which engines/kernels can run on it.

    Attributes:
        index: Device index (CUDA ordinal, or driver minor number when read from procfs).
        name: Marketing name as reported by the source.
        compute_capability: ``(major, minor)``, or None when it could not be determined.
        total_memory: Total device memory in bytes (shared RAM on Jetson), or None.
        source: How it was found: ``"torch.cuda"``, ``"procfs"`` or ``"jetson"``.
    """

    index: int
    name: str
    compute_capability: Capability | None
    total_memory: int | None
    source: str

    @property
    def sm(self) -> str | None:
        """Return the ``sm_XY`` architecture tag TensorRT/nvcc use, or None if unknown."""
        if self.compute_capability is None:
            return None
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-serialisable data for logs and bundle metadata."""
        return {
            "index": self.index,
            "name": self.name,
            "compute_capability": _cap_list(self.compute_capability),
            "total_memory": self.total_memory,
            "source": self.source,
        }


@dataclass(frozen=True)
class JetsonInfo:
    """Jetson board identity; JetPack pins the CUDA/TensorRT versions engines are built for.

    Attributes:
        model: Device-tree model, e.g. ``"NVIDIA Jetson Orin Nano Developer Kit"``.
        l4t_release: L4T release, e.g. ``"36.3.0"``, or None if the release file is absent.
        jetpack: Best-guess JetPack release derived from the L4T release, or None.
        compute_capability: Capability of the integrated GPU, or None if unknown.
    """

    model: str
    l4t_release: str | None
    jetpack: str | None
    compute_capability: Capability | None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-serialisable data for logs and bundle metadata."""
        return {
            "model": self.model,
            "l4t_release": self.l4t_release,
            "jetpack": self.jetpack,
            "compute_capability": _cap_list(self.compute_capability),
        }


@dataclass(frozen=True)
class RuntimeInfo:
    """Inference runtimes importable by this interpreter, to decide which backends exist.

    Attributes:
        onnxruntime_version: Installed onnxruntime version, or None.
        ort_providers: Execution providers onnxruntime reports as available.
        tensorrt_version: Installed TensorRT Python bindings version, or None.
        torch_version: Installed PyTorch version, or None.
        torch_cuda_available: Whether torch can use CUDA (only checked on the live root).
    """

    onnxruntime_version: str | None
    ort_providers: tuple[str, ...]
    tensorrt_version: str | None
    torch_version: str | None
    torch_cuda_available: bool

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-serialisable data for logs and bundle metadata."""
        return {
            "onnxruntime_version": self.onnxruntime_version,
            "ort_providers": list(self.ort_providers),
            "tensorrt_version": self.tensorrt_version,
            "torch_version": self.torch_version,
            "torch_cuda_available": self.torch_cuda_available,
        }


@dataclass(frozen=True)
class DeviceInfo:
    """Everything the SDK needs to choose a backend and a matching prebuilt artifact.

    Attributes:
        cpu: Host CPU description.
        gpus: CUDA GPUs found (the integrated GPU on Jetson), ordered by index.
        jetson: Jetson board details, or None on non-Jetson machines.
        onnxruntime_version: Installed onnxruntime version, or None.
        ort_providers: onnxruntime execution providers available.
        tensorrt_version: Installed TensorRT Python bindings version, or None.
        torch_version: Installed PyTorch version, or None.
        torch_cuda_available: Whether torch can use CUDA.
    """

    cpu: CpuInfo
    gpus: tuple[GpuInfo, ...] = ()
    jetson: JetsonInfo | None = None
    onnxruntime_version: str | None = None
    ort_providers: tuple[str, ...] = ()
    tensorrt_version: str | None = None
    torch_version: str | None = None
    torch_cuda_available: bool = False

    @property
    def is_jetson(self) -> bool:
        """Return True on a Jetson board, where only JetPack-matched engines load."""
        return self.jetson is not None

    @property
    def primary_gpu(self) -> GpuInfo | None:
        """Return the GPU the SDK targets by default (lowest index), or None."""
        return min(self.gpus, key=lambda g: g.index) if self.gpus else None

    @property
    def fingerprint(self) -> str:
        """Return a short file-name-safe tag of the accelerator, e.g. ``"sm_87-trt10.3"``.

        TensorRT engines only load on the same GPU architecture and TensorRT minor
        version they were built with, so both go into the tag. Without a GPU the tag
        names the CPU architecture instead, e.g. ``"cpu-x86_64"``.
        """
        gpu = self.primary_gpu
        if gpu is None:
            return f"cpu-{_slug(self.cpu.architecture)}"
        tag = gpu.sm or f"gpu-{_slug(gpu.name)}"
        if self.tensorrt_version:
            major_minor = ".".join(self.tensorrt_version.split(".")[:2])
            tag += f"-trt{_slug(major_minor)}"
        return tag

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-serialisable data, fingerprint included, for logs and manifests."""
        return {
            "cpu": self.cpu.to_dict(),
            "gpus": [g.to_dict() for g in self.gpus],
            "jetson": None if self.jetson is None else self.jetson.to_dict(),
            "onnxruntime_version": self.onnxruntime_version,
            "ort_providers": list(self.ort_providers),
            "tensorrt_version": self.tensorrt_version,
            "torch_version": self.torch_version,
            "torch_cuda_available": self.torch_cuda_available,
            "fingerprint": self.fingerprint,
        }
