"""A bundle as a Triton Inference Server model repository (``edge-sdk export-triton``).

Layout written under ``--out`` (model names are ``<family>_<graph>`` with ``-`` as ``_``)::

    REPO/
      edge_sdk_triton.json            what was exported (Triton ignores files at the top)
      face_fer7_classifier/
        config.pbtxt                  platform onnxruntime_onnx, or tensorrt_plan
        1/model.onnx                  (1/model.plan for a TensorRT engine)
      face_fer7_pnet/ ...             one model per graph of the bundle
      face_fer7_pipeline/
        config.pbtxt                  backend "python": image bytes in, emotions JSON out
        1/model.py                    edge_sdk/triton/python_model.py, unchanged
        1/bundle/                     the bundle, every file hash-checked after copying
        1/detector/                   only for families that borrow the face detector

Graph models: inputs and outputs come from the manifest (dtypes as ``TYPE_*``, named
dynamic dims as ``-1``). A graph *batches* when every input and output starts with the
same dim named in :data:`BATCH_DIMS` (no other position uses it) and its profile allows
more than one: then ``max_batch_size`` is the profile's max, that dim leaves ``dims``
and ``dynamic_batching`` is on; otherwise ``max_batch_size`` is 0 and the shape is kept
whole. With ``target`` (a device fingerprint such as ``sm_87-trt10.3``) a graph that has
a TensorRT engine built for it is served as ``tensorrt_plan``; graphs without one stay
ONNX and the export says so. Every config is checked against the ONNX model it serves
(names, element types, ranks, static sizes) and, where ``tritonclient`` is installed,
parsed with Triton's model-config protobuf.

The end-to-end model runs edge_sdk's own pipeline in-process in Triton's Python backend
(:mod:`edge_sdk.triton.python_model`) rather than calling the graph models through BLS
or chaining them in an ensemble, because:

* an ensemble is a static DAG, and the face pipeline is not one: the detector runs P-Net
  on an image pyramid whose number and sizes of levels depend on the image, then R-Net
  and O-Net on however many candidates survive, then crops each face;
* BLS could express that loop, but as a dozen server round trips per image (one per
  pyramid level, with a new input shape each time), re-implemented beside the pipeline
  that the parity and accuracy tests check against the PyTorch reference;
* in-process, the served answer is exactly ``edge_sdk.load(bundle).predict(...)``, and the
  same model serves in NVIDIA's container and in the ``tritonserver`` that the
  ``nvidia-pytriton`` wheel ships, which has the Python backend but no ONNX Runtime one.

The graph models remain for clients that send tensors themselves (pre-cropped faces at
scale, on the GPU through ONNX Runtime or TensorRT).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edge_sdk.bundle import (
    MANIFEST_NAME,
    ModelBundle,
    _external_tensors,
    bundle_digest,
    check_relative,
    sha256_file,
)
from edge_sdk.errors import BundleError, ExportError, InputError
from edge_sdk.manifest import CPU_INT8_TARGET, PRECISIONS, Artifact
from edge_sdk.triton import pbtxt, python_model
from edge_sdk.triton.graph_config import BATCH_DIMS, batch_dim, check_against_onnx, graph_config
from edge_sdk.triton.pbtxt import InstanceGroup, ModelConfig, TensorConfig

# Engine precision tried first when none is asked for: the selection policy's GPU order.
ENGINE_PREFERENCE = ("int8", "fp16", "fp32")
INSTANCE_KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
RECORD_NAME = "edge_sdk_triton.json"
VERSION = "1"
# The end-to-end model's input per modality (dialog utterances may name media files,
# which a server must not open for its clients: dialog is served by `edge-sdk serve`).
PIPELINE_INPUTS = {"face": "image", "scene": "image", "audio": "audio"}
PIPELINE_OUTPUT = "emotions"

__all__ = [
    "BATCH_DIMS",
    "RECORD_NAME",
    "ExportedModel",
    "TritonRepository",
    "batch_dim",
    "check_against_onnx",
    "copy_bundle",
    "export_triton_repository",
    "graph_config",
    "model_name",
]


@dataclass(frozen=True)
class ExportedModel:
    """One model of the repository and where it came from."""

    name: str
    platform: str  # onnxruntime_onnx, tensorrt_plan or python
    graph: str | None
    source: str  # bundle artifact path, or "bundle" for the pipeline
    max_batch_size: int
    note: str = ""


@dataclass(frozen=True)
class TritonRepository:
    """What :func:`export_triton_repository` wrote.

    ``schema_checked`` says whether every config.pbtxt was parsed with Triton's own
    protobuf schema (only where ``tritonclient`` is installed); the ONNX checks always ran.
    """

    root: Path
    bundle_digest: str
    models: tuple[ExportedModel, ...]
    schema_checked: bool
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (also written as ``edge_sdk_triton.json``)."""
        return {
            "root": str(self.root),
            "bundle_digest": self.bundle_digest,
            "models": [asdict(m) for m in self.models],
            "schema_checked": self.schema_checked,
            "notes": list(self.notes),
        }


