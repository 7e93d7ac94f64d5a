"""Progress bars for long checks, on stderr so stdout stays clean for ``--json``.

Library code never prints: checks accept an ``on_step(done, total, description)`` callback,
and the command line passes the one :func:`progress_steps` yields.
"""

from __future__ import annotations

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
    description: str, console: Console | None = None, enabled: bool = True
) -> Iterator[StepCallback]:
    """A transient bar; yields the ``on_step`` callback that advances it."""
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
    )
    with Progress(
        *columns,
        console=console or Console(stderr=True),
        transient=True,
        disable=not enabled,
    ) as progress:
        task = progress.add_task(description, total=None, step="")

        def on_step(done: int, total: int, step: str) -> None:
            progress.update(task, completed=done, total=total, step=step)

        yield on_step
