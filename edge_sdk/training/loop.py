"""The data set training loop: per-epoch validation, best checkpoint, resume, provenance.

Files written for ``out = ckpt.safetensors``:

* ``ckpt.safetensors``: the best epoch by the family's main validation figure (the last
  epoch when there is no validation); what ``edge-sdk export FAMILY --checkpoint`` takes.
* ``ckpt.last.safetensors``: the last epoch.
* ``<checkpoint stem>.optim.safetensors`` beside each: the optimiser's tensors, with the
  epoch, optimiser settings, history and the checkpoint's sha256 as JSON metadata (no
  pickle); ``resume=`` takes either checkpoint and continues with the next epoch.

Every checkpoint's safetensors metadata carries ``family``, ``config`` and, under
:data:`TRAINING_METADATA_KEY` (``"training"``), the run's provenance as JSON: data set name,
format and path, validation source or split rule, sample counts (train/val/skipped), epochs,
final and best validation figures.

Shuffling and augmentation draw from generators seeded by (seed, epoch, batch), so a resumed
run sees the batches an uninterrupted one would, whatever the number of worker processes.

A fresh model of a recipe with a ``pretrain`` stage (CocoER's ω, Eq. 10) goes through it
first, on the training batches in file order; a resumed run, or one started from a
checkpoint (``init_from``), takes what that stage fitted from the checkpoint. The optimiser
is the recipe's ``optimizer`` when it names one (Exp-CLIP: SGD), Adam otherwise.

Parts: :mod:`.run` (options, start-up, state, provenance), :mod:`.validation` (scoring as
``check accuracy`` does), :mod:`.checkpoints` (file names, optimiser sidecar); this module
runs the epochs and keeps the best one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.metrics import Metrics
from edge_sdk.models.families import Family
from edge_sdk.models.training import read_state
from edge_sdk.training.checkpoints import (
    STATE_FORMAT,
    last_path,
    load_state,
    state_path,
    training_provenance,
)
from edge_sdk.training.data import DataSource, batch_plan, group_units
from edge_sdk.training.run import Run, TrainOptions, dataset_training, start_run
from edge_sdk.training.validation import DEVICES, evaluate, evaluate_settings, figures_of

StepCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class EpochSummary:
    """One epoch: mean training loss, validation figures (empty without validation)."""

    epoch: int
    epochs: int
    train_loss: float
    figures: dict[str, float]
    best_epoch: int
    best_figures: dict[str, float]
    skipped: int
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: checkpoints, per-epoch history, provenance, the final model."""

    checkpoint: Path
    last: Path
    history: tuple[EpochSummary, ...]
    provenance: dict[str, Any]
    model: Any = field(repr=False)
    config: Any = field(repr=False)
    last_metrics: Metrics | None = field(default=None, repr=False)


def train_on_data(
    family: str | Family,
    out: str | Path,
    data: str | DataSource,
    *,
    val: str | DataSource | None = None,
    val_split: float = 0.1,
    config: Any = "tiny",
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 1e-3,
    workers: int = 0,
    resume: str | Path | None = None,
    strict: bool = False,
    device: str = "cpu",
    teacher: str | Path | None = None,
    init_from: str | Path | None = None,
    seed: int = 0,
    detector: Any = None,
    label_map: Mapping[str, str | None] | None = None,
    unmapped: str = "error",
    on_step: StepCallback | None = None,
    on_epoch: Callable[[EpochSummary], None] | None = None,
) -> TrainResult:
    """Train a family on a data set and write checkpoints ``export`` accepts (module docs).

    Args:
        family: registered name (e.g. ``"face-caf"``) or Family.
        out: the best checkpoint's path (``.safetensors``).
        data: ``FORMAT:PATH[#SPLIT]`` (see :func:`edge_sdk.training.data.parse_source`).
        val: a separate validation source; otherwise ``val_split`` of ``data`` is held out
            by the seeded rule of :func:`edge_sdk.training.data.in_validation` (0: none).
        config: size name, JSON file or config object (families with a TrainingRecipe);
            ignored when ``init_from`` or ``resume`` gives a checkpoint.
        epochs: total epochs (a resumed run continues up to this number).
        batch_size, lr, seed: the optimiser (the recipe's, else Adam) on the trainable
            parameters, batches and shuffling.
        workers: DataLoader worker processes (0: load in this process).
        resume: a checkpoint written by this function (best or last); its sidecar restores
            the optimiser and the epoch.
        strict: an unreadable or missing sample (or one without a teacher embedding) is an
            error naming the file, instead of being skipped and counted.
        device: ``"cpu"`` or ``"cuda"`` (only when torch sees a GPU).
        teacher: teacher embedding file (families with ``teacher_dim``, Exp-CLIP).
        init_from: start weights: a checkpoint of this family, or ``"fer"`` (face-fer7's
            published weights, its default).
        detector: bundle with the MTCNN graphs for families that find faces before the
            first epoch (scene-cocoer on data without head boxes), as ``load(detector=)``;
            None: the default bundle, which a Recognizer would use too.
        label_map, unmapped: as ``check accuracy`` takes them: data set label -> the
            model's label (None drops it), and what an unmapped label does (``"error"`` or
            ``"skip"``, counted). IEMOCAP for dialog-m2fnet: ``{"excited": "joy", ...}``
            or ``unmapped="skip"`` for frustration and other.
        on_step: ``(step, total steps, loss)`` after each optimiser step.
        on_epoch: an :class:`EpochSummary` after each epoch.

    Raises:
        InputError: unknown format, missing path, a format the family does not train on,
            bad teacher file, unreadable sample with ``strict``, nothing left to train on.
        DeviceError: ``cuda`` without a GPU.
        WeightsError: a checkpoint or sidecar that does not fit.
    """
    options = TrainOptions(
        val_split=val_split, config=config, epochs=epochs, batch_size=batch_size, lr=lr,
        workers=workers, resume=resume, strict=strict, device=device, teacher=teacher,
        init_from=init_from, seed=seed, detector=detector,
        label_map=dict(label_map or {}), unmapped=unmapped,
    )  # fmt: skip
    run = start_run(family, out, data, val, options)
    summaries = []
    for epoch in range(run.start + 1, epochs + 1):
        summary = run_epoch(run, epoch, on_step)
        summaries.append(summary)
        if on_epoch is not None:
            on_epoch(summary)
    return finish(run, summaries)


