"""A data set run's state: options, model, data, optimiser, history, and what it writes.

:func:`start_run` does everything before the first epoch (checks, restoring a resumed run,
reading and splitting the data, the family's ``prepare`` step, the optimiser, the recipe's
``pretrain`` stage on a fresh model); :class:`Run` keeps what the epochs change and writes
checkpoints with their provenance. The epoch loop itself is :mod:`edge_sdk.training.loop`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.datasets.base import Dataset
from edge_sdk.errors import InputError, WeightsError
from edge_sdk.models.families import (
    DatasetTraining,
    Family,
    PrepareContext,
    get_family,
    main_metric_of,
)
from edge_sdk.models.training import (
    config_from_json,
    config_to_json,
    make_optimizer,
    read_state,
    resolve_config,
    write_state,
)
from edge_sdk.training.checkpoints import last_path, load_state, save_state, state_path
from edge_sdk.training.data import (
    BatchSource,
    DataSource,
    TeacherTable,
    attach_teachers,
    batch_plan,
    group_units,
    load_teachers,
    loader,
    parse_source,
    read_source,
    split_dataset,
)
from edge_sdk.training.validation import Skips, to_device, torch_device

SPLIT_RULE = "sha256(f'{seed}:{id}')"
COUNTED_SKIPS = ("missing file", "no teacher embedding")  # reader reasons a run reports


@dataclass(frozen=True)
class TrainOptions:
    """The settings of one run (:func:`edge_sdk.training.train_on_data` documents each)."""

    val_split: float = 0.1
    config: Any = "tiny"
    epochs: int = 5
    batch_size: int = 16
    lr: float = 1e-3
    workers: int = 0
    resume: str | Path | None = None
    strict: bool = False
    device: str = "cpu"
    teacher: str | Path | None = None
    init_from: str | Path | None = None
    seed: int = 0
    detector: Any = None
    label_map: dict[str, str | None] = field(default_factory=dict)
    unmapped: str = "error"

    def check(self) -> None:
        """InputError for counts and rates out of range."""
        if self.epochs < 1 or self.batch_size < 1 or self.workers < 0 or self.lr <= 0:
            raise InputError("epochs and batch_size must be >= 1, workers >= 0 and lr > 0")
        if self.unmapped not in ("error", "skip"):
            raise InputError(f"unmapped must be 'error' or 'skip', got {self.unmapped!r}")


@dataclass(frozen=True)
class Models:
    """How to build, serialise and restore one family's training model."""

    family: Family
    training: DatasetTraining

    @property
    def recipe(self) -> Any:
        return self.family.recipe

    def config_json(self, config: Any) -> str:
        if self.recipe is not None:
            return config_to_json(config)
        return json.dumps(config, sort_keys=True)

    def config_from(self, text: str) -> Any:
        if self.recipe is not None:
            return config_from_json(self.recipe, text)
        return json.loads(text)

    def new(self, config: Any) -> Any:
        if self.recipe is not None:
            return self.recipe.make_model(config)
        assert self.training.model_from_config is not None
        return self.training.model_from_config(config)

    def initial(self, config: Any, init_from: str | Path | None) -> tuple[Any, Any]:
        """(model, config): fresh, the published weights, or a checkpoint's weights."""
        if self.recipe is None:
            assert self.training.init_model is not None
            return self.training.init_model(init_from)
        if init_from is None:
            resolved = resolve_config(self.recipe, config)
            return self.new(resolved), resolved
        return self.restore(Path(init_from))

    def restore(self, path: Path) -> tuple[Any, Any]:
        metadata, state = read_state(path)
        if metadata.get("family") != self.family.name:
            raise WeightsError(
                f"{path} is a {metadata.get('family')!r} checkpoint, not {self.family.name}"
            )
        if "config" not in metadata:
            raise WeightsError(f"{path} lacks the 'config' metadata entry")
        config = self.config_from(metadata["config"])
        model = self.new(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path} does not fit {self.family.name}: {exc}") from exc
        return model, config

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        if self.training.loss is not None:
            return self.training.loss(model, batch)
        return self.recipe.loss(model, batch)


