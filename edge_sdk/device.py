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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.errors import DeviceError

__all__ = [
    "CpuInfo",
    "DeviceInfo",
    "DeviceProbe",
    "GpuInfo",
    "JetsonInfo",
    "RuntimeInfo",
    "gpu_capability_from_name",
    "jetson_capability_from_model",
    "l4t_to_jetpack",
    "parse_tegra_release",
    "probe_device",
]

_LOG = logging.getLogger(__name__)

Capability = tuple[int, int]

# CPU flags (x86 ``flags`` / ARM ``Features`` in /proc/cpuinfo) that change which inference
# kernels ONNX Runtime / TensorRT / PyTorch can use. Everything else is noise for us.
_X86_FEATURES = frozenset(
    {
        "avx",
        "avx2",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512vnni",
        "avx512_bf16",
        "avx512_fp16",
        "avx_vnni",
        "fma",
        "f16c",
        "sse4_1",
        "sse4_2",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    }
)
_ARM_FEATURES = frozenset({"asimd", "asimddp", "fphp", "asimdhp", "sve", "sve2", "i8mm", "bf16"})

# (implementer, part) -> core name, for ARM cpuinfo which has no "model name" line.
_ARM_PARTS: dict[tuple[str, str], str] = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd42"): "Cortex-A78AE",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x4e", "0x003"): "NVIDIA Denver 2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}

# Desktop/datacenter GPU name pattern -> CUDA compute capability. The procfs driver file
# does not expose the capability, so off-host probing has to infer it from the marketing
# name. Order matters: more specific patterns come first. Sources: NVIDIA "CUDA GPUs"
# compute-capability table. Note the A30 is a GA100 part (8.0), unlike the A10/A40 (8.6).
_GPU_CAPABILITY_TABLE: tuple[tuple[str, Capability], ...] = (
    (r"\bRTX\s+PRO\s+\d+\b.*Blackwell", (12, 0)),
    (r"\bRTX\s+50\d0", (12, 0)),
    (r"\bG?B300\b", (10, 3)),
    (r"\bG?B[12]00\b", (10, 0)),
    (r"\bG?H(?:100|200|800|20)\b", (9, 0)),
    (r"\bRTX\s+\d000\s+Ada\b", (8, 9)),
    (r"\bL(?:4|20|40S?)\b", (8, 9)),
    (r"\bRTX\s+40\d0", (8, 9)),
    (r"\bA(?:100|800|30)\b", (8, 0)),
    (r"\bA(?:2|10G?|16|40)\b", (8, 6)),
    (r"\bRTX\s+A\d000\b", (8, 6)),
    (r"\bRTX\s+30\d0", (8, 6)),
    (r"\bT4\b", (7, 5)),
    (r"\bRTX\s+20\d0", (7, 5)),
    (r"\bGTX\s+16\d0", (7, 5)),
    (r"\bQuadro\s+RTX\b", (7, 5)),
    (r"\bTitan\s+V\b", (7, 0)),
    (r"\bV100\b", (7, 0)),
    (r"\bP100\b", (6, 0)),
    (r"\bP4\b|\bP40\b|\bGTX\s+10\d0", (6, 1)),
)

# Jetson module family (device-tree model substring) -> integrated GPU compute capability.
# "Orin" must be tested before "Nano" because of the "Orin Nano" module.
_JETSON_MODEL_CAPABILITY: tuple[tuple[str, Capability], ...] = (
    ("thor", (11, 0)),  # CUDA 13 numbering; CUDA 12.8/12.9 called it sm_101.
    ("orin", (8, 7)),
    ("xavier", (7, 2)),
    ("tx2", (6, 2)),
    ("tx1", (5, 3)),
    ("nano", (5, 3)),
)

# Device-tree "compatible" SoC -> capability, used when the model string is unhelpful.
_TEGRA_SOC_CAPABILITY: dict[str, Capability] = {
    "nvidia,tegra264": (11, 0),
    "nvidia,tegra234": (8, 7),
    "nvidia,tegra194": (7, 2),
    "nvidia,tegra186": (6, 2),
    "nvidia,tegra210": (5, 3),
}

