"""MELD (Poria et al. 2019): utterances of Friends dialogues, one CSV per split plus clips.

Published layout (``MELD.Raw``)::

    train_sent_emo.csv   dev_sent_emo.csv   test_sent_emo.csv
    train_splits/dia<D>_utt<U>.mp4
    dev_splits_complete/dia<D>_utt<U>.mp4
    output_repeated_splits_test/dia<D>_utt<U>.mp4

CSV columns: Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
Season, Episode, StartTime, EndTime (times ``HH:MM:SS,mmm``). Emotions are
:data:`MELD_LABELS` (neutral, surprise, fear, sadness, joy, disgust, anger: the order of the
``dialog-m2fnet`` family); against a face model's labels "joy" meets "happy" through the
synonym table. ``path`` is one CSV (split = the part before ``_sent_emo``) or the folder
holding them (``split`` = train, dev or test; None reads all present). Clips are looked up in
``media_root``, else the split's published folder beside the CSV (or inside ``<split>/``),
else beside the CSV.

Samples carry ``dialog_id``/``utterance_id`` (the integers as text), ``speaker``, ``text``,
``start``/``end`` in seconds, and ``extra`` sentiment, season, episode and Sr No.; they are
ordered dialog by dialog, utterance by utterance, so :meth:`Dataset.dialogs` gives each
conversation in order. A repeated (dialogue, utterance) pair is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge_sdk.datasets._io import csv_rows, first_dir, integer, require_dir
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

MELD_LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
MELD_SENTIMENTS = ("neutral", "positive", "negative")
MELD_COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
)  # fmt: skip
CLIP_FOLDERS = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
CSV_SUFFIX = "_sent_emo"
_TIME = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)[,.](\d{1,3})$")


def clip_name(dialog: int, utterance: int) -> str:
    """The published clip file name of an utterance."""
    return f"dia{dialog}_utt{utterance}.mp4"


def _seconds(text: str, column: str, where: str) -> float:
    match = _TIME.match(text.strip())
    if match is None:
        raise InputError(f"{where}: column {column!r} is not HH:MM:SS,mmm: {text!r}")
    hours, minutes, seconds, millis = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _csv_files(request: ReadRequest) -> list[Path]:
    path = request.path
    if not path.is_dir():
        if request.split is not None:
            raise InputError(f"{path} is one MELD split; pass its folder to choose a split")
        return [path]
    require_dir(path, "MELD folder")
    if request.split is not None:
        split = request.split.strip().lower()
        if split not in CLIP_FOLDERS:
            raise InputError(
                f"MELD split must be one of {list(CLIP_FOLDERS)}, got {request.split!r}"
            )
        return [path / f"{split}{CSV_SUFFIX}.csv"]
    files = [path / f"{s}{CSV_SUFFIX}.csv" for s in CLIP_FOLDERS]
    files = [f for f in files if f.is_file()]
    if not files:
        raise InputError(f"{path} has none of {[f'{s}{CSV_SUFFIX}.csv' for s in CLIP_FOLDERS]}")
    return files


def _read_csv(csv_path: Path, media_root: Path | None) -> list[Sample]:
    stem = csv_path.stem.lower()
    split = stem[: -len(CSV_SUFFIX)] if stem.endswith(CSV_SUFFIX) else None
    split = split if split in CLIP_FOLDERS else None
    clips = media_root or csv_path.parent
    if media_root is None and split is not None:
        folder = CLIP_FOLDERS[split]
        clips = first_dir((clips / folder, clips / split / folder), clips)
    seen: dict[tuple[int, int], int] = {}
    keyed = []
    for line, row in csv_rows(csv_path, MELD_COLUMNS, "MELD CSV"):
        where = f"{csv_path}:{line}"
        dialog = integer(row["Dialogue_ID"], "Dialogue_ID", where)
        utterance = integer(row["Utterance_ID"], "Utterance_ID", where)
        if dialog < 0 or utterance < 0:
            raise InputError(f"{where}: negative Dialogue_ID or Utterance_ID")
        if (dialog, utterance) in seen:
            raise InputError(
                f"{where}: dialogue {dialog} utterance {utterance} already on line "
                f"{seen[dialog, utterance]}"
            )
        seen[dialog, utterance] = line
        sentiment = row["Sentiment"].strip().lower()
        if sentiment not in MELD_SENTIMENTS:
            raise InputError(
                f"{where}: Sentiment {row['Sentiment']!r} is not one of {list(MELD_SENTIMENTS)}"
            )
        start = _seconds(row["StartTime"], "StartTime", where)
        end = _seconds(row["EndTime"], "EndTime", where)
        sample = Sample(
            paths=(clips / clip_name(dialog, utterance),),
            source=where,
            native=row["Emotion"].strip(),
            dialog_id=str(dialog),
            utterance_id=str(utterance),
            speaker=row["Speaker"].strip(),
            text=row["Utterance"],
            start=start,
            end=end,
            split=split,
            extra={
                "sentiment": sentiment,
                "season": integer(row["Season"], "Season", where),
                "episode": integer(row["Episode"], "Episode", where),
                "sr_no": integer(row["Sr No."], "Sr No.", where),
            },
        )
        keyed.append(((dialog, utterance), sample))
    return [sample for _, sample in sorted(keyed, key=lambda item: item[0])]


def _read_meld(request: ReadRequest) -> list[Sample]:
    return [s for path in _csv_files(request) for s in _read_csv(path, request.media_root)]


MELD = register_format(
    DatasetFormat(
        name="meld",
        description="MELD <split>_sent_emo.csv + dia<D>_utt<U>.mp4 clips",
        read=_read_meld,
        labels=MELD_LABELS,
    )
)
