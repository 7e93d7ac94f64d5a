"""Small readers shared by the format modules: CSV rows with line numbers, numbers, folders.

Every problem becomes an :class:`InputError` that starts with ``file:line`` so a user can open
the annotation file at the offending row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from edge_sdk.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def csv_rows(
    path: Path, required: Sequence[str], what: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for every data row of a CSV with a header (UTF-8, BOM allowed).

    Header names are stripped of surrounding spaces (some published copies write
    ``" Usage"``); extra columns are kept in the row and ignored by callers.

    Raises:
        InputError: unreadable or non-UTF-8 file, missing columns (listed, line 1), a row
            with fewer or more fields than the header (its line).
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise InputError(f"{path}:1: {what} lacks columns {missing} (header {header})")
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line
                if len(fields) != len(header):
                    relation = "fewer" if len(fields) < len(header) else "more"
                    raise InputError(
                        f"{path}:{reader.line_num}: row has {relation} fields than the header "
                        f"({len(fields)} vs {len(header)})"
                    )
                yield reader.line_num, dict(zip(header, fields, strict=True))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: {what} is not UTF-8 text ({exc})") from exc
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc


def text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (BOM allowed), without line endings."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text ({exc})") from exc


def integer(text: str, column: str, where: str) -> int:
    """An integer field (``"3"``, ``" 3 "``, ``"3.0"``); anything else names column and line."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value != int(value):
        raise InputError(f"{where}: column {column!r} is not an integer: {text!r}")
    return int(value)


def number(text: str, column: str, where: str) -> float:
    """A finite float field; anything else names column and line."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: column {column!r} is not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"{where}: column {column!r} is not finite: {text!r}")
    return value


def child_dir(parent: Path, name: str) -> Path | None:
    """The sub-folder of ``parent`` called ``name`` in any letter case, or None."""
    if not parent.is_dir():
        return None
    for entry in sorted(parent.iterdir()):
        if entry.is_dir() and entry.name.lower() == name.lower():
            return entry
    return None


def first_dir(candidates: Sequence[Path], fallback: Path) -> Path:
    """The first existing folder among ``candidates``, else ``fallback``."""
    return next((c for c in candidates if c.is_dir()), fallback)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a folder")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist or is not a file")
    return path


def visible_children(folder: Path) -> list[Path]:
    """Entries of ``folder`` that are not hidden (``.x``) or archive debris (``__MACOSX``)."""
    return [p for p in sorted(folder.iterdir()) if not p.name.startswith((".", "__"))]


def files_with(folder: Path, extensions: Sequence[str]) -> list[Path]:
    """Visible files directly in ``folder`` whose suffix is one of ``extensions`` (any case)."""
    suffixes = {e.lower() for e in extensions}
    return [p for p in visible_children(folder) if p.is_file() and p.suffix.lower() in suffixes]
