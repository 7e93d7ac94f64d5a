"""Tests for edge_sdk.device using fixture roots written in the real kernel/driver formats."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import pytest

from edge_sdk.device import (
    CpuInfo,
    DeviceInfo,
    DeviceProbe,
    GpuInfo,
    JetsonInfo,
    gpu_capability_from_name,
    l4t_to_jetpack,
    parse_tegra_release,
    probe_device,
)
from edge_sdk.errors import DeviceError

X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid "
    "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes "
    "xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch avx2 bmi1 bmi2 erms avx512f "
    "avx512dq rdseed adx avx512bw avx512vl avx512_vnni avx_vnni amx_tile amx_int8 amx_bf16 "
    "sha_ni xsaveopt arat"
)


def _x86_block(n: int) -> str:
    return (
        f"processor\t: {n}\n"
        "vendor_id\t: GenuineIntel\n"
        "cpu family\t: 6\n"
        "model\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "stepping\t: 8\n"
        "cpu MHz\t\t: 2000.000\n"
        "cache size\t: 107520 KB\n"
        f"flags\t\t: {X86_FLAGS}\n"
        "bugs\t\t: spectre_v1 spectre_v2\n"
        "bogomips\t: 4000.00\n"
        "address sizes\t: 46 bits physical, 57 bits virtual\n"
        "power management:\n"
        "\n"
    )


def _arm_block(n: int, part: str = "0xd42") -> str:
    return (
        f"processor\t: {n}\n"
        "BogoMIPS\t: 62.50\n"
        "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
        "asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg\n"
        "CPU implementer\t: 0x41\n"
        "CPU architecture: 8\n"
        "CPU variant\t: 0x1\n"
        f"CPU part\t: {part}\n"
        "CPU revision\t: 1\n"
        "\n"
    )


def _write(root: Path, rel: str, data: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def _nvidia_information(model: str, bus: str, minor: int) -> str:
    return (
        f"Model: \t\t {model}\n"
        "IRQ:   \t\t 40\n"
        "GPU UUID: \t GPU-5a1c1f5e-0000-1111-2222-333344445555\n"
        "Video BIOS: \t 96.00.99.00.01\n"
        "Bus Type: \t PCIe\n"
        "DMA Size: \t 52 bits\n"
        "DMA Mask: \t 0xfffffffffffff\n"
        f"Bus Location: \t {bus}\n"
        f"Device Minor: \t {minor}\n"
        "GPU Excluded:\t No\n"
    )


@pytest.fixture()
def orin_root(tmp_path: Path) -> Path:
    _write(tmp_path, "proc/cpuinfo", "".join(_arm_block(i) for i in range(6)))
    _write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    _write(
        tmp_path,
        "proc/device-tree/compatible",
        b"nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00",
    )
    _write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
        "DATE: Mon May  6 17:34:21 UTC 2024\n"
        "# KERNEL_VARIANT: oot\n"
        "TARGET_USERSPACE_LIB_DIR=nvidia\n",
    )
    _write(tmp_path, "proc/meminfo", "MemTotal:        7802056 kB\nMemFree:  100 kB\n")
    return tmp_path


def test_x86_cpuinfo(tmp_path: Path) -> None:
    _write(tmp_path, "proc/cpuinfo", "".join(_x86_block(i) for i in range(4)))
    cpu = DeviceProbe(tmp_path).cpu()
    assert cpu.architecture == "x86_64"
    assert cpu.logical_cores == 4
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu.features == (
        "amx_bf16",
        "amx_int8",
        "amx_tile",
        "avx",
        "avx2",
        "avx512_vnni",
        "avx512bw",
        "avx512f",
        "avx512vl",
        "avx_vnni",
        "f16c",
        "fma",
        "sse4_1",
        "sse4_2",
    )
    assert list(cpu.features) == sorted(cpu.features)
    assert "sse2" not in cpu.features and "lm" not in cpu.features
    assert cpu.has("avx2") and not cpu.has("asimd")


def test_arm_cpuinfo(tmp_path: Path) -> None:
    _write(tmp_path, "proc/cpuinfo", _arm_block(0) + _arm_block(1))
    cpu = DeviceProbe(tmp_path).cpu()
    assert cpu.architecture == "aarch64"
    assert cpu.logical_cores == 2
    assert cpu.features == ("asimd", "asimddp", "asimdhp", "fphp")
    assert cpu.model == "Cortex-A78AE"


def test_cpu_features_are_common_to_all_cores(tmp_path: Path) -> None:
    big = _arm_block(0).replace("asimddp", "asimddp i8mm")
    _write(tmp_path, "proc/cpuinfo", big + _arm_block(1, part="0xd05"))
    cpu = DeviceProbe(tmp_path).cpu()
    assert "i8mm" not in cpu.features
    assert cpu.model == "Cortex-A78AE + Cortex-A55"


def test_jetson_orin_nano(orin_root: Path) -> None:
    probe = DeviceProbe(orin_root)
    board = probe.jetson()
    assert board == JetsonInfo(
        model="NVIDIA Jetson Orin Nano Developer Kit",
        l4t_release="36.3.0",
        jetpack="6.0",
        compute_capability=(8, 7),
    )
    gpus = probe.gpus()
    assert len(gpus) == 1
    assert gpus[0].compute_capability == (8, 7)
    assert gpus[0].source == "jetson"
    assert gpus[0].total_memory == 7802056 * 1024
    assert "Orin Nano" in gpus[0].name

    info = probe.probe()
    assert info.is_jetson
    assert info.cpu.architecture == "aarch64"
    assert info.fingerprint.startswith("sm_87")
    assert dataclasses.replace(info, tensorrt_version="10.3.0.30").fingerprint == "sm_87-trt10.3"


def test_jetson_xavier_nx_r35(tmp_path: Path) -> None:
    _write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson Xavier NX Developer Kit\x00")
    _write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
        "DATE: Tue Aug  1 19:57:35 UTC 2023\n",
    )
    board = DeviceProbe(tmp_path).jetson()
    assert board is not None
    assert board.l4t_release == "35.4.1"
    assert board.jetpack == "5.1.2"
    assert board.compute_capability == (7, 2)
    assert DeviceProbe(tmp_path).gpus()[0].compute_capability == (7, 2)


def test_jetson_from_release_file_only(tmp_path: Path) -> None:
    _write(tmp_path, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004\n")
    board = DeviceProbe(tmp_path).jetson()
    assert board is not None
    assert board.l4t_release == "32.7.1"
    assert board.jetpack == "4.6.1"
    assert board.compute_capability is None  # R32 ran on several module families


def test_non_jetson_device_tree_is_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert DeviceProbe(tmp_path).jetson() is None


def test_desktop_h100_from_procfs(tmp_path: Path) -> None:
    _write(tmp_path, "proc/cpuinfo", _x86_block(0))
    _write(
        tmp_path,
        "proc/driver/nvidia/gpus/0000:00:05.0/information",
        _nvidia_information("NVIDIA H100 80GB HBM3", "0000:00:05.0", 0),
    )
    _write(
        tmp_path,
        "proc/driver/nvidia/gpus/0000:00:06.0/information",
        _nvidia_information("NVIDIA L4", "0000:00:06.0", 1),
    )
    probe = DeviceProbe(tmp_path)
    gpus = probe.gpus()
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert gpus[0].compute_capability == (9, 0)
    assert gpus[0].source == "procfs"
    assert gpus[0].total_memory is None
    assert gpus[1].compute_capability == (8, 9)
    info = probe.probe()
    assert info.jetson is None
    assert info.fingerprint.startswith("sm_90")


@pytest.mark.parametrize(
    ("name", "cap"),
    [
        ("NVIDIA H200", (9, 0)),
        ("NVIDIA A100-SXM4-80GB", (8, 0)),
        ("NVIDIA A10G", (8, 6)),
        ("NVIDIA A40", (8, 6)),
        ("NVIDIA GeForce RTX 3090", (8, 6)),
        ("NVIDIA L40S", (8, 9)),
        ("NVIDIA GeForce RTX 4090", (8, 9)),
        ("Tesla T4", (7, 5)),
        ("NVIDIA GeForce RTX 2080 Ti", (7, 5)),
        ("Tesla V100-SXM2-16GB", (7, 0)),
        ("NVIDIA GeForce RTX 5090", (12, 0)),
        ("NVIDIA B200", (10, 0)),
        ("Matrox G200", None),
    ],
)
def test_gpu_capability_table(name: str, cap: tuple[int, int] | None) -> None:
    assert gpu_capability_from_name(name) == cap


def test_l4t_parsing_and_jetpack_table() -> None:
    assert parse_tegra_release("# R36 (release), REVISION: 4.3, GCID: 1") == "36.4.3"
    assert parse_tegra_release("garbage") is None
    assert l4t_to_jetpack("36.4.3") == "6.2"
    assert l4t_to_jetpack("35.9.0") == "5.1.5"  # newer than the table: closest earlier
    assert l4t_to_jetpack("32.7.6") == "4.6.6"
    assert l4t_to_jetpack("99.1.0") is None
    assert l4t_to_jetpack(None) is None


def test_empty_root(tmp_path: Path) -> None:
    info = DeviceProbe(tmp_path).probe()
    assert info.jetson is None
    assert info.gpus == ()
    assert info.cpu.logical_cores is None
    assert info.cpu.features == ()
    assert info.fingerprint == "cpu-unknown"
    assert info.torch_cuda_available is False


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="does not exist"):
        DeviceProbe(tmp_path / "no-such-root")
    with pytest.raises(DeviceError):
        probe_device(tmp_path / "no-such-root")


def test_fingerprints() -> None:
    cpu = CpuInfo("x86_64", 8, "x", ("avx2",))
    assert DeviceInfo(cpu=cpu).fingerprint == "cpu-x86_64"
    h100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30, "torch.cuda")
    assert DeviceInfo(cpu=cpu, gpus=(h100,), tensorrt_version="10.3.0.26").fingerprint == (
        "sm_90-trt10.3"
    )
    assert DeviceInfo(cpu=cpu, gpus=(h100,)).fingerprint == "sm_90"
    odd = GpuInfo(0, "NVIDIA Mystery GPU", None, None, "procfs")
    assert DeviceInfo(cpu=cpu, gpus=(odd,)).fingerprint == "gpu-nvidia-mystery-gpu"


def test_to_dict_is_json_serialisable(orin_root: Path) -> None:
    info = DeviceProbe(orin_root).probe()
    data = json.loads(json.dumps(info.to_dict()))
    assert data["jetson"]["l4t_release"] == "36.3.0"
    assert data["jetson"]["compute_capability"] == [8, 7]
    assert data["gpus"][0]["compute_capability"] == [8, 7]
    assert data["cpu"]["architecture"] == "aarch64"
    assert data["fingerprint"] == info.fingerprint
    for part in (info.cpu, info.gpus[0], info.jetson):
        assert part is not None
        json.dumps(part.to_dict())


def test_probe_real_machine() -> None:
    pytest.importorskip("onnxruntime")
    info = DeviceProbe("/").probe()
    assert "CPUExecutionProvider" in info.ort_providers
    assert info.onnxruntime_version
    machine = platform.machine().lower()
    assert info.cpu.architecture in {machine, {"amd64": "x86_64", "arm64": "aarch64"}.get(machine)}
    assert info.cpu.logical_cores is None or info.cpu.logical_cores >= 1
    assert info.fingerprint
    json.dumps(info.to_dict())


def test_jetson_capability_from_compatible(tmp_path: Path) -> None:
    _write(tmp_path, "proc/device-tree/model", b"p3737-0000 carrier\x00")
    _write(tmp_path, "proc/device-tree/compatible", b"nvidia,p3737-0000\x00nvidia,tegra194\x00")
    board = DeviceProbe(tmp_path).jetson()
    assert board is not None
    assert board.compute_capability == (7, 2)
    assert board.l4t_release is None and board.jetpack is None


def test_runtimes_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from edge_sdk import device

    def _missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(device, "_importable", lambda _name: False)
    monkeypatch.setattr(importlib.metadata, "version", _missing)
    rt = DeviceProbe(tmp_path).runtimes()
    assert rt.onnxruntime_version is None
    assert rt.ort_providers == ()
    assert rt.tensorrt_version is None
    assert rt.torch_version is None
    assert rt.torch_cuda_available is False
    json.dumps(rt.to_dict())
