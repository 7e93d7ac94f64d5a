"""INT8 on ONNX Runtime against ONNX Runtime FP32 and PyTorch eager, per family and graph.

Run ``python benchmarks/int8.py [--families NAMES] [--configs tiny,edge] [--samples N]
[--repeats N] [--json OUT]``. Figures only, no assertions.

For every family and config:

* recipe families: ``tiny`` is trained briefly on the family's generated data (the steps
  ``tests/test_int8_families.py`` uses); ``edge`` is exported untrained (training it does
  not fit a benchmark run on a small CPU), so it has timings and INT8-vs-FP32 figures but
  no accuracy against labels. The bundle is calibrated with ``data="synthetic"`` and the
  family's default method; ``--force`` semantics are used so a failing gate is still timed
  (the ``gate`` column says whether it passed).
* face-fer7 (real weights): calibrated on variants of the example photo, held-out feeds
  recorded from other variants by the FP32 pipeline.

Calibration keeps every CPU INT8 form that passes the gate (``cpu_int8="always"``), so both
forms are timed. Then, on the same held-out inputs (one sample per call, batch 1), every
quantised graph is run by ONNX Runtime INT8 (the symmetric QDQ form TensorRT reads), the
CPU INT8 form (U8S8, where kept; calibration.cpu_int8), ONNX Runtime FP32 and the graph's
PyTorch module in eager mode (rebuilt from the bundle's safetensors), calls interleaved so
load from other processes spreads over all of them. Reported: median ms per call,
FP32/INT8 and torch/INT8 ratios (> 1: INT8 is faster), the gate's figures of each INT8
form against FP32 (agreement over decided samples with the undecided share, worst
probability difference, worst cosine, CCC delta), and the accuracy against the generated
labels for FP32, INT8 and torch where the data has labels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from calibration.feeds import fp32_runner, graph_feeds_from_batch, pipeline_feeds
from calibration.gate import GateThresholds, compare_runs
from calibration.ort_int8 import _masked, calibrate_bundle
from calibration.policy import policy_for
from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo, DeviceProbe
from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import CPU_INT8_TARGET
from edge_sdk.models.families import families, get_family
from runtimes.base import get_backend
from runtimes.selection import open_graph

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
# (steps, batch, lr) of the tiny training, as in tests/test_int8_families.py.
TRAINING = {
    "av-fbp": (120, 16, 1e-2),
    "dialog-m2fnet": (60, 8, 3e-3),
    "face-caf": (120, 16, 3e-3),
    "face-expclip": (100, 16, 3e-3),
    "scene-cocoer": (120, 16, 3e-3),
}
DEFAULT_TRAINING = (60, 16, 3e-3)
Feed = dict[str, np.ndarray]
Scorer = Callable[[str, list[dict[str, np.ndarray]], dict[str, np.ndarray]], float | None]


def machine() -> str:
    """CPU model, cores, load and library versions: latencies mean nothing without them."""
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    threads = os.environ.get("EDGE_SDK_THREADS", "default")
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load}; onnxruntime "
        f"{onnxruntime.__version__} (EDGE_SDK_THREADS={threads}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )


# --- accuracy against generated labels, per family ---------------------------------------


def _cat(runs: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    return np.concatenate([r[name] for r in runs])


def _concordance(a: np.ndarray, b: np.ndarray) -> float:
    from calibration.gate import concordance

    return concordance(a, b)


def _score(family: str, graph: str, runs: list[dict[str, np.ndarray]], batch: Feed) -> float | None:
    """Accuracy (face-caf: mean CCC of valence/arousal) of one graph's outputs vs labels."""
    labels = batch.get("labels")
    if family == "av-fbp":
        return float(np.mean(_cat(runs, "logits").argmax(-1) == labels))
    if family == "scene-cocoer" and graph == "levels":
        return float(np.mean(_cat(runs, "level_logits").argmax(-1) == labels[:, None]))
    if family == "scene-cocoer" and graph == "alignment":
        return float(np.mean(_cat(runs, "y_t").argmax(-1) == labels))
    if family == "dialog-m2fnet" and graph == "dialog":
        logits, real = _cat(runs, "logits"), labels != -100
        return float(np.mean(logits[real].argmax(-1) == labels[real]))
    if family == "face-caf":
        va, target = _cat(runs, "valence_arousal"), batch["valence_arousal"]
        return float(np.mean([_concordance(va[:, c], target[:, c]) for c in (0, 1)]))
    return None


