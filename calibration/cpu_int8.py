"""The CPU INT8 form of a graph: kept only where it passes the gate and runs faster here.

The TensorRT form (symmetric S8S8 QDQ on the policy's op types) is slower than FP32 under
ONNX Runtime's CPU kernels. The ``cpu`` form of :func:`calibration.quantize.quantize_graph`
(U8S8, every quantisable op) pays only on some graphs. Measured on the 2-core AVX-512 VNNI
Xeon (ORT 1.32): quantised without the family policies' exclusions, the untrained edge
graphs went from FP32 to U8S8 ms as face-expclip 4.46 -> 2.57, scene-cocoer alignment
3.85 -> 2.27, av-fbp audio_video 0.58 -> 0.37, but face-caf 0.64 -> 1.05; through
``calibrate`` with the policies (``benchmarks/int8.py``, 22 graphs) the form passed the gate
on 17 and beat FP32 on two (scene-cocoer alignment 1.21x, dialog head 1.24x), 0.37-0.92x
elsewhere: FP32 islands the policies keep (face-expclip's MLPs) break the integer chain.
Whether the form pays is therefore measured on every graph when it is calibrated, on the
held-out feeds, and recorded; it is written only when it passes the same accuracy gate as
the TensorRT form and (in ``auto`` mode) beats FP32 by ``MIN_SPEEDUP``. The timing is of
the calibrating machine; ``always`` keeps every passing graph for a deployment CPU that
differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from calibration.gate import OutputFigures
from edge_sdk.errors import CalibrationError

Feed = dict[str, np.ndarray]

MODES = ("auto", "always", "never")
MIN_SPEEDUP = 1.1  # FP32 / INT8 median latency; below it the FP32 graph is as good
TIMED_FEEDS = 32
TIMED_ROUNDS = 3


@dataclass(frozen=True)
class CpuTrial:
    """The CPU form of one graph: its gate figures, both latencies and whether it is kept."""

    figures: tuple[OutputFigures, ...]
    fp32_ms: float
    int8_ms: float
    kept: bool
    reason: str

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.figures)

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "kept": self.kept,
            "reason": self.reason,
            "passed": self.passed,
            "fp32_ms": round(self.fp32_ms, 4),
            "int8_ms": round(self.int8_ms, 4),
            "speedup": round(self.speedup, 3),
            "outputs": {f.output: f.to_dict() for f in self.figures},
        }


def median_latencies(sessions: list[object], feeds: list[Feed]) -> list[float]:
    """Median ms per call of each session over the same feeds, calls interleaved so that
    load from other processes falls on all of them alike."""
    feeds = feeds[:TIMED_FEEDS]
    for session in sessions:  # warm-up: first calls allocate
        session.run(None, feeds[0])  # type: ignore[attr-defined]
    times: list[list[float]] = [[] for _ in sessions]
    for round_ in range(TIMED_ROUNDS):
        for i, feed in enumerate(feeds):
            shift = (round_ + i) % len(sessions)
            for k in [*range(shift, len(sessions)), *range(shift)]:
                start = time.perf_counter()
                sessions[k].run(None, feed)  # type: ignore[attr-defined]
                times[k].append((time.perf_counter() - start) * 1e3)
    return [float(np.median(t)) for t in times]


def check_mode(mode: str) -> None:
    """Refuse an unknown ``cpu_int8`` mode before any quantising is done."""
    if mode not in MODES:
        raise CalibrationError(f"unknown CPU INT8 mode {mode!r}; expected one of {MODES}")


def decide(passed: bool, speedup: float, mode: str) -> tuple[bool, str]:
    """Whether the CPU form is kept, and why (``mode``: one of :data:`MODES`)."""
    check_mode(mode)
    if mode == "never":
        return False, "not asked for (cpu_int8=never)"
    if not passed:
        return False, "failed the accuracy gate"
    if mode == "always":
        return True, f"passed the gate ({speedup:.2f}x FP32 speed here; kept: always)"
    if speedup < MIN_SPEEDUP:
        return False, f"{speedup:.2f}x FP32 speed here (< {MIN_SPEEDUP}x): FP32 is as fast"
    return True, f"passed the gate, {speedup:.2f}x FP32 speed here"
