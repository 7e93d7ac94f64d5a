"""Describe the machine the SDK runs on so it can pick a runtime per device.

The SDK ships the same emotion-recognition models to Jetson boards, desktop NVIDIA GPUs
and plain CPUs. Which backend (TensorRT, ONNX Runtime CUDA/CPU, ...) is usable, and which
prebuilt TensorRT engine matches, depends on the CPU features, the GPU compute capability,
the Jetson L4T/JetPack release and the installed Python runtimes. :class:`DeviceProbe`
gathers all of that into an immutable :class:`DeviceInfo`.

Every file read goes through a configurable root directory so that tests (and offline
tools inspecting a mounted board image) can point the probe at fixture files written in
the real kernel/driver formats. Live-only sources (``platform.machine()``, ``torch.cuda``)
are consulted only when the root is the real filesystem root ``/``.

The device description is in :mod:`edge_sdk.device_info`, cpuinfo parsing in
:mod:`edge_sdk.device_cpu` and NVIDIA's tables in :mod:`edge_sdk.device_nvidia`; their public
names are importable from here as before.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import sys
from pathlib import Path

from edge_sdk.device_cpu import (
    arch_from_cpuinfo,
    cpu_features,
    cpu_model,
    normalise_machine,
    parse_colon_lines,
    parse_cpuinfo,
)
from edge_sdk.device_info import (
    Capability,
    CpuInfo,
    DeviceInfo,
    GpuInfo,
    JetsonInfo,
    RuntimeInfo,
)
from edge_sdk.device_nvidia import (
    gpu_capability_from_name,
    jetson_capability_from_model,
    l4t_to_jetpack,
    parse_tegra_release,
    soc_capability,
)
from edge_sdk.errors import DeviceError

__all__ = [
    "Capability",
    "CpuInfo",
    "DeviceInfo",
    "DeviceProbe",
    "GpuInfo",
    "JetsonInfo",
    "ONNXRUNTIME_DISTS",
    "RuntimeInfo",
    "TENSORRT_DISTS",
    "dist_version",
    "gpu_capability_from_name",
    "importable",
    "jetson_capability_from_model",
    "l4t_to_jetpack",
    "module_version",
    "parse_tegra_release",
    "probe_device",
    "tensorrt_version",
]

_LOG = logging.getLogger(__name__)

# Distribution names under which the TensorRT Python bindings are published on PyPI.
TENSORRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_lean", "tensorrt-lean")
# ... and ONNX Runtime's builds (one module, ``onnxruntime``, whichever is installed).
ONNXRUNTIME_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")


class DeviceProbe:
    """Collect :class:`DeviceInfo` from a (possibly fake) filesystem root.

    Args:
        root: Filesystem root to read ``proc/`` and ``etc/`` files from. Only the real
            root ``"/"`` also queries live sources (``platform``, ``torch.cuda``).
        use_torch: Import torch to ask ``torch.cuda`` for exact GPU properties. Off by
            default because importing torch costs seconds and deployment processes
            need not have it; torch is still asked when it is already imported.

    Raises:
        DeviceError: If ``root`` does not exist or is not a directory.
    """

    def __init__(self, root: str | os.PathLike[str] = "/", *, use_torch: bool = False) -> None:
        self._root = Path(root)
        self._use_torch = use_torch
        self._require_root()
        self._torch_state: tuple[bool, tuple[GpuInfo, ...]] | None = None

    @property
    def root(self) -> Path:
        """Return the root directory all probe files are read from."""
        return self._root

    @property
    def is_live(self) -> bool:
        """Return True when probing the running machine itself (root is ``/``)."""
        try:
            return self._root.resolve() == Path("/").resolve()
        except OSError:
            return False

    def probe(self) -> DeviceInfo:
        """Probe CPU, Jetson, GPUs and runtimes in one go.

        Returns:
            The combined, immutable device description.

        Raises:
            DeviceError: If the root directory has disappeared.
        """
        self._require_root()
        rt = self.runtimes()
        return DeviceInfo(
            cpu=self.cpu(),
            gpus=self.gpus(),
            jetson=self.jetson(),
            onnxruntime_version=rt.onnxruntime_version,
            ort_providers=rt.ort_providers,
            tensorrt_version=rt.tensorrt_version,
            torch_version=rt.torch_version,
            torch_cuda_available=rt.torch_cuda_available,
        )

    # ------------------------------------------------------------------ CPU

    def cpu(self) -> CpuInfo:
        """Describe the CPU from ``proc/cpuinfo`` (x86 and ARM formats).

        Returns:
            CPU description; fields the file does not provide are None/empty.
        """
        self._require_root()
        text = self._read_text("proc/cpuinfo") or ""
        records = parse_cpuinfo(text)
        processors = [r for r in records if "processor" in r]
        inferred_arch = arch_from_cpuinfo(records)

        if self.is_live:
            architecture = normalise_machine(platform.machine()) or inferred_arch
        else:
            architecture = inferred_arch

        cores: int | None = len(processors) or None
        if cores is None and self.is_live:
            cores = os.cpu_count()

        return CpuInfo(
            architecture=architecture,
            logical_cores=cores,
            model=cpu_model(records),
            features=cpu_features(records),
        )

    # --------------------------------------------------------------- Jetson

    def jetson(self) -> JetsonInfo | None:
        """Detect a Jetson board from the device tree and ``etc/nv_tegra_release``.

        Returns:
            Jetson details, or None when the root shows no sign of a Jetson.
        """
        self._require_root()
        # Device-tree strings are NUL-terminated; keep only the first one.
        model_bytes = (self._read_bytes("proc/device-tree/model") or b"").split(b"\x00", 1)[0]
        model = model_bytes.decode("utf-8", "replace").strip()
        raw_compat = self._read_bytes("proc/device-tree/compatible") or b""
        compatible = [c.decode("ascii", "replace") for c in raw_compat.split(b"\x00") if c]
        release_text = self._read_text("etc/nv_tegra_release")

        is_tegra = any(c.startswith("nvidia,tegra") for c in compatible)
        if "jetson" not in model.lower() and not is_tegra and release_text is None:
            return None

        l4t = parse_tegra_release(release_text) if release_text else None
        cap = jetson_capability_from_model(model) if model else None
        if cap is None:
            cap = soc_capability(compatible)
        if cap is None and l4t is not None and l4t.startswith("36."):
            cap = (8, 7)  # JetPack 6 (L4T 36) only supports Orin modules.
        return JetsonInfo(
            model=model or "NVIDIA Jetson (unknown model)",
            l4t_release=l4t,
            jetpack=l4t_to_jetpack(l4t),
            compute_capability=cap,
        )

    # ----------------------------------------------------------------- GPUs

    def gpus(self) -> tuple[GpuInfo, ...]:
        """List CUDA GPUs, preferring the most precise source available.

        On the live root, ``torch.cuda`` (when importable and working) gives exact
        capability and memory. Otherwise a Jetson reports its integrated GPU, and a
        desktop reads the NVIDIA driver's procfs files and infers the capability from
        the GPU name. Note procfs ignores ``CUDA_VISIBLE_DEVICES``; torch does not.

        Returns:
            GPUs ordered by index; empty when none are found.
        """
        self._require_root()
        if self.is_live:
            _, torch_gpus = self._torch_cuda()
            if torch_gpus:
                return torch_gpus

        board = self.jetson()
        if board is not None:
            return (
                GpuInfo(
                    index=0,
                    name=f"{board.model} (integrated GPU)",
                    compute_capability=board.compute_capability,
                    total_memory=self._mem_total(),
                    source="jetson",
                ),
            )
        return self._procfs_gpus()

    def _procfs_gpus(self) -> tuple[GpuInfo, ...]:
        base = self._root / "proc/driver/nvidia/gpus"
        try:
            entries = sorted(p for p in base.iterdir() if p.is_dir())
        except OSError:
            return ()
        found: list[GpuInfo] = []
        for order, entry in enumerate(entries):
            text = self._read_text(entry.relative_to(self._root) / "information")
            if text is None:
                continue
            fields = parse_colon_lines(text)
            name = fields.get("Model", "").strip()
            if not name:
                continue
            try:
                index = int(fields.get("Device Minor", order))
            except ValueError:
                index = order
            found.append(
                GpuInfo(
                    index=index,
                    name=name,
                    compute_capability=gpu_capability_from_name(name),
                    total_memory=None,
                    source="procfs",
                )
            )
        return tuple(sorted(found, key=lambda g: g.index))

    def _torch_cuda(self) -> tuple[bool, tuple[GpuInfo, ...]]:
        """Ask torch.cuda once per probe; importing torch is slow, so cache the answer."""
        if self._torch_state is not None:
            return self._torch_state
        state: tuple[bool, tuple[GpuInfo, ...]] = (False, ())
        wanted = self._use_torch or "torch" in sys.modules
        if wanted and _importable("torch"):
            try:
                torch = importlib.import_module("torch")
                if torch.cuda.is_available():
                    found = []
                    for i in range(torch.cuda.device_count()):
                        props = torch.cuda.get_device_properties(i)
                        found.append(
                            GpuInfo(
                                index=i,
                                name=str(props.name),
                                compute_capability=(int(props.major), int(props.minor)),
                                total_memory=int(props.total_memory),
                                source="torch.cuda",
                            )
                        )
                    state = (True, tuple(found))
            # A broken CUDA/torch install can raise almost anything at import or init
            # time; the probe must degrade to the file-based sources instead of failing.
            except Exception as exc:  # noqa: BLE001
                _LOG.debug("torch.cuda probe failed: %s", exc)
        self._torch_state = state
        return state

    def _mem_total(self) -> int | None:
        """Return MemTotal in bytes; Jetson GPUs share system RAM, so this is GPU memory."""
        text = self._read_text("proc/meminfo")
        if not text:
            return None
        match = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, flags=re.MULTILINE)
        return int(match.group(1)) * 1024 if match else None

    # ------------------------------------------------------------- runtimes

    def runtimes(self) -> RuntimeInfo:
        """Report the inference runtimes installed for this interpreter.

        Versions come from package metadata where possible so heavy packages are not
        imported just to read a version. ``torch_cuda_available`` is only evaluated on
        the live root, because it reflects this machine rather than the probed root.

        Returns:
            Runtime versions and onnxruntime providers; missing ones are None/empty.
        """
        self._require_root()
        ort_version, providers = _onnxruntime_info()
        torch_version = dist_version("torch")
        cuda = self._torch_cuda()[0] if (self.is_live and torch_version) else False
        return RuntimeInfo(
            onnxruntime_version=ort_version,
            ort_providers=providers,
            tensorrt_version=tensorrt_version(),
            torch_version=torch_version,
            torch_cuda_available=cuda,
        )

    # -------------------------------------------------------------- helpers

    def _require_root(self) -> None:
        if not self._root.is_dir():
            raise DeviceError(
                f"cannot probe device: root path {str(self._root)!r} does not exist "
                "or is not a directory"
            )

    def _read_bytes(self, rel: str | os.PathLike[str]) -> bytes | None:
        """Read a file under the root; an unreadable file is just missing information."""
        try:
            return (self._root / rel).read_bytes()
        except OSError:
            return None

    def _read_text(self, rel: str | os.PathLike[str]) -> str | None:
        data = self._read_bytes(rel)
        return None if data is None else data.decode("utf-8", "replace")


def probe_device(root: str | os.PathLike[str] = "/") -> DeviceInfo:
    """Probe ``root`` (the running machine by default) in one call.

    Raises:
        DeviceError: If ``root`` does not exist or is not a directory.
    """
    return DeviceProbe(root).probe()


# ---------------------------------------------------------------- runtime helpers


def _importable(module: str) -> bool:
    """Whether ``import module`` can find it (False when blocked: ``sys.modules[m] = None``
    raises ValueError here, a refusing meta path finder ImportError)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (for backends'
    ``is_available``: a blocked or missing library is simply absent)."""
    return _importable(module)


def dist_version(*dists: str) -> str | None:
    """The installed version of the first of ``dists`` (PyPI names) with metadata, or None.

    Reads package metadata only, so nothing heavy is imported to learn a version.
    """
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        except (ValueError, OSError) as exc:
            _LOG.debug("metadata lookup for %s failed: %s", dist, exc)
    return None


def module_version(module: str, *dists: str) -> str | None:
    """The version of library ``module`` (published as ``dists``), None when it is absent.

    What every backend's ``version()`` answers with, so ``devices``/``doctor`` need no code
    per library: None when the module cannot be imported here (metadata left behind by a
    broken or blocked install does not count), else the distribution metadata, else (apt
    installs such as JetPack's TensorRT carry none) the module's own ``__version__``.
    """
    if not _importable(module):
        return None
    version = dist_version(*(dists or (module,)))
    if version is not None:
        return version
    try:
        value = getattr(importlib.import_module(module), "__version__", None)
    # A broken native install can raise almost anything at import; treat it as absent.
    except Exception as exc:  # noqa: BLE001
        _LOG.debug("%s import failed: %s", module, exc)
        return None
    return str(value) if value else None


def _onnxruntime_info() -> tuple[str | None, tuple[str, ...]]:
    if not _importable("onnxruntime"):
        return None, ()
    try:
        ort = importlib.import_module("onnxruntime")
        version = getattr(ort, "__version__", None) or dist_version(*ONNXRUNTIME_DISTS)
        return version, tuple(ort.get_available_providers())
    # Native-library load errors surface as assorted exception types; treat as absent.
    except Exception as exc:  # noqa: BLE001
        _LOG.debug("onnxruntime probe failed: %s", exc)
        return None, ()


def tensorrt_version() -> str | None:
    """The TensorRT Python bindings' version (pip metadata, else the module's), or None."""
    version = dist_version(*TENSORRT_DISTS)
    if version is not None:
        return version
    # JetPack installs the bindings via apt, often without pip metadata.
    return module_version("tensorrt", *TENSORRT_DISTS)
