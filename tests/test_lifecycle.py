"""Sessions and pipelines with a lifecycle: ``close`` frees what a runtime holds, ``with``
closes, a closed session refuses work with a typed error, and ``Recognizer.close`` closes
every session it opened (each pipeline's and the shared detector's). Also the Pipeline
protocol every registered pipeline class satisfies through one shared constructor."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge_sdk
from edge_sdk.api import Recognizer
from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BackendError, BundleError, ClosedError, ManifestError
from edge_sdk.pipelines.base import GraphPipeline, Pipeline
from edge_sdk.pipelines.common import open_graphs
from edge_sdk.pipelines.registry import pipelines
from edge_sdk.pipelines.scene import ScenePipeline
from runtimes.base import Session
from runtimes.onnxruntime_backend import OrtBackend
from runtimes.selection import open_graph
from runtimes.tensorrt_backend import DeviceBuffers
from tests.conftest import ASTRONAUT
from tests.support.bundles import tiny_bundles

CLASSIFIER_FEED = {"image": np.zeros((1, 1, 64, 64), np.float32)}
ALL_FAMILIES = ("face-fer7", "face-caf", "face-expclip", "scene-cocoer", "av-fbp", "dialog-m2fnet")


@pytest.fixture(scope="module")
def bundles(face_bundle) -> dict[str, ModelBundle]:
    return {"face-fer7": face_bundle, **tiny_bundles()}


@pytest.fixture
def opened(monkeypatch) -> list[Session]:
    """Every session ONNX Runtime's backends open during the test, in order (the real
    ``open`` runs; the list only watches what it returns)."""
    seen: list[Session] = []
    real_open = OrtBackend.open

    def watching_open(self: OrtBackend, *args: Any, **kwargs: Any) -> Session:
        session = real_open(self, *args, **kwargs)
        seen.append(session)
        return session

    monkeypatch.setattr(OrtBackend, "open", watching_open)
    return seen


def test_closed_ort_session_refuses_run_with_a_closed_error(face_bundle, device) -> None:
    session = open_graph(face_bundle, "classifier", device, backend="ort-cpu")
    assert session.run(CLASSIFIER_FEED)["probabilities"].shape == (1, 7)
    assert not session.closed
    session.close()
    assert session.closed
    with pytest.raises(ClosedError, match="ort-cpu session of graph 'classifier' is closed"):
        session.run(CLASSIFIER_FEED)
    session.close()  # a second close is harmless
    assert session._session is None  # the InferenceSession (arena, graph) was let go


@pytest.mark.parametrize(
    ("backend", "feed_from_recording"),
    [("ort-cpu", False), ("torch", False), ("torch-recorded", True)],
)
def test_every_backend_session_closes_at_the_end_of_its_with_block(
    face_bundle, device, backend: str, feed_from_recording: bool
) -> None:
    with open_graph(face_bundle, "classifier", device, backend=backend) as session:
        assert isinstance(session, Session)  # the protocol, lifecycle included
        feeds = session.examples[0].inputs if feed_from_recording else CLASSIFIER_FEED
        assert "probabilities" in session.run(feeds)
    assert session.closed
    with pytest.raises(ClosedError, match=f"{backend} session"):
        session.run(feeds)


def test_closed_session_checks_before_the_feeds(face_bundle, device) -> None:
    """A closed session says it is closed, not that the (wrong) feeds are wrong."""
    session = open_graph(face_bundle, "classifier", device, backend="ort-cpu")
    with pytest.raises(BackendError, match="needs input 'image'"):
        session.run({})
    session.close()
    with pytest.raises(ClosedError):
        session.run({})


class CountingCudart:
    """cuda-python's calling convention ((error, value...) tuples) over a ledger of live
    allocations: what DeviceBuffers' bookkeeping is checked against where no GPU is."""

    def __init__(self, fail_free: int | None = None) -> None:
        self.live: dict[int, int] = {}
        self.next_ptr = 0x1000
        self.fail_free = fail_free

    def cudaMalloc(self, nbytes: int) -> tuple[int, int]:
        self.next_ptr += 0x1000
        self.live[self.next_ptr] = nbytes
        return 0, self.next_ptr

    def cudaFree(self, ptr: int) -> tuple[int]:
        self.live.pop(ptr)
        return (1 if ptr == self.fail_free else 0,)


def test_device_buffers_grow_only_and_free_every_buffer() -> None:
    cuda = CountingCudart()
    buffers = DeviceBuffers(cuda)
    first = buffers.get("image", 1024)
    assert buffers.get("image", 512) == first  # big enough: reused, no new allocation
    grown = buffers.get("image", 4096)
    buffers.get("probabilities", 28)
    assert list(cuda.live.values()) == [4096, 28]  # the outgrown buffer was freed
    assert buffers.pointer("image") == grown and buffers.nbytes == 4096 + 28
    buffers.free()
    assert cuda.live == {} and buffers.nbytes == 0
    buffers.free()  # nothing left: a second free frees nothing twice


def test_device_buffers_free_all_of_them_when_one_free_fails() -> None:
    cuda = CountingCudart()
    buffers = DeviceBuffers(cuda)
    bad = buffers.get("a", 8)
    buffers.get("b", 8)
    cuda.fail_free = bad
    with pytest.raises(BackendError, match="cudaFree failed for 1 buffers"):
        buffers.free()
    assert cuda.live == {} and buffers.nbytes == 0


def test_recognizer_close_closes_every_session(bundles, device, opened) -> None:
    recognizer = edge_sdk.load(
        [bundles[f] for f in ALL_FAMILIES], device=device, workspace=None
    )
    # face-fer7: pnet rnet onet classifier; caf 1; expclip 1; scene 2; av 2; dialog 4
    assert len(opened) == 4 + 1 + 1 + 2 + 2 + 4
    assert not any(s.closed for s in opened)
    recognizer.close()
    assert all(s.closed for s in opened)
    with pytest.raises(ClosedError):
        recognizer.detector.detect(np.zeros((64, 64, 3), np.uint8))


