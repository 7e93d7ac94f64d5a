"""Per-machine cache of measured graph latencies, so selection by measurement runs once.

One JSON file (``$EDGE_SDK_HOME/timings.json``, beside the default bundles) maps a key to
the median milliseconds measured for it, or ``"failed"`` where that variant could not run
(read back as ``math.inf``, so it is not tried again on every start). The key names
everything the figure depends on: the machine (CPU model, cores this process may use,
``EDGE_SDK_THREADS``), the artifact's sha256, the backend and its library version, and the
thread hint. Another CPU, a re-exported graph or an upgraded runtime therefore misses the
cache and is measured afresh.

The file is data another process wrote: it is parsed as JSON, every entry is type- and
range-checked, and a file that fails (or cannot be read) counts as empty, with a warning;
it is then rewritten whole. Writes go to a temporary file renamed into place, so a reader
never sees half a file (concurrent writers may lose each other's new entries, which are
then measured again, never read wrong).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edge_sdk.cache_paths import cache_dir
from edge_sdk.device import DeviceInfo

log = logging.getLogger(__name__)

CACHE_NAME = "timings.json"
FORMAT_VERSION = 1
MAX_ENTRIES = 4096  # a file grown past this is not ours to trust; it is dropped whole
MAX_FILE_BYTES = 4 << 20
FAILED = "failed"  # written for a variant that could not run (read back as math.inf)


def machine_key(device: DeviceInfo) -> str:
    """The machine part of a key: what makes the same graph run at another speed here."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    threads = os.environ.get("EDGE_SDK_THREADS", "default")
    cpu = device.cpu
    return f"{cpu.model or '?'}|{cpu.architecture}|{usable} cpus|threads={threads}"


def timing_key(
    machine: str, sha256: str, backend: str, version: str | None, threads: int | None
) -> str:
    """One measurement's full key (see the module docstring)."""
    hint = "default" if threads is None else str(threads)
    return f"{machine}|{sha256}|{backend} {version or '?'}|t={hint}"


class TimingCache:
    """The cache file at ``path`` (default: :func:`default_path`)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def read(self) -> dict[str, float]:
        """Every valid entry; an unreadable or malformed file reads as empty (logged)."""
        try:
            if self.path.stat().st_size > MAX_FILE_BYTES:
                log.warning("timing cache %s is over %d bytes; ignored", self.path, MAX_FILE_BYTES)
                return {}
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("timing cache %s is unreadable (%s); measuring again", self.path, exc)
            return {}
        entries = _valid_entries(data)
        if entries is None:
            log.warning("timing cache %s is malformed; measuring again", self.path)
            return {}
        return entries

    def update(self, timings: Mapping[str, float]) -> None:
        """Merge ``timings`` into the file; a cache that cannot be written is logged, not
        raised (selection still works, it only measures again next time)."""
        entries = {**self.read(), **{k: float(v) for k, v in timings.items()}}
        if len(entries) > MAX_ENTRIES:
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
        written = {k: FAILED if math.isinf(v) else v for k, v in entries.items()}
        payload = json.dumps({"version": FORMAT_VERSION, "timings_ms": written}, indent=1)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(payload)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot write timing cache %s (%s); timings not kept", self.path, exc)


def default_path() -> Path:
    """``timings.json`` in the SDK's cache folder (``$EDGE_SDK_HOME`` or ``~/.cache/edge-sdk``)."""
    return cache_dir() / CACHE_NAME


def _valid_entries(data: object) -> dict[str, float] | None:
    """The entries of a parsed file, or None when anything in it is not what we write."""
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return None
    timings = data.get("timings_ms")
    if not isinstance(timings, dict) or len(timings) > MAX_ENTRIES:
        return None
    out: dict[str, float] = {}
    for key, value in timings.items():
        if not isinstance(key, str) or len(key) > 1000:
            return None
        if value == FAILED:
            out[key] = math.inf
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value) or value <= 0:
            return None
        out[key] = float(value)
    return out
