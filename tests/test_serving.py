"""`edge-sdk serve` on a real Triton Inference Server, `edge_sdk.connect`, the wire format and
`check accuracy --server`.

The Triton tests start `edge-sdk serve` as a child process: PyTriton launches the
``tritonserver`` binary its wheel ships, and requests go through ``tritonclient`` over HTTP
and gRPC. They need ``pip install 'edge-sdk[serve]'``. The server's Python must have
numpy<2 (nvidia-pytriton 0.7.0 pins it; its Python backend stub answers with empty tensors
under NumPy 2, see :mod:`edge_sdk.serving.server`): tests/support/numpy1.py finds or makes one.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import edge_sdk
from edge_sdk.api import Prediction
from edge_sdk.checks.accuracy import check_accuracy
from edge_sdk.cli import app
from edge_sdk.datasets import read_dataset
from edge_sdk.errors import BackendError, InputError, ServerError
from edge_sdk.pipelines.audio_video import AudioPrediction
from edge_sdk.pipelines.dialog import DialogPrediction, Utterance, UtteranceResult
from edge_sdk.pipelines.face import Face, FacePrediction, ZeroShot
from edge_sdk.pipelines.scene import LevelResult, ScenePerson, ScenePrediction
from edge_sdk.pipelines.video import VideoPrediction
from edge_sdk.preprocess.audio import Audio
from edge_sdk.serving import codec
from edge_sdk.serving.client import parse_url
from edge_sdk.serving.server import (
    ServeOptions,
    check_environment,
    free_ports,
    spawn,
    stub_library_path,
)
from tests.conftest import ASTRONAUT
from tests.support.numpy1 import Numpy1UnavailableError, numpy1_python

pytestmark = pytest.mark.slow  # training, calibration, a real server or fuzzing

runner = CliRunner()
TOLERANCE = 1e-6
SERVE_PYTHON = sys.executable  # replaced by the NumPy-1 Python when one is found
START_TIMEOUT_S = 180.0


# --------------------------------------------------------------------------- helpers
def _server_unavailable() -> str | None:
    """Why no Triton test can run here, or None (and SERVE_PYTHON set)."""
    global SERVE_PYTHON
    try:
        import tritonclient.grpc
        import tritonclient.http  # noqa: F401
    except ImportError as exc:
        return f"tritonclient is not installed ({exc}): pip install 'edge-sdk[serve]'"
    try:
        SERVE_PYTHON = str(numpy1_python())
    except Numpy1UnavailableError as exc:
        return str(exc)
    probe = subprocess.run(
        [SERVE_PYTHON, "-c", "import pytriton, numpy; print(numpy.__version__)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"nvidia-pytriton is not installed for {SERVE_PYTHON} ({last})"
    return None


_UNAVAILABLE = _server_unavailable()
needs_triton = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@dataclasses.dataclass
class Served:
    """A running `edge-sdk serve` child process."""

    proc: subprocess.Popen
    log: Path
    http: int
    grpc: int
    metrics: int
    started: float

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str, model: str) -> float:
        _, text = _get(f"http://127.0.0.1:{self.metrics}/metrics")
        found = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    def stop(self) -> tuple[int, float]:
        """SIGTERM, then (exit code, seconds to exit)."""
        begin = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        return code, time.perf_counter() - begin


def _serve(tmp: Path, *args: str) -> Served:
    """Start `edge-sdk serve ARGS` on free ports (returns once it serves)."""
    http, grpc, metrics = free_ports(3)
    log = tmp / "serve.log"
    ports = ["--address", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
             "--metrics-port", str(metrics)]  # fmt: skip
    started = time.perf_counter()
    try:
        proc = spawn([*ports, *args], http, log, python=SERVE_PYTHON, timeout=START_TIMEOUT_S)
    except BackendError as exc:
        pytest.fail(str(exc))
    return Served(proc, log, http, grpc, metrics, started)


def _bytes_input(module, name: str, data: bytes):
    array = np.empty((1, 1), dtype=object)
    array[0, 0] = data
    item = module.InferInput(name, [1, 1], "BYTES")
    item.set_data_from_numpy(array)
    return item


def _truncated_png() -> bytes:
    return ASTRONAUT.read_bytes()[:4000]


MEASURED = {"timings_ms": {}, "fps": 0.0}  # wall-clock figures, different every run


def _without_timings(value):
    """A result with every measured figure (``timings_ms``, a video's ``fps``) blanked."""
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(
            value,
            **{
                f.name: MEASURED[f.name] if f.name in MEASURED
                else _without_timings(getattr(value, f.name))
                for f in dataclasses.fields(value)
            },
        )  # fmt: skip
    if isinstance(value, tuple):
        return tuple(_without_timings(v) for v in value)
    return value


def _close(a: dict[str, float], b: dict[str, float]) -> bool:
    return list(a) == list(b) and all(abs(a[k] - b[k]) <= TOLERANCE for k in a)


@pytest.fixture(scope="module")
def local():
    """The built-in face-fer7 bundle in this process (what the server loads too)."""
    with edge_sdk.load() as recognizer:
        yield recognizer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`edge-sdk serve` with the built-in bundle: two instances per model, face batches of
    up to 8 held 100 ms (so concurrent requests meet in one batch)."""
    if _UNAVAILABLE is not None:
        pytest.skip(_UNAVAILABLE)
    server = _serve(
        tmp_path_factory.mktemp("serve"),
        "--workers", "2", "--max-batch-size", "8", "--batch-delay-ms", "100",
    )  # fmt: skip
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


# --------------------------------------------------------------------------- Triton
@needs_triton
def test_triton_answers_the_astronaut_over_http_and_grpc_like_predict(
    served, local, faceless
) -> None:
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    expected = local.predict(ASTRONAUT)
    assert [f.label for f in expected.faces] == ["happy"]
    want = np.asarray(list(expected.faces[0].probabilities.values()), dtype=np.float32)
    assert _get(f"{served.http_url}/v2/health/ready")[0] == 200
    for module, address in ((http, f"127.0.0.1:{served.http}"), (grpc, f"127.0.0.1:{served.grpc}")):
        with module.InferenceServerClient(address) as client:
            answer = client.infer(
                codec.FACE, [_bytes_input(module, codec.IMAGE, ASTRONAUT.read_bytes())]
            )
            result = json.loads(answer.as_numpy(codec.RESULT)[0, 0])
            assert answer.as_numpy(codec.ERROR)[0, 0] == b""
            assert result["face_count"] == 1 and result["faces"][0]["label"] == "happy"
            probabilities = answer.as_numpy(codec.PROBABILITIES)
            assert probabilities.shape == (1, 1, 7)
            np.testing.assert_allclose(probabilities[0, 0], want, atol=TOLERANCE, rtol=0)
            got = result["faces"][0]["probabilities"]
            assert _close(got, expected.faces[0].probabilities)
            np.testing.assert_allclose(
                answer.as_numpy(codec.BOXES)[0, 0], expected.faces[0].box, atol=1e-4
            )
            # an image without a face: no face, and no (zero-size) numeric outputs
            pixels = module.InferInput(codec.PIXELS, [1, *faceless.shape], "UINT8")
            pixels.set_data_from_numpy(faceless[None])
            empty = client.infer(codec.FACE_PIXELS, [pixels])
            assert json.loads(empty.as_numpy(codec.RESULT)[0, 0])["no_face"] is True
            assert empty.as_numpy(codec.PROBABILITIES) is None


@needs_triton
def test_triton_answers_a_corrupt_image_with_an_error_and_keeps_serving(served) -> None:
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    before = served.metric("nv_inference_request_failure", "face")
    for module, address in ((http, f"127.0.0.1:{served.http}"), (grpc, f"127.0.0.1:{served.grpc}")):
        with module.InferenceServerClient(address) as client:
            with pytest.raises(InferenceServerException) as raised:
                client.infer(codec.FACE, [_bytes_input(module, codec.IMAGE, _truncated_png())])
            typed = codec.error_in_message(raised.value.message(), ServerError)
            assert isinstance(typed, InputError) and "truncated PNG" in str(typed)
            again = client.infer(
                codec.FACE, [_bytes_input(module, codec.IMAGE, ASTRONAUT.read_bytes())]
            )
            assert json.loads(again.as_numpy(codec.RESULT)[0, 0])["face_count"] == 1
    assert served.proc.poll() is None
    assert _get(f"{served.http_url}/v2/health/ready")[0] == 200
    # Triton's own metrics count the two refused requests (labels vary by reason)
    _, text = _get(f"http://127.0.0.1:{served.metrics}/metrics")
    failures = sum(
        float(v) for v in re.findall(r'^nv_inference_request_failure{model="face",[^}]*} (\S+)$',
                                     text, re.M)
    )  # fmt: skip
    assert failures >= before + 2


@needs_triton
def test_concurrent_requests_share_a_batch_and_each_gets_its_own_answer(served, local) -> None:
    image = cv2.imread(str(ASTRONAUT))
    images = [image, np.ascontiguousarray(image[:, ::-1]), image[40:, 30:]] * 3
    expected = [local.predict(i, color="bgr").faces for i in images]
    count = served.metric("nv_inference_count", codec.FACE_PIXELS)
    runs = served.metric("nv_inference_exec_count", codec.FACE_PIXELS)
    with edge_sdk.connect(served.grpc_url) as remote, cf.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: remote.predict(i, color="bgr").faces, images))
        bad = pool.submit(remote.predict, _truncated_png())
        with pytest.raises(InputError, match="truncated PNG"):
            bad.result()
    assert answers == expected  # batched heads: the same floats as one image at a time
    assert served.metric("nv_inference_count", codec.FACE_PIXELS) - count == len(images)
    assert served.metric("nv_inference_exec_count", codec.FACE_PIXELS) - runs < len(images)


@needs_triton
def test_connect_predict_returns_what_load_predict_returns(served, local, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(_truncated_png())
    expected = local.predict(ASTRONAUT)
    for url in (served.http_url, served.grpc_url):
        with edge_sdk.connect(url) as remote:
            assert remote.labels == local.labels and remote.modalities == local.modalities
            assert remote.backends == local.backends
            assert [p.family for p in remote.face_heads] == ["face-fer7"]
            result = remote.predict(ASTRONAUT)
            assert isinstance(result, FacePrediction)
            assert result.faces == expected.faces and result.backends == expected.backends
            assert {"decode", "detect", "classify", "total", "roundtrip"} <= set(result.timings_ms)
            bgr = cv2.imread(str(ASTRONAUT))
            assert remote.predict(bgr, color="bgr").faces == expected.faces
            assert remote.predict(ASTRONAUT.read_bytes()).faces == expected.faces
            with pytest.raises(InputError, match=f"^{re.escape(str(broken))}: truncated PNG"):
                remote.predict(broken)
            with pytest.raises(InputError, match="no scene family is served"):
                remote.predict(scene=ASTRONAUT)
            both = remote.predict(ASTRONAUT, video=[bgr, bgr], color="bgr")
            assert isinstance(both, Prediction) and both.face.faces == expected.faces
            assert len(both.video.frames) == 2 and both.video.frames[0].faces == expected.faces


@needs_triton
def test_cli_predict_server_prints_what_local_predict_prints(served) -> None:
    here = runner.invoke(app, ["predict", "--json", str(ASTRONAUT)], catch_exceptions=False)
    there = runner.invoke(
        app, ["predict", "--json", "--server", served.http_url, str(ASTRONAUT)],
        catch_exceptions=False,
    )  # fmt: skip
    assert here.exit_code == there.exit_code == 0, there.output
    local_json, remote_json = json.loads(here.output), json.loads(there.output)
    assert remote_json["faces"] == local_json["faces"]
    assert remote_json["backends"] == local_json["backends"]
    tables = [
        runner.invoke(app, ["predict", *server, str(ASTRONAUT)], catch_exceptions=False).output
        for server in ([], ["--server", served.grpc_url])
    ]
    # the same table; only the title's milliseconds (and so its centring) differ
    here_table, there_table = (" ".join(re.sub(r"\(\d+\.\d ms\)", "", t).split()) for t in tables)
    assert there_table == here_table and "happy" in there_table
    refused = runner.invoke(
        app, ["predict", "--server", served.http_url, "--precision", "fp32", str(ASTRONAUT)]
    )
    assert refused.exit_code == 2 and "--precision" in refused.output


@needs_triton
def test_check_accuracy_through_the_server_with_concurrency(served, local, tmp_path) -> None:
    image = cv2.imread(str(ASTRONAUT))
    (tmp_path / "happy").mkdir()
    for name, pixels in {"a.png": image, "b.png": image[:, ::-1], "c.jpg": image[20:, 10:]}.items():
        assert cv2.imwrite(str(tmp_path / "happy" / name), np.ascontiguousarray(pixels))
    (tmp_path / "happy" / "d.png").write_bytes(_truncated_png())
    args = ["check", "accuracy", "--dataset", str(tmp_path), "--format", "folder", "--json"]
    result = runner.invoke(
        app, [*args, "--server", served.http_url, "--concurrency", "3"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    remote = json.loads(result.output)
    context = remote["context"]
    assert context["server"] == served.http_url and context["concurrency"] == 3
    assert context["samples"] == 4 and context["failed"] == 1
    assert context["samples_per_second"] > 0
    assert "truncated PNG" in context["problems"][0]
    here = check_accuracy(local, read_dataset(tmp_path, "folder"))
    assert remote["metrics"] == json.loads(json.dumps(here.to_dict()["metrics"]))


@needs_triton
def test_triton_shuts_down_cleanly_on_sigterm(served) -> None:
    ours = {"face_pixels", "info"}  # model names only this server uses

    def leftovers() -> set[Path]:
        found = set()
        for folder in Path("/tmp").glob("folder*"):
            config = folder / "config.pbtxt"
            try:
                name = re.search(r'^name: *"([^"]+)"', config.read_text(), re.M)
            except OSError:
                continue
            if name and name.group(1) in ours and folder.stat().st_mtime >= served_wall:
                found.add(folder)
        return found

    served_wall = time.time() - (time.perf_counter() - served.started)
    code, seconds = served.stop()
    log = served.output()
    assert code == 0, log[-4000:]
    assert seconds < 60 and "stopped in" in log
    for model in ("face", "face_pixels", "video", "info"):
        assert f"successfully unloaded '{model}'" in log
    assert _get(f"{served.http_url}/v2/health/live")[0] == 0  # nothing listens any more
    assert not leftovers()  # Triton removed the model folders it was given


@needs_triton
def test_triton_serves_scene_audio_video_and_dialog_like_predict(tmp_path) -> None:
    from tests.support.bundles import clip, tiny_bundles, voiced

    bundles = tiny_bundles()
    chosen = [bundles[f] for f in ("face-caf", "scene-cocoer", "av-fbp", "dialog-m2fnet")]
    server = _serve(tmp_path, "--with-default", "--workers", "1",
                    *(str(b.root) for b in chosen))  # fmt: skip
    wav = (voiced(1.0, 16000), 16000)
    frames = clip()
    dialog = [
        Utterance(text="hello there", speaker="A"),
        Utterance(text="I am so happy", speaker="B", audio=Audio(wav[0], 16000)),
        Utterance(text="see", frames=frames),
    ]
    try:
        with edge_sdk.load(chosen, with_default=True) as here, edge_sdk.connect(
            server.grpc_url
        ) as there:
            assert there.modalities == here.modalities
            calls = [
                {"scene": ASTRONAUT},
                {"scene": {"image": cv2.imread(str(ASTRONAUT)),
                           "head_boxes": [[181, 62, 268, 172]]}, "color": "bgr"},
                {"audio": wav},
                {"audio": wav, "video": frames},
                {"dialog": dialog},
                {"face": ASTRONAUT, "dialog": ["hi", "bye"]},
            ]  # fmt: skip
            for call in calls:
                want, got = here.predict(**call), there.predict(**call)
                assert set(got.timings_ms) == set(want.timings_ms)
                for part in ("face", "scene", "audio", "video", "dialog"):
                    a, b = getattr(want, part), getattr(got, part)
                    assert (a is None) == (b is None), (part, call.keys())
                    if a is not None:
                        _assert_same(_without_timings(a), _without_timings(b))
            for bad in ({"audio": b"RIFF...."}, {"dialog": []},
                        {"scene": {"image": ASTRONAUT, "head_boxes": [[5, 5, 1, 1]]}}):  # fmt: skip
                with pytest.raises(InputError) as local_error:
                    here.predict(**bad)
                with pytest.raises(InputError) as remote_error:
                    there.predict(**bad)
                assert _digits_free(local_error.value) == _digits_free(remote_error.value)
    finally:
        code, _ = server.stop()
    assert code == 0


def _digits_free(error: Exception) -> str:
    """An error message without numpy's ``np.float64(...)`` wrapping of numbers."""
    return re.sub(r"np\.float64\(([^)]*)\)", r"\1", str(error))


def _assert_same(want, got) -> None:
    """Equal results, probabilities within TOLERANCE (numpy 1 vs 2 FFTs differ in ulps)."""
    if dataclasses.is_dataclass(want):
        assert type(want) is type(got)
        for f in dataclasses.fields(want):
            _assert_same(getattr(want, f.name), getattr(got, f.name))
    elif isinstance(want, dict) and want and all(isinstance(v, float) for v in want.values()):
        assert _close(want, got), (want, got)
    elif isinstance(want, (tuple, list)):
        assert len(want) == len(got)
        for a, b in zip(want, got, strict=True):
            _assert_same(a, b)
    elif isinstance(want, dict):
        assert list(want) == list(got)
        for key in want:
            _assert_same(want[key], got[key])
    elif isinstance(want, float):
        assert abs(want - got) <= TOLERANCE, (want, got)
    else:
        assert want == got


# --------------------------------------------------------------------------- wire format
def _results() -> list:
    """One result of every type, every optional field set."""
    face = Face(
        box=(1.5, 2.0, 30.25, 40.0),
        landmarks=((3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0), (11.0, 12.0)),
        detection_score=0.97,
        label="happy",
        probabilities={"happy": 0.875, "sad": 0.125},
        valence=0.25,
        arousal=-0.5,
        zero_shot=ZeroShot("smiling", {"smiling": 0.75, "frowning": 0.25}),
    )
    frame = FacePrediction((face,), (64, 48), {}, {"pnet": "ort-cpu/fp32"})
    face_prediction = FacePrediction(
        (face, dataclasses.replace(face, valence=None, arousal=None, zero_shot=None)),
        (640, 480),
        {"decode": 1.0, "total": 3.0},
        {"pnet": "ort-cpu/fp32"},
    )
    level = LevelResult("happy", {"happy": 0.6, "sad": 0.4}, {"happy": 0.7, "sad": 0.3}, 0.5)
    person = ScenePerson(
        head_box=(1.0, 2.0, 3.0, 4.0), body_box=(0.0, 1.0, 5.0, 9.0), body_source="detector",
        label="happy", labels=("happy", "sad"), probabilities={"happy": 0.6, "sad": 0.4},
        levels={"context": level, "head": dataclasses.replace(level, loss=None)},
        pseudo_label={"happy": 0.5, "sad": 0.5}, removed=("body",), kept="context",
    )  # fmt: skip
    scene = ScenePrediction((person,), (320, 240), "numpy", {"total": 2.0}, {"levels": "x"})
    audio = AudioPrediction(
        "sad", {"happy": 0.2, "sad": 0.8}, "audio_video", None, 1.5, 150, 12, 10,
        {"total": 1.0}, {"audio_video": "ort-cpu/fp32"},
    )  # fmt: skip
    video = VideoPrediction((frame, dataclasses.replace(frame, faces=())), 25.0, {"total": 4.0},
                            {"pnet": "ort-cpu/fp32"})  # fmt: skip
    dialog = DialogPrediction(
        (UtteranceResult(0, "A", "hi", "joy", {"joy": 0.9, "anger": 0.1}, ("text", "audio"), 2),
         UtteranceResult(1, None, None, "anger", {"joy": 0.1, "anger": 0.9}, ("visual",), 0)),
        {"total": 5.0}, {"dialog": "ort-cpu/fp32"},
    )  # fmt: skip
    combined = Prediction(face_prediction, scene, audio, video, dialog, {"total": 9.0})
    return [face_prediction, scene, audio, video, dialog, combined]


def test_every_result_type_survives_the_wire_format() -> None:
    readers = {
        FacePrediction: codec.face_prediction,
        ScenePrediction: codec.scene_prediction,
        AudioPrediction: codec.audio_prediction,
        VideoPrediction: codec.video_prediction,
        DialogPrediction: codec.dialog_prediction,
        Prediction: codec.prediction,
    }
    for result in _results():
        wire = json.loads(json.dumps(result.to_dict()))
        assert readers[type(result)](wire) == result, type(result).__name__


def test_media_parts_come_back_as_the_caller_gave_them() -> None:
    writer = codec.MediaWriter()
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)  # ends in zero bytes: kept whole
    rgb[0, 0] = (255, 0, 0)
    samples = np.linspace(-1, 1, 800, dtype=np.float32)
    call = {
        "image": writer.image(ASTRONAUT, "rgb"),
        "pixels": writer.image(rgb[:, :, ::-1], "bgr"),
        "audio": writer.audio((samples, 16000)),
        "wave": writer.audio(Audio(samples, 8000, channels_first=False)),
        "dialog": [{"text": "hi", "audio": writer.audio(b"RIFF"), "frames": None}],
    }
    back = codec.decode_value(json.loads(json.dumps(call)), writer.blobs)
    assert back["image"] == ASTRONAUT.read_bytes()
    np.testing.assert_array_equal(back["pixels"], rgb)
    assert isinstance(back["audio"], tuple) and back["audio"][1] == 16000
    np.testing.assert_array_equal(back["audio"][0], samples)
    wave = back["wave"]
    assert isinstance(wave, Audio) and (wave.sample_rate, wave.channels_first) == (8000, False)
    np.testing.assert_array_equal(wave.samples, samples)
    # an utterance's own "audio" key is data, not a media reference
    assert back["dialog"] == [{"text": "hi", "audio": b"RIFF", "frames": None}]


