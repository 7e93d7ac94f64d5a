"""Issue #11, section 4: a bundle's manifest and artifacts are untrusted input.

1. Every manifest field is checked (type and bounds) at load, naming the field; size and
   nesting are capped before parsing; labels must match the class scores.
2. A bundle has one digest over its manifest and, through their sha256, every artifact;
   loading with another digest is refused (API and CLI).
3. ONNX external data may only name hashed artifacts of the bundle, checked before any
   runtime sees the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

import edge_sdk
from edge_sdk.bundle import ModelBundle
from edge_sdk.cli import app
from edge_sdk.errors import BundleError, InputError, ManifestError
from tests.conftest import ASTRONAUT

runner = CliRunner()


@pytest.fixture()
def bundle_copy(face_bundle: ModelBundle, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(face_bundle.root, target)
    return target


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())


def _write(root: Path, data: dict[str, Any]) -> None:
    (root / "manifest.json").write_text(json.dumps(data, indent=2, sort_keys=True))


def _edit(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = _manifest(root)
    edit(data)
    _write(root, data)


def _graph_index(data: dict[str, Any], name: str) -> int:
    return next(i for i, g in enumerate(data["graphs"]) if g["name"] == name)


def _detector(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["config"]["detector"].update(values)


def _classifier_prep(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["preprocessing"]["classifier"].update(values)


# --- 1. manifest values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        # 1.0 never shrinks the pyramid: predict hung while memory grew (3.3 GB at 40 s)
        (_detector(scale_factor=1.0), "config.detector.scale_factor", r"\[0.1, 0.95\]"),
        (_detector(scale_factor=0.0), "config.detector.scale_factor", r"\[0.1, 0.95\]"),
        (_detector(scale_factor="0.7"), "config.detector.scale_factor", "expected a number"),
        # 0 divided by zero in pyramid_scales; below P-Net's 12 px window is meaningless
        (_detector(min_face=0), "config.detector.min_face", r"\[12, 4096\]"),
        (_detector(min_face=20.5), "config.detector.min_face", "expected an integer"),
        (_detector(thresholds=["0.6", 0.7, 0.7]), r"config.detector.thresholds\[0\]", "number"),
        (_detector(thresholds=[0.6, 0.7, 1.5]), r"config.detector.thresholds\[2\]", r"\[0, 1\]"),
        (_detector(thresholds=[0.6, 0.7]), "config.detector.thresholds", "3 entries"),
        (_detector(scale_facter=0.7), "config.detector", "unknown field"),
    ],
)
def test_detector_config_values_are_checked_at_load(
    bundle_copy: Path, edit, field: str, message: str
) -> None:
    _edit(bundle_copy, edit)
    with pytest.raises(ManifestError, match=f"^{field}: .*{message}"):
        ModelBundle.load(bundle_copy)


_BLAZEFACE_ENTRY = {"input_size": 192, "strides": [4], "anchors_per_layer": 1, "min_score": 0.5,
                    "nms_iou": 0.3, "min_face_fraction": 0.05, "resize": "letterbox"}


def _config(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["config"].update(values)


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        # BlazeFace decoding: a string size failed in int() with a bare ValueError; a score
        # threshold above 1 silently found no face
        (_config(blazeface={"blazeface_full": {**_BLAZEFACE_ENTRY, "input_size": "192"}}),
         r"config.blazeface.blazeface_full.input_size", "expected an integer"),
        (_config(blazeface={"blazeface_full": {**_BLAZEFACE_ENTRY, "min_score": 2.0}}),
         r"config.blazeface.blazeface_full.min_score", r"\[0, 1\]"),
        (_config(blazeface={"blazeface_full": {**_BLAZEFACE_ENTRY, "strides": []}}),
         r"config.blazeface.blazeface_full.strides", "entr"),
        # CocoER's workspace step (chosen on validation) and av-fbp's encoder pairing
        (_config(workspace={"eta": "1.0"}), "config.workspace.eta", "expected a number"),
        (_config(workspace={"eta": -1.0}), "config.workspace.eta", r"\[0, 100\]"),
        (_config(face_features={"dim": 128, "encoder_digest": "abc"}),
         "config.face_features.encoder_digest", "sha256"),
        (_config(face_features={"dim": 0}), "config.face_features.dim", r"\[1, 65536\]"),
    ],
)
def test_family_config_values_the_runtime_reads_are_checked_at_load(
    bundle_copy: Path, edit, field: str, message: str
) -> None:
    _edit(bundle_copy, edit)
    with pytest.raises(ManifestError, match=f"^{field}: .*{message}"):
        ModelBundle.load(bundle_copy)


def test_labels_count_other_than_the_class_outputs_is_refused(bundle_copy: Path) -> None:
    """Six labels for seven scores: predict failed with ``ValueError: zip()``."""
    _edit(bundle_copy, lambda d: d.update(labels=d["labels"][:6]))
    with pytest.raises(ManifestError, match=r"^labels: 6 labels, but graphs\[\d\]\.outputs\[0\] "
                       r"\(classifier/probabilities, probabilities\) scores 7 classes"):
        ModelBundle.load(bundle_copy)


def test_repeated_labels_are_refused(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda d: d["labels"].__setitem__(1, d["labels"][0]))
    with pytest.raises(ManifestError, match=r"^labels: repeats \['angry'\]"):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (_classifier_prep(size=[0, 64]), r"size\[0\]", r"\[1, 8192\]"),
        (_classifier_prep(size=[64, -64]), r"size\[1\]", r"\[1, 8192\]"),
        (_classifier_prep(size=[64]), "size", "2 entries"),
        (_classifier_prep(std=[0]), r"std\[0\]", r"\(0, 255\]"),
        (_classifier_prep(std=[0.5, 0.5]), "std", "colour 'gray' needs 1$"),
        (_classifier_prep(mean=["0.5"]), r"mean\[0\]", "expected a number"),
        (_classifier_prep(scale=0), "scale", r"\(0, 1\]"),
        (_classifier_prep(color="cmyk"), "color", "unknown colour order"),
        (_classifier_prep(interpolation="lanczos"), "interpolation", "unknown interpolation"),
        (_classifier_prep(layout="NHWC"), "layout", "unknown layout"),
        (_classifier_prep(crop={"margin_px": -10}), r"crop.margin_px", r"\[0, 8192\]"),
    ],
)
def test_preprocessing_values_are_checked_at_load(
    bundle_copy: Path, edit, field: str, message: str
) -> None:
    _edit(bundle_copy, edit)
    with pytest.raises(ManifestError, match=f"^preprocessing.classifier.{field}: .*{message}"):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        # bool is an int in Python (True in {1}): this loaded as schema version 1
        (lambda d: d.update(schema_version=True), "schema_version", "expected an integer"),
        (lambda d: d["graphs"][3]["inputs"][0]["shape"].__setitem__(1, 0),
         r"graphs\[3\].inputs\[0\].shape\[1\]", "integer in"),
        (lambda d: d["graphs"][3]["inputs"][0]["shape"].__setitem__(1, 1.5),
         r"graphs\[3\].inputs\[0\].shape\[1\]", "expected an integer"),
        (lambda d: d["graphs"][3]["inputs"][0]["shape"].__setitem__(1, "bad dim"),
         r"graphs\[3\].inputs\[0\].shape\[1\]", "dimension name"),
        (lambda d: d["graphs"][3]["dims"]["batch"].update(min=-1),
         r"graphs\[3\].dims.batch.min", "integer in"),
        (lambda d: d["graphs"][3]["dims"]["batch"].update(opt=100),
         r"graphs\[3\].dims.batch", "min <= opt <= max"),
        (lambda d: d["graphs"][0].update(name="../pnet"), r"graphs\[0\].name", "graph name"),
        (lambda d: d["artifacts"][0].update(precision=8), r"artifacts\[0\].precision", "unknown"),
        (lambda d: d["weights"][0].update(sha256="ab"), r"weights\[0\].sha256", "64 lowercase"),
        (lambda d: d.update(family="face\u0000fer7"), "family", "control character"),
        (lambda d: d.update(parity={"x": "small"}), "parity.x", "expected a number"),
        (lambda d: d.update(labels=[]), "labels", "1-10000 entries"),
        (lambda d: d.update(provenance={"tool": 3}), "provenance.tool", "expected a string"),
        (lambda d: d.update(extra=1), "manifest", 'unknown field "extra"'),
    ],
)
def test_every_field_is_type_and_range_checked_naming_its_path(
    bundle_copy: Path, edit, field: str, message: str
) -> None:
    data = _manifest(bundle_copy)
    assert _graph_index(data, "classifier") == 3
    edit(data)
    _write(bundle_copy, data)
    with pytest.raises(ManifestError, match=f"^{field}: .*{message}"):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize(
    "path",
    [
        "pnet.onnx\u0000.txt",  # NUL: the OS would cut the name there
        "C:/pnet.onnx",
        "C:pnet.onnx",
        "./pnet.onnx",  # a second spelling of the same file
        "sub//pnet.onnx",
        "pnet.onnx/",
        ".hidden",
        "*/_ORT_MEM_ADDR_/*",  # ONNX Runtime's in-memory external-data tag
        "a" * 300,
    ],
)
def test_artifact_path_tricks_are_refused(bundle_copy: Path, path: str) -> None:
    _edit(bundle_copy, lambda d: d["artifacts"][0].update(path=path))
    with pytest.raises(ManifestError, match=r"^artifacts\[0\].path: path .* leaves the bundle"):
        ModelBundle.load(bundle_copy)


def _raw(root: Path, transform: Callable[[str], str | bytes]) -> None:
    data = _manifest(root)
    data["config"]["probe"] = "PROBE"
    out = transform(json.dumps(data, indent=2, sort_keys=True))
    (root / "manifest.json").write_bytes(out if isinstance(out, bytes) else out.encode())


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        # 200,000 levels: json.loads died with RecursionError
        (lambda t: t.replace('"PROBE"', "[" * 200_000 + "]" * 200_000),
         "nests 200002 levels deep; at most 32"),
        (lambda t: t.replace('"PROBE"', "[" * 40 + "]" * 40), "nests 42 levels deep"),
        # Infinity is accepted by Python's json; int(inf) raised OverflowError
        (lambda t: t.replace('"shape": [\n            "batch",\n            1,',
                             '"shape": [\n            "batch",\n            Infinity,'),
         r"graphs\[3\].inputs\[0\].shape\[1\]: expected an integer"),
        (lambda t: t.replace('"PROBE"', "NaN"), "config.probe: must be a finite number"),
        (lambda t: t.replace('"PROBE"', "1e400"), "config.probe: must be a finite number"),
        (lambda t: t.replace('"PROBE"', "9" * 5000), "not valid JSON"),
        # UnicodeDecodeError escaped before
        (lambda t: t.replace('"PROBE"', '"\udcff"').encode("utf-8", "surrogateescape"),
         "not UTF-8 text"),
        (lambda t: t.replace('"PROBE"', '"\\ud800"'), "config.probe: control character"),
        (lambda t: t.replace('"probe": "PROBE"', '"probe": 1, "probe": 2'), "repeats keys"),
        (lambda t: t + " " * (4 << 20), "larger than 4194304 bytes"),
    ],
)
def test_manifest_text_is_bounded_before_parsing(bundle_copy: Path, transform, message) -> None:
    _raw(bundle_copy, transform)
    with pytest.raises(ManifestError, match=message):
        ModelBundle.load(bundle_copy)


def test_the_schema_names_every_field_of_every_manifest_record() -> None:
    """A field added to a manifest dataclass needs its line in the schema."""
    from edge_sdk.manifest import SCHEMA_RECORDS

    for cls, check in SCHEMA_RECORDS.items():
        assert check.fields == {f.name for f in dataclasses.fields(cls)}, cls.__name__


# --- 2. digest -----------------------------------------------------------------------------


def test_bundle_digest_is_stable_and_covers_the_manifest_bytes(face_bundle: ModelBundle) -> None:
    first = ModelBundle.load(face_bundle.root).digest
    assert first == ModelBundle.load(face_bundle.root).digest == face_bundle.digest
    raw = (face_bundle.root / "manifest.json").read_bytes()
    assert first == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_digest_changes_when_any_artifact_or_manifest_byte_changes(bundle_copy: Path) -> None:
    original = ModelBundle.load(bundle_copy).digest
    seen = {original}
    for index, artifact in enumerate(_manifest(bundle_copy)["artifacts"]):
        path = bundle_copy / artifact["path"]
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))
        # the artifact alone changed: the manifest no longer matches, the bundle is refused
        with pytest.raises(BundleError, match="modified or corrupted"):
            ModelBundle.load(bundle_copy)
        sha = hashlib.sha256(data).hexdigest()
        _edit(bundle_copy, lambda d, i=index, s=sha: d["artifacts"][i].update(sha256=s))
        changed = ModelBundle.load(bundle_copy).digest
        assert changed not in seen, artifact["path"]
        seen.add(changed)
    _edit(bundle_copy, lambda d: d["provenance"].update(exporter="edge_sdk exporT"))
    assert ModelBundle.load(bundle_copy).digest not in seen
    text = (bundle_copy / "manifest.json").read_text()
    (bundle_copy / "manifest.json").write_text(text + "\n")  # one more byte, same meaning
    assert ModelBundle.load(bundle_copy).digest not in seen


def test_load_with_the_wrong_digest_is_refused(bundle_copy: Path, device) -> None:
    right = ModelBundle.load(bundle_copy).digest
    wrong = "sha256:" + "0" * 64
    message = f"has digest {right}, but {wrong} was required"
    with pytest.raises(BundleError, match=message):
        ModelBundle.load(bundle_copy, digest=wrong)
    with pytest.raises(BundleError, match=message):
        edge_sdk.load(bundle_copy, digest=wrong, device=device)
    opened = ModelBundle.load(bundle_copy)
    with pytest.raises(BundleError, match=message):
        edge_sdk.load(opened, digest=wrong, device=device)
    with pytest.raises(InputError, match="one digest per bundle"):
        edge_sdk.load([bundle_copy, bundle_copy], digest=right, device=device)
    with pytest.raises(InputError, match="sha256:<64 hex digits>"):
        ModelBundle.load(bundle_copy, digest="md5:abc")
    bare = right.removeprefix("sha256:").upper()  # the bare hex, any case, is accepted too
    assert ModelBundle.load(bundle_copy, digest=bare).digest == right
    with edge_sdk.load(bundle_copy, digest=right, device=device) as recognizer:
        assert recognizer.bundle.digest == right
    # the pin is checked before the manifest is parsed: nothing of another bundle is read
    (bundle_copy / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(BundleError, match="has digest sha256:[0-9a-f]{64}, but"):
        ModelBundle.load(bundle_copy, digest=right)


def test_doctor_prints_the_digest_and_checks_a_pinned_one(face_bundle: ModelBundle) -> None:
    root = str(face_bundle.root)
    ok = runner.invoke(app, ["doctor", "--bundle", root])
    assert ok.exit_code == 0, ok.output
    assert f"digest: {face_bundle.digest}\n" in ok.stdout
    pinned = runner.invoke(app, ["doctor", "--bundle", root, "--digest", face_bundle.digest])
    assert pinned.exit_code == 0, pinned.output
    other = runner.invoke(app, ["doctor", "--bundle", root, "--digest", "sha256:" + "1" * 64])
    assert other.exit_code == 1 and "problem" in other.output


@pytest.mark.parametrize(
    "command",
    [
        ["predict", str(ASTRONAUT), "--bundle", "{root}", "--digest", "{digest}"],
        ["verify", "{root}", "--digest", "{digest}"],
        ["bench", "{root}", "--digest", "{digest}"],
    ],
)
def test_cli_digest_option_refuses_another_bundle_exit_2_one_line(
    face_bundle: ModelBundle, command: list[str]
) -> None:
    wrong = "sha256:" + "f" * 64
    args = [a.format(root=face_bundle.root, digest=wrong) for a in command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert face_bundle.digest in lines[0] and wrong in lines[0]


def test_predict_with_the_right_digest_runs(face_bundle: ModelBundle) -> None:
    args = ["predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--json"]
    result = runner.invoke(app, [*args, "--digest", face_bundle.digest])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["faces"][0]["label"] == "happy"


# --- 3. ONNX external data -----------------------------------------------------------------


def _external(tensor: onnx.TensorProto, location: str, offset: int = 0, length: int = 8) -> None:
    """Move ``tensor``'s data out to ``location`` (the bytes themselves are not written)."""
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _model(location: str, where: str = "initializer", **extent: int) -> bytes:
    """``Y = X + W`` with W (2 floats) stored externally at ``location``; ``where`` puts W
    in the main graph, inside an If branch, or in a Constant node's attribute."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [2], [1.0, 2.0])
    _external(weight, location, **extent)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])
    if where == "initializer":
        graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g", [x], [y],
                                  initializer=[weight])
    elif where == "constant":
        nodes = [helper.make_node("Constant", [], ["W"], value=weight),
                 helper.make_node("Add", ["X", "W"], ["Y"])]
        graph = helper.make_graph(nodes, "g", [x], [y])
    else:  # a subgraph two levels down: If -> then_branch -> If -> then_branch
        inner = helper.make_graph([helper.make_node("Identity", ["W"], ["Y"])], "inner", [], [y],
                                  initializer=[weight])
        middle = helper.make_graph(
            [helper.make_node("If", ["C"], ["Y"], then_branch=inner, else_branch=inner)],
            "middle", [], [y])
        cond = helper.make_tensor("C", TensorProto.BOOL, [], [True])
        graph = helper.make_graph(
            [helper.make_node("If", ["C"], ["Y"], then_branch=middle, else_branch=middle)],
            "g", [x], [y], initializer=[cond])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _put_model(root: Path, model: bytes, extra: dict[str, bytes] | None = None) -> None:
    """Replace classifier.onnx by ``model`` and list ``extra`` files as hashed artifacts."""
    (root / "classifier.onnx").write_bytes(model)

    def edit(data: dict[str, Any]) -> None:
        for artifact in data["artifacts"]:
            if artifact["path"] == "classifier.onnx":
                artifact["sha256"] = hashlib.sha256(model).hexdigest()
        for name, blob in (extra or {}).items():
            (root / name).write_bytes(blob)
            data["artifacts"].append(
                {"path": name, "sha256": hashlib.sha256(blob).hexdigest(), "format": "onnx-data",
                 "graph": "classifier", "precision": "fp32", "target": "any", "built_with": {}}
            )

    _edit(root, edit)


WEIGHTS = np.array([1.0, 2.0], dtype=np.float32).tobytes()


@pytest.mark.parametrize("where", ["initializer", "constant", "subgraph"])
def test_external_data_outside_the_bundle_is_refused(
    bundle_copy: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "outside.bin").write_bytes(WEIGHTS)
    _put_model(bundle_copy, _model("../outside.bin", where))
    with pytest.raises(BundleError, match=r"'classifier.onnx', tensor 'W': external data at "
                       r"'../outside.bin' leaves the bundle directory"):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize("location", ["/etc/passwd", "sub\\..\\..\\x.bin", "*/_ORT_MEM_ADDR_/*"])
def test_external_data_path_tricks_are_refused(bundle_copy: Path, location: str) -> None:
    _put_model(bundle_copy, _model(location))
    with pytest.raises(BundleError, match="leaves the bundle directory"):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize("where", ["initializer", "constant", "subgraph"])
def test_external_data_in_an_unhashed_bundle_file_is_refused(bundle_copy: Path, where) -> None:
    (bundle_copy / "weights.bin").write_bytes(WEIGHTS)  # inside, but the manifest lacks it
    _put_model(bundle_copy, _model("weights.bin", where))
    with pytest.raises(BundleError, match="at 'weights.bin' is not an artifact of the manifest"):
        ModelBundle.load(bundle_copy)


def test_external_data_must_lie_inside_its_hashed_file(bundle_copy: Path) -> None:
    _put_model(bundle_copy, _model("weights.bin", offset=4), {"weights.bin": WEIGHTS})
    with pytest.raises(BundleError, match=r"bytes 4-12 lie outside 'weights.bin' \(8 bytes\)"):
        ModelBundle.load(bundle_copy)


def test_external_data_in_a_hashed_artifact_loads_and_is_hash_checked(bundle_copy: Path) -> None:
    _put_model(bundle_copy, _model("weights.bin", "subgraph"), {"weights.bin": WEIGHTS})
    ModelBundle.load(bundle_copy)
    (bundle_copy / "weights.bin").write_bytes(WEIGHTS[::-1])
    with pytest.raises(BundleError, match="'weights.bin' has sha256 .* modified or corrupted"):
        ModelBundle.load(bundle_copy)
    (bundle_copy / "weights.bin").unlink()
    (bundle_copy / "weights.bin").symlink_to(bundle_copy / "classifier.safetensors")
    with pytest.raises(BundleError, match="symlink"):
        ModelBundle.load(bundle_copy)
