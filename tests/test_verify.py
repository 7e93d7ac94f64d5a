"""verify(): every runnable backend/precision against the reference, per output.

The shipped default bundle must pass; a bundle whose ONNX was perturbed (and re-hashed, so
the bundle itself still loads) must fail and name the graph and the output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from edge_sdk.bundle import MANIFEST_NAME, ModelBundle, sha256_file
from edge_sdk.checks.feeds import feeds_for_sizes, fit_dims, generate_feeds
from edge_sdk.checks.verify import (
    Tolerance,
    ToleranceOverrides,
    check_output,
    tolerance_for,
    verify,
)
from edge_sdk.cli import app
from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec
from edge_sdk.models.families import families
from edge_sdk.parity import rules_from_manifest
from edge_sdk.reports.html import check_page, png_size

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _copy(bundle: ModelBundle, target: Path) -> Path:
    shutil.copytree(bundle.root, target)
    return target


def _rewrite_manifest(root: Path, edit) -> None:
    """Apply ``edit`` to the manifest JSON and re-hash every artifact (bundle stays loadable)."""
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    for artifact in data["artifacts"]:
        artifact["sha256"] = sha256_file(root / artifact["path"])
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _perturb_onnx(path: Path, scale: float = 0.05) -> str:
    """Add noise to the largest float initializer of an ONNX file; returns its name."""
    model = onnx.load(str(path))
    target = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(target).astype(np.float32)
    noise = np.random.default_rng(0).normal(0.0, scale * (values.std() + 1e-3), values.shape)
    target.CopyFrom(numpy_helper.from_array((values + noise).astype(np.float32), target.name))
    onnx.save(model, str(path))
    return target.name


def _add_int8(root: Path, graph: str) -> Path:
    """Quantise one graph with ONNX Runtime (QDQ) and list it in the manifest as int8."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    bundle = ModelBundle.load(root)
    spec = bundle.manifest.graph(graph)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(
                fs.runs[0] for seed in range(8) for fs in feeds_for_sizes(spec, ("opt",), seed)
            )

        def get_next(self):
            return next(self._feeds, None)

    target = f"{graph}.int8.onnx"
    quantize_static(
        str(root / f"{graph}.onnx"),
        str(root / target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )

    def add(data: dict) -> None:
        data["artifacts"].append(
            {
                "path": target,
                "sha256": "0" * 64,
                "format": "onnx",
                "graph": graph,
                "precision": "int8",
                "target": "any",
                "built_with": {},
            }
        )

    _rewrite_manifest(root, add)
    return root


# --------------------------------------------------------------------------- the face bundle


def test_verify_passes_on_the_default_face_bundle(face_bundle, device) -> None:
    result = verify(face_bundle, device, max_elements=1 << 20)
    assert result.passed, result.failures()
    graphs = {g.name for g in face_bundle.manifest.graphs}
    assert set(result.references) == graphs
    assert all(r.startswith("torch/fp32") for r in result.references.values())
    compared = {(c.graph, c.backend, c.precision) for c in result.candidates}
    assert {(g, "ort-cpu", "fp32") for g in graphs} <= compared
    for cand in result.candidates:
        rules = cand.tolerance.rules
        assert rules["probabilities"].atol == 1e-5 and "manifest" in cand.tolerance.source
        names = {o.output for o in cand.outputs}
        assert names == {t.name for t in face_bundle.manifest.graph(cand.graph).outputs}
        for out in cand.outputs:
            assert out.non_finite == 0 and out.max_abs < 1e-5 and out.worst_ratio <= 1.0
    # generated inputs cover the profile: opt, min and (capped) max of the detector
    assert len(result.feeds["pnet"]) == 3 and "capped" in result.feeds["pnet"][2]
    # strict JSON: no NaN/Infinity tokens
    from edge_sdk.reports.jsonio import dumps

    payload = json.loads(dumps(result.to_dict()))
    assert payload["passed"] is True and payload["failures"] == []


def test_verify_fails_on_a_perturbed_onnx_and_names_the_output(face_bundle, tmp_path) -> None:
    root = _copy(face_bundle, tmp_path / "perturbed")
    _perturb_onnx(root / "classifier.onnx")
    _rewrite_manifest(root, lambda data: None)
    ModelBundle.load(root)  # the hashes match: only verify can tell

    result = _invoke("verify", str(root), "--graphs", "classifier,rnet")
    assert result.exit_code == 1, result.output
    assert "classifier.probabilities ort-cpu/fp32" in result.output
    assert "FAIL" in result.output and "exceeds atol" in result.output
    assert "rnet.prob ort-cpu/fp32" not in result.output.split("FAIL", 1)[-1]

    as_json = _invoke(
        "verify", str(root), "--graphs", "classifier", "--backends", "ort-cpu", "--json"
    )
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout[: as_json.stdout.rindex("}") + 1])
    assert payload["passed"] is False
    (cand,) = payload["candidates"]
    assert cand["graph"] == "classifier" and cand["outputs"][0]["output"] == "probabilities"
    assert cand["outputs"][0]["max_abs"] > 1e-4


