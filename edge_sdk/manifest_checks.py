"""A small vocabulary of checks for untrusted JSON, each naming the path that failed.

A check is a callable ``(value, where)`` that raises :class:`~edge_sdk.errors.ManifestError`
naming ``where`` (``graphs[2].inputs[0].shape[1]``); combinators build one check per JSON
object from checks per field. The guards for raw JSON text (nesting depth measured without
recursion, no repeated keys) are here too. The manifest's own tables of fields and bounds are
in :mod:`edge_sdk.manifest_schema`; this module knows nothing about manifests' fields.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from typing import Any

from edge_sdk.errors import ManifestError

MAX_JSON_DEPTH = 32  # exported manifests nest 6-8 levels
MAX_ITEMS = 10_000  # entries of one JSON list or object
MAX_NAME = 256  # names, labels, tags

Check = Callable[[Any, str], None]
CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # also lone surrogates from \u escapes
CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting of JSON ``text`` (strings skipped), found without recursion,
    so a 200,000-deep document is refused before ``json.loads`` recurses into it."""
    brackets = _BRACKET.findall(_JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key given twice would mean different things to different
    JSON readers, so it is refused."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = sorted({k for k, _ in pairs if k in seen or seen.add(k)})
        raise ManifestError(f"manifest repeats keys {twice[:5]} in one object")
    return data


def shown(value: Any) -> str:
    """``value`` as JSON, cut short: it may be huge or hostile."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problem(where: str, text: str) -> ManifestError:
    """The error for ``where`` (the whole manifest when ``where`` is empty)."""
    return ManifestError(f"{where}: {text}" if where else f"manifest: {text}")


def join_path(where: str, key: str) -> str:
    """``where.key``, or ``key`` at the top."""
    return f"{where}.{key}" if where else key


def integer(lo: int, hi: int) -> Check:
    """An integer (not a bool) in [lo, hi]."""

    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise problem(where, f"expected an integer, got {shown(value)}")
        if not lo <= value <= hi:
            raise problem(where, f"must be an integer in [{lo}, {hi}], got {value}")

    return check


def number(lo: float, hi: float, *, above: bool = False) -> Check:
    """A finite number in [lo, hi] (``above``: lo itself excluded)."""

    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise problem(where, f"expected a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise problem(where, f"must be a finite number, got {value}")
        if value < lo or value > hi or (above and value == lo):
            raise problem(where, f"must be in {'(' if above else '['}{lo:g}, {hi:g}], got {value}")

    return check


def string(
    *,
    min_len: int = 0,
    max_len: int = MAX_NAME,
    pattern: re.Pattern[str] | None = None,
    what: str = "",
    lines: bool = False,
) -> Check:
    """A string; single-line without control characters unless ``lines``; NUL never."""
    control = CONTROL_IN_TEXT if lines else CONTROL

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise problem(where, f"expected a string, got {shown(value)}")
        if not min_len <= len(value) <= max_len:
            raise problem(where, f"must be {min_len}-{max_len} characters, got {len(value)}")
        if control.search(value):
            raise problem(where, f"control character in {shown(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise problem(where, f"expected {what}, got {shown(value)}")

    return check


def one_of(values: Iterable[str], what: str) -> Check:
    """One of ``values`` (a ``what``)."""
    known = sorted(values)

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or value not in known:
            raise problem(where, f"unknown {what} {shown(value)}; known: {known}")

    return check


def boolean(value: Any, where: str) -> None:
    """``true`` or ``false``, never 0 or 1."""
    if not isinstance(value, bool):
        raise problem(where, f"expected true or false, got {shown(value)}")


def nullable(check: Check) -> Check:
    """``null``, or what ``check`` accepts."""

    def nullable(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return nullable


def list_of(
    item: Check, *, min_len: int = 0, max_len: int = MAX_ITEMS, unique: bool = False
) -> Check:
    """A list of ``item`` with ``min_len``-``max_len`` entries (``unique``: no repeats)."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise problem(where, f"expected a list, got {shown(value)}")
        if not min_len <= len(value) <= max_len:
            wanted = str(min_len) if min_len == max_len else f"{min_len}-{max_len}"
            raise problem(where, f"must have {wanted} entries, got {len(value)}")
        for i, entry in enumerate(value):
            item(entry, f"{where}[{i}]")
        if unique and len(set(value)) != len(value):
            seen: set[Any] = set()
            twice = sorted({v for v in value if v in seen or seen.add(v)})
            raise problem(where, f"repeats {twice[:5]}")

    return check


def mapping(value_check: Check, *, key: Check | None = None, max_len: int = MAX_ITEMS) -> Check:
    """An object of ``value_check`` entries keyed by ``key`` (non-empty names by default)."""
    key_check = key or string(min_len=1)

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise problem(where, f"expected an object, got {shown(value)}")
        if len(value) > max_len:
            raise problem(where, f"must have at most {max_len} entries, got {len(value)}")
        for k, v in value.items():
            key_check(k, f"{where} key")
            value_check(v, join_path(where, k))

    return check


def object_of(
    required: dict[str, Check],
    optional: dict[str, Check] | None = None,
    *,
    rule: Check | None = None,
    open_ended: bool = False,
) -> Check:
    """An object with these fields; others are refused (a typo would be silently ignored)
    unless ``open_ended``, where they may hold any JSON. ``rule`` checks across fields."""
    optional = optional or {}
    known = {**required, **optional}

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise problem(where, f"expected an object, got {shown(value)}")
        for name in required:
            if name not in value:
                raise ManifestError(f"{where or 'manifest'} lacks required field {name!r}")
        for name, entry in value.items():
            if name in known:
                known[name](entry, join_path(where, name))
            elif open_ended:
                string(min_len=1)(name, f"{where} key")
                json_value(entry, join_path(where, name))
            else:
                raise problem(where, f"unknown field {shown(name)}; known: {sorted(known)}")
        if rule is not None:
            rule(value, where)

    return check


def record(cls: type, checks: dict[str, Check], *, rule: Check | None = None) -> Check:
    """The object that becomes dataclass ``cls``: a field is required where ``cls`` has no
    default. ``checks`` names every field (tests compare it with ``cls``)."""
    fixed = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    check = object_of(
        {k: v for k, v in checks.items() if k in fixed},
        {k: v for k, v in checks.items() if k not in fixed},
        rule=rule,
    )
    check.fields = frozenset(checks)  # type: ignore[attr-defined]
    return check


def json_value(value: Any, where: str, *, finite: bool = True) -> None:
    """Any JSON (free-form config): bounded depth and size, no NUL; numbers finite unless
    ``finite`` is False (gate reports may record an infinite error). Walked without
    recursion."""
    stack = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise problem(at, f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            if len(item) > MAX_ITEMS:
                raise problem(at, f"must have at most {MAX_ITEMS} entries, got {len(item)}")
            for k, v in item.items():
                if not isinstance(k, str) or CONTROL.search(k):
                    raise problem(at, f"bad key {shown(k)}")
                stack.append((v, join_path(at, k), depth + 1))
        elif isinstance(item, list):
            if len(item) > MAX_ITEMS:
                raise problem(at, f"must have at most {MAX_ITEMS} entries, got {len(item)}")
            stack.extend((v, f"{at}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, str):
            if CONTROL_IN_TEXT.search(item):
                raise problem(at, f"control character in {shown(item)}")
        elif isinstance(item, float):
            if finite and not math.isfinite(item):
                raise problem(at, f"must be a finite number, got {item}")
        elif item is not None and not isinstance(item, (bool, int)):
            raise problem(at, f"not a JSON value: {type(item).__name__}")


def any_object(value: Any, where: str) -> None:
    """A JSON object of any (bounded) content: free-form configuration."""
    if not isinstance(value, dict):
        raise problem(where, f"expected an object, got {shown(value)}")
    json_value(value, where)
