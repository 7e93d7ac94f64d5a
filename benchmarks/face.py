"""Face pipeline latency: ONNX Runtime (the deployment default) against PyTorch references.

Run ``python benchmarks/face.py [--repeats N] [--warmup N] [--bundle DIR]``. Every pipeline
opens the same bundle and decodes the same encoded images; figures only, no assertions.

Columns (all share the decode, pre- and post-processing code; only what is named differs):

* ``ort``: what ``edge_sdk.load()`` runs: ONNX Runtime CPU sessions, the pyramid levels
  resized on several cores (``DetectorConfig.parallel``).
* ``torch``: the same pipeline with the nets run by our PyTorch modules in eager mode.
  ``torch/ort`` therefore isolates the runtime; pipeline speed-ups cancel out of it.
* ``ort plain``: the same ONNX Runtime sessions with the plain cascade: pyramid resized
  one level after another and no net calls fanned out. The detector's sessions are opened
  single-threaded (each call runs on its caller's thread, see
  ``edge_sdk.pipelines.detector``), so this column shows what the fan-out adds.
* ``ref``: the PyTorch eager reference: our PyTorch modules in eager mode, plain cascade
  (one P-Net call per level, as ever, and the pyramid resized level after level).
  This is the straightforward MTCNN + classifier pipeline in PyTorch that a deployment
  replaces; ``ref/ort`` is the speed-up a user gets from this SDK.

Runs are interleaved (one run of each pipeline in turn), so load from other processes on
a shared machine spreads over all columns rather than landing on one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceProbe
from edge_sdk.pipelines.detector import Detections, MTCNNDetector
from edge_sdk.pipelines.face import FacePipeline

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
SIZES = ((640, 480), (1280, 720))
DETECT_STAGES = ("pyramid", "pnet", "rnet", "onet")
STAGES = ("decode", "detect", *DETECT_STAGES, "classify", "e2e")
TARGET_DETECT_MS = 15.0  # issue 2 item 9, 512x512 on the 2-core machine
TARGET_E2E_RATIO = 3.0


def machine() -> str:
    """CPU model, cores, load and runtime versions: latency figures mean nothing without them."""
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    threads = os.environ.get("EDGE_SDK_THREADS", "default")
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load()} (EDGE_SDK_THREADS={threads}); "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads), numpy {np.__version__}"
    )


def load() -> str:
    """1/5/15-minute load averages: on a shared machine, other processes' work shows here."""
    if not hasattr(os, "getloadavg"):
        return "?"
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def images() -> dict[str, bytes]:
    """The example at its native size plus resized copies, all as encoded PNG bytes.

    Encoded bytes make decode part of the measurement, as it is for a caller passing a file.
    """
    data = EXAMPLE.read_bytes()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    out = {f"{pixels.shape[1]}x{pixels.shape[0]}": data}
    for width, height in SIZES:
        resized = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".png", resized)
        if not ok:
            raise RuntimeError(f"cannot encode the {width}x{height} copy")
        out[f"{width}x{height}"] = encoded.tobytes()
    return out


class TimedDetector:
    """Passes a timings dict to the detector so each run's sub-stages can be read back."""

    def __init__(self, detector: MTCNNDetector) -> None:
        self.detector = detector
        self.last: dict[str, float] = {}

    def detect(self, pixels: np.ndarray) -> Detections:
        self.last = {}
        return self.detector.detect(pixels, timings=self.last)


def open_pipelines(bundle: ModelBundle, min_face: int | None = None) -> dict[str, FacePipeline]:
    """The four pipelines of the table (see the module docstring); ``min_face`` applies to
    all four alike, so the ratios stay like for like."""
    device = DeviceProbe().probe()
    specs = {"ort": (None, True), "torch": ("torch", True), "ort plain": (None, False)}
    specs["ref"] = ("torch", False)
    pipelines = {}
    for name, (backend, fast) in specs.items():
        pipe = FacePipeline(bundle, device, backend=backend)
        if min_face is not None:
            pipe.detector.config = dataclasses.replace(pipe.detector.config, min_face=min_face)
        if not fast:
            config = dataclasses.replace(pipe.detector.config, packed=False, parallel=False)
            pipe.detector.config = config
        pipe.detector = TimedDetector(pipe.detector)  # type: ignore[assignment]
        pipelines[name] = pipe
    return pipelines


