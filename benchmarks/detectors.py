"""Face detector latency: MTCNN (the existing cascade) against BlazeFace short / full / back.

Run ``python benchmarks/detectors.py [--repeats N] [--warmup N]``. Every detector runs on
ONNX Runtime CPU and on OpenVINO CPU, and each BlazeFace graph also on the runtime that
selection by measurement opens by default (``selected=...``), from the cached default
bundles (face-fer7 for MTCNN, face-blazeface), on the same frames: the astronaut photo
placed in a 640x480 and a 1280x720 frame. Runs are interleaved (one call of each detector
in turn), so load from other processes spreads over all rows. Prints medians (ms), p90 and
MTCNN-on-ONNX-Runtime's median (today's path) divided by each row's; the issue's target is
BlazeFace full range (as selected) >= 5x faster than that at both sizes. Figures only, no
assertions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.defaults import default_bundle
from edge_sdk.device import DeviceProbe
from edge_sdk.pipelines.blazeface import open_blazeface
from edge_sdk.pipelines.face import open_detector

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
SIZES = ((640, 480), (1280, 720))
BLAZEFACE = ("blazeface_short", "blazeface_full", "blazeface_back")
CPU_BACKENDS = ("ort-cpu", "openvino")  # the first is today's MTCNN path, every ratio's base
TARGET_RATIO = 5.0  # MTCNN / BlazeFace full range, issue #13


def frames() -> dict[str, np.ndarray]:
    """The astronaut (512x512) pasted into grey frames of each size (scaled down to fit)."""
    face = cv2.cvtColor(cv2.imread(str(EXAMPLE)), cv2.COLOR_BGR2RGB)
    out = {}
    for width, height in SIZES:
        frame = np.full((height, width, 3), 90, dtype=np.uint8)
        side = min(face.shape[0], height)
        patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        top, left = (height - side) // 2, (width - side) // 3
        frame[top : top + side, left : left + side] = patch
        out[f"{width}x{height}"] = frame
    return out


def open_detectors(one_thread: list[str]) -> dict[str, Any]:
    """Every detector on every CPU runtime, keyed ``detector backend``; ``selected`` is what
    ``load()`` opens by default (the runtime measured fastest here, :mod:`runtimes.measured`)."""
    device = DeviceProbe().probe()
    mtcnn = default_bundle()
    detectors: dict[str, Any] = {}
    for backend in CPU_BACKENDS:
        detectors[f"mtcnn {backend}"] = open_detector(mtcnn, device, backend=backend)[0]
    blazeface = default_bundle("face-blazeface")
    for graph in BLAZEFACE:
        for backend in (*CPU_BACKENDS, None):
            detector, used = open_blazeface(blazeface, device, graph, backend=backend)
            name = backend or f"selected={used[graph].split('/')[0]}"
            detectors[f"{graph.replace('blazeface_', 'bf-')} {name}"] = detector
    for graph in one_thread:
        detectors[f"{graph.replace('blazeface_', 'bf-')} ort-cpu/1t"] = open_blazeface(
            blazeface, device, graph, backend="ort-cpu", threads=1
        )[0]
    return detectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per frame")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per frame first")
    parser.add_argument(
        "--one-thread",
        nargs="*",
        default=[],
        choices=BLAZEFACE,
        help="also run these BlazeFace graphs from one-thread ORT sessions (row .../1t)",
    )
    args = parser.parse_args()
    detectors = open_detectors(args.one_thread)
    base = f"mtcnn {CPU_BACKENDS[0]}"
    full = next(n for n in detectors if n.startswith("bf-full selected"))
    header = f"{'frame':<10}{'detector backend':<30}{'median ms':>10}{'p90 ms':>9}"
    header += f"{'mtcnn/x':>9}{'faces':>7}"
    print(header)
    verdicts = []
    for label, frame in frames().items():
        samples: dict[str, list[float]] = {name: [] for name in detectors}
        faces = {}
        for i in range(args.warmup + args.repeats):
            for name, detector in detectors.items():
                start = time.perf_counter()
                found = detector.detect(frame)
                if i >= args.warmup:
                    samples[name].append((time.perf_counter() - start) * 1e3)
                faces[name] = len(found)
        medians = {name: float(np.median(v)) for name, v in samples.items()}
        for name, values in samples.items():
            ratio = medians[base] / medians[name]
            print(
                f"{label:<10}{name:<30}{medians[name]:>10.2f}"
                f"{np.percentile(values, 90):>9.2f}{ratio:>9.2f}{faces[name]:>7}"
            )
        ratio = medians[base] / medians[full]
        verdicts.append(
            f"{label}: full range ({full}) {ratio:.1f}x faster than {base} "
            f"({'meets' if ratio >= TARGET_RATIO else 'misses'} the {TARGET_RATIO:g}x target)"
        )
    for line in verdicts:
        print(line)
    for detector in detectors.values():
        detector.close()


if __name__ == "__main__":
    main()