def model_name(family: str, part: str) -> str:
    """Triton model name ``<family>_<part>``, with anything but letters, digits and ``_``
    as ``_`` (so the name is a plain path segment and URL part)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{family}_{part}")


def _onnx_artifact(bundle: ModelBundle, graph: str, precision: str, kind: str) -> Artifact:
    """The graph's ONNX at ``precision``; the U8S8 CPU form only for CPU instances."""
    found = [
        a
        for a in bundle.manifest.artifacts_for(graph)
        if a.format == "onnx" and a.precision == precision
    ]
    if kind == "KIND_GPU":
        found = [a for a in found if a.target != CPU_INT8_TARGET]
    else:
        found.sort(key=lambda a: a.target != CPU_INT8_TARGET)
    if not found:
        hint = " (run `edge-sdk calibrate` first)" if precision == "int8" else ""
        raise ExportError(f"bundle has no {precision} ONNX for graph {graph!r}{hint}")
    return found[0]


def _engine_artifact(
    bundle: ModelBundle, graph: str, target: str, precision: str | None
) -> Artifact | None:
    """The graph's GPU engine for ``target`` (DLA engines excluded), best precision first."""
    engines = [
        a
        for a in bundle.manifest.artifacts_for(graph)
        if a.format == "tensorrt"
        and a.target == target
        and "dla_core" not in a.built_with
        and (precision is None or a.precision == precision)
    ]
    engines.sort(key=lambda a: ENGINE_PREFERENCE.index(a.precision))
    return engines[0] if engines else None


def _write_verified(data: bytes, sha256: str, dest: Path) -> None:
    """Write artifact bytes and read them back: the copy must hash as the manifest says."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    if sha256_file(dest) != sha256:
        raise ExportError(f"{dest} does not hash as its bundle artifact after copying")


def _copy_onnx(bundle: ModelBundle, artifact: Artifact, version_dir: Path) -> bytes:
    """``model.onnx`` plus every external-data file it names, at the same relative place."""
    data = bundle.read_artifact(artifact)
    _write_verified(data, artifact.sha256, version_dir / "model.onnx")
    if b"location" in data:  # ModelBundle.load checked each reference is a listed artifact
        import onnx

        model = onnx.ModelProto()
        model.ParseFromString(data)
        listed = {a.path: a for a in bundle.manifest.artifacts}
        base = PurePosixPath(artifact.path).parent
        for tensor in _external_tensors(model):
            location = {e.key: e.value for e in tensor.external_data}["location"]
            source = listed[str(base / location)]
            dest = version_dir.joinpath(*check_relative(location).parts)
            if not dest.exists():
                _write_verified(bundle.read_artifact(source), source.sha256, dest)
    return data


def copy_bundle(bundle: ModelBundle, dest: Path) -> ModelBundle:
    """A copy of ``bundle`` at ``dest``: the manifest's own bytes and every artifact, then
    opened with the original's digest pinned (every hash checked again on the copy)."""
    raw = (bundle.root / MANIFEST_NAME).read_bytes()
    if bundle_digest(raw) != bundle.digest:
        raise BundleError(f"{bundle.root / MANIFEST_NAME} changed since the bundle was opened")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST_NAME).write_bytes(raw)
    for artifact in bundle.manifest.artifacts:
        target = dest.joinpath(*check_relative(artifact.path).parts)
        _write_verified(bundle.read_artifact(artifact), artifact.sha256, target)
    return ModelBundle.load(dest, digest=bundle.digest)