# L4T (Linux for Tegra) release -> JetPack release, from NVIDIA's JetPack archive. Releases
# not listed resolve to the closest earlier entry of the same L4T major (see l4t_to_jetpack).
_L4T_TO_JETPACK: dict[tuple[int, int, int], str] = {
    (32, 1, 0): "4.2",
    (32, 2, 0): "4.2.1",
    (32, 2, 1): "4.2.2",
    (32, 2, 3): "4.2.3",
    (32, 3, 1): "4.3",
    (32, 4, 2): "4.4 DP",
    (32, 4, 3): "4.4",
    (32, 4, 4): "4.4.1",
    (32, 5, 0): "4.5",
    (32, 5, 1): "4.5.1",
    (32, 6, 1): "4.6",
    (32, 7, 1): "4.6.1",
    (32, 7, 2): "4.6.2",
    (32, 7, 3): "4.6.3",
    (32, 7, 4): "4.6.4",
    (32, 7, 5): "4.6.5",
    (32, 7, 6): "4.6.6",
    (34, 1, 0): "5.0 DP",
    (34, 1, 1): "5.0.1 DP",
    (35, 1, 0): "5.0.2",
    (35, 2, 1): "5.1",
    (35, 3, 1): "5.1.1",
    (35, 4, 1): "5.1.2",
    (35, 5, 0): "5.1.3",
    (35, 6, 0): "5.1.4",
    (35, 6, 1): "5.1.5",
    (36, 2, 0): "6.0 DP",
    (36, 3, 0): "6.0",
    (36, 4, 0): "6.1",
    (36, 4, 3): "6.2",
    (36, 4, 4): "6.2.1",
    (38, 2, 0): "7.0",
}

_TEGRA_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\([^)]*\)\s*,\s*REVISION:\s*(\d+(?:\.\d+)*)")

# Distribution names under which the TensorRT Python bindings are published on PyPI.
_TENSORRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_lean", "tensorrt-lean")


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


def parse_tegra_release(text: str) -> str | None:
    """Extract the L4T release from ``/etc/nv_tegra_release`` content.

    Args:
        text: File content, e.g. ``"# R36 (release), REVISION: 3.0, GCID: ..."``.

    Returns:
        The release as ``"major.minor.patch"`` (``"36.3.0"``), or None if unrecognised.
    """
    match = _TEGRA_RELEASE_RE.search(text)
    if match is None:
        return None
    parts = [match.group(1), *match.group(2).split(".")]
    while len(parts) < 3:
        parts.append("0")
    return ".".join(str(int(p)) for p in parts)


def l4t_to_jetpack(l4t_release: str | None) -> str | None:
    """Guess the JetPack release from an L4T release, since boards only record L4T.

    Exact table hits are returned as is. Otherwise the closest earlier known release of
    the same L4T major is used (or the earliest of that major if the release predates
    the table), because point releases within one major share the same CUDA/TensorRT
    line. Unknown majors give None.

    Args:
        l4t_release: Release such as ``"35.4.1"``; None is accepted for convenience.

    Returns:
        JetPack version such as ``"5.1.2"``, or None.
    """
    if not l4t_release:
        return None
    try:
        nums = [int(p) for p in l4t_release.strip().split(".")]
    except ValueError:
        return None
    key = tuple([*nums, 0, 0, 0][:3])
    if key in _L4T_TO_JETPACK:
        return _L4T_TO_JETPACK[key]
    same_major = sorted(k for k in _L4T_TO_JETPACK if k[0] == key[0])
    if not same_major:
        return None
    earlier = [k for k in same_major if k <= key]
    return _L4T_TO_JETPACK[earlier[-1] if earlier else same_major[0]]


def gpu_capability_from_name(name: str) -> Capability | None:
    """Infer a desktop/datacenter GPU's compute capability from its marketing name.

    Used when no CUDA runtime can be asked (offline roots, no torch), because the
    driver's procfs file lists the name but not the capability.

    Args:
        name: GPU name, e.g. ``"NVIDIA H100 80GB HBM3"``.

    Returns:
        ``(major, minor)`` or None when the name is not in the table.
    """
    for pattern, cap in _GPU_CAPABILITY_TABLE:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return cap
    return None


def jetson_capability_from_model(model: str) -> Capability | None:
    """Map a Jetson device-tree model string to its integrated GPU's capability.

    Args:
        model: e.g. ``"NVIDIA Jetson Xavier NX Developer Kit"``.

    Returns:
        ``(major, minor)`` or None for unknown module families.
    """
    lowered = model.lower()
    for needle, cap in _JETSON_MODEL_CAPABILITY:
        if needle in lowered:
            return cap
    return None


