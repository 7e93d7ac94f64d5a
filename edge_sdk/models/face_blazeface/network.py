"""MediaPipe's BlazeFace detectors rebuilt as PyTorch modules from their ``.tflite`` files.

The published models are TFLite flatbuffers (fp16 weights behind DEQUANTIZE ops). Rather
than transcribe three architectures by hand, :func:`parse_tflite` reads the operator list
into a JSON-able *layer plan* (convolution geometry, SAME padding made explicit, channel
pads, pools, bilinear upsampling, the output reshapes) and :class:`BlazeFaceNet` runs that
plan in NCHW. The plan is the architecture config recorded in the manifest, so the PyTorch
reference backend rebuilds the module from the manifest alone; the weights are then
loaded by name with strict shape checks (:func:`load_tflite_weights`).

The ``tflite`` package (a flatbuffer schema reader, no TensorFlow) is needed only when
reading a ``.tflite`` file, i.e. at export time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_sdk.errors import WeightsError
from edge_sdk.models.registry import register_architecture

# TFLite enum values (schema.fbs), named here so the plan reads without the schema.
_SAME, _VALID = 0, 1
_ACT_NONE, _ACT_RELU = 0, 1
_FLOAT32, _FLOAT16 = 0, 1
_OPS = {
    "ADD": 0,
    "CONCATENATION": 2,
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 4,
    "DEQUANTIZE": 6,
    "MAX_POOL_2D": 17,
    "RELU": 19,
    "RESHAPE": 22,
    "RESIZE_BILINEAR": 23,
    "PAD": 34,
}
_OP_NAMES = {v: k for k, v in _OPS.items()}
# NHWC axis of the TFLite graph -> NCHW axis of ours (4-D tensors only).
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}
OUTPUT_ROLES = ("regressors", "classificators")


def param_key(tensor_name: str) -> str:
    """Module key of the convolution whose kernel is ``tensor_name`` ("conv2d_1/Kernel" ->
    "conv2d_1"): the state-dict names follow the TFLite names, so a mismatch names a tensor."""
    stem = tensor_name.rsplit("/", 1)[0]
    return re.sub(r"[^0-9A-Za-z_]", "_", stem)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after): the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: int
    data: bytes


class _Flatbuffer:
    """The parts of one TFLite subgraph the plan and the weights need."""

    def __init__(self, data: bytes, where: str) -> None:
        try:
            import tflite
        except ImportError as exc:
            raise WeightsError(
                "reading .tflite files needs the `tflite` package (pip install tflite)"
            ) from exc
        self.tflite = tflite
        self.where = where
        try:
            if not tflite.Model.ModelBufferHasIdentifier(data, 0):
                raise WeightsError(f"{where} is not a TFLite flatbuffer (no TFL3 identifier)")
            self.model = tflite.Model.GetRootAsModel(data, 0)
            if self.model.SubgraphsLength() != 1:
                raise WeightsError(f"{where}: expected one subgraph")
            self.graph = self.model.Subgraphs(0)
            self.tensors = [self._tensor(i) for i in range(self.graph.TensorsLength())]
        except WeightsError:
            raise
        except Exception as exc:  # the flatbuffer reader raises anything on corrupt bytes
            raise WeightsError(f"{where} is not a readable TFLite model: {exc}") from exc

    def _tensor(self, index: int) -> _Tensor:
        t = self.graph.Tensors(index)
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        buffer = self.model.Buffers(t.Buffer())
        data = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        return _Tensor(t.Name().decode(), shape, int(t.Type()), data)

    def opcode(self, op: Any) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if value not in _OP_NAMES:
            raise WeightsError(f"{self.where}: unsupported TFLite operator {value}")
        return _OP_NAMES[value]

    def options(self, op: Any, kind: type) -> Any:
        table = op.BuiltinOptions()
        options = kind()
        options.Init(table.Bytes, table.Pos)
        return options

    def constant(self, index: int) -> np.ndarray:
        """A constant tensor as float32 (fp16 buffers widened exactly) or int32."""
        t = self.tensors[index]
        dtype = {_FLOAT32: np.float32, _FLOAT16: np.float16, 2: np.int32}.get(t.dtype)
        if dtype is None or not t.data:
            raise WeightsError(f"{self.where}: tensor {t.name!r} holds no readable constant")
        values = np.frombuffer(t.data, dtype=dtype).reshape(t.shape)
        return values.astype(np.float32) if dtype == np.float16 else values.copy()


def _activation(fb: _Flatbuffer, value: int, name: str) -> bool:
    if value not in (_ACT_NONE, _ACT_RELU):
        raise WeightsError(f"{fb.where}: {name} has an unsupported fused activation {value}")
    return value == _ACT_RELU


@dataclass
class _Op:
    """One operator being translated: its tensors' names and shapes, its options."""

    fb: _Flatbuffer
    op: Any
    ins: list[int]
    out: int
    names: list[str]
    shapes: list[tuple[int, ...]]

    @property
    def name(self) -> str:
        return self.names[self.out]

    def input(self, k: int = 0) -> str:
        return self.names[self.ins[k]]

    def options(self, kind: str) -> Any:
        return self.fb.options(self.op, getattr(self.fb.tflite, kind))

    def fail(self, problem: str) -> WeightsError:
        return WeightsError(f"{self.fb.where}: {self.name!r} {problem}")


