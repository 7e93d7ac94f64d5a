"""AffectNet CSV reader on small fixture files (the published column layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sdk.datasets.affectnet import AFFECTNET_COLUMNS, read_affectnet_csv, valence_arousal
from edge_sdk.errors import InputError
from edge_sdk.models.face_caf.losses import otsu_threshold

HEADER = ",".join(AFFECTNET_COLUMNS)
ROWS = (
    "689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg,134,134,899,899,"
    '"181.64;530.91;188.32;627.82;195.1;723.37",1,0.785714,-0.055556',
    "392/c4db2f9b7e4b422d14b6e038f0cdc3ecee239b55326e9181ee4520f9.jpg,20,20,170,170,"
    '"10.0;20.0;30.0;40.0",0,0.0,0.1',
    '5/ee1c1c9f0b.jpg,0,0,100,100,"1;2",10,-2,-2',
)


def _write(tmp_path: Path, lines: list[str], name: str = "training.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_published_layout_and_drops_unratable_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, [HEADER, *ROWS])
    records = read_affectnet_csv(path)
    assert len(records) == 2
    first = records[0]
    assert first.path.startswith("689/") and first.box == (134, 134, 899, 899)
    assert first.landmarks[:2] == (181.64, 530.91) and len(first.landmarks) == 6
    assert (first.expression, first.line) == (1, 2)
    np.testing.assert_allclose(valence_arousal(records), [[0.785714, -0.055556], [0.0, 0.1]])
    everything = read_affectnet_csv(path, valid_valence_arousal_only=False)
    assert len(everything) == 3 and not everything[2].has_valence_arousal
    r = np.linalg.norm(valence_arousal(records), axis=1)
    assert r.min() < otsu_threshold(r, 16) <= r.max()  # dataset-level CAF split works


def test_missing_columns_name_file_line_and_columns(tmp_path: Path) -> None:
    header = ",".join(c for c in AFFECTNET_COLUMNS if c not in ("valence", "face_width"))
    path = _write(tmp_path, [header, "a.jpg,1,1,1,x,0,0.1"])
    with pytest.raises(InputError, match=r"training\.csv:1: .*'face_width', 'valence'"):
        read_affectnet_csv(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('b.jpg,0,0,10,10,"1;2",1,0.5,seven', r"training\.csv:3: column 'arousal'"),
        ('b.jpg,0,0,10,10,"1;2",1,1.5,0.0', r"training\.csv:3: valence 1.5 outside"),
        ('b.jpg,0,0,0,10,"1;2",1,0.5,0.0', r"training\.csv:3: face box"),
        ('b.jpg,0,0,10,10,"1;2;3",1,0.5,0.0', r"training\.csv:3: facial_landmarks"),
        ('b.jpg,0,0,10,10,"1;2",12,0.5,0.0', r"training\.csv:3: expression 12"),
        ("b.jpg,0,0,10,10", r"training\.csv:3: row has fewer fields"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = _write(tmp_path, [HEADER, ROWS[1], row])
    with pytest.raises(InputError, match=message):
        read_affectnet_csv(path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_affectnet_csv(tmp_path / "absent.csv")
