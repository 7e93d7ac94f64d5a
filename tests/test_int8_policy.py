"""The INT8 policy lives with the family and travels in the manifest (``config.int8_policy``):
exported from the family's declaration, checked like every manifest field, read back by
calibration without the family's module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calibration.policy import policy_for
from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import ManifestError
from edge_sdk.manifest import Manifest
from tests.conftest import REPO


def _with_policy(bundle: ModelBundle, policy: object) -> dict:
    data = json.loads(bundle.manifest.to_json())
    data["config"]["int8_policy"] = policy
    return data


def test_export_writes_the_family_declared_policy(face_bundle: ModelBundle) -> None:
    recorded = face_bundle.manifest.config["int8_policy"]
    assert recorded["skip_graphs"] == ["pnet", "rnet"] and recorded["method"] == "minmax"
    assert policy_for(face_bundle.manifest).skip_graphs == ("pnet", "rnet")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"method": "median"}, "int8_policy.method"),
        ({"op_types": "Conv"}, "int8_policy.op_types"),
        ({"op_types": []}, "int8_policy.op_types"),
        ({"op_types": ["Conv", "Softmax"]}, "int8_policy.op_types[1]"),
        ({"skip_graphs": ["pnet", "pnet"]}, "int8_policy.skip_graphs"),
        ({"center_activations": 1}, "int8_policy.center_activations"),
        ({"masks": {"onet": {"prob": 3}}}, "int8_policy.masks"),
        ({"exclude_nodes": {"onet": "*"}}, "int8_policy.exclude_nodes"),
        ({"typo": True}, "int8_policy"),
        ("minmax", "int8_policy"),
    ],
)
def test_manifest_schema_checks_the_int8_policy(
    face_bundle: ModelBundle, policy: object, message: str
) -> None:
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Manifest.from_dict(_with_policy(face_bundle, policy))


def test_policy_naming_a_graph_the_bundle_lacks_is_refused(face_bundle: ModelBundle) -> None:
    manifest = Manifest.from_dict(_with_policy(face_bundle, {"skip_graphs": ["nope"]}))
    with pytest.raises(ManifestError, match="names graphs \\['nope'\\]"):
        policy_for(manifest)


def test_policy_is_read_without_torch_or_family_modules(face_bundle: ModelBundle) -> None:
    """Calibration's policy comes from the manifest alone: no torch, no family module."""
    script = (
        "import sys\n"
        "from calibration.policy import policy_for\n"
        "from edge_sdk.bundle import ModelBundle\n"
        f"policy = policy_for(ModelBundle.load({str(face_bundle.root)!r}).manifest)\n"
        "assert policy.skip_graphs == ('pnet', 'rnet'), policy\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.endswith('.family'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
