"""AFEW folder lister on a fixture tree of empty files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_sdk.datasets.afew import AFEW_LABELS, list_afew
from edge_sdk.errors import InputError


def _touch(root: Path, *parts: str) -> None:
    path = root.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.fixture
def afew(tmp_path: Path) -> Path:
    _touch(tmp_path, "Train", "Happy", "002.avi")
    _touch(tmp_path, "Train", "Happy", "001.AVI")
    _touch(tmp_path, "Train", "Angry", "010.avi")
    _touch(tmp_path, "Train", "Angry", "notes.txt")
    _touch(tmp_path, "Train", ".cache", "x.avi")
    _touch(tmp_path, "Val", "surprise", "100.avi")
    return tmp_path


def test_lists_clips_with_labels_sorted(afew: Path) -> None:
    clips = list_afew(afew, "Train")
    assert [(c.path.name, c.emotion, c.label) for c in clips] == [
        ("010.avi", "angry", 0),
        ("001.AVI", "happy", 3),
        ("002.avi", "happy", 3),
    ]
    assert all(AFEW_LABELS[c.label] == c.emotion and c.split == "Train" for c in clips)
    (val,) = list_afew(afew, "val")
    assert val.emotion == "surprise" and val.label == 6


def test_unknown_emotion_folder_is_an_error(afew: Path) -> None:
    _touch(afew, "Train", "Contempt", "1.avi")
    with pytest.raises(InputError, match="Contempt"):
        list_afew(afew, "Train")


@pytest.mark.parametrize("split", ["Test", "train2"])
def test_bad_split_names_are_refused(afew: Path, split: str) -> None:
    with pytest.raises(InputError, match="split"):
        list_afew(afew, split)


def test_missing_folders_and_empty_splits(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        list_afew(tmp_path / "absent")
    with pytest.raises(InputError, match="no Train/"):
        list_afew(tmp_path)
    (tmp_path / "Train" / "Sad").mkdir(parents=True)
    with pytest.raises(InputError, match="no .* clips"):
        list_afew(tmp_path)