def dataset_training(family: Family) -> DatasetTraining:
    """The family's data set adapter; InputError naming the families that have one."""
    training = family.recipe.datasets if family.recipe is not None else family.fine_tune
    if training is None:
        from edge_sdk.models.families import families

        able = [
            f.name for f in families() if (f.recipe.datasets if f.recipe else f.fine_tune)
        ]
        raise InputError(
            f"{family.name} does not train on data sets (only --data synthetic); families "
            f"that do: {able}"
        )
    return training


@dataclass
class Run:
    """Everything an epoch reads or changes, and the checkpoint writer."""

    models: Models
    options: TrainOptions
    out: Path
    source: DataSource
    val_source: DataSource | None
    model: Any
    config: Any
    labels: tuple[str, ...]
    train_set: Dataset
    val_set: Dataset | None
    teachers: TeacherTable | None
    optimiser: Any
    resumed: dict[str, Any]
    reader_skips: Counter[str]
    prepare_skips: Counter[str]
    skips: Skips
    pretrained: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_figures: dict[str, float] = field(default_factory=dict)
    best_snapshot: tuple[dict[str, Any], dict[str, Any]] | None = None
    last_metrics: Any = None
    # deploy_settings: the config written with the weights (the validated setting), per
    # the last validation and per the best epoch's
    deploy_config: Any = None
    best_config: Any = None
    settings: dict[str, Any] = field(default_factory=dict)
    step: int = 0

    @property
    def name(self) -> str:
        return self.models.family.name

    @property
    def training(self) -> DatasetTraining:
        return self.models.training

    @property
    def main_metric(self) -> str:
        return main_metric_of(self.training, self.config)

    @property
    def start(self) -> int:
        """The last epoch done before this run (0 unless resumed)."""
        return int(self.resumed.get("epoch", 0))

    @property
    def last(self) -> Path:
        return last_path(self.out)

    def provenance(self, epoch: int) -> dict[str, Any]:
        """The checkpoint's ``"training"`` record (module docs of :mod:`.loop`)."""
        o, left_out = self.options, dict(self.reader_skips) | dict(self.prepare_skips)
        if self.skips.sources:
            left_out["unreadable file"] = len(self.skips.sources)
        skipped = sum(self.reader_skips.get(k, 0) for k in COUNTED_SKIPS)
        skipped += sum(self.prepare_skips.values()) + len(self.skips.sources)
        if self.val_source is not None:
            validation: Any = describe(self.val_source)
        elif self.val_set is not None:
            validation = {"val_split": o.val_split, "seed": o.seed, "rule": SPLIT_RULE}
        else:
            validation = None
        return {
            "schema": 1,
            "family": self.name,
            "data": describe(self.source),
            "validation": validation,
            "labels": list(self.labels),
            "label_map": dict(o.label_map),
            "unmapped": o.unmapped,
            "samples": {
                "train": len(self.train_set),
                "val": 0 if self.val_set is None else len(self.val_set),
                "skipped": int(skipped),
            },
            "left_out": left_out,
            "epoch": epoch,
            "epochs": self.history[-1]["epoch"] if self.history else 0,
            "main_metric": self.main_metric,
            "final": self.history[-1]["figures"] if self.history else {},
            "best": self.best_figures,
            "best_epoch": self.best_epoch,
            "init_from": self.training.default_init if o.init_from is None else str(o.init_from),
            "resumed_from": None if o.resume is None else str(o.resume),
            "pretrain": self.pretrained,
            "teacher": None
            if self.teachers is None
            else {"file": self.teachers.path.name, "sha256": self.teachers.sha256},
            "optimizer": optimizer_record(self.optimiser, o),
            "deploy_settings": self.settings,
        }

    def run_meta(self, epoch: int, checkpoint: Path) -> dict[str, Any]:
        """The sidecar's bookkeeping for a checkpoint of ``epoch``."""
        from edge_sdk.bundle import sha256_file

        return {
            "epoch": epoch,
            "history": [h for h in self.history if h["epoch"] <= epoch],
            "best_epoch": self.best_epoch,
            "best_figures": self.best_figures,
            "unreadable": self.skips.sources,
            "best_checkpoint": str(self.out),
            "checkpoint_sha256": sha256_file(checkpoint),
            "pretrain": self.pretrained,
        }

    def write(
        self, path: Path, state: dict[str, Any], opt: dict[str, Any], epoch: int,
        config: Any = None,
    ) -> None:  # fmt: skip
        """A checkpoint with its provenance, and its optimiser sidecar; ``config`` (default:
        the last validated deployment setting, else the run's) goes with the weights."""
        chosen = config if config is not None else self.deploy_config
        config_json = self.models.config_json(chosen if chosen is not None else self.config)
        write_state(path, self.name, state, config_json, self.provenance(epoch))
        save_state(state_path(path), self.name, opt, self.run_meta(epoch, path))

    def batches(
        self, dataset: Dataset, plan: list[list[int]], augment: bool, seed: tuple[int, ...]
    ) -> Iterator[tuple[list[int], dict[str, Any] | None]]:
        """The batches of ``plan`` on the run's device; failed samples noted in ``skips``."""
        where = torch_device(self.options.device)
        source = BatchSource(self.training, self.config, dataset.samples, plan, augment, seed)
        for batch in loader(source, self.options.workers):
            self.skips.note(batch.failures)
            yield batch.indices, None if batch.tensors is None else to_device(batch.tensors, where)