def test_media_refuses_pickles_and_references_out_of_range() -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="media part 0: unreadable .npy"):
        codec.decode_value({"$array": 0}, [buffer.getvalue()])
    with pytest.raises(InputError, match="not a .npy array"):
        codec.decode_value({"$array": 0}, [b"plain bytes"])
    with pytest.raises(InputError, match="refers to media part 3; it has 1"):
        codec.decode_value({"$bytes": 3}, [b"x"])
    with pytest.raises(InputError, match="sample_rate must be an integer"):
        codec.decode_value({"$pair": [{"$bytes": 0}, "16000"]}, [b"x"])
    with pytest.raises(InputError, match="not UTF-8 JSON"):
        codec.parse_request(b"\xff{")


def test_server_errors_come_back_as_their_own_class() -> None:
    text = (
        "[400] Traceback (most recent call last):\n  File ...\n"
        "edge_sdk.serving.server._RequestFailedError: "
        + codec.ERROR_MARKER
        + codec.error_payload(InputError('image bytes: truncated PNG "x"\nline 2'))
        + "\n\nAt:\n  model.py(501): execute"
    )
    error = codec.error_in_message(text, ServerError)
    assert type(error) is InputError and str(error) == 'image bytes: truncated PNG "x"\nline 2'
    assert type(codec.error_from_payload(codec.error_payload(BackendError("b")), ServerError)) \
        is BackendError  # fmt: skip
    assert type(codec.error_from_payload('{"type": "KeyError", "message": "m"}', ServerError)) \
        is ServerError  # fmt: skip
    assert codec.error_in_message("[500] unrelated failure", ServerError) is None


