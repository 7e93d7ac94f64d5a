"""CPU runtimes side by side on the face graphs' real feeds: ORT FP32 / INT8, OpenVINO FP32.

Run ``python benchmarks/cpu_runtimes.py [--rounds 40] [--size 512] [--calibration 64]
[--json OUT]``. One prediction on the example photo (resized to SIZE x SIZE) records what
every graph is fed: P-Net each pyramid level, R-Net and O-Net their crop batches, the
classifier the face. Each graph's feeds, replayed in order, are one "frame" of that graph;
every runner replays it once per round, runners interleaved in a rotating order so load
from other processes falls on all of them alike. Runners:

* ``ort-fp32 tN``: the bundle's FP32 graph in ONNX Runtime with N intra-op threads (the
  SessionOptions deployment uses, :func:`runtimes.onnxruntime_backend.cpu_session`);
* ``ort-int8 tN``: the bundle's CPU INT8 form where it has one, else the U8S8 form
  quantised here (:func:`calibration.quantize.quantize_graph`, ``form="cpu"``, minmax
  ranges over the recorded samples: for timing only, its accuracy is not gated here);
* ``ov-fp32 tN``: OpenVINO's CPU plugin through the ``openvino`` backend, compiled per
  input shape (compiled during the warm-up, so rounds time inference only).

Printed: median ms per frame of each runner and graph, each as a ratio to ``ort-fp32 t1``
(> 1: faster than it), and the thread count that was fastest per runtime. Figures only,
no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.reader import RecordingSession, split_batches  # noqa: E402
from edge_sdk.bundle import ModelBundle  # noqa: E402
from edge_sdk.defaults import default_bundle  # noqa: E402
from edge_sdk.device import DeviceInfo, probe_device  # noqa: E402
from edge_sdk.manifest import CPU_INT8_TARGET  # noqa: E402
from edge_sdk.preprocess.image import load_image  # noqa: E402
from runtimes.base import Session  # noqa: E402
from runtimes.onnxruntime_backend import cpu_session  # noqa: E402
from runtimes.selection import open_graph  # noqa: E402

EXAMPLE = ROOT / "examples" / "astronaut.png"
GRAPHS = ("pnet", "rnet", "onet", "classifier")
THREADS = (1, 2)
Feed = dict[str, np.ndarray]
Frame = Callable[[], None]


def record_feeds(bundle: ModelBundle, device: DeviceInfo, size: int) -> dict[str, list[Feed]]:
    """What every graph is fed during one prediction of the example at size x size."""
    from edge_sdk.api import Recognizer

    recorders: dict[str, RecordingSession] = {}

    def record(name: str, session: Session) -> Session:
        recorders[name] = RecordingSession(session)
        return recorders[name]

    image = cv2.resize(load_image(EXAMPLE), (size, size), interpolation=cv2.INTER_AREA)
    with Recognizer(
        bundle, device, backend="ort-cpu", precision="fp32", wrap=record, workers=1
    ) as recognizer:
        recognizer.predict(face=image)
    return {name: list(rec.feeds) for name, rec in recorders.items()}


def int8_model(bundle: ModelBundle, graph: str, feeds: list[Feed], count: int) -> tuple[bytes, str]:
    """The bundle's CPU INT8 graph, else a U8S8 form quantised from the recorded samples."""
    from calibration.quantize import quantize_graph

    for artifact in bundle.manifest.artifacts_for(graph):
        if artifact.precision == "int8" and artifact.target == CPU_INT8_TARGET:
            return bundle.read_artifact(artifact), f"bundle's {artifact.path}"
    fp32 = next(
        a
        for a in bundle.manifest.artifacts_for(graph)
        if a.format == "onnx" and a.precision == "fp32"
    )
    samples = split_batches(feeds)[:count]
    model, _ = quantize_graph(bundle.read_artifact(fp32), samples, "minmax", (), form="cpu")
    return model, f"U8S8 quantised here on {len(samples)} samples"


