"""Selection by measurement (issue 13 item 4): the CPU runtime and thread count measured
fastest here open each steady-shape graph; figures are cached per machine and read back
without timing again; a corrupt cache is ignored, never trusted; ``EDGE_SDK_SELECTION``
switches it off.

The suite runs with ``EDGE_SDK_SELECTION=static`` (conftest); these tests turn measurement on.
Real sessions are timed (ONNX Runtime and OpenVINO on the face-fer7 classifier); decisions
are also checked on cached figures written by the test, which make the outcome certain.
"""

from __future__ import annotations

import json
import logging

import pytest

from edge_sdk.errors import InputError
from runtimes.base import get_backend
from runtimes.measured import (
    MARGIN,
    Variant,
    choose,
    pick,
    selection_mode,
    steady_shape,
    variants,
)
from runtimes.selection import Candidate, cpu_candidates, open_graph, rank_candidates
from runtimes.timing_cache import TimingCache, machine_key, timing_key

pytest.importorskip("openvino")


@pytest.fixture
def measured_mode(monkeypatch, tmp_path) -> TimingCache:
    """Measurement on, with a cache file of the test's own (the default path is redirected)."""
    monkeypatch.setenv("EDGE_SDK_SELECTION", "measured")
    monkeypatch.delenv("EDGE_SDK_THREADS", raising=False)
    path = tmp_path / "timings.json"
    monkeypatch.setattr("runtimes.timing_cache.default_path", lambda: path)
    return TimingCache(path)


def classifier_candidates(bundle, device) -> list[tuple[str, object]]:
    usable = [c for c in rank_candidates(bundle.manifest, "classifier", device) if c.usable]
    return cpu_candidates(usable)


def write_figures(cache: TimingCache, bundle, device, ort: tuple, openvino: tuple) -> None:
    """Cache the classifier's (default threads, one thread) ms per runtime as if measured."""
    figures = {
        (name, threads): ms
        for name, pair in (("ort-cpu", ort), ("openvino", openvino))
        for threads, ms in zip((None, 1), pair, strict=True)
    }
    artifact = next(a for a in bundle.manifest.artifacts_for("classifier") if a.format == "onnx")
    machine = machine_key(device)
    cache.update(
        {
            timing_key(machine, artifact.sha256, name, get_backend(name).version(), threads): ms
            for (name, threads), ms in figures.items()
        }
    )


def test_only_graphs_fed_one_shape_are_measured(face_bundle) -> None:
    graphs = {g.name: steady_shape(g) for g in face_bundle.manifest.graphs}
    # classifier: one face (batch opt 1); P-Net: a new shape per pyramid level; R/O-Net:
    # batches of every candidate count, each an OpenVINO compile the timing would hide.
    assert graphs == {"pnet": False, "rnet": False, "onet": False, "classifier": True}


def test_variants_try_one_thread_only_where_the_caller_left_threads_open(
    face_bundle, device, monkeypatch
) -> None:
    monkeypatch.delenv("EDGE_SDK_THREADS", raising=False)
    candidates = classifier_candidates(face_bundle, device)
    assert [name for name, _ in candidates][:2] == ["ort-cpu", "openvino"]
    both = variants(candidates, None, cores=4)
    assert [(v.backend, v.threads) for v in both[:4]] == [
        ("ort-cpu", None), ("ort-cpu", 1), ("openvino", None), ("openvino", 1)
    ]  # fmt: skip
    assert {v.threads for v in variants(candidates, 1, cores=4)} == {1}
    assert {v.threads for v in variants(candidates, None, cores=1)} == {None}
    monkeypatch.setenv("EDGE_SDK_THREADS", "2")  # the user's thread count is not overruled
    assert {v.threads for v in variants(candidates, None, cores=4)} == {None}


def test_pick_keeps_the_static_choice_unless_clearly_beaten(face_bundle) -> None:
    artifact = next(a for a in face_bundle.manifest.artifacts_for("classifier"))
    ort, ov = (Variant(name, artifact.path, None, artifact) for name in ("ort-cpu", "openvino"))
    assert pick([ort, ov], {ort: 10.0, ov: 9.5}) == ort  # within the margin: noise
    assert pick([ort, ov], {ort: 10.0, ov: 10.0 / MARGIN - 0.1}) == ov
    assert pick([ort, ov], {ov: 3.0}) == ov  # the static choice could not be timed
    assert pick([ort, ov], {ort: 3.0, ov: 9.0}) == ort


