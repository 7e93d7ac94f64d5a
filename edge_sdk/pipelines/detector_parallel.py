"""The helper threads the face detector deals GIL-releasing work to (resizes, net calls).

One small pool per process (one thread per further core, at most three), made on first use
and forgotten in a forked child; :func:`fan_out` runs the first part on the calling thread
and the rest on the pool, and :func:`deal` balances weighted parts. Results never depend on
how the work was dealt; :mod:`edge_sdk.pipelines.detector` has the measurements.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar


def _extra_threads() -> int:
    """Helper threads: one per further usable core, at most three."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(cores, 4) - 1)


_WORKERS = _extra_threads()
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor | None:
    """The helper pool of this process, made on first use (None on one core)."""
    global _POOL
    if not _WORKERS:
        return None
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="edge-sdk-detector")
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the inherited executor has no threads and would never run work."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


T = TypeVar("T")
R = TypeVar("R")


def fan_out(work: Callable[[T], R], parts: Sequence[T], parallel: bool = True) -> list[R]:
    """``[work(p) for p in parts]``, the first part in the calling thread, the rest on the pool.

    Only for work that releases the GIL (OpenCV, ONNX Runtime) and never fans out itself
    (pool threads must not wait on the pool). The results are the same as in a loop.
    """
    pool = _pool() if parallel and len(parts) > 1 else None
    if pool is None:
        return [work(part) for part in parts]
    futures = [pool.submit(work, part) for part in parts[1:]]
    first = work(parts[0])
    return [first, *(future.result() for future in futures)]


def shares(parallel: bool) -> int:
    """How many pieces to cut parallel work into: the calling thread plus the pool's."""
    return _WORKERS + 1 if parallel and _WORKERS else 1


def deal(weights: Sequence[float], k: int) -> list[list[int]]:
    """Indices of ``weights`` dealt to ``k`` shares, heaviest first to the least loaded
    (longest-processing-time order); no share is empty while there are enough items."""
    k = max(1, min(k, len(weights)))
    loads = [0.0] * k
    parts: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(len(weights)), key=lambda j: -weights[j]):
        lightest = loads.index(min(loads))
        parts[lightest].append(i)
        loads[lightest] += weights[i]
    return parts
