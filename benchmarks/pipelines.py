"""End-to-end latency per modality: ``Recognizer.predict`` on ONNX Runtime and on PyTorch.

Run ``python benchmarks/pipelines.py [--size tiny|edge] [--repeats N] [--warmup N]
[--out DIR]``. One Recognizer holds face-fer7 (the built-in bundle: real weights) plus every
registered recipe family exported at ``--size`` (tiny: briefly trained on generated data, as
in the tests; edge: the deployment sizes, untrained weights; latency does not depend on the
weights). The same Recognizer is opened twice: every graph on ``ort-cpu`` (what ``load()``
picks here) and every graph on ``torch`` (the PyTorch reference pipeline). Each row is one
``predict`` call, end to end (decode, detection, pre-processing, graphs, workspace,
post-processing, the bounded executor); runs are interleaved so background load spreads over
both columns.
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

EXAMPLE = ROOT / "examples" / "astronaut.png"
# A config field that must equal the per-face feature width of the face family loaded beside
# it (an audio-video family fusing per-frame face features); filled in from that bundle's
# manifest, not from a family name.
FACE_FEATURE_FIELD = "face_dim"


def recipe_families() -> tuple[str, ...]:
    """Every registered family trained with our own code (the built-in bundle is added apart)."""
    from edge_sdk.models.families import families

    return tuple(f.name for f in families() if f.recipe is not None)


def face_feature_width(bundles: list[ModelBundle]) -> int | None:
    """The embedding width of the first face-head bundle among ``bundles`` (manifest only)."""
    from edge_sdk.pipelines.registry import pipelines

    known = pipelines()
    for bundle in bundles:
        cls = known.get(bundle.manifest.config.get("pipeline"))
        if cls is None or getattr(cls, "modality", None) != "face":
            continue
        for graph in bundle.manifest.graphs:
            for output in graph.outputs:
                if output.kind == "embedding" and isinstance(output.shape[-1], int):
                    return output.shape[-1]
    return None


def export_all(size: str, out: Path) -> list[ModelBundle]:
    """Every recipe family's bundle at ``size``; configs that fuse face features take the
    width of a face bundle exported before them."""
    from edge_sdk.models.families import get_family

    names = recipe_families()
    fused = [n for n in names if _has_field(get_family(n).recipe.configs[size])]
    bundles = [bundle_for(n, size, out) for n in names if n not in fused]
    width = face_feature_width(bundles)
    changes = {FACE_FEATURE_FIELD: width} if width is not None else {}
    return bundles + [bundle_for(n, size, out, changes) for n in fused]


def _has_field(config: Any) -> bool:
    return FACE_FEATURE_FIELD in {f.name for f in dataclasses.fields(config)}


def bundle_for(
    family: str, size: str, out: Path, changes: dict[str, Any] | None = None
) -> ModelBundle:
    """The family's bundle at ``size`` from ``out``, exported there first if missing
    (``changes``: config fields replaced first)."""
    target = out / f"{family}-{size}"
    try:
        return ModelBundle.load(target)
    except BundleError:
        pass
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import synthetic_batches, train
    from export.family_export import write_bundle

    spec = get_family(family)
    config = dataclasses.replace(spec.recipe.configs[size], **(changes or {}))
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
    bundles = [default_bundle(), *export_all(args.size, out)]
    recognizers = {
        backend: edge_sdk.load(bundles, backend=backend, workers=1, allow_untrained=True)
        for backend in ("ort-cpu", "torch")
    }
    console = Console(width=max(120, Console().width))
    console.print(f"[bold]machine[/bold]: {machine()}")
    console.print(
        "[bold]bundles[/bold]: face-fer7 (built-in) + "
        + ", ".join(f"{b.manifest.family} ({args.size})" for b in bundles[1:])
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
        f"({_workspace_name(recognizers['ort-cpu'])} backend, in-process)."
    )
    for recognizer in recognizers.values():
        recognizer.close()


def _workspace_name(recognizer: Any) -> str:
    """The scene workspace's backend name, or "no" when no scene family is loaded."""
    return next(
        (p.workspace_name for p in recognizer.pipelines if hasattr(p, "workspace_name")), "no"
    )


if __name__ == "__main__":
    main()
