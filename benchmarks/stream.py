"""Stream throughput and drops: tracking (detect every N frames) against detecting every frame.

Run ``python benchmarks/stream.py [--detect-every N] [--frames N] [--repeats N]
[--detectors mtcnn,auto] [--bundle DIR]``; the first mode (MTCNN on every frame, today's path)
is the x1.00 base.
The clip is 640x480: the example portrait sliding back and forth (3 px/frame), written as
an MJPG AVI to a temporary folder. Figures only, no assertions.

* ``file``: frames/s over the whole file (decode included; a file drops nothing). Runs of
  the two modes alternate, and the median over ``--repeats`` is reported.
* ``live 30 fps``: the same frames replayed as a 30 fps camera
  (:class:`edge_sdk.streams.PacedCapture`): frames processed, frames dropped (replaced before
  the runner took them) and the median capture-to-result latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edge_sdk  # noqa: E402
from benchmarks.face import machine  # noqa: E402
from edge_sdk.errors import InputError  # noqa: E402
from edge_sdk.streams import (  # noqa: E402
    PacedCapture,
    StreamConfig,
    StreamRunner,
    TimedFrameStream,
)

EXAMPLE = ROOT / "examples" / "astronaut.png"
LIVE_FPS = 30.0


def frames(count: int) -> list[np.ndarray]:
    """640x480 BGR frames of the portrait sliding 3 px per frame, back and forth."""
    image = cv2.imread(str(EXAMPLE))
    out = []
    for k in range(count):
        phase = k % 80
        x0 = 3 * (phase if phase < 40 else 80 - phase)
        canvas = np.full((480, 640, 3), 90, np.uint8)
        part = image[:480, : 640 - x0]
        canvas[: part.shape[0], x0 : x0 + part.shape[1]] = part
        out.append(canvas)
    return out


def write_clip(path: Path, pictures: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), LIVE_FPS, (640, 480))
    for picture in pictures:
        writer.write(picture)
    writer.release()
    return path


def run_file(recognizer: Any, clip: Path, every: int) -> tuple[float, int]:
    """(frames/s, detector calls) over the whole file."""
    runner = StreamRunner(recognizer, StreamConfig(detect_every=every))
    start = time.perf_counter()
    with TimedFrameStream(clip) as stream:
        count = sum(1 for _ in runner.run(stream))
    return count / (time.perf_counter() - start), runner.detector_calls


def run_live(recognizer: Any, pictures: list[np.ndarray], every: int) -> dict[str, float]:
    """Processed frames, drops and median latency of a replayed 30 fps camera."""
    runner = StreamRunner(recognizer, StreamConfig(detect_every=every))
    processed, latencies, dropped = 0, [], 0
    source = TimedFrameStream(0, read_timeout=0.5, reconnects=0,
                              opener=lambda: PacedCapture(pictures, LIVE_FPS))  # fmt: skip
    try:
        with source:
            for result in runner.run(source):
                processed += 1
                dropped = result.dropped
                assert result.captured_at is not None
                latencies.append(time.time() - result.captured_at)
    except InputError:
        pass  # the replayed camera ran out of frames
    return {
        "processed": processed,
        "dropped": dropped,
        "latency_ms": 1e3 * statistics.median(latencies) if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detectors", default="mtcnn,auto",
                        help="comma-separated load(detector=...) names to compare")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle dir (default: built-in)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    recognizers = {
        name: edge_sdk.load(args.bundle, detector=name) if args.bundle
        else edge_sdk.load(detector=name)
        for name in args.detectors.split(",")
    }  # fmt: skip
    pictures = frames(args.frames)
    modes = {
        f"{det}, {'every frame' if every == 1 else f'every {every} + track'}": (det, every)
        for det in recognizers
        for every in (1, args.detect_every)
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.avi", pictures)
        for recognizer in recognizers.values():
            run_file(recognizer, clip, args.detect_every)  # warm-up
        fps: dict[str, list[float]] = {name: [] for name in modes}
        calls: dict[str, int] = {}
        for _ in range(args.repeats):  # modes interleaved within each repeat
            for name, (det, every) in modes.items():
                rate, calls[name] = run_file(recognizers[det], clip, every)
                fps[name].append(rate)
        base = statistics.median(fps[next(iter(modes))])
        print(f"\nfile: {args.frames} frames 640x480, median of {args.repeats} runs")
        for name in modes:
            runs = ", ".join(f"{v:.1f}" for v in fps[name])
            rate = statistics.median(fps[name])
            print(f"  {name:28s} {rate:6.1f} frames/s x{rate / base:5.2f} "
                  f"(runs {runs}; detector calls {calls[name]})")  # fmt: skip
        print(f"\nlive: the same frames as a {LIVE_FPS:.0f} fps camera")
        for name, (det, every) in modes.items():
            live = run_live(recognizers[det], pictures, every)
            print(f"  {name:28s} processed {live['processed']:4.0f}, "
                  f"dropped {live['dropped']:4.0f}, "
                  f"median latency {live['latency_ms']:.1f} ms")  # fmt: skip
    for recognizer in recognizers.values():
        recognizer.close()


if __name__ == "__main__":
    main()
