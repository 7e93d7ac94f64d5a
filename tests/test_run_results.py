"""verify split into plan -> run -> compare: run results are saved, reloaded and judged later,
and every session a check opens is closed when it is done."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_sdk.checks.bench import bench
from edge_sdk.checks.compare import compare_results
from edge_sdk.checks.feeds import load_feeds
from edge_sdk.checks.run_results import GraphRuns, RunnerOutputs, RunResults
from edge_sdk.checks.verify import ToleranceOverrides, plan_verify, run_plan, verify
from edge_sdk.errors import InputError
from edge_sdk.reports.jsonio import dumps
from runtimes.onnxruntime_backend import OrtBackend
from runtimes.torch_backend import TorchBackend


def _labelled_data(face_bundle, device, tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "feeds.npz"
    np.savez(
        path,
        **{
            "classifier/image": rng.uniform(-1, 1, (6, 1, 64, 64)).astype(np.float32),
            "classifier/probabilities:labels": rng.integers(0, 7, 6),
        },
    )
    return load_feeds(path, face_bundle, device)


def test_run_results_survive_a_save_and_load_round_trip(face_bundle, device, tmp_path) -> None:
    data = _labelled_data(face_bundle, device, tmp_path)
    plan = plan_verify(
        face_bundle, device, data=data, graphs=["classifier", "pnet"], sizes=("opt", "min")
    )
    results = run_plan(face_bundle, device, plan)
    path = results.save(tmp_path / "runs.npz")
    loaded = RunResults.load(path)

    assert (loaded.bundle, loaded.root, loaded.device) == (
        results.bundle,
        results.root,
        results.device,
    )
    assert loaded.skipped == results.skipped and loaded.errors == results.errors
    for before, after in zip(results.graphs, loaded.graphs, strict=True):
        assert before.graph == after.graph
        for fs_before, fs_after in zip(before.feeds, after.feeds, strict=True):
            assert fs_after.label == fs_before.label and fs_after.dims == fs_before.dims
            assert fs_after.source == fs_before.source
            for run_before, run_after in zip(fs_before.runs, fs_after.runs, strict=True):
                assert all(np.array_equal(run_before[k], run_after[k]) for k in run_before)
                assert all(run_before[k].dtype == run_after[k].dtype for k in run_before)
            assert set(fs_after.labels) == set(fs_before.labels)
        runners = [
            (before.reference, after.reference),
            *zip(before.candidates, after.candidates, strict=True),
        ]
        for r_before, r_after in runners:
            assert r_after.describe() == r_before.describe() and r_after.error is None
            for per_before, per_after in zip(r_before.outputs, r_after.outputs, strict=True):
                for out_before, out_after in zip(per_before, per_after, strict=True):
                    assert all(np.array_equal(out_before[k], out_after[k]) for k in out_before)
    assert loaded.graphs[0].feeds[0].labels["probabilities"].tolist() == (
        data["classifier"].labels["probabilities"].tolist()
    )

    # Judged from the file, the verdict and every figure are those of a direct verify.
    direct = verify(
        face_bundle, device, data=data, graphs=["classifier", "pnet"], sizes=("opt", "min")
    )
    again = compare_results(loaded, face_bundle.manifest)
    assert json.loads(dumps(again.to_dict())) == json.loads(dumps(direct.to_dict()))
    assert again.passed and again.candidates[0].outputs[0].metric_delta == 0.0

    # Other tolerances on the same saved runs need no model run.
    tight = compare_results(loaded, face_bundle.manifest, overrides=ToleranceOverrides(0, 0))
    assert not tight.passed and any("exceeds atol 0" in line for line in tight.failures())


def test_failed_runners_and_odd_names_round_trip(tmp_path) -> None:
    from edge_sdk.checks.feeds import FeedSet

    feeds = (FeedSet("g", "opt", {"batch": 1}, ({"in/put:0": np.ones((1, 2), np.int64)},)),)
    results = RunResults(
        bundle="fam/v",
        root="/nowhere",
        device="test",
        graphs=(
            GraphRuns(
                "g",
                feeds,
                RunnerOutputs("torch", "fp32", "g.pt", (({"out/0": np.zeros(3, bool)},),)),
                (RunnerOutputs("ort-cpu", "int8", "g.int8.onnx", error="could not open"),),
            ),
            GraphRuns("h", (), RunnerOutputs("ort-cpu", "fp32", "h.onnx", error="no memory")),
        ),
        errors=("k: no reference",),
    )
    loaded = RunResults.load(results.save(tmp_path / "runs"))
    assert not (tmp_path / "runs.npz").exists()  # saved exactly where asked
    (g, h) = loaded.graphs
    assert g.feeds[0].runs[0]["in/put:0"].dtype == np.int64
    assert g.reference.outputs[0][0]["out/0"].dtype == bool
    assert g.candidates[0].error == "could not open" and g.candidates[0].outputs == ()
    assert h.reference.error == "no memory" and loaded.errors == ("k: no reference",)


def test_damaged_run_results_are_refused_with_an_input_error(tmp_path) -> None:
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(InputError, match="no readable run-results index"):
        RunResults.load(tmp_path / "plain.npz")
    other = json.dumps({"format": "polygraphy", "version": 1}).encode()
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(other, np.uint8))
    with pytest.raises(InputError, match="'polygraphy', not edge-sdk-run-results"):
        RunResults.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable run-results"):
        RunResults.load(tmp_path / "text.npz")


def test_run_results_of_another_bundle_are_refused(face_bundle) -> None:
    results = RunResults(bundle="other/v1", root="/x", device="test", graphs=())
    with pytest.raises(InputError, match="of bundle other/v1"):
        compare_results(results, face_bundle.manifest)


@pytest.fixture
def opened_sessions(monkeypatch) -> list:
    """Every session the ONNX Runtime and PyTorch backends open during the test."""
    opened: list = []
    for cls in (OrtBackend, TorchBackend):
        original = cls.open

        def spy(self, *args, _original=original, **kwargs):
            session = _original(self, *args, **kwargs)
            opened.append(session)
            return session

        monkeypatch.setattr(cls, "open", spy)
    return opened


def test_verify_closes_every_session_it_opens(face_bundle, device, opened_sessions) -> None:
    result = verify(face_bundle, device, graphs=["classifier", "rnet"], sizes=("opt",))
    assert result.passed, result.failures()
    backends = {s.backend for s in opened_sessions}
    assert len(opened_sessions) >= 4 and {"torch", "ort-cpu"} <= backends
    assert all(s.closed for s in opened_sessions)


def test_bench_closes_every_session_it_opens(face_bundle, device, opened_sessions) -> None:
    bench(face_bundle, device, warmup=0, runs=1, batches=(1,), sweep=False, graphs=["rnet"])
    assert opened_sessions and all(s.closed for s in opened_sessions)
