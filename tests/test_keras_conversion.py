"""The mini-XCEPTION rebuild equals a direct numpy interpretation of the Keras file.

The reference below reads the ``.hdf5`` layer graph itself and evaluates it in NHWC with
TensorFlow's semantics ("same" padding, -inf max-pool padding), sharing no code with the
converter, so a mis-mapped or mis-transposed weight shows up as a difference.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from edge_sdk.models.pretrained import FER_FILE


def _pad_same(x: np.ndarray, k: int, s: int, value: float) -> np.ndarray:
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def _conv(x, kernel, stride, padding, depthwise=False):
    k = kernel.shape[0]
    if padding == "same":
        x = _pad_same(x, k, stride, 0.0)
    win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # N,H,W,C,k,k
    if depthwise:
        return np.einsum("nhwcij,ijc->nhwc", win, kernel[:, :, :, 0])
    return np.einsum("nhwcij,ijcf->nhwf", win, kernel)


def keras_forward(path, x: np.ndarray) -> np.ndarray:
    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        weights = {}
        for layer in layers:
            if layer["name"] in f["model_weights"]:
                found = {}
                f["model_weights"][layer["name"]].visititems(
                    lambda n, o, found=found: (
                        found.update({n.split("/")[-1][:-2]: o[()]})
                        if hasattr(o, "shape")
                        else None
                    )
                )
                weights[layer["name"]] = found
    values = {}
    for layer in layers:
        cfg, kind, w = layer["config"], layer["class_name"], weights.get(layer["name"], {})
        inputs = [values[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        if kind == "InputLayer":
            y = x
        elif kind == "Conv2D":
            y = _conv(inputs[0], w["kernel"], cfg["strides"][0], cfg["padding"])
            y = y + w["bias"] if "bias" in w else y
        elif kind == "SeparableConv2D":
            y = _conv(inputs[0], w["depthwise_kernel"], 1, cfg["padding"], depthwise=True)
            y = np.einsum("nhwc,cf->nhwf", y, w["pointwise_kernel"][0, 0])
        elif kind == "BatchNormalization":
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + cfg["epsilon"])
            y = (inputs[0] - w["moving_mean"]) * scale + w["beta"]
        elif kind == "Activation" and cfg["activation"] == "relu":
            y = np.maximum(inputs[0], 0)
        elif kind == "Activation" and cfg["activation"] == "softmax":
            e = np.exp(inputs[0] - inputs[0].max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        elif kind == "MaxPooling2D":
            k, s = cfg["pool_size"][0], cfg["strides"][0]
            padded = _pad_same(inputs[0], k, s, -np.inf)
            y = sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::s, ::s].max(axis=(4, 5))
        elif kind == "Add":
            y = inputs[0] + inputs[1]
        elif kind == "GlobalAveragePooling2D":
            y = inputs[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"reference does not know {kind}")
        values[layer["name"]] = y
    return values[layers[-1]["name"]]


@pytest.mark.parametrize("seed", [0, 1])
def test_rebuilt_classifier_equals_keras_semantics(face_bundle, device, seed) -> None:
    from runtimes.selection import open_graph

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (3, 64, 64, 1))
    want = keras_forward(FER_FILE.path(), x)
    feeds = {"image": np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)}
    for backend in ("torch", "ort-cpu"):
        got = open_graph(face_bundle, "classifier", device, backend=backend).run(feeds)
        assert np.max(np.abs(got["probabilities"] - want)) < 1e-5, backend
