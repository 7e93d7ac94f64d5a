"""Reading ``/proc/cpuinfo`` in its x86 and ARM dialects: architecture, model, features.

Which CPU kernels ONNX Runtime, TensorRT and PyTorch can use depends on the feature flags
present on every core; ARM cpuinfo has no model line, so cores are named from their
implementer/part ids. The probe (:mod:`edge_sdk.device`) reads the file; this parses it.
"""

from __future__ import annotations

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


def normalise_machine(machine: str) -> str:
    """``platform.machine()``'s spelling (``AMD64``, ``arm64``) in cpuinfo's (``x86_64``)."""
    lowered = machine.strip().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(lowered, lowered)


def parse_colon_lines(text: str) -> dict[str, str]:
    """Parse ``key : value`` lines; the first colon splits, since values contain colons."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
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


def arch_from_cpuinfo(records: list[dict[str, str]]) -> str:
    """Infer the architecture from which cpuinfo dialect the kernel wrote."""
    for rec in records:
        if "Features" in rec or "CPU implementer" in rec:
            arch = rec.get("CPU architecture", "8").strip().lower()
            return "armv7l" if arch == "7" else "aarch64"
        if "flags" in rec or "vendor_id" in rec:
            flags = rec.get("flags", "").split()
            return "x86_64" if (not flags or "lm" in flags) else "i686"
    return "unknown"


def cpu_model(records: list[dict[str, str]]) -> str | None:
    """The model line (x86), the ``Hardware`` line, or the ARM cores named by part id."""
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


def cpu_features(records: list[dict[str, str]]) -> tuple[str, ...]:
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
