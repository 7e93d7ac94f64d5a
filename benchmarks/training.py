"""Training throughput per family at its ``edge`` size on this CPU (samples/s).

Run ``python benchmarks/training.py [--batch-size N] [--steps N] [--threads N] [--only F ...]``.

Families with a data set adapter (face-fer7 fine-tuned from the fer weights, face-caf,
face-expclip, scene-cocoer) build each batch with their own ``batch_from_samples``, i.e. the
deployed preprocessing, from generated images held in memory (``Sample.image``; scene-cocoer
samples carry their head/body boxes, so no detector runs); av-fbp and dialog-m2fnet use their
recipe's synthetic batches (their adapters need a paired face bundle or whole dialogs). One
step = zero_grad, loss, backward, optimiser step (the recipe's optimiser, Adam otherwise), as
:mod:`edge_sdk.training.loop` runs it. Reported: the median over the measured steps (after
one warm-up step) of step time and of batch-building time, and samples/s for the step alone
and for batch + step. Figures only, no assertions; a family that fails to build is reported
with its error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_sdk.datasets.samples import Sample  # noqa: E402
from edge_sdk.models.families import get_family  # noqa: E402
from edge_sdk.models.training import make_optimizer, resolve_config  # noqa: E402

EXAMPLE = ROOT / "examples" / "astronaut.png"
FAMILIES = ("face-fer7", "face-caf", "face-expclip", "scene-cocoer", "av-fbp", "dialog-m2fnet")
# Adapters that need inputs generated here would not be (a paired face bundle, whole
# dialogs): these families step on their recipe's synthetic batches.
SYNTHETIC = ("av-fbp", "dialog-m2fnet")
ASTRONAUT_HEAD = (181.0, 62.0, 268.0, 172.0)


def _scene_image(rng: np.random.Generator) -> np.ndarray:
    """The astronaut photo with noise: a real face at a known place, 512x512 RGB."""
    image = cv2.cvtColor(cv2.imread(str(EXAMPLE)), cv2.COLOR_BGR2RGB).astype(np.float32)
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def _samples(name: str, config: Any, count: int, rng: np.random.Generator) -> list[Sample]:
    """In-memory samples the family's adapter accepts (labels, V/A, teacher, boxes)."""
    samples = []
    for i in range(count):
        image = _scene_image(rng)
        extra: dict[str, Any] = {}
        if name == "face-expclip":
            extra["teacher"] = rng.normal(0, 1, config.proj_dim).astype(np.float32)
        if name == "scene-cocoer":
            from edge_sdk.preprocess.windows import body_box_from_head
            from edge_sdk.training.scenes import BODY_KEY, HEAD_KEY

            head = np.asarray(ASTRONAUT_HEAD, dtype=np.float32)
            extra = {HEAD_KEY: head, BODY_KEY: body_box_from_head(head, image.shape)}
        k = len(config.vocabulary) if hasattr(config, "vocabulary") else 7
        samples.append(Sample(
            paths=(), source=f"memory:{i}", label=i % k, valence=0.3, arousal=-0.2,
            box=None if name == "scene-cocoer" else ASTRONAUT_HEAD, image=image, extra=extra,
            targets=tuple(int(j == i % k) for j in range(k)),
        ))  # fmt: skip
    return samples


def _setup(name: str, batch_size: int, lr: float) -> tuple[Any, Any, Any, Any]:
    """(model, optimiser, make_batch, loss) for one family at its edge size."""
    family = get_family(name)
    recipe = family.recipe
    training = recipe.datasets if recipe is not None else family.fine_tune
    if name in SYNTHETIC:
        training = None
    rng = np.random.default_rng(0)
    if recipe is None:  # face-fer7: fine-tuned from the published weights
        model, config = training.init_model(None)
    else:
        config = resolve_config(recipe, "edge")
        model = recipe.make_model(config)
    if training is not None:
        samples = _samples(name, config, batch_size, rng)

        def make_batch(step: int) -> dict[str, Any]:
            arrays = training.batch_from_samples(
                config, samples, True, np.random.default_rng(step)
            )
            return {k: torch.as_tensor(v) for k, v in arrays.items()}

        loss = training.loss or recipe.loss
    else:

        def make_batch(step: int) -> dict[str, Any]:
            return recipe.synthetic_batch(config, np.random.default_rng(step), batch_size)

        loss = recipe.loss
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    return model, make_optimizer(recipe, parameters, lr), make_batch, loss


def measure(name: str, batch_size: int, steps: int, lr: float = 1e-4) -> dict[str, float]:
    """Median batch-building and step seconds over ``steps`` steps after one warm-up."""
    model, optimiser, make_batch, loss_of = _setup(name, batch_size, lr)
    build, step_times = [], []
    for step in range(steps + 1):
        began = time.perf_counter()
        batch = make_batch(step)
        built = time.perf_counter()
        optimiser.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        optimiser.step()
        done = time.perf_counter()
        if step:  # the first step allocates and warms caches
            build.append(built - began)
            step_times.append(done - built)
    batch_s, step_s = statistics.median(build), statistics.median(step_times)
    return {
        "batch_ms": 1e3 * batch_s,
        "step_ms": 1e3 * step_s,
        "step_samples_s": batch_size / step_s,
        "total_samples_s": batch_size / (batch_s + step_s),
        "optimizer": type(optimiser).__name__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--only", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch_size}, median of {args.steps} steps, "
          f"{torch.get_num_threads()} torch threads")  # fmt: skip
    print(f"{'family':15} {'optim':6} {'batch ms':>9} {'step ms':>9} {'step/s':>8} {'total/s':>8}")
    for name in args.only:
        try:
            r = measure(name, args.batch_size, args.steps)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports every family it can
            print(f"{name:15} failed: {type(exc).__name__}: {exc}")
            continue
        print(f"{name:15} {r['optimizer']:6} {r['batch_ms']:9.1f} {r['step_ms']:9.1f} "
              f"{r['step_samples_s']:8.1f} {r['total_samples_s']:8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
