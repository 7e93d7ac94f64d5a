"""bench(): latency per graph, throughput by batch, cost vs variable dims, pipeline stages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.checks.bench import Latency, batch_sizes, bench, sweep_values, time_calls
from edge_sdk.cli import app
from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec
from edge_sdk.reports.html import check_page, png_size

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_latency_summary() -> None:
    latency = Latency(tuple(float(v) for v in range(1, 101)))
    assert latency.p50 == pytest.approx(50.5)
    assert latency.p90 == pytest.approx(90.1) and latency.p99 == pytest.approx(99.01)
    summary = latency.to_dict()
    assert summary["runs"] == 100 and summary["min_ms"] == 1.0 and summary["max_ms"] == 100.0
    calls = []
    timed = time_calls(lambda: calls.append(1), warmup=2, runs=3)
    assert len(calls) == 5 and len(timed.samples_ms) == 3 and min(timed.samples_ms) >= 0


def _spec() -> GraphSpec:
    return GraphSpec(
        name="g",
        architecture="none",
        inputs=(TensorSpec("x", "float32", ("batch", 8, "frames")),),
        outputs=(TensorSpec("y", "float32", ("batch", 7)),),
        dims={"batch": DimRange(1, 2, 16), "frames": DimRange(10, 100, 1000)},
    )


def test_batch_sizes_and_sweep_values_respect_the_profile() -> None:
    spec = _spec()
    assert batch_sizes(spec, (1, 2, 4, 8, 16, 32), 1 << 20) == [1, 2, 4, 8, 16]
    assert batch_sizes(spec, (1, 2, 4, 8, 16), 8 * 100 * 4) == [1, 2, 4]  # element cap
    values = sweep_values(spec, "frames", 4, 1 << 20)
    assert values[0] == 10 and values[-1] == 1000 and 100 in values
    assert values == sorted(values)
    assert sweep_values(spec, "frames", 4, 2 * 8 * 200) == [10, 46, 100]  # 215, 1000 too big


def test_bench_face_bundle(face_bundle, device) -> None:
    result = bench(
        face_bundle,
        device,
        warmup=1,
        runs=3,
        batches=(1, 4),
        sweep_points=3,
        max_elements=1 << 17,
    )
    graphs = {g.name for g in face_bundle.manifest.graphs}
    assert {g.graph for g in result.graphs} == graphs
    for timing in result.graphs:
        lat = timing.latency
        assert len(lat.samples_ms) == 3 and 0 < lat.p50 <= lat.p90 <= lat.p99
        assert timing.backend == "ort-cpu/fp32" and timing.throughput > 0
    # pnet's leading dim is a fixed 1: no batch rows; the others batch along "batch"
    assert {b.graph for b in result.batches} == {"rnet", "onet", "classifier"}
    assert {b.items for b in result.batches if b.graph == "classifier"} == {1, 4}
    swept = {(s.graph, s.dim) for s in result.sweeps}
    assert swept == {("pnet", "height"), ("pnet", "width")}
    heights = [s.value for s in result.sweeps if s.dim == "height"]
    assert heights[0] == 12 and heights == sorted(heights)
    stages = {s.stage for s in result.stages}
    assert {"decode", "detect", "classify", "e2e"} <= stages
    assert result.peak_rss_mb > 10 and result.machine["logical_cores"]
    payload = result.to_dict()
    assert payload["settings"]["runs"] == 3 and payload["graphs"][0]["samples_ms"]


def test_bench_cli_table_json_and_report(face_bundle, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_SDK_THREADS", "0")  # --threads sets it; restored afterwards
    common = [
        "bench",
        str(face_bundle.root),
        "--graphs",
        "classifier,pnet",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--batches",
        "1,2",
        "--sweep-points",
        "2",
        "--max-elements",
        "40000",
    ]
    table = _invoke(*common, "--threads", "1")
    assert table.exit_code == 0, table.output
    for title in (
        "latency per graph",
        "throughput at batch sizes",
        "cost vs variable dims",
        "pipeline stages",
        "peak RSS",
    ):
        assert title in table.output

    as_json = _invoke(*common, "--json", "--no-sweep")
    assert as_json.exit_code == 0
    payload = json.loads(as_json.stdout)
    assert payload["check"] == "bench" and payload["sweeps"] == []
    assert {g["graph"] for g in payload["graphs"]} == {"classifier", "pnet"}

    report = tmp_path / "report"
    written = _invoke(*common, "--report", str(report))
    assert written.exit_code == 0, written.output
    assert check_page(report / "index.html") == []
    for name in ("latency.png", "throughput.png", "cost_vs_size.png"):
        width, height = png_size(report / name)
        assert width >= 400 and height >= 250, name
    saved = json.loads((report / "bench.json").read_text(encoding="utf-8"))
    assert saved["peak_rss_mb"] > 0


def test_bench_tiny_audio_family_sweeps_frames(device, tmp_path) -> None:
    from export.family_export import export_family

    bundle = export_family("av-fbp", tmp_path / "bundle", config="tiny", untrained=True)
    result = bench(bundle, device, warmup=0, runs=2, batches=(1, 2), sweep_points=3)
    dims = {(s.graph, s.dim) for s in result.sweeps}
    assert ("audio_only", "frames") in dims and ("audio_video", "video_frames") in dims
    assert not any(s.dim == "batch" for s in result.sweeps)  # batch is the throughput table
    assert not result.stages  # only face bundles have image stages
    assert all(np.isfinite(s.latency.p50) for s in result.sweeps)


def test_bench_rejects_bad_options(face_bundle) -> None:
    result = _invoke("bench", str(face_bundle.root), "--batches", "one")
    assert result.exit_code == 2 and "--batches" in result.output