def runners(
    bundle: ModelBundle, device: DeviceInfo, graph: str, feeds: list[Feed], count: int
) -> tuple[dict[str, Frame], list[Session], str]:
    """Each runner's replay of ``feeds``, the sessions to close, and the INT8 source."""
    fp32 = next(
        a
        for a in bundle.manifest.artifacts_for(graph)
        if a.format == "onnx" and a.precision == "fp32"
    )
    fp32_bytes = bundle.read_artifact(fp32)
    int8_bytes, int8_source = int8_model(bundle, graph, feeds, count)
    frames: dict[str, Frame] = {}
    closing: list[Session] = []

    def ort_frame(session: object) -> Frame:
        return lambda: [session.run(None, f) for f in feeds]  # type: ignore[attr-defined]

    def session_frame(session: Session) -> Frame:
        return lambda: [session.run(f) for f in feeds]

    for threads in THREADS:
        frames[f"ort-fp32 t{threads}"] = ort_frame(cpu_session(fp32_bytes, threads=threads))
    for threads in THREADS:
        frames[f"ort-int8 t{threads}"] = ort_frame(cpu_session(int8_bytes, threads=threads))
    for threads in THREADS:
        session = open_graph(
            bundle, graph, device, backend="openvino", precision="fp32", threads=threads
        )
        closing.append(session)
        frames[f"ov-fp32 t{threads}"] = session_frame(session)
    return frames, closing, int8_source


def measure(frames: dict[str, Frame], rounds: int) -> dict[str, float]:
    """Median ms per frame of each runner, calls interleaved in a rotating order."""
    names = list(frames)
    for name in names:  # warm-up: allocations, OpenVINO's per-shape compiles
        frames[name]()
        frames[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            frames[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def describe_machine() -> str:
    """CPU, cores, load and library versions: latencies mean nothing without them."""
    import onnxruntime
    import openvino

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load}; onnxruntime "
        f"{onnxruntime.__version__}, openvino {openvino.__version__.split('-')[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--size", type=int, default=512, help="example resized to SIZE x SIZE")
    parser.add_argument("--calibration", type=int, default=64, help="samples for U8S8 ranges")
    parser.add_argument("--bundle", type=Path, default=None, help="default: built-in face-fer7")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    console = Console(width=120)
    bundle = ModelBundle.load(args.bundle) if args.bundle else default_bundle()
    device = probe_device()
    recorded = record_feeds(bundle, device, args.size)
    console.print(describe_machine(), highlight=False)
    results: dict[str, dict[str, object]] = {}
    for graph in GRAPHS:
        feeds = recorded.get(graph, [])
        if not feeds:
            console.print(f"{graph}: not fed by this prediction, skipped")
            continue
        frames, closing, int8_source = runners(bundle, device, graph, feeds, args.calibration)
        try:
            medians = measure(frames, args.rounds)
        finally:
            for session in closing:
                session.close()
        shapes = sorted({tuple(f["image"].shape) for f in feeds})
        results[graph] = {
            "calls_per_frame": len(feeds),
            "shapes": [list(s) for s in shapes],
            "int8": int8_source,
            "median_ms": medians,
        }
    base = "ort-fp32 t1"
    names = list(next(iter(results.values()))["median_ms"]) if results else []
    table = Table(title=f"median ms per frame ({args.rounds} interleaved rounds; x: vs {base})")
    table.add_column("graph (calls/frame)")
    for name in names:
        table.add_column(name, justify="right")
    for graph, found in results.items():
        medians = found["median_ms"]  # type: ignore[assignment]
        row = [f"{graph} ({found['calls_per_frame']})"]
        for name in names:
            ratio = medians[base] / medians[name]
            row.append(f"{medians[name]:.3f} {ratio:.2f}x")
        table.add_row(*row)
    console.print(table)
    for graph, found in results.items():
        medians = found["median_ms"]  # type: ignore[assignment]
        best = {
            runtime: min(THREADS, key=lambda t: medians[f"{runtime} t{t}"])
            for runtime in ("ort-fp32", "ort-int8", "ov-fp32")
        }
        fastest = min(medians, key=medians.get)
        console.print(
            f"{graph}: shapes {found['shapes'][:3]}{'...' if len(found['shapes']) > 3 else ''}; "
            f"INT8 = {found['int8']}; fastest threads {best}; fastest runner {fastest}",
            highlight=False,
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "graphs": results}))


if __name__ == "__main__":
    main()