def measure(
    pipelines: dict[str, FacePipeline], data: bytes, warmup: int, repeats: int
) -> dict[str, Any]:
    """Per-stage samples (ms) for every pipeline, runs interleaved; plus the faces found."""
    for pipe in pipelines.values():
        for _ in range(warmup):
            pipe.predict(data)
    samples = {n: {s: [] for s in STAGES} for n in pipelines}
    faces = {}
    names = list(pipelines)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            pipe = pipelines[name]
            start = time.perf_counter()
            result = pipe.predict(data)
            samples[name]["e2e"].append((time.perf_counter() - start) * 1e3)
            for stage in ("decode", "detect", "classify"):
                samples[name][stage].append(result.timings_ms.get(stage, 0.0))
            for stage in DETECT_STAGES:
                samples[name][stage].append(pipe.detector.last.get(stage, 0.0))  # type: ignore[attr-defined]
            faces[name] = [face.box for face in result.faces]
    return {"samples": samples, "faces": faces}


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(faces: dict[str, list[tuple[float, ...]]]) -> str:
    """Faces per pipeline and the worst box IoU against ``ort`` (same image, same faces?)."""
    base = faces["ort"]
    parts = []
    for name, boxes in faces.items():
        text = f"{name} {len(boxes)}"
        if name != "ort" and boxes and len(boxes) == len(base):
            worst = min(max(iou(a, b) for b in base) for a in boxes)
            text += f" (IoU {worst:.3f})"
        parts.append(text)
    return ", ".join(parts)


E2E_DETECTORS = ("mtcnn", "blazeface-short", "blazeface-full", "blazeface-back")
E2E_BACKENDS = ("ort-cpu", "openvino", None)  # None: selection by measurement, the default
TARGET_E2E_DETECTOR_RATIO = 4.0  # issue 13: default detector vs today's MTCNN path