# --- preparing a calibrated bundle and held-out feeds ------------------------------------


@dataclass
class Prepared:
    """A calibrated bundle and the held-out feeds (and labels) every backend runs."""

    family: str
    config: str
    bundle: ModelBundle
    feeds: dict[str, list[Feed]]
    labels: Feed = field(default_factory=dict)
    trained: bool = True
    gate: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _numpy(batch: dict[str, Any]) -> Feed:
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in batch.items()}


def prepare_recipe(
    name: str, config_name: str, work: Path, samples: int, device: DeviceInfo
) -> Prepared:
    """Train (tiny) or initialise (other sizes), export, calibrate, draw held-out feeds."""
    import torch

    from edge_sdk.models.training import synthetic_batches, train
    from export.family_export import write_bundle

    family = get_family(name)
    recipe = family.recipe
    config = recipe.configs[config_name]
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    trained = config_name == "tiny"
    if trained:
        steps, batch, lr = TRAINING.get(name, DEFAULT_TRAINING)
        model, _ = train(family, config, synthetic_batches(recipe, config, 0, batch, steps), lr=lr)
        seconds["train"] = time.perf_counter() - start
    else:
        torch.manual_seed(0)
        model = recipe.make_model(config).eval()
    start = time.perf_counter()
    out = work / f"{name}-{config_name}"
    build = recipe.export_build(model, config)
    if not trained:
        build = replace(build, weights_state="untrained")
    write_bundle(name, build, out)
    seconds["export"] = time.perf_counter() - start
    start = time.perf_counter()
    count = 400 if trained else 160
    result = calibrate_bundle(
        out, "synthetic", count=count, seed=0, force=True, device=device, cpu_int8="always"
    )
    seconds["calibrate"] = time.perf_counter() - start
    bundle = ModelBundle.load(out)
    held = _numpy(recipe.synthetic_batch(config, np.random.default_rng(100), samples))
    feeds = graph_feeds_from_batch(bundle, held, fp32_runner(bundle, device))
    gate = {g.graph: g.chosen.passed for g in result.graphs}
    return Prepared(name, config_name, bundle, feeds, held, trained, gate, seconds)


