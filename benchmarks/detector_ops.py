"""Where MTCNN's ONNX Runtime time goes, per net and per kind of node, on real feeds.

Run ``python benchmarks/detector_ops.py [--size 512] [--repeats 20] [--threads 1] [--bundle
DIR]``. One
detection of the example photo (resized to SIZE x SIZE) records what every net is fed
(each pyramid level, the R-Net and O-Net crop batches); those feeds are then replayed
through ORT sessions with its profiler on (one intra-op thread by default, as the detector
opens them to fan calls out over the cores), and the kernel time is summed per net and per
kind of node:

* ``conv``: the network's own convolutions and dense layers (Conv, Gemm, MatMul);
* ``prelu``: the PReLU pieces (the exported BatchNormalization scalings, Relu, Add);
* ``layout``: ORT's conversions to and from its blocked NCHWc layout;
* ``other``: pooling, the face sigmoid, reshapes.

``conv`` is the arithmetic any implementation of the reference cascade must do, so with
the pyramid and crop times of ``benchmarks/face.py`` it bounds what an exact CPU detector
can reach on this machine. Figures only, no assertions; medians per replay of all feeds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime

from calibration.reader import RecordingSession
from edge_sdk.bundle import ModelBundle
from edge_sdk.defaults import default_bundle
from edge_sdk.device import DeviceProbe
from edge_sdk.pipelines.face import DETECTOR_GRAPHS, open_detector
from edge_sdk.preprocess.image import load_image
from runtimes.base import Session
from runtimes.onnxruntime_backend import session_options

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
KINDS = ("conv", "prelu", "layout", "other")


def node_kind(op: str, name: str) -> str:
    """Which of :data:`KINDS` an ORT profiler node belongs to (by op type and node name)."""
    if op in ("ReorderInput", "ReorderOutput"):
        return "layout"
    if "prelu" in name or op == "BatchNormalization":
        return "prelu"
    if op in ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul"):
        return "conv"
    return "other"


def record_feeds(bundle: ModelBundle, size: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """The feeds each net gets while detecting faces in the example at size x size."""
    recorders: dict[str, RecordingSession] = {}

    def record(name: str, session: Session) -> Session:
        recorders[name] = RecordingSession(session)
        return recorders[name]

    detector, _ = open_detector(
        bundle, DeviceProbe().probe(), backend="ort-cpu", precision="fp32", wrap=record
    )
    image = cv2.resize(load_image(EXAMPLE), (size, size), interpolation=cv2.INTER_AREA)
    detector.detect(image)
    return {name: list(rec.feeds) for name, rec in recorders.items()}


def profile(
    model: bytes, feeds: list[dict[str, np.ndarray]], repeats: int, threads: int
) -> dict[str, float]:
    """Milliseconds per replay of ``feeds``, per node kind, from ORT's profiler."""
    options = session_options(onnxruntime)
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="edge-sdk-prof-") as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        for _ in range(repeats + 1):  # the first replay (allocations) is dropped below
            for feed in feeds:
                session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen = 0
    warm: list[dict[str, Any]] = []
    for event in events:  # node events precede the model_run event of their call
        if runs_seen >= len(feeds):
            warm.append(event)
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs_seen += 1
    events = warm
    totals: dict[str, float] = defaultdict(float)
    runs = 0
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs += 1
            totals["run"] += event["dur"]
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kind = node_kind(event["args"]["op_name"], event["name"].lower())
            totals[kind] += event["dur"]
    replays = max(runs / max(len(feeds), 1), 1)
    return {k: v / replays / 1e3 for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: ORT's)")
    parser.add_argument("--bundle", type=Path, default=None)
    args = parser.parse_args()
    bundle = ModelBundle.load(args.bundle) if args.bundle else default_bundle()
    feeds = record_feeds(bundle, args.size)
    print(
        f"{args.size}x{args.size} example, {args.repeats} replays, {args.threads or 'default'} "
        "intra-op thread(s); ms per detection"
    )
    print(f"{'net':6} {'calls':>5} " + " ".join(f"{k:>7}" for k in (*KINDS, "kernels", "run")))
    sums: dict[str, float] = defaultdict(float)
    for graph in DETECTOR_GRAPHS:
        if graph not in feeds:
            continue
        artifact = next(a for a in bundle.manifest.artifacts_for(graph) if a.format == "onnx")
        times = profile(bundle.read_artifact(artifact), feeds[graph], args.repeats, args.threads)
        kernels = sum(times.get(k, 0.0) for k in KINDS)
        row = [times.get(k, 0.0) for k in KINDS] + [kernels, times.get("run", 0.0)]
        for key, value in zip((*KINDS, "kernels", "run"), row, strict=True):
            sums[key] += value
        print(f"{graph:6} {len(feeds[graph]):>5} " + " ".join(f"{v:7.2f}" for v in row))
    print(f"{'all':6} {'':>5} " + " ".join(f"{sums[k]:7.2f}" for k in (*KINDS, "kernels", "run")))
    print(f"conv share of kernel time: {sums['conv'] / max(sums['kernels'], 1e-9):.0%}")


if __name__ == "__main__":
    main()
