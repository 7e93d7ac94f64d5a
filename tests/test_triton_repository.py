"""``edge-sdk export-triton``: the Triton model repository, its configs, and serving it.

Configs are parsed with Triton's own model-config protobuf (shipped in ``tritonclient``)
and compared with what ONNX Runtime reads from each exported model, independently of the
exporter's own check. The end-to-end Python-backend model is served for real by the
``tritonserver`` binary of the ``nvidia-pytriton`` wheel (it has the Python backend but
no ONNX Runtime backend, so only that model is loaded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.bundle import BundleWriter, ModelBundle
from edge_sdk.errors import BundleError, ExportError, InputError
from edge_sdk.serving.server import free_ports
from edge_sdk.triton import pbtxt, python_model
from edge_sdk.triton.pbtxt import ModelConfig, TensorConfig
from edge_sdk.triton.repository import (
    RECORD_NAME,
    batch_dim,
    check_against_onnx,
    export_triton_repository,
)
from tests.conftest import ASTRONAUT
from tests.support.numpy1 import Numpy1UnavailableError, numpy1_python

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="Triton's schema ships in tritonclient[grpc]"
)
from google.protobuf import text_format  # noqa: E402 - after the importorskip

TARGET = "sm_87-trt10.3"
ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64"}


def _parse(path: Path):
    """config.pbtxt parsed with Triton's ModelConfig message (raises if it does not conform)."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _ort_shape(shape) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


