"""ONNX -> TensorRT engine, written against NVIDIA's documented Python API (TensorRT 8.6-10.x).

Everything that does not need TensorRT is plain Python here and tested on any machine:
optimisation profiles from the manifest's min/opt/max dims, engine file names keyed by
the device fingerprint, which layers stay FP32, and the manifest record. The part that
calls ``tensorrt`` is :func:`build_engine`, kept short; it has never run on a machine of
this project (no NVIDIA GPU with TensorRT is available here) and says so in the README.

Precisions:
    fp32 / fp16: from the FP32 ONNX; in fp16, LayerNorm, softmax and Pow/Sqrt layers are
        pinned to FP32 through per-layer precision constraints.
    int8: explicit quantisation from the bundle's QDQ ONNX (``GRAPH.int8.onnx`` written by
        ``edge-sdk calibrate``); implicit calibrators are deprecated since TensorRT 10.1
        and removed in 11. On TensorRT 8.x (JetPack 5), whose QDQ support is narrower,
        ``legacy_calibrator=True`` builds from the FP32 ONNX with an entropy calibrator fed
        by the same recorded feeds, its cache stored in the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_sdk.bundle import BundleWriter, ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BackendError, ExportError
from edge_sdk.manifest import CPU_INT8_TARGET, Artifact, GraphSpec

PRECISIONS = ("fp32", "fp16", "int8")
# Layer kinds whose FP16/INT8 versions lose accuracy (variance sums, exp, powers).
FP32_LAYER_KINDS = ("NORMALIZATION", "SOFTMAX", "REDUCE")
FP32_ELEMENTWISE_OPS = ("POW", "DIV")
FP32_UNARY_OPS = ("SQRT", "EXP", "LOG")


Shape = tuple[int, ...]


def profile_shapes(graph: GraphSpec) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape of every input from the manifest's named dim ranges.

    One optimisation profile covers the whole range the exporter checked; a run outside it
    is refused by :func:`runtimes.base.check_feeds` before TensorRT sees it.
    """
    shapes: dict[str, tuple[Shape, Shape, Shape]] = {}
    for tensor in graph.inputs:
        low, mid, high = [], [], []
        for dim in tensor.shape:
            if isinstance(dim, str):
                rng = graph.dims[dim]
                low.append(rng.min)
                mid.append(rng.opt)
                high.append(rng.max)
            else:
                low.append(dim)
                mid.append(dim)
                high.append(dim)
        if 0 in low:
            low = [max(1, d) for d in low]  # TensorRT profiles need positive sizes
        shapes[tensor.name] = (tuple(low), tuple(mid), tuple(high))
    return shapes