def frame_arrays() -> dict[str, np.ndarray]:
    """The astronaut pasted into a grey 640x480 and 1280x720 frame (one face each), RGB."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from detectors import frames  # the sibling benchmark's frames: both time the same pictures

    return frames()


def detector_table(console: Console, repeats: int, warmup: int) -> None:
    """End to end (``Recognizer.predict`` on a frame array) for every detector on every CPU
    runtime, runs interleaved; ratios against MTCNN on ONNX Runtime, today's path."""
    import edge_sdk

    recognizers = {}
    for detector in E2E_DETECTORS:
        for backend in E2E_BACKENDS:
            recognizers[(detector, backend or "selected")] = edge_sdk.load(
                detector=detector, backend=backend
            )
    base = ("mtcnn", "ort-cpu")
    table = Table(title=f"end to end per frame, ms: median / p90 of {repeats} interleaved runs")
    for column in ("frame", "detector", "runtime", "e2e", "detect", "classify", "base/x", "faces"):
        table.add_column(
            column, justify="left" if column in ("frame", "detector", "runtime") else "right"
        )
    verdicts = []
    for label, frame in frame_arrays().items():
        samples = {key: {"e2e": [], "detect": [], "classify": []} for key in recognizers}
        faces: dict[tuple[str, str], str] = {}
        for i in range(warmup + repeats):
            for key, recognizer in recognizers.items():
                start = time.perf_counter()
                result = recognizer.predict(frame)
                elapsed = (time.perf_counter() - start) * 1e3
                if i < warmup:
                    continue
                samples[key]["e2e"].append(elapsed)
                for stage in ("detect", "classify"):
                    samples[key][stage].append(result.timings_ms.get(stage, 0.0))
                faces[key] = ",".join(f.label for f in result.faces) or "-"
        base_ms = float(np.median(samples[base]["e2e"]))
        for j, (key, stages) in enumerate(samples.items()):
            median = float(np.median(stages["e2e"]))
            runtime = key[1]
            if runtime == "selected":
                used = sorted({b.split("/")[0] for b in recognizers[key].backends.values()})
                runtime = "selected: " + "+".join(used)
            table.add_row(
                label if j == 0 else "",
                key[0],
                runtime,
                f"{median:.2f} / {np.percentile(stages['e2e'], 90):.2f}",
                f"{np.median(stages['detect']):.2f}",
                f"{np.median(stages['classify']):.2f}",
                f"{base_ms / median:.2f}",
                faces[key],
                end_section=j == len(samples) - 1,
            )
        default = float(np.median(samples[("blazeface-full", "selected")]["e2e"]))
        ratio = base_ms / default
        verdicts.append(
            f"{label}: default detector (auto = blazeface-full, selected runtimes) {ratio:.2f}x "
            f"faster end to end than MTCNN on ORT -> "
            f"{'met' if ratio >= TARGET_E2E_DETECTOR_RATIO else 'NOT met'} "
            f"(target {TARGET_E2E_DETECTOR_RATIO:g}x)"
        )
    console.print(table)
    for line in verdicts:
        console.print(line)
    for recognizer in recognizers.values():
        recognizer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per image")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per image first")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle dir (default: built-in)")
    parser.add_argument(
        "--images", nargs="+", default=None, help="subset of image labels, e.g. 512x512"
    )
    parser.add_argument(
        "--min-face",
        type=int,
        default=None,
        help="detector's smallest face (default: the bundle's, 20); the targets are for 20",
    )
    parser.add_argument(
        "--tables",
        choices=("both", "pipelines", "detectors"),
        default="both",
        help="pipelines: MTCNN path, ORT vs PyTorch; detectors: every detector x runtime",
    )
    args = parser.parse_args()
    if args.tables != "pipelines":
        console = Console(width=max(120, Console().width))
        console.print(f"[bold]machine[/bold]: {machine()}")
        detector_table(console, args.repeats, args.warmup)
        if args.tables == "detectors":
            return
    inputs = images()
    if args.images:
        unknown = sorted(set(args.images) - set(inputs))
        if unknown:
            parser.error(f"unknown image labels {unknown}; known: {sorted(inputs)}")
        inputs = {label: inputs[label] for label in args.images}

    if args.bundle is None:
        from edge_sdk.defaults import default_bundle

        bundle = default_bundle()
    else:
        bundle = ModelBundle.load(args.bundle)
    pipelines = open_pipelines(bundle, args.min_face)
    console = Console(width=max(120, Console().width))
    console.print(f"[bold]machine[/bold]: {machine()}")
    for name, pipe in pipelines.items():
        console.print(f"[bold]{name}[/bold]: {pipe.backends}, {pipe.detector.detector.config}")  # type: ignore[attr-defined]

    table = Table(title=f"ms per image: median / p90 of {args.repeats} interleaved runs")
    table.add_column("image")
    table.add_column("stage")
    for name in pipelines:
        table.add_column(name, justify="right")
    table.add_column("torch\n/ort", justify="right")
    table.add_column("ref\n/ort", justify="right")
    notes, summary = [], {}
    for label, data in inputs.items():
        run = measure(pipelines, data, args.warmup, args.repeats)
        notes.append(f"{label}: {agreement(run['faces'])}")
        for i, stage in enumerate(STAGES):
            cells, medians = [], {}
            for name in pipelines:
                values = np.asarray(run["samples"][name][stage])
                medians[name] = float(np.median(values))
                cells.append(f"{medians[name]:.2f} / {np.percentile(values, 90):.2f}")
            ratios = [
                f"{medians[other] / medians['ort']:.2f}" if medians["ort"] > 0 else "-"
                for other in ("torch", "ref")
            ]
            name = stage if stage not in DETECT_STAGES else f"  {stage}"
            last = i == len(STAGES) - 1
            table.add_row(label if i == 0 else "", name, *cells, *ratios, end_section=last)
            summary[(label, stage)] = medians
    table.caption = "faces found (worst IoU against ort): " + "; ".join(notes)
    console.print(table)
    console.print(
        "stages: decode = bytes to RGB; detect = MTCNN (pyramid = resizing the levels, "
        "pnet/rnet/onet = crops + net + NMS of each stage); classify = crops + classifier; "
        "e2e = wall time of predict()"
    )
    console.print(f"[bold]load average after the runs[/bold]: {load()}")
    native = next(iter(images()))
    if (native, "detect") not in summary:
        return
    detect = summary[(native, "detect")]["ort"]
    e2e = summary[(native, "e2e")]
    ratio = e2e["ref"] / e2e["ort"]
    verdict = {True: "met", False: "NOT met"}
    console.print(
        f"min_face {args.min_face or 20} (issue 2's targets, restated by issue 13 for 40): "
        f"target detect <= {TARGET_DETECT_MS:g} ms at {native}: ort {detect:.2f} ms -> "
        f"{verdict[detect <= TARGET_DETECT_MS]}; target e2e >= {TARGET_E2E_RATIO:g}x the "
        f"PyTorch eager reference: {ratio:.2f}x -> {verdict[ratio >= TARGET_E2E_RATIO]}"
    )


if __name__ == "__main__":
    main()
