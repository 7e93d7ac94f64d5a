"""End-to-end latency per modality: ``Recognizer.predict`` on ONNX Runtime and on PyTorch.

Run ``python benchmarks/pipelines.py [--size tiny|edge] [--repeats N] [--warmup N]
[--out DIR]``. One Recognizer holds face-fer7 (the built-in bundle: real weights) plus every
other family exported at ``--size`` (tiny: briefly trained on generated data, as in the tests;
edge: the deployment sizes, untrained weights; latency does not depend on the weights). The
same Recognizer is opened twice: every graph on ``ort-cpu`` (what ``load()`` picks here) and
every graph on ``torch`` (the PyTorch reference pipeline). Each row is one ``predict`` call,
end to end (decode, detection, pre-processing, graphs, workspace, post-processing, the
bounded executor); runs are interleaved so background load spreads over both columns.
Figures only, no assertions. Bundles are cached in ``--out`` (default: a temp folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.face import machine  # noqa: E402
from edge_sdk.bundle import ModelBundle  # noqa: E402
from edge_sdk.errors import BundleError  # noqa: E402

FAMILIES = ("face-caf", "face-expclip", "scene-cocoer", "av-fbp", "dialog-m2fnet")
EXAMPLE = ROOT / "examples" / "astronaut.png"


def bundle_for(family: str, size: str, out: Path) -> ModelBundle:
    """The family's bundle at ``size`` from ``out``, exported there first if missing."""
    target = out / f"{family}-{size}"
    try:
        return ModelBundle.load(target)
    except BundleError:
        pass
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import synthetic_batches, train
    from export.family_export import write_bundle

    spec = get_family(family)
    config = spec.recipe.configs[size]
    if family == "av-fbp" and size == "tiny":
        config = dataclasses.replace(config, face_dim=32)  # = face-caf tiny's feature_dim
    if size == "tiny":
        batches = synthetic_batches(spec.recipe, config, seed=3, batch_size=4, count=2)
        model, _ = train(spec, config, batches, epochs=1, seed=0)
    else:
        import torch

        torch.manual_seed(0)
        model = spec.recipe.make_model(config).eval()
    build = spec.recipe.export_build(model, config)
    if size != "tiny":  # timings do not depend on the weights' values; the bundle says so
        build = dataclasses.replace(build, weights_state="untrained")
    return write_bundle(family, build, target)


def voiced(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A harmonic voice-like waveform with a gliding pitch."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140.0 + 50.0 * np.sin(2 * np.pi * 0.8 * t)) / rate
    wave = sum(np.sin(h * phase) / h for h in range(1, 10)) * 0.3
    return (wave + 0.02 * rng.normal(size=t.shape)).astype(np.float32)


def frames(count: int) -> np.ndarray:
    """(count, 240, 240, 3) RGB frames: the astronaut's face window drifting."""
    image = cv2.cvtColor(cv2.imread(str(EXAMPLE)), cv2.COLOR_BGR2RGB)
    return np.stack([image[4 * i : 4 * i + 240, 100 + 4 * i : 340 + 4 * i] for i in range(count)])


def workloads() -> dict[str, dict[str, Any]]:
    """Row name -> predict() keyword arguments."""
    clip = frames(8)
    sound = (voiced(2.0, 44100), 44100)
    dialog = [
        {"text": "i am so happy today", "speaker": "a"},
        {"audio": (voiced(1.5, 16000, 1), 16000), "speaker": "b"},
        {"text": "what happened", "audio": (voiced(1.0, 16000, 2), 16000),
         "frames": list(clip[:4]), "speaker": "a"},
        {"text": "nothing at all", "speaker": "b"},
    ]
    return {
        "face (512x512, 3 face families)": {"face": EXAMPLE.read_bytes()},
        "scene (detected head)": {"scene": EXAMPLE.read_bytes()},
        "scene (2 caller heads)": {
            "scene": {"image": EXAMPLE.read_bytes(),
                      "head_boxes": [[170, 40, 280, 180], [20, 30, 90, 110]]}
        },
        "audio (2 s, 44.1 kHz)": {"audio": sound},
        "audio + video (2 s, 8 frames)": {"audio": sound, "video": clip},
        "video (8 frames, per-frame faces)": {"video": clip},
        "dialog (4 utterances)": {"dialog": dialog},
    }


def measure(
    calls: dict[str, Callable[[], Any]], warmup: int, repeats: int
) -> dict[str, np.ndarray]:
    """Interleaved wall-clock samples (ms) of each call."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: np.asarray(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "edge"), default="tiny")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per row first")
    parser.add_argument("--out", type=Path, default=None, help="bundle cache folder")
    args = parser.parse_args()

    import edge_sdk
    from edge_sdk.defaults import default_bundle

    out = args.out or Path(tempfile.mkdtemp(prefix="edge-sdk-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    bundles = [default_bundle(), *(bundle_for(f, args.size, out) for f in FAMILIES)]
    recognizers = {
        backend: edge_sdk.load(bundles, backend=backend, workers=1, allow_untrained=True)
        for backend in ("ort-cpu", "torch")
    }
    console = Console(width=max(120, Console().width))
    console.print(f"[bold]machine[/bold]: {machine()}")
    console.print(
        "[bold]bundles[/bold]: face-fer7 (built-in) + "
        + ", ".join(f"{f} ({args.size})" for f in FAMILIES)
    )
    table = Table(
        title=f"predict() end to end, ms: median / p90 of {args.repeats} interleaved runs"
    )
    for column in ("modality", "ort-cpu", "torch", "torch/ort"):
        table.add_column(column, justify="left" if column == "modality" else "right")
    for row, kwargs in workloads().items():
        calls = {
            backend: (lambda r=recognizer, k=kwargs: r.predict(**k))
            for backend, recognizer in recognizers.items()
        }
        samples = measure(calls, args.warmup, args.repeats)
        medians = {b: float(np.median(v)) for b, v in samples.items()}
        cells = [
            f"{medians[b]:.1f} / {np.percentile(samples[b], 90):.1f}" for b in recognizers
        ]
        table.add_row(row, *cells, f"{medians['torch'] / medians['ort-cpu']:.2f}")
    running_ms = {}
    for backend, recognizer in recognizers.items():
        dialog = recognizer.open_dialog()
        times = []
        for i in range(8):
            start = time.perf_counter()
            dialog.add({"text": f"turn {i} i feel fine", "audio": (voiced(1.0, 16000, i), 16000)})
            times.append((time.perf_counter() - start) * 1e3)
        running_ms[backend] = times
    cells = [
        f"{np.median(t):.1f} / {np.percentile(t, 90):.1f}" for t in running_ms.values()
    ]
    ratio = np.median(running_ms["torch"]) / np.median(running_ms["ort-cpu"])
    table.add_row("running dialog: add 1 of 8 (text+audio)", *cells, f"{ratio:.2f}")
    console.print(table)
    console.print(
        "Every row includes decoding, the shared MTCNN detector where faces are needed, "
        "windows/crops/log-mel, the graphs and (scene) the CocoER workspace "
        f"({recognizers['ort-cpu'].pipelines[3].workspace_name} backend, in-process)."
    )
    for recognizer in recognizers.values():
        recognizer.close()


if __name__ == "__main__":
    main()