def optimizer_record(optimiser: Any, options: TrainOptions) -> dict[str, Any]:
    """Name, learning rate, batch size, seed and the optimiser's scalar settings."""
    group = optimiser.param_groups[0]
    settings = {}  # the numeric hyper-parameters (momentum, weight decay, betas, eps...)
    for key, value in group.items():
        numbers = value if isinstance(value, tuple | list) else (value,)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers)
        if key not in ("params", "lr") and numeric and numbers:
            settings[key] = list(value) if isinstance(value, tuple | list) else value
    return {
        "name": type(optimiser).__name__.lower(),
        "lr": options.lr,
        "batch_size": options.batch_size,
        "seed": options.seed,
        "settings": settings,
    }


def describe(source: DataSource) -> dict[str, Any]:
    """A data source for the provenance record."""
    return {
        "format": source.format,
        "path": str(source.path),
        "name": source.path.name if source.path.is_dir() else source.path.parent.name,
        "split": source.split,
    }


# --------------------------------------------------------------------------- start
def start_run(
    family: str | Family, out: str | Path, data: str | DataSource,
    val: str | DataSource | None, options: TrainOptions,
) -> Run:  # fmt: skip
    """Check the options, build or restore the model, read the data, make the optimiser."""
    import torch

    spec = get_family(family) if isinstance(family, str) else family
    training = dataset_training(spec)
    models = Models(spec, training)
    options.check()
    where = torch_device(options.device)
    source = parse_source(data)
    val_source = parse_source(val) if val is not None else None
    if (training.teacher_dim is None) != (options.teacher is None):
        need = "needs" if training.teacher_dim is not None else "takes no"
        raise InputError(f"{spec.name} {need} a teacher embedding file (--teacher)")
    torch.manual_seed(options.seed)
    model, config, optimiser_state, resumed = _model(models, options)
    labels = tuple(training.labels(config))
    reader_skips: Counter[str] = Counter()
    context = PrepareContext(options.strict, options.detector)
    train_set, val_set = _data(training, config, labels, source, val_source, options,
                               reader_skips, context)  # fmt: skip
    teachers = None
    if training.teacher_dim is not None:
        teachers = load_teachers(options.teacher, training.teacher_dim(config))  # type: ignore[arg-type]
        # validation scores the labels, as check accuracy does: it needs no teacher
        train_set = attach_teachers(train_set, teachers, options.strict, reader_skips)
    model.to(where)
    parameters = [p for p in model.parameters() if p.requires_grad]
    skips = Skips(options.strict)
    skips.sources.update(resumed.get("unreadable", {}))
    run = Run(
        models, options, Path(out), source, val_source, model, config, labels, train_set,
        val_set, teachers, None, resumed, reader_skips, context.skipped, skips,
        pretrained=bool(resumed.get("pretrain", False)),
        history=list(resumed.get("history", [])), best_epoch=int(resumed.get("best_epoch", 0)),
        best_figures=dict(resumed.get("best_figures", {})),
    )  # fmt: skip
    if run.start >= options.epochs:
        raise InputError(
            f"{options.resume} already holds epoch {run.start}; pass epochs > {run.start}"
        )
    if optimiser_state is None and options.init_from is None:
        _pretrain(run)
        parameters = [p for p in model.parameters() if p.requires_grad]
    run.optimiser = make_optimizer(models.recipe, parameters, options.lr)
    if optimiser_state is not None:
        _restore_optimiser(run.optimiser, optimiser_state, options)
    return run


