"""Mapping a data set's label names onto a model's label order.

Data sets spell the same emotion differently (FER2013 "angry", RAF-DB "anger", MELD "joy" for
FER "happy", IEMOCAP "fru"). Names are matched through one canonical spelling per emotion,
:data:`SYNONYMS`, case-insensitively; anything else must match literally. The table is the
documented mapping between data sets and our families' label orders:

======================  ==========================================================
canonical               spellings treated as the same emotion
======================  ==========================================================
anger                   anger, angry, ang
happiness               happiness, happy, hap, joy (MELD)
sadness                 sadness, sad
surprise                surprise, surprised, sur
fear                    fear, fearful, fea
disgust                 disgust, disgusted, dis
neutral                 neutral, neu
contempt                contempt
excitement              excitement, excited, exc (IEMOCAP; kept apart from happiness)
frustration             frustration, frustrated, fru
======================  ==========================================================

Merges that are a modelling choice (IEMOCAP "excited" into "happy", AffectNet "contempt" into
"disgust") are never made silently: pass ``label_map={"excited": "happy"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edge_sdk.errors import InputError

SYNONYMS: dict[str, str] = {
    "angry": "anger",
    "ang": "anger",
    "happy": "happiness",
    "hap": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "sur": "surprise",
    "fearful": "fear",
    "fea": "fear",
    "disgusted": "disgust",
    "dis": "disgust",
    "neu": "neutral",
    "excited": "excitement",
    "exc": "excitement",
    "frustrated": "frustration",
    "fru": "frustration",
}


def canonical(name: str) -> str:
    """The canonical spelling of an emotion name (lower case, synonyms folded)."""
    key = name.strip().lower()
    return SYNONYMS.get(key, key)


def _index_by_canonical(target: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(target):
        key = canonical(name)
        if key in index:
            raise InputError(
                f"labels {target[index[key]]!r} and {name!r} name the same emotion ({key!r})"
            )
        index[key] = i
    return index


def map_labels(
    source: Sequence[str],
    target: Sequence[str],
    overrides: Mapping[str, str | None] | None = None,
    *,
    strict_overrides: bool = True,
) -> dict[str, int | None]:
    """For every source name, its index in ``target`` (None when it has no counterpart).

    Args:
        source: the data set's label names.
        target: the label order to map onto (a model's labels).
        overrides: source name -> target name, or None to drop that source label; keys
            and values match case-insensitively. Takes precedence over :data:`SYNONYMS`.
        strict_overrides: refuse override keys that are not source names (a typo guard for
            data sets with a fixed vocabulary).

    Raises:
        InputError: two target labels name the same emotion, or an override names a label
            that does not exist.
    """
    by_canonical = _index_by_canonical(target)
    by_lower = {name.lower(): i for i, name in enumerate(target)}
    wanted = {k.strip().lower(): v for k, v in (overrides or {}).items()}
    known = {name.lower() for name in source}
    unknown = sorted(k for k in wanted if k not in known)
    if strict_overrides and unknown:
        raise InputError(f"label_map names {unknown}, which are not labels of the data set")
    mapping: dict[str, int | None] = {}
    for name in source:
        key = name.lower()
        if key in wanted:
            value = wanted[key]
            if value is not None and value.strip().lower() not in by_lower:
                raise InputError(
                    f"label_map sends {name!r} to {value!r}, which is not one of {list(target)}"
                )
            mapping[name] = None if value is None else by_lower[value.strip().lower()]
        else:
            mapping[name] = by_canonical.get(canonical(name))
    return mapping
