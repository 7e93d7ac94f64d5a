"""Face detector latency: MTCNN (the existing cascade) against BlazeFace short / full / back.

Run ``python benchmarks/detectors.py [--repeats N] [--warmup N]``. Every detector runs on
ONNX Runtime CPU from the cached default bundles (face-fer7 for MTCNN, face-blazeface),
on the same frames: the astronaut photo placed in a 640x480 and a 1280x720 frame. Runs are
interleaved (one call of each detector in turn), so load from other processes spreads over
all columns. Prints medians (ms), p90 and MTCNN's median divided by each detector's; the
issue's target is BlazeFace full range >= 5x faster than MTCNN at both sizes. Figures only,
no assertions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.defaults import default_bundle
from edge_sdk.device import DeviceProbe
from edge_sdk.pipelines.blazeface import open_blazeface
from edge_sdk.pipelines.face import open_detector

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
SIZES = ((640, 480), (1280, 720))
BLAZEFACE = ("blazeface_short", "blazeface_full", "blazeface_back")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per frame")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per frame first")
    parser.add_argument(
        "--one-thread",
        nargs="*",
        default=[],
        choices=BLAZEFACE,
        help="also run these BlazeFace graphs from one-thread sessions (column NAME/1t)",
    )
    args = parser.parse_args()
    device = DeviceProbe().probe()
    detectors = {"mtcnn": open_detector(default_bundle(), device, backend="ort-cpu")[0]}
    blazeface = default_bundle("face-blazeface")
    for graph in BLAZEFACE:
        detectors[graph] = open_blazeface(blazeface, device, graph, backend="ort-cpu")[0]
    for graph in args.one_thread:
        detectors[f"{graph}/1t"] = open_blazeface(
            blazeface, device, graph, backend="ort-cpu", threads=1
        )[0]
    header = (
        f"{'frame':<10}{'detector':<17}{'median ms':>10}{'p90 ms':>9}{'mtcnn/x':>9}{'faces':>7}"
    )
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
            ratio = medians["mtcnn"] / medians[name]
            print(
                f"{label:<10}{name:<17}{medians[name]:>10.2f}"
                f"{np.percentile(values, 90):>9.2f}{ratio:>9.2f}{faces[name]:>7}"
            )
        ratio = medians["mtcnn"] / medians["blazeface_full"]
        verdicts.append(
            f"{label}: full range {ratio:.1f}x faster than MTCNN "
            f"({'meets' if ratio >= TARGET_RATIO else 'misses'} the {TARGET_RATIO:g}x target)"
        )
    for line in verdicts:
        print(line)
    for detector in detectors.values():
        detector.close()


if __name__ == "__main__":
    main()