def _model(models: Models, options: TrainOptions) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, config, optimiser state or None, resumed run meta or {})."""
    if options.resume is None:
        model, config = models.initial(options.config, options.init_from)
        return model, config, None, {}
    from edge_sdk.bundle import sha256_file

    model, config = models.restore(Path(options.resume))
    optimiser_state, resumed = load_state(state_path(options.resume), models.family.name)
    if resumed.get("checkpoint_sha256") != sha256_file(options.resume):
        raise WeightsError(f"{state_path(options.resume)} does not belong to {options.resume}")
    return model, config, optimiser_state, resumed


def _data(
    training: DatasetTraining, config: Any, labels: tuple[str, ...], source: DataSource,
    val_source: DataSource | None, options: TrainOptions, reader_skips: Counter[str],
    context: PrepareContext,
) -> tuple[Dataset, Dataset | None]:  # fmt: skip
    """(train, validation or None): read, split, then the family's ``prepare`` step."""
    dataset = read_source(source, training, labels, options)
    reader_skips.update(dataset.skipped)
    if val_source is not None:
        train_set, val_set = dataset, read_source(val_source, training, labels, options)
        reader_skips.update(val_set.skipped)
    elif options.val_split > 0:
        train_set, val_set = split_dataset(
            dataset, options.val_split, options.seed, training.group
        )
    else:
        train_set, val_set = dataset, None
    if training.prepare is not None:
        train_set = training.prepare(config, train_set, context)
        val_set = None if val_set is None else training.prepare(config, val_set, context)
    if not len(train_set):
        raise InputError(f"no training sample of {source} is left to train on")
    return train_set, val_set


def _pretrain(run: Run) -> None:
    """The recipe's stage before the main one, on the training batches in file order.

    Fresh models only: a resumed run (or one started from a checkpoint) gets what the stage
    fitted from the checkpoint.
    """
    recipe = run.models.recipe
    if recipe is None or recipe.pretrain is None:
        return
    units = group_units(run.train_set.samples, run.models.training.group)
    plan = batch_plan(len(run.train_set), run.options.batch_size, None, units)
    batches = run.batches(run.train_set, plan, False, (run.options.seed, 0))
    run.model.train()
    recipe.pretrain(run.model, (tensors for _, tensors in batches if tensors is not None))
    run.pretrained = True


def _restore_optimiser(optimiser: Any, state: dict[str, Any], options: TrainOptions) -> None:
    try:
        optimiser.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise WeightsError(
            f"{state_path(options.resume)} does not fit this model: {exc}"  # type: ignore[arg-type]
        ) from exc
    for group in optimiser.param_groups:
        group["lr"] = options.lr