def test_verify_cli_passes_and_writes_a_report(face_bundle, tmp_path) -> None:
    report = tmp_path / "report"
    result = _invoke("verify", str(face_bundle.root), "--report", str(report), "--sizes", "opt")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    page = report / "index.html"
    assert check_page(page) == []
    assert "parity.png" in page.read_text(encoding="utf-8")
    width, height = png_size(report / "parity.png")
    assert width >= 400 and height >= 200
    saved = json.loads((report / "verify.json").read_text(encoding="utf-8"))
    assert saved["passed"] is True and saved["check"] == "verify"


def test_overrides_tighten_the_tolerance(face_bundle) -> None:
    result = _invoke(
        "verify",
        str(face_bundle.root),
        "--graphs",
        "classifier",
        "--sizes",
        "max",
        "--atol",
        "0",
        "--rtol",
        "0",
    )
    assert result.exit_code == 1
    assert "classifier.probabilities" in result.output and "overridden" in result.output


def test_backend_filter_and_skips(face_bundle, device) -> None:
    result = verify(face_bundle, device, backends=["ort-cuda"], graphs=["classifier"])
    assert not result.candidates
    assert not result.passed and "nothing was compared" in result.failures()[0]
    reasons = {s.backend: s.reason for s in result.skipped}
    assert "ort-cpu" in reasons and "requested" in reasons["ort-cpu"]


# --------------------------------------------------------------------------- INT8 artifacts


def test_int8_artifact_is_compared_with_the_gate_thresholds(face_bundle, device, tmp_path) -> None:
    root = _add_int8(_copy(face_bundle, tmp_path / "int8"), "classifier")
    bundle = ModelBundle.load(root)
    result = verify(bundle, device, graphs=["classifier"])
    by_precision = {c.precision: c for c in result.candidates}
    assert set(by_precision) == {"fp32", "int8"}
    int8 = by_precision["int8"]
    assert int8.tolerance.atol is None and int8.tolerance.min_agreement == 0.99
    (out,) = int8.outputs
    assert out.kind == "probabilities" and 0.0 < out.max_abs < 0.5
    assert out.agreement is not None and out.max_prob_diff is not None
    # on generated noise the decision-level criteria are advisory, never silently dropped
    assert result.passed, result.failures()
    strict = verify(
        bundle,
        device,
        graphs=["classifier"],
        strict=True,
        overrides=ToleranceOverrides(max_prob_diff=1e-6),
    )
    assert not strict.passed
    assert any(
        line.startswith("classifier.probabilities ort-cpu/int8: max_prob_diff")
        for line in strict.failures()
    )


def test_int8_thresholds_come_from_the_manifest(face_bundle, tmp_path) -> None:
    root = _add_int8(_copy(face_bundle, tmp_path / "int8"), "classifier")

    def tolerances(data: dict) -> None:
        data["config"]["tolerances"] = {"int8": {"min_agreement": 0.5, "max_prob_diff": 0.4}}

    _rewrite_manifest(root, tolerances)
    manifest = ModelBundle.load(root).manifest
    tol = tolerance_for(manifest, "classifier", "int8")
    assert (tol.min_agreement, tol.max_prob_diff) == (0.5, 0.4)
    assert tol.source == "manifest config.tolerances"
    assert tolerance_for(manifest, "classifier", "fp32").rules["probabilities"].atol == 1e-5


