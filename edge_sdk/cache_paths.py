"""Where the SDK keeps what it makes on a machine (exported default bundles, measured
timings): ``$EDGE_SDK_HOME`` or ``~/.cache/edge-sdk``. A leaf module, so the runtimes can
find their cache without importing the exporter."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$EDGE_SDK_HOME`` or ``~/.cache/edge-sdk``."""
    configured = os.environ.get("EDGE_SDK_HOME")
    return Path(configured) if configured else Path.home() / ".cache" / "edge-sdk"
