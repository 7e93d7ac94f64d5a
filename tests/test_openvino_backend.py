"""The OpenVINO backend: parity with ONNX Runtime, the per-shape compile cache, the session
lifecycle, selection (after ORT CPU, measured reordering, fallback without openvino) and
every backend's ``version()``."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from calibration.reader import RecordingSession
from edge_sdk.errors import BackendError, ClosedError
from edge_sdk.parity import check_parity, rules_from_manifest
from runtimes.base import Session, all_backends, get_backend
from runtimes.selection import open_graph, rank_candidates

pytest.importorskip("openvino", reason="openvino not installed (pip install 'edge-sdk[openvino]')")

from runtimes.openvino_backend import OpenVinoBackend, OpenVinoSession

REPO = Path(__file__).resolve().parents[1]
GRAPHS = ("pnet", "rnet", "onet", "classifier")


@pytest.fixture(scope="module")
def real_feeds(face_bundle, device, astronaut) -> dict[str, list[dict[str, np.ndarray]]]:
    """What each face graph is fed on the astronaut photo: the pyramid levels, the R-Net and
    O-Net crop batches, the classifier's face (recorded from the ORT FP32 pipeline)."""
    from edge_sdk.api import Recognizer

    recorders: dict[str, RecordingSession] = {}

    def record(name: str, session: Session) -> Session:
        recorders[name] = RecordingSession(session)
        return recorders[name]

    with Recognizer(
        face_bundle, device, backend="ort-cpu", precision="fp32", wrap=record, workers=1
    ) as recognizer:
        recognizer.predict(face=astronaut)
    return {name: rec.feeds for name, rec in recorders.items()}


def _openvino(face_bundle, device, graph: str, **backend_options: object) -> OpenVinoSession:
    if backend_options:
        backend = OpenVinoBackend("openvino-test", 60, **backend_options)  # type: ignore[arg-type]
        manifest = face_bundle.manifest
        artifact = next(a for a in manifest.artifacts_for(graph) if a.format == "onnx")
        return backend.open(face_bundle, manifest.graph(graph), artifact)
    session = open_graph(face_bundle, graph, device, backend="openvino")
    assert isinstance(session, OpenVinoSession)
    return session


@pytest.mark.parametrize("graph", GRAPHS)
def test_openvino_matches_ort_fp32_by_the_parity_rules_at_real_shapes(
    graph, face_bundle, device, real_feeds
) -> None:
    feeds = real_feeds[graph]
    assert feeds, f"the pipeline fed {graph} nothing"
    kinds = {t.name: t.kind for t in face_bundle.manifest.graph(graph).outputs}
    rules = rules_from_manifest(face_bundle.manifest.config)
    with (
        _openvino(face_bundle, device, graph) as ov,
        open_graph(face_bundle, graph, device, backend="ort-cpu", precision="fp32") as ort,
    ):
        for feed in feeds:
            got, want = ov.run(feed), ort.run(feed)
            for name, kind in kinds.items():
                check = check_parity(kind, want[name], got[name], rules[kind])
                assert check.passed, f"{graph}.{name} {feed['image'].shape}: {check.describe()}"
        assert ov.compiles == len({f["image"].shape for f in feeds})


def test_fp32_graphs_are_compiled_in_f32_never_bf16(face_bundle, device) -> None:
    """OpenVINO's CPU plugin defaults to bf16 where the CPU has it: an FP32 artifact would
    silently run in lower precision."""
    with _openvino(face_bundle, device, "classifier") as ov:
        ov.run({"image": np.zeros((1, 1, 64, 64), np.float32)})
        import openvino

        (compiled,) = ov.compiled_models
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        assert hint == openvino.Type.f32, hint


def test_each_shape_is_compiled_once_and_reused(face_bundle, device) -> None:
    a = {"image": np.full((2, 3, 24, 24), 0.1, np.float32)}
    b = {"image": np.full((5, 3, 24, 24), 0.1, np.float32)}
    with _openvino(face_bundle, device, "rnet") as ov:
        first = ov.run(a)
        ov.run(b)
        again = ov.run(a)
        ov.run(b)
        assert ov.compiles == 2
        assert ov.cached_shapes == ((("image", (2, 3, 24, 24)),), (("image", (5, 3, 24, 24)),))
        np.testing.assert_array_equal(first["prob"], again["prob"])


def test_shapes_beyond_max_shapes_evict_the_least_recently_used(face_bundle, device) -> None:
    feeds = {n: {"image": np.zeros((n, 1, 64, 64), np.float32)} for n in (1, 2, 3)}
    with _openvino(face_bundle, device, "classifier", max_shapes=2) as ov:
        ov.run(feeds[1])
        ov.run(feeds[2])
        ov.run(feeds[1])  # 1 is now the most recently used; 2 goes next
        ov.run(feeds[3])
        assert [key[0][1][0] for key in ov.cached_shapes] == [1, 3]
        ov.run(feeds[2])  # evicted: compiled again
        assert ov.compiles == 4


