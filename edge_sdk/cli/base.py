"""The typer app every command registers on, its ``check`` group, and the one error path.

Errors the SDK raises on purpose (any EdgeSDKError) and OS errors (a path that cannot be
read or written, a full disk) are printed as one red line and exit with code 2, from every
command (:class:`OneLineErrors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from edge_sdk.errors import EdgeSDKError


class OneLineErrors(TyperGroup):
    """The command group: an EdgeSDKError or OSError escaping any command (also one with no
    handler of its own, or a subcommand of ``check``) becomes one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EdgeSDKError, OSError) as exc:
            raise fail(exc) from exc


app = typer.Typer(
    cls=OneLineErrors,
    help="Ship emotion-recognition models to robots and kiosks.",
    no_args_is_help=True,
    add_completion=False,
)
check_app = typer.Typer(
    help="Checks of a bundle: parity across backends, latency (and accuracy).",
    no_args_is_help=True,
)
app.add_typer(check_app, name="check")
console = Console()
errors = Console(stderr=True)


def fail(exc: EdgeSDKError | OSError) -> typer.Exit:
    """Print ``exc`` as one red line on stderr; the caller raises the returned exit 2."""
    # escaped: messages such as "pip install 'edge-sdk[torch]'" are not rich markup
    errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def main() -> None:
    """Console-script entry point."""
    app()
