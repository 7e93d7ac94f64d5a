"""Jobs run a bounded number at a time, for checks that score a data set through a server.

A data set of 100k clips is scored through ``edge-sdk serve`` with several requests in
flight; the answers must still land in the data set's order and one unreadable sample must
not stop the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")
_NO_MORE = object()


def run_jobs(
    run: Callable[[Job], Result],
    jobs: Sequence[Job],
    concurrency: int,
    expected: type[Exception] | tuple[type[Exception], ...],
) -> Iterator[tuple[Job, Result | Exception]]:
    """``(job, run(job))`` as jobs finish, at most ``concurrency`` in flight (in the jobs'
    order when 1). An ``expected`` exception is yielded in place of the job's result; any
    other stops the run and is raised (the jobs not yet started are cancelled).

    Jobs are submitted as earlier ones finish, so a long list never waits as futures.
    """

    def attempt(job: Job) -> Result | Exception:
        try:
            return run(job)
        except expected as exc:
            return exc

    if concurrency == 1:
        for job in jobs:
            yield job, attempt(job)
        return
    pending = iter(jobs)
    with ThreadPoolExecutor(concurrency, thread_name_prefix="check") as pool:
        running: dict[Future, Job] = {}
        try:
            while True:
                while len(running) < concurrency:
                    job = next(pending, _NO_MORE)
                    if job is _NO_MORE:
                        break
                    running[pool.submit(attempt, job)] = job
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield running.pop(future), future.result()
        finally:
            for future in running:
                future.cancel()