def photo_variants(source: Path, out: Path, count: int, seed: int) -> Path:
    """Flipped, cropped, scaled, rotated, brightened and blurred copies of one photo."""
    out.mkdir(parents=True, exist_ok=True)
    image = cv2.imread(str(source))
    height, width = image.shape[:2]
    rng = np.random.default_rng(seed)
    for i in range(count):
        top, bottom, left, right = rng.uniform(0.0, 0.1, 4) * [height, height, width, width]
        x = image[int(top) : height - int(bottom), int(left) : width - int(right)]
        x = x[:, ::-1] if i % 2 else x
        scale = rng.uniform(0.6, 1.6)
        x = cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        turn = cv2.getRotationMatrix2D((x.shape[1] / 2, x.shape[0] / 2), rng.uniform(-12, 12), 1)
        x = cv2.warpAffine(x, turn, (x.shape[1], x.shape[0]), borderMode=cv2.BORDER_REFLECT)
        x = np.clip(x * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
        x = cv2.GaussianBlur(x, (5, 5), 1.2) if i % 5 == 0 else x
        cv2.imwrite(str(out / f"variant_{i:02d}.png"), x)
    return out


def prepare_fer7(work: Path, samples: int, device: DeviceInfo) -> Prepared:
    """The default bundle, calibrated on 40 photo variants, gated and timed on 40 others."""
    from export.family_export import export_family

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    out = work / "face-fer7"
    export_family("face-fer7", out)
    seconds["export"] = time.perf_counter() - start
    calib = photo_variants(EXAMPLE, work / "fer7-calib", 40, seed=0)
    held = photo_variants(EXAMPLE, work / "fer7-held", 40, seed=1)
    start = time.perf_counter()
    result = calibrate_bundle(
        out, str(calib), holdout_data=str(held), seed=0, force=True, device=device,
        cpu_int8="always",
    )
    seconds["calibrate"] = time.perf_counter() - start
    bundle = ModelBundle.load(out)
    feeds = pipeline_feeds(bundle, device, str(held), None, 1).feeds
    feeds = {g: f[:samples] for g, f in feeds.items()}
    gate = {g.graph: g.chosen.passed for g in result.graphs}
    return Prepared("face-fer7", "default", bundle, feeds, {}, True, gate, seconds)


# --- timing and comparing -------------------------------------------------------------------


def run_interleaved(
    sessions: dict[str, Any], feeds: list[Feed], repeats: int, warmup: int = 3
) -> tuple[dict[str, list[float]], dict[str, list[dict[str, np.ndarray]]]]:
    """ms per call for every session over ``feeds`` x ``repeats``, calls interleaved."""
    for session in sessions.values():
        for feed in feeds[:warmup]:
            session.run(feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    outputs: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in sessions}
    names = list(sessions)
    for rep in range(repeats):
        for i, feed in enumerate(feeds):
            shift = (rep + i) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                result = sessions[name].run(feed)
                times[name].append((time.perf_counter() - start) * 1e3)
                if rep == 0:
                    outputs[name].append(result)
    return times, outputs


def _int8_sessions(bundle: ModelBundle, graph: str) -> dict[str, Any]:
    """ORT CPU sessions of the graph's INT8 forms: ``int8`` (the symmetric TensorRT form)
    and, where calibration kept one, ``int8 cpu`` (U8S8; calibration.cpu_int8)."""
    backend = get_backend("ort-cpu")
    spec = bundle.manifest.graph(graph)
    sessions = {}
    for artifact in bundle.manifest.artifacts_for(graph):
        if artifact.format == "onnx" and artifact.precision == "int8":
            name = "int8 cpu" if artifact.target == CPU_INT8_TARGET else "int8"
            sessions[name] = backend.open(bundle, spec, artifact)
    return sessions


def measure(prepared: Prepared, device: DeviceInfo, repeats: int) -> list[dict[str, Any]]:
    """One row per quantised graph: latencies, ratios, gate figures and accuracies."""
    bundle = prepared.bundle
    policy = policy_for(bundle.manifest)
    rows = []
    for graph in prepared.gate:
        feeds = prepared.feeds[graph]
        sessions = {
            **_int8_sessions(bundle, graph),
            "fp32": open_graph(bundle, graph, device, backend="ort-cpu", precision="fp32"),
            "torch": open_graph(bundle, graph, device, backend="torch"),
        }
        times, outputs = run_interleaved(sessions, feeds, repeats)
        masks = policy.masks.get(graph, {})
        kept = {name: _masked(runs, feeds, masks) for name, runs in outputs.items()}
        figures = {
            name: [
                f.to_dict()
                for f in compare_runs(
                    kept["fp32"], kept[name], policy.kinds[graph], GateThresholds(),
                    policy.tie_margin,
                )
            ]
            for name in ("int8", "int8 cpu")
            if name in kept
        }
        torch_diff = max(
            float(np.max(np.abs(a[k] - b[k])))
            for a, b in zip(outputs["fp32"], outputs["torch"], strict=True)
            for k in a
        )
        accuracy = {
            name: _score(prepared.family, graph, runs, prepared.labels)
            if prepared.trained
            else None
            for name, runs in outputs.items()
        }
        medians = {name: float(np.median(t)) for name, t in times.items()}
        record = bundle.manifest.calibration.graphs[graph]
        rows.append(
            {
                "family": prepared.family,
                "config": prepared.config,
                "graph": graph,
                "samples": len(feeds),
                "method": record["method"],
                "gate_passed": prepared.gate[graph],
                "cpu_form": record.get("cpu", {}).get("reason", "not tried"),
                "median_ms": medians,
                "fp32_over_int8": medians["fp32"] / medians["int8"],
                "torch_over_int8": medians["torch"] / medians["int8"],
                "fp32_over_int8_cpu": (
                    medians["fp32"] / medians["int8 cpu"] if "int8 cpu" in medians else None
                ),
                "figures": figures["int8"],
                "figures_cpu": figures.get("int8 cpu"),
                "torch_vs_fp32_max_abs": torch_diff,
                "accuracy": accuracy,
                "seconds": prepared.seconds,
            }
        )
    return rows


# --- table ----------------------------------------------------------------------------------


def _figures_text(figures: list[dict[str, Any]]) -> tuple[str, str]:
    agreement, other = [], []
    for f in figures:
        if "agreement" in f:
            agreement.append(f"{f['output']} {f['agreement']:.4f} ({f['undecided']:.0%} und.)")
            other.append(f"{f['output']} Δp {f['max_prob_diff']:.3f}")
        elif "min_cosine" in f:
            other.append(f"{f['output']} cos≥{f['min_cosine']:.4f}")
        elif "ccc_delta" in f:
            other.append(f"{f['output']} ΔCCC {f['ccc_delta']:.4f}")
    return "\n".join(agreement) or "-", "\n".join(other) or "-"


def _accuracy_text(accuracy: dict[str, float | None]) -> str:
    if accuracy.get("fp32") is None:
        return "-"
    text = (
        f"{accuracy['fp32']:.3f} → {accuracy['int8']:.3f} "
        f"(Δ {accuracy['int8'] - accuracy['fp32']:+.3f}; torch {accuracy['torch']:.3f})"
    )
    if accuracy.get("int8 cpu") is not None:
        text += f"; CPU INT8 {accuracy['int8 cpu']:.3f}"
    return text


def table(rows: list[dict[str, Any]], title: str) -> Table:
    out = Table(title=title, show_lines=True)
    for column in (
        "family / config",
        "graph",
        "method / gate",
        "INT8 ms",
        "FP32 ms",
        "torch ms",
        "FP32/INT8",
        "torch/INT8",
        "agreement vs FP32",
        "worst diff vs FP32",
        "accuracy FP32 → INT8",
        "CPU INT8 ms\n(FP32/CPU INT8)",
        "CPU INT8 agreement / worst diff",
    ):
        out.add_column(column, overflow="fold")
    for row in rows:
        agreement, other = _figures_text(row["figures"])
        ms = row["median_ms"]
        out.add_row(
            f"{row['family']}\n{row['config']}",
            f"{row['graph']}\n(n={row['samples']})",
            f"{row['method']}\n{'pass' if row['gate_passed'] else '[red]FAIL[/]'}",
            f"{ms['int8']:.3f}",
            f"{ms['fp32']:.3f}",
            f"{ms['torch']:.3f}",
            f"{row['fp32_over_int8']:.2f}",
            f"{row['torch_over_int8']:.2f}",
            agreement,
            other,
            _accuracy_text(row["accuracy"]),
            *_cpu_form_text(row),
        )
    return out


def _cpu_form_text(row: dict[str, Any]) -> tuple[str, str]:
    """The CPU INT8 form's cells, or why calibration did not keep one."""
    if row["figures_cpu"] is None:
        return "-", row["cpu_form"]
    agreement, other = _figures_text(row["figures_cpu"])
    ms = row["median_ms"]["int8 cpu"]
    return f"{ms:.3f}\n({row['fp32_over_int8_cpu']:.2f}x)", f"{agreement}\n{other}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    recipe_names = [f.name for f in families() if f.recipe is not None]
    parser.add_argument("--families", default=",".join(["face-fer7", *recipe_names]))
    parser.add_argument("--configs", default="tiny,edge", help="recipe family sizes")
    parser.add_argument("--samples", type=int, default=64, help="held-out inputs per graph")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the inputs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 220)
    device = DeviceProbe().probe()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="edge-sdk-int8-bench-"))
    try:
        for name in args.families.split(","):
            plans = ["default"] if get_family(name).recipe is None else args.configs.split(",")
            for config in plans:
                with console.status(f"{name} {config}: train/export/calibrate"):
                    try:
                        if config == "default":
                            prepared = prepare_fer7(work, args.samples, device)
                        else:
                            prepared = prepare_recipe(name, config, work, args.samples, device)
                    except (EdgeSDKError, KeyError) as exc:
                        skipped.append(f"{name} {config}: {exc}")
                        continue
                with console.status(f"{name} {config}: timing"):
                    rows.extend(measure(prepared, device, args.repeats))
                kept = set(policy_for(prepared.bundle.manifest).skip_graphs)
                if kept:
                    skipped.append(f"{name} {config}: {sorted(kept)} kept FP32 by policy")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(table(rows, f"INT8 vs FP32 vs PyTorch eager, batch 1 — {machine()}"))
    console.print(
        "edge configs are untrained (no label accuracy); tiny configs trained briefly; "
        "ratios > 1 mean INT8 is faster; 'und.' = FP32 decisions within the tie margin."
    )
    for line in skipped:
        console.print(f"note: {line}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