def run_epoch(run: Run, epoch: int, on_step: StepCallback | None = None) -> EpochSummary:
    """Train one epoch, validate, keep the best snapshot, write the last checkpoint."""
    began = time.perf_counter()
    options = run.options
    loss = _train_epoch(run, epoch, on_step)
    figures: dict[str, float] = {}
    if run.val_set is not None:
        _validate(run)
        figures = figures_of(run.last_metrics)
    run.history.append({"epoch": epoch, "loss": loss, "figures": figures})
    main = figures.get(run.main_metric, float("nan"))
    previous = run.best_figures.get(run.main_metric)
    improved = previous is None or not np.isfinite(previous)
    if run.val_set is None or improved or (np.isfinite(main) and main > previous):
        run.best_epoch, run.best_figures, run.best_config = epoch, figures, run.deploy_config
        run.best_snapshot = (
            copy.deepcopy(run.model.state_dict()),
            copy.deepcopy(run.optimiser.state_dict()),
        )
    run.write(run.last, run.model.state_dict(), run.optimiser.state_dict(), epoch)
    return EpochSummary(
        epoch, options.epochs, loss, figures, run.best_epoch, run.best_figures,
        len(run.skips.sources), time.perf_counter() - began,
    )  # fmt: skip


def _validate(run: Run) -> None:
    """Score the model on the validation set; with the family's ``deploy_settings``, score
    each and keep the best for the checkpoint (:func:`evaluate_settings`)."""
    options = run.options
    common = dict(batch_size=options.batch_size, workers=options.workers,
                  device=options.device, skips=run.skips)  # fmt: skip
    if run.training.deploy_settings is None:
        run.last_metrics = evaluate(run.model, run.training, run.config, run.val_set, **common)
        return
    name, run.deploy_config, run.last_metrics, figures = evaluate_settings(
        run.model, run.training, run.config, run.val_set, run.main_metric, **common
    )
    run.settings = {"chosen": name, run.main_metric: figures}


def _train_epoch(run: Run, epoch: int, on_step: StepCallback | None) -> float:
    """One pass over the shuffled training batches; the mean loss."""
    options = run.options
    units = group_units(run.train_set.samples, run.models.training.group)
    steps_per_epoch = -(-len(units) // options.batch_size)
    total_steps = steps_per_epoch * (options.epochs - run.start)
    run.model.train()
    plan = batch_plan(len(run.train_set), options.batch_size, (options.seed, epoch), units)
    losses = []
    for _, tensors in run.batches(run.train_set, plan, True, (options.seed, epoch)):
        run.step += 1
        if tensors is None:
            continue
        run.optimiser.zero_grad()
        loss = run.models.loss(run.model, tensors)
        loss.backward()
        run.optimiser.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(run.step, total_steps, losses[-1])
    if not losses:
        raise InputError(f"epoch {epoch}: no training sample of {run.source} could be read")
    return float(np.mean(losses))


def finish(run: Run, summaries: list[EpochSummary]) -> TrainResult:
    """Write the best checkpoint (and the last one again, with the final figures)."""
    epochs = run.options.epochs
    if run.best_snapshot is not None:
        run.write(run.out, run.best_snapshot[0], run.best_snapshot[1], run.best_epoch,
                  run.best_config)  # fmt: skip
    else:  # resumed, and no later epoch beat the earlier best: rewrite it with final figures
        resumed = run.resumed
        earlier = [p for p in (run.out, Path(resumed.get("best_checkpoint", run.out)))
                   if p.is_file()]  # fmt: skip
        if not earlier:  # the earlier best is gone: keep what was resumed from
            earlier = [Path(run.options.resume)]  # type: ignore[arg-type]
            run.best_epoch = int(resumed.get("epoch", 0))
            run.best_figures = next(
                (h["figures"] for h in run.history if h["epoch"] == run.best_epoch),
                run.best_figures,
            )
        _, state = read_state(earlier[0])
        optimiser_state, _ = load_state(state_path(earlier[0]), run.name)
        run.write(run.out, state, optimiser_state, run.best_epoch)
    # the last checkpoint's provenance names the final figures too (written before them)
    run.write(run.last, run.model.state_dict(), run.optimiser.state_dict(), epochs)
    return TrainResult(
        checkpoint=run.out,
        last=run.last,
        history=tuple(summaries),
        provenance=run.provenance(epochs),
        model=run.model.eval(),
        config=run.config,
        last_metrics=run.last_metrics,
    )


__all__ = [
    "DEVICES",
    "STATE_FORMAT",
    "EpochSummary",
    "TrainResult",
    "dataset_training",
    "evaluate",
    "figures_of",
    "last_path",
    "run_epoch",
    "state_path",
    "train_on_data",
    "training_provenance",
]