def test_a_recognizer_that_fails_to_open_leaves_no_session_open(bundles, device, opened) -> None:
    """Two scene bundles are refused after both pipelines opened their graphs: every
    session opened so far (face-caf's, both scenes') is closed again."""
    from edge_sdk.errors import BundleError

    scene = bundles["scene-cocoer"]
    with pytest.raises(BundleError, match="two scene bundles"):
        Recognizer([bundles["face-caf"], scene, scene], device, workspace=None)
    assert len(opened) >= 5 and all(s.closed for s in opened)


def test_recognizer_close_closes_the_detector_it_opened_itself(bundles, device, opened) -> None:
    """Without face-fer7 the Recognizer opens the shared detector from another bundle;
    no pipeline owns those three sessions, and they are closed too."""
    with Recognizer(bundles["face-caf"], device, detector=bundles["face-fer7"]) as recognizer:
        assert recognizer.detector is not None
        assert recognizer.predict(ASTRONAUT).faces
        assert len(opened) == 3 + 1
    assert all(s.closed for s in opened)


class NoCloseWrapper:
    """A session wrapper with no ``close`` of its own (as calibration's recorder)."""

    def __init__(self, inner: Session) -> None:
        self.inner = inner
        self.backend, self.precision = inner.backend, inner.precision
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.run(feeds)


def test_wrapped_sessions_are_closed_through_what_they_wrap(bundles, device, opened) -> None:
    with Recognizer(
        [bundles["face-fer7"]], device, wrap=lambda _, s: NoCloseWrapper(s), workers=1
    ) as recognizer:
        assert recognizer.predict(ASTRONAUT).faces
    assert len(opened) == 4 and all(s.closed for s in opened)


def test_every_registered_pipeline_class_satisfies_the_pipeline_protocol(
    bundles, device
) -> None:
    by_pipeline = {b.manifest.config["pipeline"]: b for b in bundles.values()}
    registered = pipelines()
    assert set(registered) <= set(by_pipeline)
    for name, cls in registered.items():
        assert issubclass(cls, GraphPipeline), name
        with cls(by_pipeline[name], device) as pipeline:
            assert isinstance(pipeline, Pipeline), name
            assert set(pipeline.sessions) == set(pipeline.graphs) == set(pipeline.backends)
            sessions = list(pipeline.sessions.values())
            assert not any(s.closed for s in sessions)
        assert all(s.closed for s in sessions), name


def test_pipeline_constructors_share_one_prologue() -> None:
    """Family, labels, opening the graphs and describing their backends are written once,
    in GraphPipeline; the pipeline classes write only their own hooks."""
    prologue = ("manifest.family", "manifest.labels", "open_graphs(", "describe(")
    for cls in pipelines().values():
        for klass in cls.__mro__:
            if klass is GraphPipeline or not issubclass(klass, GraphPipeline):
                continue
            source = inspect.getsource(klass)
            written = [line for line in prologue if line in source]
            assert not written, f"{klass.__name__} repeats the prologue: {written}"
    assert all(line in inspect.getsource(GraphPipeline) for line in prologue)


def test_a_failed_start_closes_the_sessions_it_opened(bundles, device, opened) -> None:
    with pytest.raises(BundleError, match="workspace must be"):
        ScenePipeline(bundles["scene-cocoer"], device, workspace="bogus")
    assert len(opened) == 2 and all(s.closed for s in opened)


def test_a_graph_that_cannot_open_leaves_no_other_open(face_bundle, device, opened) -> None:
    with pytest.raises(ManifestError, match="has no graph 'nope'"):
        open_graphs(face_bundle, ("pnet", "classifier", "nope"), device, "ort-cpu", None)
    assert len(opened) == 2 and all(s.closed for s in opened)


def test_detector_is_a_public_part_of_the_recognizer(bundles, device) -> None:
    with Recognizer([bundles["face-fer7"], bundles["scene-cocoer"]], device,
                    workspace=None) as recognizer:
        assert recognizer.detector is recognizer.pipelines[0].detector
        assert recognizer.pipelines[1].detector is recognizer.detector
    with Recognizer(bundles["av-fbp"], device) as recognizer:
        assert recognizer.detector is None  # no loaded family needs faces
    package = Path(__file__).parents[1] / "edge_sdk" / "checks" / "accuracy"
    sources = sorted(package.glob("*.py"))
    assert sources, f"no accuracy check modules under {package}"
    assert all("_detector" not in path.read_text() for path in sources)


@pytest.mark.tensorrt
def test_tensorrt_session_frees_its_device_buffers_on_close(face_bundle, device, tmp_path) -> None:
    """Where TensorRT runs: a used engine holds device buffers until its block ends."""
    for module in ("tensorrt", "cuda"):
        pytest.importorskip(module, reason=f"{module} (TensorRT / cuda-python) is not installed")
    if device.primary_gpu is None:
        pytest.skip("no NVIDIA GPU on this machine")
    from export.tensorrt_build import build_bundle_engines

    copy = Path(shutil.copytree(face_bundle.root, tmp_path / "engines"))
    built = build_bundle_engines(copy, device, "fp16", graphs=("classifier",))
    with open_graph(built, "classifier", device, backend="tensorrt") as session:
        assert session.run(CLASSIFIER_FEED)["probabilities"].shape == (1, 7)
        assert session._buffers.nbytes > 0
    assert session._buffers.nbytes == 0 and session._context is None
    with pytest.raises(ClosedError, match="tensorrt session"):
        session.run(CLASSIFIER_FEED)
