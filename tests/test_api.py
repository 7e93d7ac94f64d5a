"""The Recognizer: bundles -> pipelines by registry, one shared detector, one predict for every
modality, typed results, thread safety and the bounded queue."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk.api import Prediction, Recognizer
from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BundleError
from edge_sdk.pipelines.executor import BoundedExecutor, QueueFullError
from edge_sdk.pipelines.face import FacePrediction
from edge_sdk.pipelines.registry import pipelines
from tests.conftest import ASTRONAUT
from tests.support.bundles import clip, tiny_bundles, voiced


@pytest.fixture(scope="module")
def bundles(face_bundle) -> dict[str, ModelBundle]:
    return {"face-fer7": face_bundle, **tiny_bundles()}


@pytest.fixture(scope="module")
def everything(bundles, device):
    order = ("face-fer7", "face-caf", "face-expclip", "scene-cocoer", "av-fbp", "dialog-m2fnet")
    with edge_sdk.load([bundles[f] for f in order], device=device) as recognizer:
        yield recognizer


def test_every_family_pipeline_is_registered() -> None:
    registered = pipelines()
    assert {"face", "face-caf", "face-expclip", "scene-cocoer", "av-fbp",
            "dialog-m2fnet"} <= set(registered)
    assert {cls.modality for cls in registered.values()} == {"face", "scene", "audio", "dialog"}


def test_unknown_pipeline_and_duplicate_modality_are_bundle_errors(bundles, device) -> None:
    scene = bundles["scene-cocoer"]
    manifest = dataclasses.replace(
        scene.manifest, config={**scene.manifest.config, "pipeline": "hologram"}
    )
    with pytest.raises(BundleError, match="declares pipeline 'hologram'; this SDK runs"):
        Recognizer(ModelBundle(scene.root, manifest), device)
    with pytest.raises(BundleError, match="two scene bundles"):
        Recognizer([scene, scene], device)
    with pytest.raises(BundleError, match="at least one bundle"):
        Recognizer([], device)


def test_one_detector_is_shared_by_every_pipeline(everything) -> None:
    detector = everything._detector
    assert detector is everything.pipelines[0].detector  # face-fer7's own cascade
    by_family = {p.family: p for p in everything.pipelines}
    assert by_family["scene-cocoer"].detector is detector
    assert by_family["dialog-m2fnet"].detector is detector
    assert by_family["av-fbp"].encoder is by_family["face-caf"]
    assert everything.modalities == ("face", "scene", "audio", "dialog", "video")


def test_face_only_call_keeps_returning_a_face_prediction(everything) -> None:
    result = everything.predict(ASTRONAUT)
    assert isinstance(result, FacePrediction)
    face = result.faces[0]
    assert face.label == "happy"  # face-fer7 is first: its categories are the label
    assert face.zero_shot is not None and face.valence is not None
    assert set(face.zero_shot.probabilities) == set(tiny_bundles()["face-expclip"].manifest.labels)
    payload = face.to_dict()
    assert {"valence", "arousal", "zero_shot"} <= set(payload)


def test_any_combination_returns_typed_results(everything) -> None:
    result = everything.predict(
        scene={"image": ASTRONAUT, "head_boxes": [[170, 40, 280, 180]]},
        audio=(voiced(1.0, 16000), 16000),
        dialog=["i am happy", "oh no"],
    )
    assert isinstance(result, Prediction)
    assert result.face is None and result.video is None
    payload = result.to_dict()
    assert set(payload) == {"scene", "audio", "dialog", "timings_ms"}
    assert payload["scene"]["people"][0]["removed"] and payload["audio"]["graph"] == "audio_only"
    assert [u["index"] for u in payload["dialog"]["utterances"]] == [0, 1]
    assert set(result.timings_ms) == {"scene", "audio_video", "dialog", "total"}
    video_only = everything.predict(video=clip(frames=2))
    assert video_only.audio is None and len(video_only.video.frames) == 2


def test_face_families_without_fer7_use_the_given_detector(bundles, device) -> None:
    with edge_sdk.load(
        [bundles["face-caf"], bundles["scene-cocoer"]], device=device, detector=bundles["face-fer7"]
    ) as recognizer:
        face = recognizer.predict(ASTRONAUT).faces[0]
        assert face.label is None and face.probabilities == {}
        assert face.valence is not None and "zero_shot" not in face.to_dict()
        assert set(recognizer.predict(ASTRONAUT).timings_ms) == {
            "decode", "detect", "valence_arousal", "total"
        }
        assert recognizer.predict(scene=ASTRONAUT).scene.people
        assert "detector/pnet" in recognizer.backends
    with edge_sdk.load([bundles["face-caf"], bundles["face-expclip"]], device=device,
                       detector=bundles["face-fer7"]) as recognizer:
        face = recognizer.predict(ASTRONAUT).faces[0]
        assert face.label == face.zero_shot.label  # Exp-CLIP is the only categorical family


def test_default_detector_comes_from_the_default_bundle(bundles, device, tmp_path: Path,
                                                        monkeypatch) -> None:
    from edge_sdk.defaults import default_bundle_dir

    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    target = default_bundle_dir()
    target.parent.mkdir(parents=True)
    shutil.copytree(bundles["face-fer7"].root, target)
    with edge_sdk.load(bundles["face-caf"], device=device) as recognizer:
        assert recognizer.predict(ASTRONAUT).faces[0].valence is not None
    with edge_sdk.load(bundles["av-fbp"], device=device, with_default=True) as recognizer:
        assert [b.manifest.family for b in recognizer.bundles] == ["face-fer7", "av-fbp"]
        assert recognizer.labels == recognizer.bundles[0].manifest.labels


def test_concurrent_callers_get_the_sequential_answers(everything) -> None:
    frames = clip(frames=2)
    calls = [
        {"face": ASTRONAUT},
        {"scene": {"image": ASTRONAUT, "head_boxes": [[170, 40, 280, 180]]}},
        {"audio": (voiced(1.0, 16000, seed=3), 16000), "video": frames},
        {"dialog": ["i am so happy", {"text": "look", "frames": frames[:1]}]},
        {"face": ASTRONAUT, "audio": (voiced(0.7, 8000, seed=4), 8000)},
    ] * 3

    def run(kwargs):
        result = everything.predict(**kwargs)
        payload = result.to_dict()
        return _without_timings(payload)

    sequential = [run(c) for c in calls]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(run, calls))
    assert concurrent == sequential


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items()
                if k not in ("timings_ms", "fps")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_a_full_queue_is_refused_after_the_timeout(bundles, device) -> None:
    with edge_sdk.load(bundles["face-fer7"], device=device, workers=1, max_queue=1,
                       queue_timeout=0.2) as recognizer:
        release = threading.Event()
        busy = recognizer._executor.submit(release.wait)  # occupies the only worker
        queued = recognizer._executor.submit(lambda: None)  # fills the queue
        start = time.perf_counter()
        with pytest.raises(QueueFullError, match="1 calls are running and 1 are waiting"):
            recognizer.predict(ASTRONAUT)
        assert time.perf_counter() - start >= 0.15
        release.set()
        busy.result(timeout=10)
        queued.result(timeout=10)
        assert recognizer.predict(ASTRONAUT).faces  # slots are free again


def test_bounded_executor_admits_workers_plus_queue() -> None:
    executor = BoundedExecutor(workers=2, max_queue=1, timeout=0)
    release = threading.Event()
    started = []
    futures = [executor.submit(lambda i=i: (started.append(i), release.wait(5), i)[2])
               for i in range(3)]
    assert executor.pending == 3
    with pytest.raises(QueueFullError):
        executor.submit(lambda: None)
    release.set()
    assert [f.result(timeout=10) for f in futures] == [0, 1, 2]
    deadline = time.time() + 5
    while executor.pending and time.time() < deadline:
        time.sleep(0.01)
    assert executor.pending == 0
    assert executor.run(lambda x: x * 2, 21) == 42
    with pytest.raises(ZeroDivisionError):
        executor.run(lambda: 1 / 0)
    executor.shutdown()
    with pytest.raises(ValueError):
        BoundedExecutor(workers=0)


def test_waiting_callers_block_until_a_slot_frees() -> None:
    executor = BoundedExecutor(workers=1, max_queue=0, timeout=None)
    release = threading.Event()
    first = executor.submit(release.wait, 5)
    order = []

    def second() -> None:
        order.append("submitted")
        executor.run(order.append, "ran")

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.2)
    assert order == ["submitted"]  # blocked: the one slot is taken
    release.set()
    waiter.join(timeout=10)
    assert first.result() is True and order == ["submitted", "ran"]
    executor.shutdown()


def test_running_dialog_shared_by_threads(everything) -> None:
    running = everything.open_dialog()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(running.add, [f"line {i} i am happy" for i in range(8)]))
    assert len(running) == 8
    assert sorted(len(r.utterances) for r in results) == list(range(1, 9))
    rescored = everything.predict(dialog=running).dialog
    assert len(rescored.utterances) == 8
    again = everything.predict(dialog=running.utterances).dialog
    np.testing.assert_allclose(
        [list(u.probabilities.values()) for u in rescored.utterances],
        [list(u.probabilities.values()) for u in again.utterances],
        atol=1e-5,
    )


def test_batches_beyond_a_graph_profile_are_chunked(bundles, device) -> None:
    from edge_sdk.pipelines.face_families import ZeroShotHead

    head = ZeroShotHead(bundles["face-expclip"], device)
    assert head.graph.dims["batch"].max == 32
    crops = np.random.default_rng(0).normal(size=(70, 3, 32, 32)).astype(np.float32)
    whole = head.infer(crops)["logits"]
    parts = np.concatenate([head.infer(crops[i : i + 7])["logits"] for i in range(0, 70, 7)])
    assert whole.shape == (70, 7)
    np.testing.assert_allclose(whole, parts, atol=1e-5)


def test_public_names_resolve_and_import_stays_light() -> None:
    """Every name in ``edge_sdk.__all__`` exists; the bare import loads no runtime."""
    import subprocess
    import sys

    code = (
        "import sys, edge_sdk\n"
        "heavy = sorted(m for m in ('cv2', 'onnxruntime', 'torch') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in edge_sdk.__all__ if not hasattr(edge_sdk, n)]\n"
        "assert not missing, missing\n"
        "assert issubclass(edge_sdk.QueueFullError, edge_sdk.EdgeSDKError)\n"
        "assert edge_sdk.Recognizer.__module__ == 'edge_sdk.api'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_min_face_trades_small_faces_for_speed(face_bundle, bundles, device) -> None:
    """The astronaut's ~90 px face is still found with min_face 40 from fewer pyramid
    levels; with min_face beyond the 512 px image there is nothing to look at."""
    from edge_sdk.errors import InputError
    from edge_sdk.pipelines.detector import pyramid_scales

    with edge_sdk.load(face_bundle, device=device, min_face=40) as recognizer:
        config = recognizer._detector.config
        assert config.min_face == 40
        default = dataclasses.replace(config, min_face=20)
        assert len(pyramid_scales(512, 512, config)) < len(pyramid_scales(512, 512, default))
        assert [f.label for f in recognizer.predict(ASTRONAUT).faces] == ["happy"]
    with edge_sdk.load(face_bundle, device=device, min_face=600) as recognizer:
        assert recognizer.predict(ASTRONAUT).faces == ()
    for bad in (5, True, "40", 20.5):
        with pytest.raises(InputError, match="min_face must be an integer"):
            edge_sdk.load(face_bundle, device=device, min_face=bad)
    with pytest.raises(InputError, match="detect no faces"):
        Recognizer(bundles["av-fbp"], device, min_face=40)