def engine_name(graph: str, precision: str, fingerprint: str, dla_core: int | None) -> str:
    """File name of an engine inside the bundle: engines/GRAPH.PRECISION.FINGERPRINT.plan."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown engine precision {precision!r}; expected {PRECISIONS}")
    dla = f".dla{dla_core}" if dla_core is not None else ""
    return f"engines/{graph}.{precision}.{fingerprint}{dla}.plan"


@dataclass(frozen=True)
class EngineRequest:
    """What to build: one graph at one precision for the device it runs on."""

    graph: str
    precision: str
    fingerprint: str
    dla_core: int | None = None
    workspace_mb: int = 1024
    legacy_calibrator: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision {self.precision!r}; expected {PRECISIONS}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ExportError("--dla takes a DLA core index (0 or 1 on Jetson AGX/NX)")


def source_artifact(bundle: ModelBundle, request: EngineRequest) -> Artifact:
    """The ONNX an engine is built from: the QDQ model for INT8, else the FP32 one."""
    wanted = "int8" if request.precision == "int8" and not request.legacy_calibrator else "fp32"
    for artifact in bundle.manifest.artifacts_for(request.graph):
        if (
            artifact.format == "onnx"
            and artifact.precision == wanted
            and artifact.target != CPU_INT8_TARGET  # U8 activations: not TensorRT's form
        ):
            return artifact
    hint = " (run `edge-sdk calibrate` first)" if wanted == "int8" else ""
    raise ExportError(f"bundle has no {wanted} ONNX for graph {request.graph!r}{hint}")


def engine_built_with(device: DeviceInfo, request: EngineRequest) -> dict[str, str]:
    """The record an engine carries: what it runs on (checked again at load time)."""
    gpu = device.primary_gpu
    cap = gpu.compute_capability if gpu else None
    record = {
        "tensorrt": device.tensorrt_version or "unknown",
        "gpu": gpu.name if gpu else "none",
        "compute_capability": f"{cap[0]}.{cap[1]}" if cap else "unknown",
        "fingerprint": request.fingerprint,
        "profile": "manifest min/opt/max",
    }
    if request.dla_core is not None:
        record["dla_core"] = str(request.dla_core)
    if device.jetson is not None and device.jetson.jetpack:
        record["jetpack"] = device.jetson.jetpack
    return record


def build_engine(
    onnx_bytes: bytes,
    graph: GraphSpec,
    request: EngineRequest,
    timing_cache: bytes | None = None,
    calibrator: object | None = None,
) -> tuple[bytes, bytes]:
    """Build a serialized engine; returns (engine, updated timing cache). Needs TensorRT."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError("building engines needs the tensorrt Python package") from exc
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TRT 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {graph.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for name, (low, mid, high) in profile_shapes(graph).items():
        profile.set_shape(name, low, mid, high)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, False)
    if request.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        _pin_fp32_layers(trt, network)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if request.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if request.legacy_calibrator:
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)
    if request.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = request.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build {graph.name} ({request.precision})")
    return bytes(serialized), bytes(cache.serialize())


def _pin_fp32_layers(trt: object, network: object) -> None:
    """Keep layers listed in FP32_* in FP32 (precision and output type)."""
    kinds = {getattr(trt.LayerType, k) for k in FP32_LAYER_KINDS if hasattr(trt.LayerType, k)}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        pinned = layer.type in kinds
        if layer.type == trt.LayerType.ELEMENTWISE:
            layer.__class__ = trt.IElementWiseLayer
            pinned = layer.op.name in FP32_ELEMENTWISE_OPS
        elif layer.type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer
            pinned = layer.op.name in FP32_UNARY_OPS
        if pinned:
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)


def build_bundle_engines(
    bundle_dir: str | Path,
    device: DeviceInfo,
    precision: str,
    *,
    dla_core: int | None = None,
    graphs: tuple[str, ...] | None = None,
    legacy_calibrator: bool = False,
    if_missing: bool = False,
) -> ModelBundle:
    """Build engines for this device for every (or the named) graph; add them to the bundle.

    ``if_missing`` skips graphs that already carry an engine for this fingerprint and
    precision (the Jetson image's first-start build).
    """
    bundle = ModelBundle.load(Path(bundle_dir))
    if device.primary_gpu is None:
        raise BackendError("TensorRT engines need an NVIDIA GPU; none was found on this device")
    writer = BundleWriter.extending(bundle)
    cache_path = f"engines/timing.{device.fingerprint}.cache"
    cache = _existing(bundle, cache_path)
    for graph in bundle.manifest.graphs:
        if graphs and graph.name not in graphs:
            continue
        request = EngineRequest(
            graph.name, precision, device.fingerprint, dla_core, legacy_calibrator=legacy_calibrator
        )
        name = engine_name(graph.name, precision, device.fingerprint, dla_core)
        if if_missing and any(a.path == name for a in bundle.manifest.artifacts):
            continue
        source = bundle.read_artifact(source_artifact(bundle, request))
        engine, cache = build_engine(source, graph, request, cache)
        writer.add(
            name,
            engine,
            format="tensorrt",
            graph=graph.name,
            precision=precision,
            target=device.fingerprint,
            built_with=engine_built_with(device, request),
        )
    if cache:
        first = bundle.manifest.graphs[0].name
        writer.add(cache_path, cache, format="timing-cache", graph=first, target=device.fingerprint)
    return writer.finish(bundle.manifest)


def _existing(bundle: ModelBundle, path: str) -> bytes | None:
    for artifact in bundle.manifest.artifacts:
        if artifact.path == path:
            return bundle.read_artifact(artifact)
    return None