def _write_config(config: ModelConfig, model_dir: Path, schema: bool) -> None:
    text = pbtxt.render(config)
    if schema:
        parsed = pbtxt.parse(text, f"{config.name}/config.pbtxt")
        if parsed.name != config.name or parsed.max_batch_size != config.max_batch_size:
            raise ExportError(f"{config.name}/config.pbtxt does not read back as written")
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text, encoding="utf-8")


def _open(source: str | os.PathLike[str] | ModelBundle) -> ModelBundle:
    return source if isinstance(source, ModelBundle) else ModelBundle.load(Path(source))


def _check_options(
    target: str | None, precision: str | None, instance_kind: str, instances: int, delay: int
) -> str:
    """The Triton instance kind, once every option is usable (InputError otherwise)."""
    kind = INSTANCE_KINDS.get(instance_kind)
    if kind is None:
        raise InputError(
            f"instance kind must be one of {sorted(INSTANCE_KINDS)}, got {instance_kind!r}"
        )
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if target is not None and kind != "KIND_GPU":
        raise InputError("TensorRT engines (--target) run on GPU instances only")
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise InputError(f"instances must be an integer >= 1, got {instances!r}")
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise InputError(f"max queue delay must be an integer >= 0 us, got {delay!r}")
    return kind


def _graph_models(
    bundle: ModelBundle,
    root: Path,
    *,
    target: str | None,
    precision: str | None,
    kind: str,
    instances: int,
    delay: int,
    schema: bool,
) -> list[ExportedModel]:
    manifest = bundle.manifest
    if target is not None and not any(
        _engine_artifact(bundle, g.name, target, precision) for g in manifest.graphs
    ):
        have = sorted({a.target for a in manifest.artifacts if a.format == "tensorrt"})
        raise ExportError(
            f"bundle has no {precision + ' ' if precision else ''}TensorRT engine for "
            f"target {target!r} "
            f"(its engines: {have or 'none'}); build them on that device with `edge-sdk build`"
        )
    models = []
    for graph in manifest.graphs:
        name = model_name(manifest.family, graph.name)
        version_dir = root / name / VERSION
        engine = _engine_artifact(bundle, graph.name, target, precision) if target else None
        parameters = {"edge_sdk.bundle_digest": bundle.digest, "edge_sdk.graph": graph.name}
        platform = "onnxruntime_onnx" if engine is None else "tensorrt_plan"
        config = graph_config(
            graph, name, platform=platform, kind=kind, instances=instances,
            max_queue_delay_us=delay, parameters=parameters,
        )
        if engine is not None:
            # The engine's I/O is its source ONNX's (export.tensorrt_build): check that one.
            source_onnx = _onnx_artifact(bundle, graph.name, "fp32", kind)
            check_against_onnx(config, bundle.read_artifact(source_onnx))
            _write_verified(
                bundle.read_artifact(engine), engine.sha256, version_dir / "model.plan"
            )
            chosen, note = engine, engine.precision
        else:
            chosen = _onnx_artifact(bundle, graph.name, precision or "fp32", kind)
            check_against_onnx(config, _copy_onnx(bundle, chosen, version_dir))
            note = chosen.precision
            if target is not None:
                note += f"; no engine for {target}, served by ONNX Runtime"
        _write_config(config, root / name, schema)
        models.append(
            ExportedModel(
                name, platform, graph.name, chosen.path, config.max_batch_size, note
            )
        )
    return models


