"""Training on labelled data sets: ``edge-sdk train FAMILY --data FORMAT:PATH``.

* :mod:`edge_sdk.training.data`: ``FORMAT:PATH`` sources read by the same readers as
  ``check accuracy``, the seeded validation split, teacher embedding files, batch loading in
  DataLoader worker processes with unreadable samples skipped and counted.
* :mod:`edge_sdk.training.faces`: face inputs through the deployed preprocessing functions.
* :mod:`edge_sdk.training.scenes`: scene inputs (heads from the deployed face detector, the
  context/body/head windows) for scene-cocoer on CAER-S and EMOTIC.
* :mod:`edge_sdk.training.loop`: :func:`train_on_data` (validation per epoch, best checkpoint
  by the family's main metric, resume, provenance in the checkpoint metadata), built on
  :mod:`~edge_sdk.training.run` (options, start-up: data, ``prepare``, optimiser, the recipe's
  ``pretrain``), :mod:`~edge_sdk.training.validation` (scoring as ``check accuracy`` does)
  and :mod:`~edge_sdk.training.checkpoints` (file names, optimiser sidecar).

Each family declares its adapter (:class:`edge_sdk.models.families.DatasetTraining`): as
``TrainingRecipe.datasets`` (families trained from scratch) or ``Family.fine_tune``
(face-fer7, fine-tuned from its published weights). The synthetic loop and the checkpoint
format stay in :mod:`edge_sdk.models.training`.
"""

from edge_sdk.models.training import TRAINING_METADATA_KEY
from edge_sdk.training.data import (
    DataSource,
    TeacherTable,
    in_validation,
    load_teachers,
    parse_source,
    read_source,
    sample_id,
    split_dataset,
)
from edge_sdk.training.faces import UnreadableSampleError, face_batch, face_input
from edge_sdk.training.loop import (
    EpochSummary,
    TrainResult,
    dataset_training,
    evaluate,
    figures_of,
    last_path,
    state_path,
    train_on_data,
    training_provenance,
)
from edge_sdk.training.run import TrainOptions

__all__ = [
    "TRAINING_METADATA_KEY",
    "DataSource",
    "EpochSummary",
    "TeacherTable",
    "TrainOptions",
    "TrainResult",
    "UnreadableSampleError",
    "dataset_training",
    "evaluate",
    "face_batch",
    "face_input",
    "figures_of",
    "in_validation",
    "last_path",
    "load_teachers",
    "parse_source",
    "read_source",
    "sample_id",
    "split_dataset",
    "state_path",
    "train_on_data",
    "training_provenance",
]