def test_first_open_measures_and_caches_later_opens_read(
    face_bundle, device, measured_mode
) -> None:
    graph = face_bundle.manifest.graph("classifier")
    candidates = classifier_candidates(face_bundle, device)
    first = choose(face_bundle, graph, candidates, device, cache=measured_mode)
    assert first is not None and first.fresh
    assert len(first.timings) >= 4 and all(ms > 0 for ms in first.timings.values())
    assert first.variant == pick(list(first.timings), first.timings)
    stored = json.loads(measured_mode.path.read_text())["timings_ms"]
    assert len(stored) == len(first.timings)
    again = choose(face_bundle, graph, candidates, device, cache=measured_mode)
    assert again is not None and not again.fresh
    assert again.variant == first.variant and again.timings == first.timings
    fresh = choose(face_bundle, graph, candidates, device, cache=measured_mode, remeasure=True)
    assert fresh is not None and fresh.fresh


def test_open_graph_opens_what_the_figures_say(face_bundle, device, measured_mode, caplog) -> None:
    write_figures(measured_mode, face_bundle, device, ort=(5.0, 4.0), openvino=(1.0, 2.0))
    with (
        caplog.at_level(logging.INFO, logger="runtimes.selection"),
        open_graph(face_bundle, "classifier", device) as session,
    ):
        assert session.backend == "openvino" and not session.single_threaded
    assert "measured here: openvino/fp32 1 ms" in caplog.text
    write_figures(measured_mode, face_bundle, device, ort=(5.0, 2.0), openvino=(4.0, 4.0))
    with open_graph(face_bundle, "classifier", device) as session:
        assert session.backend == "ort-cpu" and session.single_threaded
    # A graph fed many shapes keeps the static order, timed or not.
    with open_graph(face_bundle, "rnet", device) as session:
        assert session.backend == "ort-cpu"


def test_static_mode_and_a_named_backend_time_nothing(
    face_bundle, device, measured_mode, monkeypatch
) -> None:
    write_figures(measured_mode, face_bundle, device, ort=(5.0, 5.0), openvino=(1.0, 1.0))
    monkeypatch.setenv("EDGE_SDK_SELECTION", "static")
    with open_graph(face_bundle, "classifier", device) as session:
        assert session.backend == "ort-cpu"
    monkeypatch.setenv("EDGE_SDK_SELECTION", "fastest")
    with pytest.raises(InputError, match="EDGE_SDK_SELECTION='fastest'"):
        selection_mode()


def test_an_accelerator_ranked_first_is_never_compared(face_bundle) -> None:
    artifact = next(a for a in face_bundle.manifest.artifacts_for("classifier"))
    usable = [Candidate(n, artifact, True, "") for n in ("ort-cuda", "ort-cpu", "openvino")]
    assert cpu_candidates(usable) == []
    assert [n for n, _ in cpu_candidates(usable[1:])] == ["ort-cpu", "openvino"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"version": 99, "timings_ms": {}}),
        json.dumps({"version": 1, "timings_ms": {"k": -1.0}}),
        json.dumps({"version": 1, "timings_ms": {"k": "fast"}}),
        json.dumps({"version": 1, "timings_ms": {"k": True}}),
        '{"version": 1, "timings_ms": {"k": NaN}}',
        json.dumps({"version": 1, "timings_ms": ["k", 1.0]}),
    ],
)
def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path, content, caplog) -> None:
    cache = TimingCache(tmp_path / "timings.json")
    cache.path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="runtimes.timing_cache"):
        assert cache.read() == {}
    assert "timing cache" in caplog.text
    cache.update({"k": 2.5})
    assert cache.read() == {"k": 2.5}


def test_an_oversized_or_unwritable_cache_costs_nothing(tmp_path, caplog) -> None:
    cache = TimingCache(tmp_path / "timings.json")
    cache.path.write_text(" " * ((4 << 20) + 1))
    with caplog.at_level(logging.WARNING, logger="runtimes.timing_cache"):
        assert cache.read() == {}
    blocked = TimingCache(tmp_path / "file" / "timings.json")
    (tmp_path / "file").write_text("a file where a folder should be")
    with caplog.at_level(logging.WARNING, logger="runtimes.timing_cache"):
        blocked.update({"k": 1.0})  # logged, not raised
    assert "cannot write timing cache" in caplog.text


