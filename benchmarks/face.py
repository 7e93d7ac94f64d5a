"""Face pipeline latency: ONNX Runtime (the deployment default) against the PyTorch reference.

Both pipelines open the same bundle and see the same encoded images, so the ratio isolates
the runtime: decode and the detector's numpy/OpenCV work are shared code. Figures only; run
``python benchmarks/face.py [--repeats N] [--bundle DIR]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceProbe
from edge_sdk.pipelines.face import FacePipeline

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
SIZES = ((640, 480), (1280, 720))
STAGES = ("decode", "detect", "classify", "e2e")


def machine() -> str:
    """CPU model, cores and runtime versions: latency figures mean nothing without them."""
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
        f"{cpu}, {os.cpu_count()} cores (EDGE_SDK_THREADS={threads}); "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), OpenCV {cv2.__version__}, numpy {np.__version__}"
    )


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


def measure(pipeline: FacePipeline, data: bytes, warmup: int, repeats: int) -> dict:
    """Per-stage samples (ms) from the pipeline's own timings, plus wall clock end to end."""
    for _ in range(warmup):
        pipeline.predict(data)
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    faces = 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = pipeline.predict(data)
        samples["e2e"].append((time.perf_counter() - start) * 1e3)
        for stage in STAGES[:-1]:
            samples[stage].append(result.timings_ms[stage])
        faces = len(result.faces)
    return {"samples": samples, "faces": faces}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per image")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per image first")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle dir (default: built-in)")
    args = parser.parse_args()

    if args.bundle is None:
        from edge_sdk.defaults import default_bundle

        bundle = default_bundle()
    else:
        bundle = ModelBundle.load(args.bundle)
    device = DeviceProbe().probe()
    pipelines = {
        "ort": FacePipeline(bundle, device, backend=None),
        "torch": FacePipeline(bundle, device, backend="torch"),
    }
    console = Console()
    console.print(f"[bold]machine[/bold]: {machine()}")
    for name, pipe in pipelines.items():
        console.print(f"[bold]{name}[/bold]: {pipe.backends}")

    table = Table(title=f"astronaut.png, ms per image: median / p90 of {args.repeats} runs")
    table.add_column("image")
    table.add_column("stage")
    for name in pipelines:
        table.add_column(f"{name}\nmedian", justify="right")
        table.add_column(f"{name}\np90", justify="right")
    table.add_column("torch\n/ort", justify="right")
    faces = []
    for label, data in images().items():
        runs = {n: measure(p, data, args.warmup, args.repeats) for n, p in pipelines.items()}
        faces.append(f"{label}: " + ", ".join(f"{n} {r['faces']}" for n, r in runs.items()))
        for i, stage in enumerate(STAGES):
            cells, medians = [], {}
            for name, run in runs.items():
                values = np.asarray(run["samples"][stage])
                medians[name] = float(np.median(values))
                cells += [f"{medians[name]:.2f}", f"{np.percentile(values, 90):.2f}"]
            ratio = medians["torch"] / medians["ort"] if medians["ort"] > 0 else float("nan")
            last = i == len(STAGES) - 1
            table.add_row(label if i == 0 else "", stage, *cells, f"{ratio:.2f}", end_section=last)
    table.caption = "faces found: " + "; ".join(faces)
    console.print(table)


if __name__ == "__main__":
    main()
