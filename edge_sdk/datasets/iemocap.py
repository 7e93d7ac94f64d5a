"""IEMOCAP (Busso et al. 2008): the consensus lines of ``dialog/EmoEvaluation/*.txt``.

Published layout (``IEMOCAP_full_release``)::

    Session<N>/dialog/EmoEvaluation/<dialog>.txt       # labels, one file per dialog
    Session<N>/dialog/transcriptions/<dialog>.txt      # "<turn> [start-end]: text"
    Session<N>/sentences/wav/<dialog>/<turn>.wav       # one wav per utterance

In an evaluation file the consensus of each turn is one tab-separated line::

    [6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]

(start - end seconds, turn name, category code, [valence, activation, dominance] on IEMOCAP's
1-5 scale). The header (``% [START_TIME - END_TIME] ...``), the per-evaluator lines
(``C-E2: ...``, ``A-E3: ...``) and blank lines are skipped; any other line that starts with
``[`` must have that form. Codes map to :data:`IEMOCAP_LABELS` (neu neutral, fru frustration,
ang anger, sad sadness, hap happiness, exc excited, sur surprise, fea fear, dis disgust, oth
other); ``xxx`` (no majority) is never a class. The usual 6-class benchmark (M2FNet's anchor)
is ``labels=IEMOCAP_SIX, unmapped="skip"``; 4-class setups merge with
``label_map={"excited": "happiness"}``.

``path`` is the release root, one ``EmoEvaluation`` folder, or one evaluation file. ``split``
is a session ("Session1".."Session5"; Session5 is the usual test split). Samples: the
utterance wav (``media_root`` replaces ``Session<N>/sentences/wav``), ``dialog_id`` = dialog,
``utterance_id`` = turn name, ``speaker`` = session + F/M (``"Ses01_F"``), ``text`` from the
transcription when present, ``start``/``end``, valence and activation (arousal) rescaled
linearly from 1..5 to [-1, 1] ((x - 3) / 2), and the raw V, A, D in ``extra``. Samples are
ordered dialog by dialog and, within a dialog, by start time.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge_sdk.datasets._io import require_dir, text_lines
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

IEMOCAP_CODES = {
    "neu": "neutral",
    "fru": "frustration",
    "ang": "anger",
    "sad": "sadness",
    "hap": "happiness",
    "exc": "excited",
    "sur": "surprise",
    "fea": "fear",
    "dis": "disgust",
    "oth": "other",
    "xxx": "xxx",
}
IEMOCAP_LABELS = tuple(name for name in IEMOCAP_CODES.values() if name != "xxx")
IEMOCAP_SIX = ("happiness", "sadness", "neutral", "anger", "excited", "frustration")
SCALE = (1.0, 5.0)
_LINE = re.compile(
    r"^\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$"
)
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_SESSION = re.compile(r"^Ses(\d\d)", re.IGNORECASE)


def to_unit(value: float) -> float:
    """IEMOCAP's 1..5 rating -> [-1, 1]."""
    low, high = SCALE
    return (value - (low + high) / 2) / ((high - low) / 2)


def _session(name: str) -> str | None:
    match = _SESSION.match(name)
    return None if match is None else f"session{int(match.group(1))}"


def _evaluation_files(request: ReadRequest) -> list[Path]:
    path = request.path
    if path.is_file():
        files = [path]
    else:
        require_dir(path, "IEMOCAP folder")
        files = sorted(p for p in path.glob("*.txt") if not p.name.startswith("."))
        if not files:
            files = sorted(
                p
                for p in path.glob("Session*/dialog/EmoEvaluation/*.txt")
                if not p.name.startswith(".")
            )
        if not files:
            raise InputError(
                f"{path} has no Session*/dialog/EmoEvaluation/*.txt and no evaluation files"
            )
    if request.split is None:
        return files
    wanted = request.split.strip().lower().replace(" ", "")
    if not re.fullmatch(r"session\d+", wanted):
        raise InputError(
            f"IEMOCAP split must be a session such as 'Session5', got {request.split!r}"
        )
    return [f for f in files if _session(f.stem) == wanted]


def _transcripts(evaluation: Path) -> dict[str, str]:
    """Turn -> text from the dialog's transcription file, if the release has it."""
    path = evaluation.parent.parent / "transcriptions" / evaluation.name
    if not path.is_file():
        return {}
    texts = {}
    for line in text_lines(path, "IEMOCAP transcription"):
        match = _TRANSCRIPT.match(line.strip())
        if match is not None:
            texts[match.group(1)] = match.group(2)
    return texts


def _vad(text: str, where: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not SCALE[0] <= v <= SCALE[1] for v in values):
        raise InputError(f"{where}: [V, A, D] must be three numbers in 1..5, got [{text}]")
    return values  # type: ignore[return-value]


def _read_file(path: Path, media_root: Path | None) -> list[Sample]:
    wavs = media_root or path.parent.parent.parent / "sentences" / "wav"
    texts = _transcripts(path)
    seen: dict[str, int] = {}
    samples = []
    for number, raw in enumerate(text_lines(path, "IEMOCAP evaluation file"), start=1):
        line = raw.strip()
        if not line.startswith("["):
            continue
        where = f"{path}:{number}"
        match = _LINE.match(line)
        if match is None:
            raise InputError(
                f"{where}: expected '[start - end] <turn> <code> [V, A, D]', got {line!r}"
            )
        start, end, turn, code, vad_text = match.groups()
        if code.lower() not in IEMOCAP_CODES:
            raise InputError(
                f"{where}: unknown IEMOCAP emotion code {code!r}; expected one of "
                f"{list(IEMOCAP_CODES)}"
            )
        if turn in seen:
            raise InputError(f"{where}: turn {turn} already on line {seen[turn]}")
        seen[turn] = number
        if "_" not in turn:
            raise InputError(f"{where}: turn name {turn!r} has no '<dialog>_<turn>' form")
        dialog, suffix = turn.rsplit("_", 1)
        valence, activation, dominance = _vad(vad_text, where)
        samples.append(
            Sample(
                paths=(wavs / dialog / f"{turn}.wav",),
                source=where,
                native=IEMOCAP_CODES[code.lower()],
                valence=to_unit(valence),
                arousal=to_unit(activation),
                dialog_id=dialog,
                utterance_id=turn,
                speaker=f"{turn[:5]}_{suffix[0].upper()}" if _session(turn) else None,
                text=texts.get(turn),
                start=float(start),
                end=float(end),
                split=_session(turn),
                extra={"vad": (valence, activation, dominance), "code": code.lower()},
            )
        )
    return sorted(samples, key=lambda s: (s.dialog_id, s.start))


def _read_iemocap(request: ReadRequest) -> list[Sample]:
    return [s for path in _evaluation_files(request) for s in _read_file(path, request.media_root)]


IEMOCAP = register_format(
    DatasetFormat(
        name="iemocap",
        description="IEMOCAP Session*/dialog/EmoEvaluation/*.txt consensus lines + sentence wavs",
        read=_read_iemocap,
        labels=IEMOCAP_LABELS,
        ignored=("xxx",),
        valence_arousal=True,
    )
)