def test_devices_measure_ranks_by_this_machines_figures(face_bundle, measured_mode) -> None:
    from typer.testing import CliRunner

    from edge_sdk.cli import app

    args = ["devices", "--bundle", str(face_bundle.root), "--json"]
    result = CliRunner().invoke(app, [*args, "--measure"])
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.output)["ranking"]
    usable = [r for r in ranking["classifier"] if r["usable"]]
    assert {r["backend"] for r in usable[:2]} == {"ort-cpu", "openvino"}
    assert all("ms here" in r["reason"] for r in usable[:2])
    assert not any("ms here" in r["reason"] for r in ranking["rnet"])  # many shapes: static
    assert len(json.loads(measured_mode.path.read_text())["timings_ms"]) >= 4
    again = CliRunner().invoke(app, args)  # no --measure: the cached figures, same order
    assert [r["backend"] for r in json.loads(again.output)["ranking"]["classifier"]] == [
        r["backend"] for r in ranking["classifier"]
    ]


def test_only_host_cpu_runtimes_are_timed() -> None:
    cpu = {name for name in ("ort-cpu", "openvino") if get_backend(name).cpu_runtime}
    assert cpu == {"ort-cpu", "openvino"}
    for name in ("ort-cuda", "ort-tensorrt", "openvino-gpu", "openvino-npu", "openvino-auto"):
        assert not get_backend(name).cpu_runtime, name
    for name in ("torch", "torch-recorded"):  # references: no attribute, never timed
        assert not getattr(get_backend(name), "cpu_runtime", False)


def test_a_runtime_that_cannot_run_the_graph_is_recorded_and_not_tried_again(
    face_bundle, device, measured_mode, monkeypatch, caplog
) -> None:
    from edge_sdk.errors import BackendError
    from runtimes.openvino_backend import OpenVinoBackend

    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(self.name)
        raise BackendError("OpenVINO cannot compile this graph here")

    monkeypatch.setattr(OpenVinoBackend, "open", refuse)
    graph = face_bundle.manifest.graph("classifier")
    candidates = classifier_candidates(face_bundle, device)
    with caplog.at_level(logging.WARNING, logger="runtimes.measured"):
        first = choose(face_bundle, graph, candidates, device, cache=measured_mode)
    assert first is not None and first.variant.backend == "ort-cpu"
    assert "cannot time openvino/fp32" in caplog.text and "openvino/fp32 failed" in first.reason()
    stored = json.loads(measured_mode.path.read_text())["timings_ms"]
    assert sorted(v for v in stored.values() if isinstance(v, str)) == ["failed", "failed"]
    tried = len(attempts)
    again = choose(face_bundle, graph, candidates, device, cache=measured_mode)
    assert again is not None and not again.fresh and again.variant.backend == "ort-cpu"
    assert len(attempts) == tried  # read from the cache, not tried again


def test_every_family_passes_verify_on_openvino(tiny_family_bundles, face_bundle, device) -> None:
    """Measurement may open any steady-shape graph on OpenVINO, so every family's graphs
    must meet their parity rules there, as ONNX Runtime's do."""
    from edge_sdk.checks.verify import verify

    for family, bundle in {**tiny_family_bundles, "face-fer7": face_bundle}.items():
        result = verify(bundle, device, backends=["openvino"], sizes=("opt",))
        assert result.candidates and {c.backend for c in result.candidates} == {"openvino"}
        assert result.passed, (family, result.errors)


def test_devices_ranks_as_open_graph_opens_with_one_margin_rule(
    face_bundle, device, measured_mode
) -> None:
    """OpenVINO at 0.92 ms beats ORT's default threads (1.39) but not ORT on one thread
    (0.98) by the margin: ORT single-threaded opens, and devices puts ORT first too."""
    from runtimes.measured import cached_timings

    write_figures(measured_mode, face_bundle, device, ort=(1.39, 0.98), openvino=(0.92, 0.95))
    with open_graph(face_bundle, "classifier", device) as session:
        assert session.backend == "ort-cpu" and session.single_threaded
    timings = cached_timings(classifier_candidates(face_bundle, device), device)
    ranked = rank_candidates(face_bundle.manifest, "classifier", device, measured=timings)
    assert ranked[0].backend == "ort-cpu" and "0.98 ms here" in ranked[0].reason