def test_server_urls_are_parsed_or_refused() -> None:
    assert parse_url("localhost:8000") == ("http", "localhost:8000")
    assert parse_url("http://10.0.0.5") == ("http", "10.0.0.5:8000")
    assert parse_url("grpc://edge-box:9001") == ("grpc", "edge-box:9001")
    assert parse_url("grpc://[::1]") == ("grpc", "[::1]:8001")
    for bad in ("", "ftp://host:1", "http://host:1/v2/models", "http://:80", "http://h:99999"):
        with pytest.raises(InputError):
            parse_url(bad)


def test_an_unreachable_server_is_a_server_error() -> None:
    pytest.importorskip("tritonclient.http", reason="pip install 'edge-sdk[serve]'")
    (port,) = free_ports(1)
    for scheme in ("http", "grpc"):
        with pytest.raises(ServerError, match=f"cannot reach the edge-sdk server at {scheme}://"):
            edge_sdk.connect(f"{scheme}://127.0.0.1:{port}", timeout=5)


# --------------------------------------------------------------------------- server setup
def test_serve_refuses_numpy_2_with_the_reason() -> None:
    pytest.importorskip("pytriton", reason="pip install 'edge-sdk[serve]'")
    with pytest.raises(BackendError, match=r"numpy 2\.4\.6.*built for NumPy 1.*numpy<2"):
        check_environment("2.4.6")
    check_environment("1.26.4")


