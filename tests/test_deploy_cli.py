"""``edge-sdk calibrate``, ``build`` and ``doctor`` through typer's runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edge_sdk.cli import app

runner = CliRunner()


def _copy(face_bundle, tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(face_bundle.root, root)
    return root


def test_doctor_passes_on_a_good_bundle_and_fails_on_a_tampered_one(face_bundle, tmp_path):
    ok = runner.invoke(app, ["doctor", "--bundle", str(face_bundle.root)])
    assert ok.exit_code == 0, ok.output
    assert "ort-cpu" in ok.output and "every hash verified" in ok.output
    root = _copy(face_bundle, tmp_path)
    with (root / "classifier.onnx").open("ab") as handle:
        handle.write(b"\0")
    bad = runner.invoke(app, ["doctor", "--bundle", str(root)])
    assert bad.exit_code == 1 and "problem" in bad.output


def test_build_without_a_gpu_says_so(face_bundle, tmp_path) -> None:
    result = runner.invoke(app, ["build", str(_copy(face_bundle, tmp_path)), "--precision", "fp16"])
    assert result.exit_code == 2 and "NVIDIA GPU" in result.output


def test_calibrate_refuses_too_few_samples(face_bundle, tmp_path) -> None:
    root = _copy(face_bundle, tmp_path)
    feeds = tmp_path / "few.npz"
    np.savez(feeds, **{"classifier/image": np.zeros((4, 1, 64, 64), np.float32)})
    result = runner.invoke(app, ["calibrate", str(root), "--data", str(feeds)])
    assert result.exit_code == 2
    assert "calibration samples" in result.output
    assert not any(p.name.endswith(".int8.onnx") for p in root.iterdir())


def test_calibrate_rejects_generated_data_for_a_pretrained_family(face_bundle, tmp_path) -> None:
    result = runner.invoke(
        app, ["calibrate", str(_copy(face_bundle, tmp_path)), "--data", "synthetic"]
    )
    assert result.exit_code == 2 and "real data" in result.output
