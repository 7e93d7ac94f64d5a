"""One static HTML page per report, linking its PNGs and JSON, and a checker for such pages.

The page has no scripts and no external resources (nothing to fail in a headless browser's
console, nothing fetched from the network): inline CSS, ``<img>`` tags with the PNGs' real
sizes, links to files beside it. :func:`check_page` validates a page with the standard
library only (well-formed nesting, every linked file present, every PNG a real PNG), for
CI machines where no browser can be installed.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from edge_sdk.reports import ReportError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.pass { color: #2e7d32; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1rem 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
"""


def png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ReportError when it is not a PNG."""
    target = Path(path)
    try:
        with open(target, "rb") as handle:
            head = handle.read(24)
    except OSError as exc:
        raise ReportError(f"cannot read {target}: {exc}") from exc
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ReportError(f"{target} is not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@dataclass(frozen=True)
class Figure:
    """A PNG beside the page (path relative to the page) and its caption."""

    file: str
    caption: str


@dataclass(frozen=True)
class HtmlTable:
    """A plain table: header cells, rows of text cells, optional caption."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A titled part of the page."""

    heading: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[HtmlTable] = ()
    figures: Sequence[Figure] = ()
    links: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (href, text)


def _table(table: HtmlTable) -> str:
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{escape(table.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in table.header))
    parts.append("</tr></thead><tbody>")
    for row in table.rows:
        parts.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def render_page(
    title: str, sections: Sequence[Section], root: Path, status: bool | None = None
) -> str:
    """The page's HTML text; PNG sizes are read from the files under ``root``."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if status is not None:
        css, word = ("pass", "PASS") if status else ("fail", "FAIL")
        lines.append(f'<p class="{css}">{word}</p>')
    for section in sections:
        lines.append(f"<h2>{escape(section.heading)}</h2>")
        lines += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
        if section.links:
            items = "".join(
                f'<li><a href="{escape(href, quote=True)}">{escape(text)}</a></li>'
                for href, text in section.links
            )
            lines.append(f"<ul>{items}</ul>")
        lines += [_table(t) for t in section.tables]
        for fig in section.figures:
            if not (root / fig.file).is_file():
                raise ReportError(f"figure {fig.file!r} is missing from {root}")
            width, height = png_size(root / fig.file)
            src = escape(fig.file, quote=True)
            lines.append(
                f'<figure><a href="{src}"><img src="{src}" alt="{escape(fig.caption, quote=True)}"'
                f' width="{width}" height="{height}"></a>'
                f"<figcaption>{escape(fig.caption)}</figcaption></figure>"
            )
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def write_page(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    status: bool | None = None,
) -> Path:
    """Write the page and check it (every link resolves, tags nest); ReportError if not."""
    target = Path(path)
    text = render_page(title, sections, target.parent, status)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc}") from exc
    problems = check_page(target)
    if problems:
        raise ReportError(f"{target} is not a valid report page: {'; '.join(problems)}")
    return target


class _PageChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int]] = []
        self.problems: list[str] = []
        self.targets: list[tuple[str, str]] = []  # (tag, url)
        self.seen: set[str] = set()
        self.doctype = False
        self.title = ""
        self._in_title = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower().strip() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.targets.append((tag, value))
            if name.startswith("on"):
                self.problems.append(f"inline script attribute {name} on <{tag}>")
        if tag == "script":
            self.problems.append("the page contains a <script>")
        if tag == "title":
            self._in_title = True
        if tag not in VOID_ELEMENTS:
            self.stack.append((tag, self.getpos()[0]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_ELEMENTS and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in VOID_ELEMENTS:
            return
        if not self.stack:
            self.problems.append(f"line {self.getpos()[0]}: </{tag}> closes nothing")
            return
        open_tag, line = self.stack[-1]
        if open_tag != tag:
            self.problems.append(
                f"line {self.getpos()[0]}: </{tag}> closes <{open_tag}> opened on line {line}"
            )
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def check_page(path: str | os.PathLike[str]) -> list[str]:
    """Problems with a report page, empty when it is fine.

    Checks: ``<!DOCTYPE html>``, ``<html>``/``<head>``/``<title>``/``<body>`` present, every
    tag closed in order, no scripts, every relative ``src``/``href`` an existing file inside
    the page's directory, every linked ``.png`` a real PNG of non-zero size.
    """
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"cannot read {target}: {exc}"]
    checker = _PageChecker()
    checker.feed(text)
    checker.close()
    problems = list(checker.problems)
    if not checker.doctype:
        problems.append("no <!DOCTYPE html>")
    for required in ("html", "head", "title", "body"):
        if required not in checker.seen:
            problems.append(f"no <{required}>")
    if not checker.title.strip():
        problems.append("empty <title>")
    for tag, line in checker.stack:
        problems.append(f"<{tag}> opened on line {line} is never closed")
    root = target.parent.resolve()
    for tag, url in checker.targets:
        parsed = urlparse(url)
        if parsed.scheme or parsed.netloc or url.startswith("#"):
            if parsed.scheme not in ("http", "https", "mailto", ""):
                problems.append(f"<{tag}> links to {url!r} (scheme {parsed.scheme})")
            continue
        linked = (root / unquote(parsed.path)).resolve()
        if root not in linked.parents:
            problems.append(f"<{tag}> links outside the report directory: {url!r}")
        elif not linked.is_file():
            problems.append(f"<{tag}> links to missing file {url!r}")
        elif linked.suffix.lower() == ".png":
            try:
                width, height = png_size(linked)
            except ReportError as exc:
                problems.append(str(exc))
            else:
                if width == 0 or height == 0:
                    problems.append(f"{url!r} is an empty image ({width}x{height})")
    return problems