def _conv(t: _Op, depthwise: bool, source: dict[int, int]) -> dict[str, Any]:
    """CONV_2D / DEPTHWISE_CONV_2D: geometry, SAME padding made explicit (TF puts the odd
    pixel after), the weight tensors' names behind their DEQUANTIZE ops."""
    opts = t.options("DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
    if opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
        raise t.fail("is a dilated convolution")
    if depthwise and opts.DepthMultiplier() not in (0, 1):
        raise t.fail("has a depth multiplier other than 1")
    kernel, bias = source.get(t.ins[1], t.ins[1]), source.get(t.ins[2], t.ins[2])
    k_shape = t.shapes[kernel]  # (O, kh, kw, I) or depthwise (1, kh, kw, C)
    _, height, width, channels = t.shapes[t.ins[0]]
    stride = (opts.StrideH(), opts.StrideW())
    pads = (0, 0, 0, 0)
    if opts.Padding() == _SAME:
        pads = (
            *_same_pads(height, k_shape[1], stride[0]),
            *_same_pads(width, k_shape[2], stride[1]),
        )
    return {
        "op": "conv",
        "input": t.input(),
        "kernel": t.names[kernel],
        "bias": t.names[bias],
        "key": param_key(t.names[kernel]),
        "in_channels": int(channels),
        "out_channels": int(k_shape[3] if depthwise else k_shape[0]),
        "kernel_size": [int(k_shape[1]), int(k_shape[2])],
        "stride": [int(v) for v in stride],
        "pads": [int(v) for v in pads],  # top, bottom, left, right
        "depthwise": depthwise,
        "relu": _activation(t.fb, opts.FusedActivationFunction(), t.name),
    }


def _pool(t: _Op) -> dict[str, Any]:
    opts = t.options("Pool2DOptions")
    size, stride = (opts.FilterHeight(), opts.FilterWidth()), (opts.StrideH(), opts.StrideW())
    dims = zip(t.shapes[t.ins[0]][1:3], size, stride, strict=True)
    if opts.Padding() == _SAME and any(_same_pads(*d) != (0, 0) for d in dims):
        raise t.fail("is a padded max pool")
    return {"input": t.input(), "kernel_size": list(size), "stride": list(stride)}


def _pad(t: _Op) -> dict[str, Any]:
    pads = t.fb.constant(t.ins[1]).reshape(-1, 2)
    if pads.shape[0] != 4 or pads.min() < 0:
        raise t.fail("is not a 4-D zero pad")
    return {"input": t.input(), "pads": [[int(a), int(b)] for a, b in pads]}  # NHWC order


def _resize(t: _Op) -> dict[str, Any]:
    opts = t.options("ResizeBilinearOptions")
    if opts.AlignCorners() or not opts.HalfPixelCenters():
        raise t.fail("is not a half-pixel bilinear resize")
    size = t.fb.constant(t.ins[1])
    return {"input": t.input(), "size": [int(size[0]), int(size[1])]}


def _concat(t: _Op) -> dict[str, Any]:
    opts = t.options("ConcatenationOptions")
    _activation(t.fb, opts.FusedActivationFunction(), t.name)
    rank = len(t.shapes[t.out])
    return {"inputs": [t.names[j] for j in t.ins], "axis": int(opts.Axis()) % rank, "rank": rank}


def _add(t: _Op) -> dict[str, Any]:
    opts = t.options("AddOptions")
    relu = _activation(t.fb, opts.FusedActivationFunction(), t.name)
    return {"inputs": [t.names[j] for j in t.ins], "relu": relu}


_LAYERS = {
    "ADD": _add,
    "RELU": lambda t: {"input": t.input()},
    "PAD": _pad,
    "MAX_POOL_2D": _pool,
    "RESIZE_BILINEAR": _resize,
    "RESHAPE": lambda t: {"input": t.input(), "shape": [int(v) for v in t.shapes[t.out]]},
    "CONCATENATION": _concat,
}


def _interface(fb: _Flatbuffer, shapes: list[tuple[int, ...]]) -> tuple[int, dict[str, int]]:
    """(input tensor, {role: output tensor}): one square RGB input, regressors and scores."""
    inputs, outputs = list(fb.graph.InputsAsNumpy()), list(fb.graph.OutputsAsNumpy())
    if len(inputs) != 1 or len(outputs) != 2:
        raise WeightsError(f"{fb.where}: expected 1 input and 2 outputs")
    image = shapes[inputs[0]]
    if len(image) != 4 or image[1] != image[2] or image[3] != 3:
        raise WeightsError(f"{fb.where}: input {image} is not a square RGB NHWC image")
    roles = {("classificators" if shapes[i][-1] == 1 else "regressors"): int(i) for i in outputs}
    if set(roles) != set(OUTPUT_ROLES):
        raise WeightsError(f"{fb.where}: outputs {[shapes[i] for i in outputs]} lack a role")
    return int(inputs[0]), roles


def parse_tflite(data: bytes, where: str = "model") -> dict[str, Any]:
    """A BlazeFace ``.tflite`` -> the architecture config of :class:`BlazeFaceNet`.

    Raises WeightsError for an unreadable file or an operator outside the small set the
    BlazeFace graphs use.
    """
    fb = _Flatbuffer(data, where)
    names = [t.name for t in fb.tensors]
    shapes = [t.shape for t in fb.tensors]
    source: dict[int, int] = {}  # DEQUANTIZE output -> the constant it widens
    layers: list[dict[str, Any]] = []
    for i in range(fb.graph.OperatorsLength()):
        op = fb.graph.Operators(i)
        kind = fb.opcode(op)
        ins, outs = [int(v) for v in op.InputsAsNumpy()], [int(v) for v in op.OutputsAsNumpy()]
        if kind == "DEQUANTIZE":
            source[outs[0]] = ins[0]
            continue
        t = _Op(fb, op, ins, outs[0], names, shapes)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            layer = _conv(t, kind == "DEPTHWISE_CONV_2D", source)
        else:
            layer = {"op": kind.lower(), **_LAYERS[kind](t)}
        layers.append({**layer, "output": t.name})
    image, roles = _interface(fb, shapes)
    return {
        "input_size": int(shapes[image][1]),
        "input": names[image],
        "outputs": {role: names[index] for role, index in roles.items()},
        "anchors": int(shapes[roles["regressors"]][1]),
        "layers": layers,
    }


def _pad_nchw(pads: Sequence[Sequence[int]]) -> list[int]:
    """NHWC [[before, after]] * 4 -> ``F.pad`` order for an NCHW tensor (W, H, C, N)."""
    n, h, w, c = pads
    return [w[0], w[1], h[0], h[1], c[0], c[1], n[0], n[1]]


@register_architecture("blazeface")
class BlazeFaceNet(nn.Module):
    """Runs a layer plan from :func:`parse_tflite` on NCHW float images in [-1, 1].

    Input ``(batch, 3, S, S)``; outputs ``regressors (batch, anchors, 16)`` (box centre and
    size, then six keypoints, in input pixels relative to each anchor) and
    ``classificators (batch, anchors, 1)`` (face logits): the TFLite model's raw tensors.
    """

    def __init__(
        self,
        input_size: int,
        input: str,  # noqa: A002 - the plan's key
        outputs: dict[str, str],
        anchors: int,
        layers: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.input_size, self.input_name, self.anchors = input_size, input, anchors
        self.output_names = dict(outputs)
        self.plan = [dict(layer) for layer in layers]
        self.convs = nn.ModuleDict()
        for layer in self.plan:
            if layer["op"] != "conv":
                continue
            if layer["key"] in self.convs:
                raise WeightsError(f"two convolutions share the weights name {layer['key']!r}")
            groups = layer["in_channels"] if layer["depthwise"] else 1
            self.convs[layer["key"]] = nn.Conv2d(
                layer["in_channels"],
                layer["out_channels"],
                tuple(layer["kernel_size"]),
                stride=tuple(layer["stride"]),
                groups=groups,
            )

    def _conv(self, layer: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = layer["pads"]
        if top == bottom and left == right:
            conv = self.convs[layer["key"]]
            x = nn.functional.conv2d(
                x, conv.weight, conv.bias, conv.stride, (top, left), 1, conv.groups
            )
        else:  # TF's SAME with stride 2 pads one more pixel after than before
            x = self.convs[layer["key"]](nn.functional.pad(x, (left, right, top, bottom)))
        return torch.relu(x) if layer["relu"] else x

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        env = {self.input_name: image}
        for layer in self.plan:
            op = layer["op"]
            if op == "conv":
                y = self._conv(layer, env[layer["input"]])
            elif op == "add":
                a, b = (env[n] for n in layer["inputs"])
                y = torch.relu(a + b) if layer["relu"] else a + b
            elif op == "relu":
                y = torch.relu(env[layer["input"]])
            elif op == "pad":
                y = nn.functional.pad(env[layer["input"]], _pad_nchw(layer["pads"]))
            elif op == "max_pool_2d":
                y = nn.functional.max_pool2d(
                    env[layer["input"]], tuple(layer["kernel_size"]), tuple(layer["stride"])
                )
            elif op == "resize_bilinear":
                y = nn.functional.interpolate(
                    env[layer["input"]],
                    size=tuple(layer["size"]),
                    mode="bilinear",
                    align_corners=False,
                )
            elif op == "reshape":
                x = env[layer["input"]]
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1)  # the TFLite reshape reads NHWC order
                y = x.reshape(-1, *layer["shape"][1:])
            elif op == "concatenation":
                axis = _NHWC_TO_NCHW[layer["axis"]] if layer["rank"] == 4 else layer["axis"]
                y = torch.cat([env[n] for n in layer["inputs"]], dim=axis)
            else:
                raise WeightsError(f"unknown layer op {op!r} in the BlazeFace plan")
            env[layer["output"]] = y
        return tuple(env[self.output_names[r]] for r in OUTPUT_ROLES)  # type: ignore[return-value]


def tflite_state_dict(data: bytes, config: dict[str, Any], where: str = "model") -> dict:
    """The weights of ``config``'s convolutions read from a ``.tflite`` by tensor name.

    Kernels go from TFLite's (O, kh, kw, I) / depthwise (1, kh, kw, C) to PyTorch's
    (O, I, kh, kw) / (C, 1, kh, kw). A tensor the plan names but the file lacks, or one of
    another shape, raises WeightsError naming it.
    """
    fb = _Flatbuffer(data, where)
    index = {t.name: i for i, t in enumerate(fb.tensors)}
    state: dict[str, torch.Tensor] = {}
    for layer in config["layers"]:
        if layer["op"] != "conv":
            continue
        for role in ("kernel", "bias"):
            name = layer[role]
            if name not in index:
                raise WeightsError(f"{where} lacks tensor {name!r} ({layer['key']} {role})")
            values = fb.constant(index[name])
            if role == "kernel":
                values = (
                    values.transpose(3, 0, 1, 2)
                    if layer["depthwise"]
                    else (values.transpose(0, 3, 1, 2))
                )
            key = f"convs.{layer['key']}.{'weight' if role == 'kernel' else 'bias'}"
            state[key] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    return state


def load_tflite_weights(module: BlazeFaceNet, data: bytes, where: str = "model") -> BlazeFaceNet:
    """Load a ``.tflite``'s weights into ``module``: every name and shape must match."""
    config = {"layers": module.plan}
    state = tflite_state_dict(data, config, where)
    expected = module.state_dict()
    for key, value in state.items():
        if tuple(expected[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{where}: tensor for {key} has shape {tuple(value.shape)}, the network "
                f"expects {tuple(expected[key].shape)}"
            )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{where} does not fit the BlazeFace plan: {exc}") from exc
    return module
