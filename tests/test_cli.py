"""Every CLI command through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from edge_sdk.bundle import ModelBundle
from edge_sdk.cli import app
from edge_sdk.defaults import default_bundle_dir
from tests.conftest import ASTRONAUT

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_predict_table(face_bundle) -> None:
    result = _invoke("predict", str(ASTRONAUT), "--bundle", str(face_bundle.root))
    assert result.exit_code == 0, result.output
    assert "happy" in result.output
    assert "179" in result.output  # x1 of the face box


def test_predict_json(face_bundle) -> None:
    result = _invoke("predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["face_count"] == 1
    assert payload["faces"][0]["label"] == "happy"
    assert len(payload["faces"][0]["landmarks"]) == 5
    assert payload["backends"]["classifier"] == "ort-cpu/fp32"


def test_predict_no_face_exits_zero_and_says_so(face_bundle, faceless, tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), faceless)
    text = _invoke("predict", str(image), "--bundle", str(face_bundle.root))
    assert text.exit_code == 0 and "no face found" in text.output
    result = _invoke("predict", str(image), "--bundle", str(face_bundle.root), "--json")
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert payload["no_face"] is True and payload["faces"] == []


def test_predict_annotate_one_and_many(face_bundle, tmp_path: Path) -> None:
    out = tmp_path / "annotated.png"
    result = _invoke(
        "predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--annotate", str(out)
    )
    assert result.exit_code == 0, result.output
    drawn = cv2.imread(str(out))
    original = cv2.imread(str(ASTRONAUT))
    assert drawn.shape == original.shape
    # The box edge is drawn in green at the face's left border.
    assert (drawn != original).any(axis=2)[60:170, 178:182].mean() > 0.5
    copy = tmp_path / "second.png"
    copy.write_bytes(ASTRONAUT.read_bytes())
    folder = tmp_path / "many"
    result = _invoke(
        "predict",
        str(ASTRONAUT),
        str(copy),
        "--bundle",
        str(face_bundle.root),
        "--annotate",
        str(folder),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 2
    assert sorted(p.name for p in folder.iterdir()) == [
        "astronaut.annotated.png",
        "second.annotated.png",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "missing.jpg"], "no such file"),
        (["predict", str(ASTRONAUT), "--backend", "warp-drive"], "unknown backend"),
        (["predict", str(ASTRONAUT), "--precision", "int8"], "no backend can run"),
    ],
)
def test_predict_errors_exit_2_with_a_message(face_bundle, args, message: str) -> None:
    result = runner.invoke(app, [*args, "--bundle", str(face_bundle.root)])
    assert result.exit_code == 2
    assert message in result.output


def test_predict_uses_the_default_bundle(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    result = _invoke("predict", str(ASTRONAUT), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["faces"][0]["label"] == "happy"
    bundles = list((tmp_path / "home" / "bundles").iterdir())
    assert [b.name for b in bundles] == [default_bundle_dir().name]
    assert bundles[0].name.startswith("face-fer7-0.1.0-r")
    ModelBundle.load(bundles[0])


def test_devices_text_and_json(face_bundle) -> None:
    text = _invoke("devices", "--bundle", str(face_bundle.root))
    assert text.exit_code == 0, text.output
    assert "fingerprint" in text.output and "ort-cpu" in text.output
    result = _invoke("devices", "--bundle", str(face_bundle.root), "--json")
    payload = json.loads(result.output)
    assert payload["device"]["cpu"]["logical_cores"] >= 1
    first = payload["ranking"]["classifier"][0]
    assert first["backend"] == "ort-cpu" and first["usable"] is True
    torch_row = next(r for r in payload["ranking"]["classifier"] if r["backend"] == "torch")
    assert torch_row["usable"] is False and "reference only" in torch_row["reason"]


def test_export_writes_a_loadable_bundle(tmp_path: Path) -> None:
    out = tmp_path / "exported"
    result = _invoke("export", "face-fer7", "--out", str(out))
    assert result.exit_code == 0, result.output
    bundle = ModelBundle.load(out)
    assert {a.path for a in bundle.manifest.artifacts} >= {"classifier.onnx", "pnet.onnx"}
    ratios = {k: v for k, v in bundle.manifest.parity.items() if k.endswith(".ratio")}
    assert ratios and all(v <= 1.0 for v in ratios.values()), bundle.manifest.parity


def test_export_unknown_family_and_bad_checkpoint(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "face-nope", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown family" in result.output
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"\x00" * 16)
    result = runner.invoke(
        app, ["export", "face-fer7", "--out", str(tmp_path / "y"), "--checkpoint", str(bad)]
    )
    assert result.exit_code == 2 and "expected .hdf5" in result.output


def test_predict_min_face_option(face_bundle) -> None:
    big = _invoke("predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--json",
                  "--min-face", "600")  # larger than the 512 px photo: no face
    assert big.exit_code == 0, big.output
    assert json.loads(big.output)["faces"] == []
    bad = runner.invoke(app, ["predict", str(ASTRONAUT), "--bundle", str(face_bundle.root),
                              "--min-face", "3"])
    assert bad.exit_code != 0 and "min_face must be an integer" in bad.output


def test_default_export_removes_older_revisions_only(tmp_path: Path, monkeypatch) -> None:
    from edge_sdk.defaults import default_bundle

    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    bundles = tmp_path / "home" / "bundles"
    current = default_bundle_dir()
    stale = [bundles / "face-fer7-0.1.0", bundles / "face-fer7-0.1.0-r1"]
    kept = [bundles / "face-fer7-0.2.0-r9", bundles / "face-caf-0.1.0-r1"]
    for folder in (*stale, *kept):
        folder.mkdir(parents=True)
    default_bundle()
    expected = sorted([current.name, *(k.name for k in kept)])
    assert sorted(p.name for p in bundles.iterdir()) == expected
