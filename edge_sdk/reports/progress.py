"""Progress for long commands, on stderr so stdout stays clean for ``--json``.

Library code never prints: checks and exports accept an ``on_step(done, total, step)``
callback, and the command line passes the one :func:`progress_steps` yields. On a terminal
that is a transient bar; elsewhere (a pipe, a log file, CI) a bar is invisible, so commands
whose silence would look like a hang (export, train, the first run's default export) ask for
``lines``: one plain line per stage instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

StepCallback = Callable[[int, int, str], None]


@contextmanager
def progress_steps(
    description: str,
    console: Console | None = None,
    enabled: bool = True,
    *,
    lines: bool = False,
) -> Iterator[StepCallback]:
    """Yield the ``on_step(done, total, step)`` callback that reports progress.

    On a terminal: a transient bar (``total <= 0``: of unknown length). Off a terminal:
    with ``lines``, one line ``description: step (done/total, seconds)`` each time the
    step text changes, i.e. once per stage and never once per item; without, nothing.
    ``enabled=False`` shows nothing anywhere.
    """
    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield _stage_lines(description, console) if enabled and lines else _quiet
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None, step="")

        def on_step(done: int, total: int, step: str) -> None:
            progress.update(task, completed=done, total=total if total > 0 else None, step=step)

        yield on_step


def _quiet(done: int, total: int, step: str) -> None:
    """The callback of a progress nobody sees."""


def _stage_lines(description: str, console: Console) -> StepCallback:
    """A callback printing one line per new step text, with the count and elapsed time."""
    start = time.perf_counter()
    last: list[str] = []

    def on_step(done: int, total: int, step: str) -> None:
        if last and last[0] == step:
            return
        last[:] = [step]
        count = f"{done}/{total}, " if total > 0 else ""
        console.print(
            f"{description}: {step} ({count}{time.perf_counter() - start:.1f} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    return on_step
