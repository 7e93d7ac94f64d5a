"""What NVIDIA's names and release files mean: compute capabilities and JetPack releases.

The driver's procfs file names a GPU but not its compute capability, and a Jetson board
records its L4T release but not its JetPack release; these tables (from NVIDIA's "CUDA GPUs"
table and JetPack archive) and the parsers that read them let the probe answer offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from edge_sdk.device_info import Capability

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


def soc_capability(compatible: Iterable[str]) -> Capability | None:
    """The capability of the first device-tree ``compatible`` SoC in the table, or None.

    Used when the Jetson model string is unhelpful (a carrier board's name).
    """
    known = [_TEGRA_SOC_CAPABILITY[c] for c in compatible if c in _TEGRA_SOC_CAPABILITY]
    return known[0] if known else None