@pytest.fixture(scope="module")
def repo(face_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    export_triton_repository(face_bundle, out)
    return out


def test_every_config_parses_with_tritons_schema_and_matches_what_onnxruntime_reads(
    repo: Path, face_bundle: ModelBundle
) -> None:
    import onnxruntime as ort

    configs = {p.parent.name: _parse(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == {
        "face_fer7_pnet", "face_fer7_rnet", "face_fer7_onet", "face_fer7_classifier",
        "face_fer7_pipeline",
    }
    for name, config in configs.items():
        assert config.name == name
        if config.backend == "python":
            continue
        assert (config.platform, config.backend) == ("onnxruntime_onnx", "onnxruntime")
        graph = name.removeprefix("face_fer7_")
        artifact = next(
            a for a in face_bundle.manifest.artifacts_for(graph) if a.format == "onnx"
        )
        model_file = repo / name / "1" / "model.onnx"
        assert hashlib.sha256(model_file.read_bytes()).hexdigest() == artifact.sha256
        session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        batch = [-1] if config.max_batch_size > 0 else []
        for declared, actual in (
            (config.input, session.get_inputs()),
            (config.output, session.get_outputs()),
        ):
            assert [t.name for t in declared] == [t.name for t in actual]
            for tensor, info in zip(declared, actual, strict=True):
                assert model_config_pb2.DataType.Name(tensor.data_type) == ORT_TYPES[info.type]
                seen = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(
                    tensor.dims
                )
                assert batch + seen == _ort_shape(info.shape), (name, tensor.name)


def test_batching_graphs_drop_the_batch_dim_and_take_the_profile_max(
    repo: Path, face_bundle: ModelBundle
) -> None:
    rnet = _parse(repo / "face_fer7_rnet" / "config.pbtxt")
    assert rnet.max_batch_size == face_bundle.manifest.graph("rnet").dims["batch"].max == 256
    assert list(rnet.input[0].dims) == [3, 24, 24]
    assert rnet.HasField("dynamic_batching")
    prob = next(t for t in rnet.output if t.name == "prob")  # shape (batch,): dims [1], reshape []
    assert list(prob.dims) == [1] and prob.HasField("reshape") and not prob.reshape.shape
    pnet = _parse(repo / "face_fer7_pnet" / "config.pbtxt")  # (1, 3, height, width): no batch
    assert pnet.max_batch_size == 0 and not pnet.HasField("dynamic_batching")
    assert list(pnet.input[0].dims) == [1, 3, -1, -1]
    kinds = {g.kind for g in rnet.instance_group}
    assert kinds == {model_config_pb2.ModelInstanceGroup.KIND_GPU}
    pipeline = _parse(repo / "face_fer7_pipeline" / "config.pbtxt")
    assert pipeline.backend == "python"
    assert model_config_pb2.DataType.Name(pipeline.input[0].data_type) == "TYPE_STRING"
    assert pipeline.parameters[python_model.BUNDLE_DIGEST].string_value == face_bundle.digest


def test_utterance_and_dialog_dims_batch_only_when_every_tensor_leads_with_them() -> None:
    from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec

    def graph(first_out: str, max_: int = 32) -> GraphSpec:
        return GraphSpec(
            name="g",
            architecture="x",
            inputs=(TensorSpec("x", "float32", ("dialogs", "utterances", 8)),),
            outputs=(TensorSpec("y", "float32", (first_out, "utterances", 7), kind="logits"),),
            dims={"dialogs": DimRange(1, 1, max_), "utterances": DimRange(1, 4, 16)},
        )

    assert batch_dim(graph("dialogs")) == "dialogs"
    assert batch_dim(graph("utterances")) is None  # the output leads with another dim
    assert batch_dim(graph("dialogs", max_=1)) is None  # a profile of one cannot batch


def test_dialog_bundle_batches_over_utterances_and_gets_no_pipeline_model(
    tmp_path: Path,
) -> None:
    from tests.support.bundles import tiny_bundles

    record = export_triton_repository(
        tiny_bundles()["dialog-m2fnet"], tmp_path / "repo", instance_kind="cpu", instances=2
    )
    batches = {m.graph: m.max_batch_size for m in record.models}
    assert batches == {"text_encoder": 32, "audio_encoder": 32, "visual_encoder": 32,
                       "dialog": 32}
    text = _parse(tmp_path / "repo" / "dialog_m2fnet_text_encoder" / "config.pbtxt")
    assert [list(t.dims) for t in text.input] == [[-1], [-1]]  # (utterances, tokens)
    assert model_config_pb2.DataType.Name(text.input[0].data_type) == "TYPE_INT64"
    assert [(g.kind, g.count) for g in text.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert any("dialog" in note for note in record.notes)
    assert not (tmp_path / "repo" / "dialog_m2fnet_pipeline").exists()


def _with_engine(bundle: ModelBundle, root: Path) -> tuple[ModelBundle, bytes]:
    """A copy of ``bundle`` whose classifier has an fp16 engine for TARGET (opaque bytes:
    the exporter copies plans unread; no TensorRT is needed to write the repository)."""
    shutil.copytree(bundle.root, root)
    writer = BundleWriter.extending(ModelBundle.load(root))
    engine = b"engine bytes for " + TARGET.encode()
    writer.add(
        f"engines/classifier.fp16.{TARGET}.plan", engine, format="tensorrt",
        graph="classifier", precision="fp16", target=TARGET,
        built_with={"fingerprint": TARGET, "tensorrt": "10.3.0"},
    )
    return writer.finish(ModelBundle.load(root).manifest), engine


def test_an_engine_for_the_target_is_served_as_tensorrt_plan(
    face_bundle: ModelBundle, tmp_path: Path
) -> None:
    bundle, engine = _with_engine(face_bundle, tmp_path / "bundle")
    record = export_triton_repository(
        bundle, tmp_path / "repo", target=TARGET, pipeline=False
    )
    platforms = {m.graph: m.platform for m in record.models}
    assert platforms == {"pnet": "onnxruntime_onnx", "rnet": "onnxruntime_onnx",
                         "onet": "onnxruntime_onnx", "classifier": "tensorrt_plan"}
    notes = {m.graph: m.note for m in record.models}
    assert notes["classifier"] == "fp16" and f"no engine for {TARGET}" in notes["pnet"]
    folder = tmp_path / "repo" / "face_fer7_classifier"
    config = _parse(folder / "config.pbtxt")
    assert (config.platform, config.backend) == ("tensorrt_plan", "tensorrt")
    assert config.default_model_filename == "model.plan"
    assert (folder / "1" / "model.plan").read_bytes() == engine
    assert config.max_batch_size == 64 and list(config.input[0].dims) == [1, 64, 64]
    wrong = rf"no TensorRT engine for target 'sm_72-trt8.5'.*{TARGET}"
    with pytest.raises(ExportError, match=wrong):
        export_triton_repository(bundle, tmp_path / "other", target="sm_72-trt8.5")
    with pytest.raises(InputError, match="GPU instances only"):
        export_triton_repository(bundle, tmp_path / "cpu", target=TARGET, instance_kind="cpu")


def test_a_config_that_disagrees_with_the_onnx_model_is_refused(face_bundle: ModelBundle) -> None:
    artifact = next(a for a in face_bundle.manifest.artifacts_for("rnet") if a.format == "onnx")
    data = face_bundle.read_artifact(artifact)

    def config(**changes) -> ModelConfig:
        fields = {
            "inputs": (TensorConfig("image", "TYPE_FP32", (3, 24, 24)),),
            "outputs": (
                TensorConfig("offsets", "TYPE_FP32", (4,)),
                TensorConfig("prob", "TYPE_FP32", (1,), reshape=()),
            ),
        }
        fields.update(changes)
        return ModelConfig(name="rnet", platform="onnxruntime_onnx", max_batch_size=8, **fields)

    check_against_onnx(config(), data)  # the exporter's own form passes
    with pytest.raises(ExportError, match=r"'image' has shape \[-1, 3, 48, 48\]"):
        check_against_onnx(config(inputs=(TensorConfig("image", "TYPE_FP32", (3, 48, 48)),)), data)
    with pytest.raises(ExportError, match="TYPE_FP16 in the config but TYPE_FP32"):
        check_against_onnx(config(inputs=(TensorConfig("image", "TYPE_FP16", (3, 24, 24)),)), data)
    with pytest.raises(ExportError, match=r"outputs \['offsets', 'score'\]"):
        check_against_onnx(
            config(outputs=(TensorConfig("offsets", "TYPE_FP32", (4,)),
                            TensorConfig("score", "TYPE_FP32", (1,), reshape=()))),
            data,
        )
    with pytest.raises(ExportError, match=r"'prob' has shape \[-1, 1\]"):  # reshape dropped
        check_against_onnx(
            config(outputs=(TensorConfig("offsets", "TYPE_FP32", (4,)),
                            TensorConfig("prob", "TYPE_FP32", (1,)))),
            data,
        )


def test_rendered_configs_read_back_field_for_field_and_unsafe_names_are_refused() -> None:
    config = ModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        max_batch_size=4,
        inputs=(TensorConfig("a", "TYPE_INT64", (-1, 2)),),
        outputs=(TensorConfig("b", "TYPE_FP32", (1,), reshape=()),),
        instance_groups=(pbtxt.InstanceGroup("KIND_CPU", 3),),
        dynamic_batching=pbtxt.DynamicBatching(250),
        parameters={"k": "sha256:00ff"},
    )
    parsed = pbtxt.parse(pbtxt.render(config))
    assert (parsed.name, parsed.platform, parsed.max_batch_size) == ("m", "onnxruntime_onnx", 4)
    assert list(parsed.input[0].dims) == [-1, 2]
    assert model_config_pb2.DataType.Name(parsed.input[0].data_type) == "TYPE_INT64"
    assert parsed.output[0].HasField("reshape") and list(parsed.output[0].dims) == [1]
    kind = model_config_pb2.ModelInstanceGroup.Kind.Name
    assert [(kind(g.kind), g.count) for g in parsed.instance_group] == [("KIND_CPU", 3)]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 250
    assert parsed.parameters["k"].string_value == "sha256:00ff"
    with pytest.raises(ExportError, match="not usable in Triton"):
        TensorConfig('x" } input { name: "y', "TYPE_FP32", (1,))
    with pytest.raises(ExportError, match="dynamic batching needs max_batch_size > 0"):
        ModelConfig(name="m", backend="python", inputs=config.inputs, outputs=config.outputs,
                    dynamic_batching=pbtxt.DynamicBatching())
    with pytest.raises(ExportError, match="Triton's model-config schema"):
        pbtxt.parse('name: "m"\nmax_batch_sise: 4\n')


def test_artifacts_changed_after_opening_are_not_exported(
    face_bundle: ModelBundle, tmp_path: Path
) -> None:
    shutil.copytree(face_bundle.root, tmp_path / "bundle")
    bundle = ModelBundle.load(tmp_path / "bundle")
    (tmp_path / "bundle" / "classifier.onnx").write_bytes(b"\x08\x07swapped")
    with pytest.raises(BundleError, match="classifier.onnx.*changed"):
        export_triton_repository(bundle, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing half-written at --out
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # staging removed too


def test_out_must_be_empty_and_overwrite_replaces_only_an_earlier_export(
    face_bundle: ModelBundle, tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        export_triton_repository(face_bundle, precious, pipeline=False)
    with pytest.raises(InputError, match="not a repository written by export-triton"):
        export_triton_repository(face_bundle, precious, pipeline=False, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep"
    out = tmp_path / "repo"
    export_triton_repository(face_bundle, out, pipeline=False)
    record = export_triton_repository(face_bundle, out, pipeline=False, overwrite=True,
                                      instances=3)
    assert json.loads((out / RECORD_NAME).read_text())["models"][0]["name"] == "face_fer7_pnet"
    assert [g.count for g in _parse(out / "face_fer7_pnet" / "config.pbtxt").instance_group] == [3]
    assert record.schema_checked


def _runner(model_dir: Path) -> python_model.PipelineRunner:
    config = _parse(model_dir / "config.pbtxt")
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    return python_model.PipelineRunner(model_dir / "1", parameters)


def test_pipeline_model_runs_the_sdk_pipeline_on_the_copied_bundle(
    repo: Path, face_bundle: ModelBundle
) -> None:
    import edge_sdk

    model_dir = repo / "face_fer7_pipeline"
    shipped = (model_dir / "1" / "model.py").read_bytes()
    assert shipped == Path(python_model.__file__).read_bytes()
    runner = _runner(model_dir)
    try:
        served = json.loads(runner.run(ASTRONAUT.read_bytes()))
    finally:
        runner.close()
    with edge_sdk.load(face_bundle) as recognizer:
        local = recognizer.predict(ASTRONAUT.read_bytes()).to_dict()
    assert served["face_count"] == 1 and served["faces"][0]["label"] == "happy"
    assert served["faces"] == local["faces"]


def test_pipeline_model_refuses_a_bundle_copy_changed_in_the_repository(
    repo: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "pipeline"
    shutil.copytree(repo / "face_fer7_pipeline", copy)
    onnx = copy / "1" / "bundle" / "classifier.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="classifier.onnx"):
        _runner(copy)


def test_a_family_without_detector_ships_one_pinned_next_to_it(
    face_bundle: ModelBundle, tmp_path: Path
) -> None:
    from tests.support.bundles import tiny_bundles

    caf = tiny_bundles()["face-caf"]
    record = export_triton_repository(caf, tmp_path / "repo", detector=face_bundle)
    model_dir = tmp_path / "repo" / "face_caf_pipeline"
    config = _parse(model_dir / "config.pbtxt")
    assert config.parameters[python_model.DETECTOR_DIGEST].string_value == face_bundle.digest
    assert ModelBundle.load(model_dir / "1" / "detector").digest == face_bundle.digest
    assert [m.name for m in record.models] == ["face_caf_regressor", "face_caf_pipeline"]
    runner = _runner(model_dir)
    try:
        served = json.loads(runner.run(ASTRONAUT.read_bytes()))
    finally:
        runner.close()
    assert served["face_count"] == 1 and "valence" in served["faces"][0]


@pytest.mark.parametrize(("family", "name"), [("scene-cocoer", "image"), ("av-fbp", "audio")])
def test_scene_and_audio_pipeline_models_take_their_own_payload(
    family: str, name: str, face_bundle: ModelBundle, tmp_path: Path
) -> None:
    from tests.support.bundles import tiny_bundles, voiced
    from tests.support.media import wav_bytes

    bundle = tiny_bundles()[family]
    record = export_triton_repository(bundle, tmp_path / "repo", detector=face_bundle)
    model_dir = tmp_path / "repo" / record.models[-1].name
    assert _parse(model_dir / "config.pbtxt").input[0].name == name
    payload = ASTRONAUT.read_bytes() if name == "image" else wav_bytes(voiced(2.0, 16000), 16000)
    runner = _runner(model_dir)
    try:
        served = json.loads(runner.run(payload))
    finally:
        runner.close()
    if family == "scene-cocoer":  # one person, found by the shipped detector
        assert set(served) == {"scene", "timings_ms"} and len(served["scene"]["people"]) == 1
    else:
        assert set(served) == {"audio", "timings_ms"}
        assert served["audio"]["label"] in bundle.manifest.labels


def test_cli_export_triton_writes_the_repository_and_reports_bad_options(
    face_bundle: ModelBundle, tmp_path: Path
) -> None:
    from edge_sdk.cli import app

    cli = CliRunner()
    done = cli.invoke(
        app,
        ["export-triton", str(face_bundle.root), "--out", str(tmp_path / "repo"),
         "--no-pipeline", "--instance-kind", "cpu", "--json"],
    )
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert [m["platform"] for m in shown["models"]] == ["onnxruntime_onnx"] * 4
    assert shown["schema_checked"] is True
    assert (tmp_path / "repo" / "face_fer7_classifier" / "1" / "model.onnx").is_file()
    bad = cli.invoke(
        app, ["export-triton", str(face_bundle.root), "--out", str(tmp_path / "x"),
              "--instance-kind", "tpu"],
    )
    assert bad.exit_code == 2 and "instance kind must be one of" in bad.output


# --------------------------------------------------------------------- real tritonserver
# The stub runs under a NumPy-1 Python: see tests/support/numpy1.py.


def _pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nvidia-pytriton (which ships tritonserver) is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _numpy1_env() -> Path:
    """The venv of the NumPy-1 Python (tests/support/numpy1.py); skips when there is none."""
    try:
        return numpy1_python().parent.parent
    except Numpy1UnavailableError as exc:
        pytest.skip(str(exc))


def _start_tritonserver(repo: Path, model: str, work: Path) -> tuple[subprocess.Popen, dict]:
    """The wheel's tritonserver on ``repo`` with only ``model`` loaded; skips with the
    reason (and the server's log) when the binary itself cannot run here."""
    root = _pytriton_root()
    server = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        pytest.skip(f"nvidia-pytriton ships no Python-backend stub for Python {version}")
    libdir = sysconfig.get_config_var("LIBDIR")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        pytest.skip("the stub embeds libpython, and this Python was built without it")
    backend = work / "backends" / "python"
    backend.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy(server / "backends" / "python" / name, backend / name)
    shutil.copy(stub, backend / "triton_python_backend_stub")
    env_dir = _numpy1_env()
    http, grpc, metrics = free_ports(3)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [libdir, str(root.parent / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH", "")]
    )
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"  # the stub's Python
    log = work / "tritonserver.log"
    command = [
        str(server / "bin" / "tritonserver"), f"--model-repository={repo}",
        f"--backend-directory={work / 'backends'}", "--model-control-mode=explicit",
        f"--load-model={model}", f"--http-port={http}", f"--grpc-port={grpc}",
        f"--metrics-port={metrics}", "--exit-timeout-secs=10",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return process, {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "log": log}


def _wait_ready(process: subprocess.Popen, where: dict, model: str, seconds: float) -> None:
    import tritonclient.http as httpclient

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = where["log"].read_text(errors="replace")
            if "Started HTTPService" not in text and "failed to load" not in text:
                pytest.skip(f"tritonserver could not start here: {text[-1500:]}")
            pytest.fail(f"tritonserver exited (code {process.returncode}): {text[-3000:]}")
        # A new connection each time, closed at once: an open keep-alive connection
        # makes the server wait its whole exit timeout at shutdown.
        client = httpclient.InferenceServerClient(where["http"])
        try:
            if client.is_model_ready(model):
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        finally:
            client.close()
        time.sleep(0.25)
    pytest.fail(f"{model} not ready in {seconds} s: {where['log'].read_text()[-3000:]}")


def _infer(module, url: str, model: str, payloads: list[bytes]) -> list[dict]:
    client = module.InferenceServerClient(url)
    try:
        item = module.InferInput("image", [len(payloads)], "BYTES")
        item.set_data_from_numpy(np.array(payloads, dtype=np.object_))
        result = client.infer(model, [item])
    finally:
        client.close()
    return [json.loads(text) for text in result.as_numpy("emotions")]


def test_tritonserver_serves_the_pipeline_model_over_http_and_grpc(
    repo: Path, face_bundle: ModelBundle, tmp_path: Path
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    import edge_sdk

    model = "face_fer7_pipeline"
    image = ASTRONAUT.read_bytes()
    with edge_sdk.load(face_bundle) as recognizer:
        local = recognizer.predict(image).faces
    process, where = _start_tritonserver(repo, model, tmp_path)
    try:
        _wait_ready(process, where, model, 45)
        for module, url in ((httpclient, where["http"]), (grpcclient, where["grpc"])):
            (served,) = _infer(module, url, model, [image])
            assert served["face_count"] == 1 and served["faces"][0]["label"] == "happy"
            probabilities = served["faces"][0]["probabilities"]
            for label, value in local[0].probabilities.items():
                assert abs(probabilities[label] - value) <= 1e-6
        with pytest.raises(InferenceServerException, match="InputError.*truncated"):
            _infer(httpclient, where["http"], model, [image[: len(image) // 2]])
        both = _infer(grpcclient, where["grpc"], model, [image, image])  # still serving
        assert [r["faces"][0]["label"] for r in both] == ["happy", "happy"]
        client = httpclient.InferenceServerClient(where["http"])
        assert client.is_server_live() and client.is_model_ready(model)
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    log = where["log"].read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert f"successfully unloaded '{model}'" in log


def test_without_tritonclient_the_export_still_checks_the_onnx_and_says_what_it_skipped(
    face_bundle: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # as if not installed
    record = export_triton_repository(face_bundle, tmp_path / "repo", pipeline=False)
    assert not record.schema_checked
    assert any("tritonclient" in note for note in record.notes)
    with pytest.raises(ExportError, match="pip install 'tritonclient"):
        pbtxt.parse('name: "m"\n')
    monkeypatch.undo()
    assert _parse(tmp_path / "repo" / "face_fer7_rnet" / "config.pbtxt").max_batch_size == 256