def test_data_npz_with_labels_gives_metric_deltas(face_bundle, device, tmp_path) -> None:
    from edge_sdk.checks.feeds import load_feeds

    spec = face_bundle.manifest.graph("classifier")
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (10, 1, 64, 64)).astype(np.float32)
    path = tmp_path / "feeds.npz"
    np.savez(
        path,
        **{"classifier/image": images, "classifier/probabilities:labels": rng.integers(0, 7, 10)},
    )
    data = load_feeds(path, face_bundle, device)
    assert set(data) == {"classifier"} and data["classifier"].samples == 10
    assert len(data["classifier"].runs) == 1  # ten single samples batched into one run
    result = verify(face_bundle, device, data=data, graphs=[spec.name])
    assert result.passed, result.failures()
    (out,) = result.candidates[0].outputs
    assert out.metric_delta == 0.0 and out.worst_size == "data (10 samples)"

    np.savez(tmp_path / "bad.npz", **{"nosuch/image": images})
    cli = _invoke("verify", str(face_bundle.root), "--data", str(tmp_path / "bad.npz"))
    assert cli.exit_code == 2 and "nosuch" in cli.output


# --------------------------------------------------------------------------- every family


RECIPES = [f for f in families() if f.recipe is not None]


@pytest.mark.parametrize("family", RECIPES, ids=[f.name for f in RECIPES])
def test_verify_passes_for_each_tiny_family(family, device, tmp_path) -> None:
    from export.family_export import export_family

    bundle = export_family(family.name, tmp_path / "bundle", config="tiny", untrained=True)
    result = verify(bundle, device, sizes=("opt", "min"))
    assert result.passed, result.failures()
    assert {c.graph for c in result.candidates} == {g.name for g in bundle.manifest.graphs}
    declared = rules_from_manifest(bundle.manifest.config)
    assert all(c.tolerance.rules == declared for c in result.candidates)


# --------------------------------------------------------------------------- unit checks


def _spec() -> GraphSpec:
    return GraphSpec(
        name="g",
        architecture="none",
        inputs=(
            TensorSpec("x", "float32", ("batch", 3, "side", "side")),
            TensorSpec("ids", "int64", ("batch", "side")),
            TensorSpec("ids_mask", "int64", ("batch", "side")),
        ),
        outputs=(TensorSpec("y", "float32", ("batch", 4)),),
        dims={"batch": DimRange(1, 2, 64), "side": DimRange(4, 16, 4096)},
        config={"text_vocab_size": 50},
    )


def test_generated_feeds_follow_the_spec() -> None:
    spec = _spec()
    first = generate_feeds(spec, {"batch": 2, "side": 16}, seed=1).runs[0]
    again = generate_feeds(spec, {"batch": 2, "side": 16}, seed=1).runs[0]
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert first["x"].shape == (2, 3, 16, 16) and first["x"].dtype == np.float32
    assert first["ids"].dtype == np.int64 and first["ids"].min() >= 1 and first["ids"].max() < 50
    mask = first["ids_mask"]
    assert set(np.unique(mask)) <= {0, 1} and mask[0].all() and (mask[:, 0] == 1).all()
    dims, capped = fit_dims(spec, {"batch": 64, "side": 4096}, 1 << 16)
    assert capped and 3 * dims["batch"] * dims["side"] ** 2 <= 1 << 16
    labels = [fs.label for fs in feeds_for_sizes(spec, max_elements=1 << 16)]
    assert labels[0] == "opt (batch=2, side=16)" and labels[-1].endswith("capped)")


def test_check_output_flags_nan_and_shape() -> None:
    tol = Tolerance("fp32", 1e-5, 1e-5)
    ref = np.ones((2, 4), np.float32)
    bad = ref.copy()
    bad[0, 1] = np.nan
    check = check_output("g", "y", "logits", [("opt", ref, bad)], tol)
    assert not check.passed and "1 NaN/Inf values" in check.failures
    shape = check_output("g", "y", "logits", [("opt", ref, ref[:1])], tol)
    assert not shape.passed and "shape" in shape.failures[0]
    close = check_output("g", "y", "logits", [("opt", ref, ref + 5e-6)], tol)
    assert close.passed and close.agreement == 1.0 and 0.2 < close.worst_ratio < 0.3