def test_concurrent_calls_compile_each_shape_once_and_agree(face_bundle, device) -> None:
    shapes = [(1, 3, 40, 40), (1, 3, 60, 50)] * 4
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.uniform(-1, 1, s).astype(np.float32)} for s in shapes]
    with _openvino(face_bundle, device, "pnet") as serial:
        expected = [serial.run(f)["prob"] for f in feeds]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(feeds))
    with _openvino(face_bundle, device, "pnet") as ov:  # cold: the threads race to compile

        def call(i: int) -> None:
            try:
                start.wait()
                results[i] = ov.run(feeds[i])["prob"]
            except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(feeds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == len(feeds)
        assert ov.compiles == 2
    for i, prob in results.items():
        np.testing.assert_array_equal(prob, expected[i])


def test_close_releases_the_compiled_models_and_run_raises_closed_error(
    face_bundle, device
) -> None:
    ov = _openvino(face_bundle, device, "classifier")
    feed = {"image": np.zeros((1, 1, 64, 64), np.float32)}
    ov.run(feed)
    ov.close()
    assert ov.closed and ov.cached_shapes == () and ov.compiled_models == ()
    with pytest.raises(ClosedError, match="openvino session of graph 'classifier' is closed"):
        ov.run(feed)
    ov.close()  # idempotent


def test_single_thread_hint_marks_the_session_for_the_detector_fan_out(
    face_bundle, device
) -> None:
    one = open_graph(face_bundle, "pnet", device, backend="openvino", threads=1)
    default = open_graph(face_bundle, "pnet", device, backend="openvino")
    with one, default:
        assert one.single_threaded and one.config["INFERENCE_NUM_THREADS"] == "1"
        assert not default.single_threaded


def test_unreadable_graph_and_unknown_device_are_backend_errors(face_bundle) -> None:
    class Garbage:
        def read_artifact(self, artifact: object) -> bytes:
            return b"not an onnx model"

    manifest = face_bundle.manifest
    artifact = next(a for a in manifest.artifacts_for("classifier") if a.format == "onnx")
    with pytest.raises(BackendError, match="OpenVINO cannot read classifier.onnx"):
        get_backend("openvino").open(Garbage(), manifest.graph("classifier"), artifact)
    with pytest.raises(BackendError, match="unknown OpenVINO device 'TPU'"):
        OpenVinoBackend("openvino-tpu", 70, "TPU")


def test_openvino_ranks_after_ort_cpu_unless_measured_faster(face_bundle, device) -> None:
    static = [c for c in rank_candidates(face_bundle.manifest, "rnet", device) if c.usable]
    assert [c.backend for c in static[:2]] == ["ort-cpu", "openvino"]
    faster = {("openvino", "rnet.onnx"): 8.0, ("ort-cpu", "rnet.onnx"): 10.0}
    measured = [
        c
        for c in rank_candidates(face_bundle.manifest, "rnet", device, measured=faster)
        if c.usable
    ]
    assert [c.backend for c in measured[:2]] == ["openvino", "ort-cpu"]
    assert "measured 8 ms here" in measured[0].reason
    slower = {("openvino", "rnet.onnx"): 12.0, ("ort-cpu", "rnet.onnx"): 10.0}
    ordered = rank_candidates(face_bundle.manifest, "rnet", device, measured=slower)
    assert [c.backend for c in ordered if c.usable][:2] == ["ort-cpu", "openvino"]
    with open_graph(face_bundle, "rnet", device, measured=faster) as session:
        assert session.backend == "openvino"


def test_verify_compares_openvino_with_pytorch_and_it_passes(face_bundle, device) -> None:
    from edge_sdk.checks.verify import verify

    result = verify(face_bundle, device, backends=["openvino"], max_elements=1 << 18)
    assert result.passed, result.failures()
    compared = {(c.graph, c.backend, c.precision) for c in result.candidates}
    assert compared == {(g, "openvino", "fp32") for g in GRAPHS}


def test_every_backend_reports_its_library_version() -> None:
    expected = {
        "ort-cpu": importlib.metadata.version("onnxruntime"),
        "openvino": importlib.metadata.version("openvino"),
        "torch": importlib.metadata.version("torch"),
        "torch-recorded": None,
    }
    versions = {b.name: b.version() for b in all_backends()}
    for name, version in expected.items():
        assert versions[name] == version, name
    for name, version in versions.items():
        assert version is None or isinstance(version, str), name


_BLOCKED = textwrap.dedent(
    """
    import json, sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "openvino" or name.startswith("openvino."):
                raise ImportError(f"{name} blocked for this test")
            return None

    sys.meta_path.insert(0, Refuse())
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import probe_device
    from edge_sdk.errors import BackendError
    from runtimes.base import get_backend
    from runtimes.selection import open_graph, rank_candidates

    bundle = ModelBundle.load(sys.argv[1])
    device = probe_device()
    backend = get_backend("openvino")
    ranked = rank_candidates(bundle.manifest, "classifier", device)
    row = next(c for c in ranked if c.backend == "openvino")
    chosen = open_graph(bundle, "classifier", device)
    try:
        open_graph(bundle, "classifier", device, backend="openvino")
        refused = None
    except BackendError as exc:
        refused = str(exc)
    print(json.dumps({
        "available": backend.is_available(),
        "version": backend.version(),
        "usable": row.usable,
        "reason": row.reason,
        "chosen": chosen.backend,
        "refused": refused,
        "imported": "openvino" in sys.modules,
    }))
    """
)


def test_selection_falls_back_to_ort_when_openvino_is_unimportable(face_bundle) -> None:
    import json

    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED, str(face_bundle.root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["available"] is False and seen["version"] is None
    assert seen["usable"] is False and "openvino is not installed" in seen["reason"]
    assert seen["chosen"] == "ort-cpu"
    assert seen["refused"] and "openvino is not installed" in seen["refused"]
    assert seen["imported"] is False
