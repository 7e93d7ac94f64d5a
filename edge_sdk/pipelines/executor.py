"""A bounded executor: at most ``workers`` calls run at once, at most ``max_queue`` wait.

The Recognizer runs every ``predict`` through one of these, so any number of caller threads
can share one Recognizer: the sessions underneath are thread-safe (ONNX Runtime) or
serialised (the PyTorch reference), and the bound keeps a burst of callers from piling up
unbounded work (and memory) behind a slow device. A caller that finds the queue full waits
for a slot up to ``timeout`` seconds (None: as long as it takes; 0: not at all) and then
gets :class:`QueueFullError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from edge_sdk.errors import QueueFullError

__all__ = ["BoundedExecutor", "QueueFullError"]

T = TypeVar("T")


class BoundedExecutor:
    """A thread pool whose queue of pending calls has a fixed capacity.

    Args:
        workers: calls that run concurrently (each on its own worker thread).
        max_queue: calls that may wait for a worker beyond those running.
        timeout: seconds a caller waits for a free slot; None waits indefinitely.
    """

    def __init__(self, workers: int = 2, max_queue: int = 16, timeout: float | None = None):
        if workers < 1 or max_queue < 0:
            raise ValueError(f"need workers >= 1 and max_queue >= 0, got {workers}, {max_queue}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be None or >= 0, got {timeout}")
        self.workers, self.max_queue, self.timeout = workers, max_queue, timeout
        self._slots = threading.BoundedSemaphore(workers + max_queue)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edge-sdk")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Calls admitted and not yet finished (running + waiting)."""
        with self._lock:
            return self._pending

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; raises QueueFullError when no slot frees in time."""
        if self.timeout is None:
            admitted = self._slots.acquire()
        else:
            admitted = self._slots.acquire(timeout=self.timeout)
        if not admitted:
            raise QueueFullError(
                f"{self.workers} calls are running and {self.max_queue} are waiting; "
                f"no slot freed within {self.timeout:g} s"
            )
        with self._lock:
            self._pending += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except RuntimeError:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Submit and wait for the result (exceptions propagate to the caller)."""
        return self.submit(fn, *args, **kwargs).result()

    def _release(self, _future: Future | None) -> None:
        with self._lock:
            self._pending -= 1
        self._slots.release()

    def shutdown(self) -> None:
        """Finish the admitted calls and stop the worker threads."""
        self._pool.shutdown(wait=True)