def test_the_stub_loads_this_pythons_libpython() -> None:
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR")
    path = stub_library_path({"LD_LIBRARY_PATH": f"/opt/x:{libdir}:/opt/y"})
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        assert path == f"{libdir}:/opt/x:/opt/y"
    else:  # a static interpreter: nothing to point the stub at
        assert path == f"/opt/x:{libdir}:/opt/y"


def test_serve_options_are_checked_before_triton_starts() -> None:
    ServeOptions().check()
    for bad in (
        {"http_port": 0},
        {"grpc_port": 8000},
        {"workers": 0},
        {"max_batch_size": True},
        {"batch_delay_ms": -1.0},
    ):
        with pytest.raises(InputError):
            ServeOptions(**bad).check()
    refused = runner.invoke(app, ["serve", "--http-port", "9000", "--grpc-port", "9000"])
    assert refused.exit_code == 2 and "must differ" in refused.output


# --------------------------------------------------------------------------- accuracy
def test_accuracy_with_concurrency_keeps_the_data_sets_order(local, tmp_path) -> None:
    image = cv2.imread(str(ASTRONAUT))
    for label, pixels in {"happy": image, "sad": image[:, ::-1]}.items():
        (tmp_path / label).mkdir()
        for i in range(3):
            assert cv2.imwrite(str(tmp_path / label / f"{i}.png"), pixels[i * 10 :])
        (tmp_path / label / "z-broken.png").write_bytes(_truncated_png())
    data = read_dataset(tmp_path, "folder")
    steps: list[int] = []
    one = check_accuracy(local, data)
    three = check_accuracy(local, data, concurrency=3, on_step=lambda d, t, _: steps.append(d))
    assert three.to_dict()["metrics"] == one.to_dict()["metrics"]
    assert three.problems == one.problems and len(one.problems) == 2
    assert three.problems[0].startswith(str(tmp_path / "happy"))  # data set order
    assert sorted(steps) == list(range(1, 9)) and three.concurrency == 3
    assert three.throughput > 0 and three.to_dict()["context"]["concurrency"] == 3
    with pytest.raises(InputError, match="concurrency must be an integer >= 1"):
        check_accuracy(local, data, concurrency=0)
