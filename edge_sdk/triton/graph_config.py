"""The config.pbtxt of one graph served by ONNX Runtime or TensorRT, and its check against the
ONNX model it serves (the batching rule is in :mod:`edge_sdk.triton.repository`'s docs)."""

from __future__ import annotations

from typing import Any

from edge_sdk.errors import ExportError
from edge_sdk.manifest import GraphSpec, TensorSpec
from edge_sdk.triton import pbtxt
from edge_sdk.triton.pbtxt import DynamicBatching, InstanceGroup, ModelConfig, TensorConfig

# Dim names the families give a leading dimension whose rows are independent.
BATCH_DIMS = frozenset({"batch", "utterances", "dialogs"})
# onnx.TensorProto element type names -> Triton's
_ONNX_TYPES = {
    "FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "INT64": "TYPE_INT64", "INT32": "TYPE_INT32",
    "UINT8": "TYPE_UINT8", "BOOL": "TYPE_BOOL", "DOUBLE": "TYPE_FP64", "INT8": "TYPE_INT8",
}


def batch_dim(graph: GraphSpec) -> str | None:
    """The graph's batch dim (module docstring), or None when it does not batch."""
    tensors = graph.inputs + graph.outputs
    first = tensors[0].shape[0] if tensors[0].shape else None
    if not isinstance(first, str) or first not in BATCH_DIMS:
        return None
    for tensor in tensors:
        if not tensor.shape or tensor.shape[0] != first or first in tensor.shape[1:]:
            return None
    profile = graph.dims.get(first)
    return first if profile is not None and profile.max > 1 else None


def _tensor_config(tensor: TensorSpec, batched: bool) -> TensorConfig:
    dims = tuple(-1 if isinstance(d, str) else d for d in tensor.shape)
    if batched:
        dims = dims[1:]
    if not dims:  # only the batch dim (or a scalar): Triton needs non-empty dims
        return TensorConfig(tensor.name, pbtxt.DATA_TYPES[tensor.dtype], (1,), reshape=())
    return TensorConfig(tensor.name, pbtxt.DATA_TYPES[tensor.dtype], dims)


def graph_config(
    graph: GraphSpec,
    name: str,
    *,
    platform: str,
    kind: str,
    instances: int,
    max_queue_delay_us: int,
    parameters: dict[str, str],
) -> ModelConfig:
    """The config of one graph served by ONNX Runtime or TensorRT (module docstring)."""
    dim = batch_dim(graph)
    max_batch = graph.dims[dim].max if dim is not None else 0
    backend, filename = {
        "onnxruntime_onnx": ("onnxruntime", "model.onnx"),
        "tensorrt_plan": ("tensorrt", "model.plan"),
    }[platform]
    return ModelConfig(
        name=name,
        platform=platform,
        backend=backend,
        default_model_filename=filename,
        max_batch_size=max_batch,
        inputs=tuple(_tensor_config(t, dim is not None) for t in graph.inputs),
        outputs=tuple(_tensor_config(t, dim is not None) for t in graph.outputs),
        instance_groups=(InstanceGroup(kind, instances),),
        dynamic_batching=DynamicBatching(max_queue_delay_us) if dim is not None else None,
        parameters=parameters,
    )


def _value_infos(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    initialized = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in initialized}
    return inputs, {o.name: o for o in model.graph.output}


def _onnx_shape(info: Any) -> tuple[int, ...]:
    dims = info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


def check_against_onnx(config: ModelConfig, onnx_bytes: bytes) -> None:
    """Refuse (ExportError) a config whose tensors are not the ONNX model's: the same input
    and output names, element types, ranks, and static sizes where the model has them
    (``-1`` exactly where the model's dim is dynamic, the batch dim included)."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(onnx_bytes)
    for role, declared, actual in zip(
        ("input", "output"), (config.inputs, config.outputs), _value_infos(model), strict=True
    ):
        names = sorted(t.name for t in declared)
        if names != sorted(actual):
            raise ExportError(
                f"{config.name}: config {role}s {names} are not the ONNX model's "
                f"{sorted(actual)}"
            )
        for tensor in declared:
            info = actual[tensor.name]
            element = onnx.TensorProto.DataType.Name(info.type.tensor_type.elem_type)
            onnx_type = _ONNX_TYPES.get(element, element)
            if onnx_type != tensor.data_type:
                raise ExportError(
                    f"{config.name}: {role} {tensor.name!r} is {tensor.data_type} in the "
                    f"config but {onnx_type} in the ONNX model"
                )
            shape = tensor.dims if tensor.reshape is None else tensor.reshape
            full = ((-1,) if config.max_batch_size > 0 else ()) + tuple(shape)
            model_shape = _onnx_shape(info)
            if full != model_shape:
                raise ExportError(
                    f"{config.name}: {role} {tensor.name!r} has shape {list(full)} by the "
                    f"config (batch dim included) but {list(model_shape)} in the ONNX model"
                )
