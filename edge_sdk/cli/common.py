"""What several commands share: the built-in bundle on first use, bundle and server opening,
output-path checks, comma-separated values, and the options they declare alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sdk.cli.base import errors
from edge_sdk.errors import InputError

# Options several commands declare with the same flags and help.
Backend = Annotated[str | None, typer.Option(help="Force a backend, e.g. ort-cpu.")]
Precision = Annotated[str | None, typer.Option(help="Require fp32, fp16 or int8.")]
JsonTables = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
MinFace = Annotated[
    int | None,
    typer.Option(help="Smallest face side in pixels (default 20); larger is faster."),
]
Graphs = Annotated[str | None, typer.Option(help="Only these graphs, comma-separated.")]
Digest = Annotated[
    str | None,
    typer.Option(help="Refuse any bundle but this one (sha256:..., as `doctor` prints)."),
]
BundleArgument = Annotated[
    Path | None, typer.Argument(help="Bundle directory; default: built-in face-fer7.")
]


def export_default_once(quiet: bool = False) -> None:
    """Export the built-in bundle into the cache if it is not there yet (5-10 s, once),
    with progress on stderr: a bar on a terminal, else one line per stage unless ``quiet``
    (``--json``). A cached bundle costs nothing here; ``load`` opens it."""
    from edge_sdk.defaults import DEFAULT_FAMILY, default_bundle, default_bundle_dir
    from edge_sdk.reports.progress import progress_steps

    if default_bundle_dir().is_dir():
        return
    title = f"first use, exporting the built-in {DEFAULT_FAMILY} bundle"
    with progress_steps(title, errors, lines=not quiet) as on_step:
        default_bundle(on_step=on_step)


def default_bundle(quiet: bool = False) -> Any:
    """The built-in bundle, exported on first use with progress (:func:`export_default_once`)."""
    from edge_sdk.defaults import default_bundle as cached_default

    export_default_once(quiet)
    return cached_default()


def open_bundle(bundle: Path | None, quiet: bool = False, digest: str | None = None) -> Any:
    """The given or the default bundle; with ``digest``, any other bundle is refused."""
    from edge_sdk.bundle import ModelBundle

    if bundle:
        return ModelBundle.load(bundle, digest=digest)
    opened = default_bundle(quiet)
    if digest is not None:
        opened.check_digest(digest)
    return opened


def connect(server: str, **local_only: Any) -> Any:
    """The server's recognizer; options that pick bundles or backends here are refused
    (the server chose them at ``edge-sdk serve``)."""
    from edge_sdk.serving.client import connect as connect_server

    given = sorted("--" + k.replace("_", "-") for k, v in local_only.items() if v)
    if given:
        raise InputError(
            f"{', '.join(given)} choose what runs in this process; with --server the server "
            "decided at `edge-sdk serve`"
        )
    return connect_server(server)


def check_writable(path: Path, option: str, *, directory: bool) -> None:
    """Refuse an output path that cannot be written (an existing file where a folder is
    wanted, a folder where a file is, a parent that is a file or read-only) before any
    work: an export or a training run would otherwise fail only at its end."""
    if path.exists() and path.is_dir() != directory:
        kind = "is a directory" if path.is_dir() else "exists and is not a directory"
        raise InputError(f"{option} {path}: {kind}")
    # the nearest existing folder: the path itself, or (for a file, new or being replaced)
    # its closest existing parent
    candidates = (path.absolute(), *path.absolute().parents)
    existing = next(p for p in candidates if p.exists() and (directory or p != candidates[0]))
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {existing} is not writable")


def names(text: str | None) -> list[str] | None:
    """Comma-separated option values, or None when not given."""
    if text is None:
        return None
    found = [part.strip() for part in text.split(",") if part.strip()]
    return found or None