def _pipeline_model(
    bundle: ModelBundle,
    root: Path,
    detector: str | os.PathLike[str] | ModelBundle | None,
    instances: int,
    schema: bool,
) -> ExportedModel | str:
    """The end-to-end Python-backend model, or why there is none."""
    from edge_sdk.pipelines.face import has_detector
    from edge_sdk.pipelines.registry import pipeline_class

    modality = pipeline_class(bundle).modality
    if modality not in PIPELINE_INPUTS:
        return (
            f"no pipeline model: the {modality} modality takes no single encoded payload "
            "(serve it with `edge-sdk serve`)"
        )
    name = model_name(bundle.manifest.family, "pipeline")
    version_dir = root / name / VERSION
    parameters = {
        python_model.MODALITY: modality,
        python_model.BUNDLE_DIGEST: bundle.digest,
    }
    copy_bundle(bundle, version_dir / python_model.BUNDLE_DIR)
    if modality in ("face", "scene") and not has_detector(bundle):
        if detector is None:
            from edge_sdk.defaults import default_bundle

            found = default_bundle()
        else:
            found = _open(detector)
        if not has_detector(found):
            raise BundleError(f"detector bundle {found.manifest.family} has no pnet/rnet/onet")
        copy_bundle(found, version_dir / python_model.DETECTOR_DIR)
        parameters[python_model.DETECTOR_DIGEST] = found.digest
    source = Path(python_model.__file__).read_bytes()
    (version_dir / "model.py").write_bytes(source)
    config = ModelConfig(
        name=name,
        backend="python",
        max_batch_size=0,
        inputs=(TensorConfig(PIPELINE_INPUTS[modality], pbtxt.STRING, (-1,)),),
        outputs=(TensorConfig(PIPELINE_OUTPUT, pbtxt.STRING, (-1,)),),
        instance_groups=(InstanceGroup("KIND_CPU", instances),),
        parameters=parameters,
    )
    _write_config(config, root / name, schema)
    return ExportedModel(name, "python", None, python_model.BUNDLE_DIR, 0, modality)


def _replace(staging: Path, out: Path, overwrite: bool) -> None:
    """Move the finished repository into place; an existing one only with ``overwrite``
    and only if it is an export of ours (it holds our record file)."""
    if out.exists():
        if not out.is_dir() or out.is_symlink():
            raise InputError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()):
            if not overwrite:
                raise InputError(f"--out {out} is not empty (pass --overwrite to replace it)")
            if not (out / RECORD_NAME).is_file():
                raise InputError(
                    f"--out {out} is not a repository written by export-triton (no "
                    f"{RECORD_NAME}); refusing to delete it"
                )
            shutil.rmtree(out)
        else:
            out.rmdir()
    staging.rename(out)


def export_triton_repository(
    bundle: str | os.PathLike[str] | ModelBundle,
    out: str | os.PathLike[str],
    *,
    target: str | None = None,
    precision: str | None = None,
    instance_kind: str = "gpu",
    instances: int = 1,
    max_queue_delay_us: int = 100,
    pipeline: bool = True,
    detector: str | os.PathLike[str] | ModelBundle | None = None,
    overwrite: bool = False,
) -> TritonRepository:
    """Write a Triton model repository for ``bundle`` at ``out`` (module docstring).

    Args:
        bundle: bundle directory or opened bundle (hash-checked when opened and again as
            each artifact is copied).
        out: the repository folder; written aside and renamed into place when complete.
        target: device fingerprint whose TensorRT engines to serve (``sm_87-trt10.3``).
        precision: fp32 / fp16 / int8 of the ONNX models and engines; None: FP32 ONNX,
            and the engine in :data:`ENGINE_PREFERENCE` order.
        instance_kind: ``gpu`` or ``cpu`` for the graph models.
        instances: model instances per model (graph and pipeline models).
        max_queue_delay_us: dynamic batching's wait for more requests.
        pipeline: also write the end-to-end Python-backend model.
        detector: bundle with the MTCNN graphs for families that have none (default: the
            built-in face-fer7 bundle).
        overwrite: replace an earlier export at ``out``.
    """
    kind = _check_options(target, precision, instance_kind, instances, max_queue_delay_us)
    opened = _open(bundle)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    schema = pbtxt.model_config_message() is not None
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        models = _graph_models(
            opened, staging, target=target, precision=precision, kind=kind,
            instances=instances, delay=max_queue_delay_us, schema=schema,
        )
        notes = []
        if pipeline:
            made = _pipeline_model(opened, staging, detector, instances, schema)
            if isinstance(made, str):
                notes.append(made)
            else:
                models.append(made)
        if not schema:
            notes.append("config.pbtxt not parsed with Triton's schema: tritonclient missing")
        record = TritonRepository(out, opened.digest, tuple(models), schema, tuple(notes))
        (staging / RECORD_NAME).write_text(
            json.dumps(record.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        _replace(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record