def _normalise_machine(machine: str) -> str:
    lowered = machine.strip().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(lowered, lowered)


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
        records = _parse_cpuinfo(text)
        processors = [r for r in records if "processor" in r]
        inferred_arch = _arch_from_cpuinfo(records)

        if self.is_live:
            architecture = _normalise_machine(platform.machine()) or inferred_arch
        else:
            architecture = inferred_arch

        cores: int | None = len(processors) or None
        if cores is None and self.is_live:
            cores = os.cpu_count()

        return CpuInfo(
            architecture=architecture,
            logical_cores=cores,
            model=_cpu_model(records),
            features=_cpu_features(records),
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
            known = [_TEGRA_SOC_CAPABILITY[c] for c in compatible if c in _TEGRA_SOC_CAPABILITY]
            cap = known[0] if known else None
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
            fields = _parse_colon_lines(text)
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
        torch_version = _dist_version("torch")
        cuda = self._torch_cuda()[0] if (self.is_live and torch_version) else False
        return RuntimeInfo(
            onnxruntime_version=ort_version,
            ort_providers=providers,
            tensorrt_version=_tensorrt_version(),
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


# ---------------------------------------------------------------- cpuinfo parsing


def _parse_colon_lines(text: str) -> dict[str, str]:
    """Parse ``key : value`` lines; the first colon splits, since values contain colons."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """Split cpuinfo into blank-line-separated records of ``key: value`` pairs."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        records.append(current)
    return records


def _arch_from_cpuinfo(records: list[dict[str, str]]) -> str:
    """Infer the architecture from which cpuinfo dialect the kernel wrote."""
    for rec in records:
        if "Features" in rec or "CPU implementer" in rec:
            arch = rec.get("CPU architecture", "8").strip().lower()
            return "armv7l" if arch == "7" else "aarch64"
        if "flags" in rec or "vendor_id" in rec:
            flags = rec.get("flags", "").split()
            return "x86_64" if (not flags or "lm" in flags) else "i686"
    return "unknown"


def _cpu_model(records: list[dict[str, str]]) -> str | None:
    for rec in records:
        if rec.get("model name"):
            return rec["model name"]
    for rec in records:
        if rec.get("Hardware"):
            return rec["Hardware"]
    parts: list[str] = []
    for rec in records:
        impl = rec.get("CPU implementer", "").lower()
        part = rec.get("CPU part", "").lower()
        if not part:
            continue
        name = _ARM_PARTS.get((impl, part), f"ARM implementer {impl or '?'} part {part}")
        if name not in parts:
            parts.append(name)
    return " + ".join(parts) if parts else None


def _cpu_features(records: list[dict[str, str]]) -> tuple[str, ...]:
    """Return relevant flags present on all cores (a kernel needs them everywhere)."""
    common: set[str] | None = None
    for rec in records:
        raw = rec.get("flags", rec.get("Features"))
        if raw is None:
            continue
        flags = set(raw.split())
        common = flags if common is None else common & flags
    if not common:
        return ()
    return tuple(sorted(common & (_X86_FEATURES | _ARM_FEATURES)))


# ---------------------------------------------------------------- runtime helpers


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        except (ValueError, OSError) as exc:
            _LOG.debug("metadata lookup for %s failed: %s", dist, exc)
    return None


def _onnxruntime_info() -> tuple[str | None, tuple[str, ...]]:
    if not _importable("onnxruntime"):
        return None, ()
    try:
        ort = importlib.import_module("onnxruntime")
        version = getattr(ort, "__version__", None) or _dist_version(
            "onnxruntime", "onnxruntime-gpu"
        )
        return version, tuple(ort.get_available_providers())
    # Native-library load errors surface as assorted exception types; treat as absent.
    except Exception as exc:  # noqa: BLE001
        _LOG.debug("onnxruntime probe failed: %s", exc)
        return None, ()


def _tensorrt_version() -> str | None:
    version = _dist_version(*_TENSORRT_DISTS)
    if version is not None:
        return version
    # JetPack installs the bindings via apt, often without pip metadata.
    if not _importable("tensorrt"):
        return None
    try:
        trt = importlib.import_module("tensorrt")
        value = getattr(trt, "__version__", None)
        return str(value) if value else None
    # Same reasoning as for onnxruntime: a broken native install must not crash probing.
    except Exception as exc:  # noqa: BLE001
        _LOG.debug("tensorrt import failed: %s", exc)
        return None
