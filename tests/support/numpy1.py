"""A Python whose NumPy is 1.x, for the Triton processes the tests start.

PyTriton 0.7.0's Python-backend stub (Triton 2.51) is built against NumPy 1.x through
pybind11: under NumPy 2 every tensor it hands to or takes from model.py is corrupted
(measured here: an input BYTES element arrives with each byte of its length prefix equal to
the length's low byte, e.g. 0x0b0b0b0b for 11 bytes, and the deserializer aborts the stub;
UINT8 outputs come back empty). So ``tritonserver`` and ``edge-sdk serve`` run under a
virtual environment with NumPy 1.26 over this interpreter's packages: one named by
``EDGE_SDK_NUMPY1_PYTHON``, else one made once per interpreter under the cache directory
(pip needs the package index, as the README's install command does). Its own site-packages
holds only NumPy; a ``.pth`` line then adds this interpreter's site-packages *after* it with
``site.addsitedir``, so that editable installs (their own ``.pth`` files) resolve to the
same tree whether this interpreter is a venv or not (``--system-site-packages`` would reach
the base interpreter's packages instead).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

ENV_VAR = "EDGE_SDK_NUMPY1_PYTHON"
NUMPY1 = "numpy==1.26.4"


class Numpy1UnavailableError(RuntimeError):
    """No NumPy-1 Python could be found or made; the message says why."""


@functools.cache
def numpy1_python() -> Path:
    """The interpreter to run Triton's Python stub under (see the module docs)."""
    given = os.environ.get(ENV_VAR)
    if given:
        return Path(given)
    if int(np.__version__.split(".")[0]) < 2:
        return Path(sys.executable)
    from edge_sdk.defaults import cache_dir

    tag = hashlib.sha256(sys.prefix.encode()).hexdigest()[:10]
    env = cache_dir() / f"test-numpy1-env-{tag}"
    python = env / "bin" / "python"
    probe = [str(python), "-c", "import numpy, edge_sdk; assert numpy.__version__ < '2'"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    shutil.rmtree(env, ignore_errors=True)
    steps = (
        [sys.executable, "-m", "venv", str(env)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", NUMPY1],
    )
    for step in steps:
        made = subprocess.run(step, capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            raise Numpy1UnavailableError(
                f"no NumPy-1 environment could be made ({' '.join(step[-3:])}: "
                f"{made.stderr.strip()[-300:]}); set {ENV_VAR}"
            )
    _chain_site_packages(python)
    return python


def _chain_site_packages(python: Path) -> None:
    """Let ``python`` import this interpreter's packages, after its own NumPy 1."""
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    lines = [f"import site; site.addsitedir({str(p)!r})" for p in parents]
    (Path(own) / "zz_edge_sdk_parent_env.pth").write_text("\n".join(lines) + "\n")
    # PyTriton finds its bundled libraries (libcudart etc.) beside itself only when it sits
    # in one of site.getsitepackages(); reached through the .pth it takes itself for an
    # editable install and looks in the wrong place, so it is linked in.
    for parent in parents:
        for name in ("pytriton", "nvidia_pytriton.libs"):
            if (Path(parent) / name).exists() and not (Path(own) / name).exists():
                (Path(own) / name).symlink_to(Path(parent) / name)
