"""Data set adapters on fixture files written in each published layout (tmp_path only)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.datasets import formats, get_format, map_labels, read_dataset
from edge_sdk.datasets.caer import CAER_S_LABELS
from edge_sdk.datasets.emotic import EMOTIC_COLUMNS, EMOTIC_LABELS
from edge_sdk.datasets.fer2013 import FER2013_LABELS
from edge_sdk.datasets.iemocap import IEMOCAP_LABELS, IEMOCAP_SIX
from edge_sdk.datasets.meld import MELD_COLUMNS, MELD_LABELS
from edge_sdk.datasets.rafdb import RAFDB_LABELS
from edge_sdk.errors import InputError
from edge_sdk.metrics import compute_metrics
from edge_sdk.models.pretrained import FER_LABELS

FER7 = FER_LABELS  # angry, disgust, fear, happy, sad, surprise, neutral


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------- registry, labels
def test_registry_lists_every_published_layout() -> None:
    names = {f.name for f in formats()}
    assert names == {
        "afew", "affectnet", "caer-s", "emotic", "fer2013", "folder", "iemocap", "jsonl",
        "meld", "rafdb",
    }  # fmt: skip
    assert get_format("FER2013").name == "fer2013"
    with pytest.raises(InputError, match=r"unknown dataset format 'kinetics'.*'meld'"):
        read_dataset("x", "kinetics")
    with pytest.raises(InputError, match="labels must be a sequence of names"):
        read_dataset("x", "folder", labels="happy")
    with pytest.raises(InputError, match="labels is empty"):
        read_dataset("x", "folder", labels=())
    with pytest.raises(InputError, match="unmapped must be one of"):
        read_dataset("x", "folder", unmapped="drop")  # type: ignore[arg-type]


def test_data_set_label_orders_are_the_families_orders() -> None:
    pytest.importorskip("torch")
    from edge_sdk.datasets.afew import AFEW_LABELS
    from edge_sdk.models.dialog_m2fnet import family as family_dialog_m2fnet
    from edge_sdk.models.face_expclip import family as family_face_expclip
    from edge_sdk.models.scene_cocoer import family as family_scene_cocoer

    assert FER2013_LABELS == FER_LABELS
    assert RAFDB_LABELS == family_face_expclip.RAFDB_LABELS
    assert CAER_S_LABELS == family_scene_cocoer.CAER_S_LABELS
    assert EMOTIC_LABELS == family_scene_cocoer.EMOTIC_LABELS
    assert MELD_LABELS == family_dialog_m2fnet.LABELS
    assert get_format("afew").labels == AFEW_LABELS


def test_label_mapping_synonyms_overrides_and_errors() -> None:
    index = map_labels(RAFDB_LABELS, FER7)
    assert [FER7[index[n]] for n in RAFDB_LABELS] == [
        "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral",
    ]  # fmt: skip
    assert map_labels(MELD_LABELS, FER7)["joy"] == FER7.index("happy")
    assert map_labels(("excited",), FER7)["excited"] is None  # never merged silently
    assert map_labels(("excited",), FER7, {"Excited": "HAPPY"})["excited"] == 3
    assert map_labels(("contempt",), FER7, {"contempt": None})["contempt"] is None
    with pytest.raises(InputError, match="'angry' and 'anger' name the same emotion"):
        map_labels(FER7, ("angry", "anger"))
    with pytest.raises(InputError, match="not one of"):
        map_labels(FER7, FER7, {"angry": "furious"})
    with pytest.raises(InputError, match=r"label_map names \['angyr'\]"):
        map_labels(FER7, FER7, {"angyr": "angry"})


# --------------------------------------------------------------------------- FER2013
def _fer_rows(rng: np.random.Generator) -> list[list[object]]:
    def pixels() -> str:
        return " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))

    return [[0, pixels(), "Training"], [3, pixels(), "PublicTest"], [6, pixels(), "PrivateTest"]]


def test_fer2013_reads_inline_faces_and_splits(tmp_path: Path) -> None:
    rows = _fer_rows(np.random.default_rng(0))
    path = _csv(tmp_path / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    data = read_dataset(path, "fer2013")
    assert data.task == "classification" and data.labels == FER2013_LABELS
    assert data.y_true().tolist() == [0, 3, 6]
    first = data[0]
    assert first.paths == () and first.path is None and first.source == f"{path}:2"
    assert first.image.shape == (48, 48) and first.image.dtype == np.uint8
    np.testing.assert_array_equal(first.image.ravel(), [int(v) for v in rows[0][1].split()])
    (private,) = read_dataset(path, "fer2013", split="privatetest")
    assert private.split == "PrivateTest" and private.native == "neutral"
    caer = read_dataset(path, "fer2013", labels=CAER_S_LABELS)  # angry -> anger
    assert [caer.labels[i] for i in caer.y_true()] == ["anger", "happy", "neutral"]


def test_fer2013_kaggle_copy_with_spaced_header(tmp_path: Path) -> None:
    rows = [[r[0], r[2], r[1]] for r in _fer_rows(np.random.default_rng(1))]
    path = _csv(tmp_path / "icml_face_data.csv", ["emotion", " Usage", " pixels"], rows)
    assert len(read_dataset(path, "fer2013", split="Training")) == 1
    no_usage = _csv(tmp_path / "train.csv", ["emotion", "pixels"], [[r[0], r[2]] for r in rows])
    assert len(read_dataset(no_usage, "fer2013")) == 3
    with pytest.raises(InputError, match=r"train\.csv:1: split 'Training' asked but .* no Usage"):
        read_dataset(no_usage, "fer2013", split="Training")


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (
            ["emotion", "Usage"],
            [1, "Training"],
            r"fer\.csv:1: FER2013 CSV lacks columns \['pixels'\]",
        ),
        (["emotion", "pixels", "Usage"], [7, "1 2", "Training"], r"fer\.csv:2: emotion 7 outside"),
        (["emotion", "pixels", "Usage"], ["x", "1", "Training"], r"fer\.csv:2: column 'emotion'"),
        (["emotion", "pixels", "Usage"], [1, "1 2 3", "Training"], r"fer\.csv:2: pixels has 3"),
        (["emotion", "pixels", "Usage"], [1, "1 2.5 3", "Training"], r":2: pixels holds a value"),
        (["emotion", "pixels", "Usage"], [1, "0 " * 2304, "Train"], r"fer\.csv:2: Usage 'Train'"),
        (
            ["emotion", "pixels", "Usage"],
            [1, "0 " * 2303 + "256", "Training"],
            r":2: pixels outside",
        ),
        (["emotion", "pixels", "Usage"], [1, "0 " * 2304], r"fer\.csv:2: row has fewer fields"),
    ],
)
def test_fer2013_errors_name_file_and_line(
    tmp_path: Path, header: list[str], row: list[object], message: str
) -> None:
    path = _csv(tmp_path / "fer.csv", header, [row])
    with pytest.raises(InputError, match=message):
        read_dataset(path, "fer2013")


# --------------------------------------------------------------------------- RAF-DB
@pytest.fixture
def rafdb(tmp_path: Path) -> Path:
    root = tmp_path / "basic"
    lines = ["train_00001.jpg 5", "train_00002.jpg 1", "", "test_0001.jpg 4", "test_0002.jpg 7"]
    listing = root / "EmoLabel" / "list_patition_label.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("train_00001", "train_00002", "test_0001", "test_0002"):
        _touch(root / "Image" / "aligned" / f"{name}_aligned.jpg")
    return root


def test_rafdb_reads_partition_list_and_aligned_faces(rafdb: Path) -> None:
    data = read_dataset(rafdb, "rafdb")
    assert data.labels == RAFDB_LABELS
    assert [s.native for s in data] == ["sadness", "surprise", "happiness", "neutral"]
    assert data.y_true().tolist() == [4, 0, 3, 6]
    assert data[0].path == rafdb / "Image" / "aligned" / "train_00001_aligned.jpg"
    assert [s.source.rsplit(":", 1)[1] for s in data] == ["1", "2", "4", "5"]
    test = read_dataset(rafdb / "EmoLabel" / "list_patition_label.txt", "rafdb", split="TEST")
    assert [s.split for s in test] == ["test", "test"]
    fer = read_dataset(rafdb, "rafdb", labels=FER7)
    assert [fer.labels[i] for i in fer.y_true()] == ["sad", "surprise", "happy", "neutral"]
    assert fer.mapping["anger"] == "angry" and fer.mapping["happiness"] == "happy"


def test_rafdb_missing_files_policy(rafdb: Path) -> None:
    (rafdb / "Image" / "aligned" / "test_0001_aligned.jpg").unlink()
    listing = rafdb / "EmoLabel" / "list_patition_label.txt"
    with pytest.raises(InputError, match=rf"{listing}:4: missing file .*test_0001_aligned\.jpg"):
        read_dataset(rafdb, "rafdb")
    skipped = read_dataset(rafdb, "rafdb", missing_files="skip")
    assert len(skipped) == 3 and skipped.skipped == {"missing file": 1}
    assert len(read_dataset(rafdb, "rafdb", missing_files="keep")) == 4
    with pytest.raises(InputError, match="missing_files must be one of"):
        read_dataset(rafdb, "rafdb", missing_files="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00003.jpg 8", r"list_patition_label\.txt:3: label 8 outside 1\.\.7"),
        ("train_00003.jpg", r"list_patition_label\.txt:3: expected '<image> <label>'"),
        ("train_00003.jpg five", r"list_patition_label\.txt:3: column 'label'"),
        ("val_00003.jpg 2", r"list_patition_label\.txt:3: image name 'val_00003\.jpg'"),
    ],
)
def test_rafdb_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    listing = tmp_path / "EmoLabel" / "list_patition_label.txt"
    listing.parent.mkdir()
    listing.write_text(f"train_00001.jpg 1\ntrain_00002.jpg 2\n{line}\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_dataset(tmp_path, "rafdb", missing_files="keep")
    with pytest.raises(InputError, match="does not exist"):
        read_dataset(tmp_path / "absent", "rafdb")


# --------------------------------------------------------------------------- AffectNet
AFFECTNET_HEADER = [
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
]  # fmt: skip


@pytest.fixture
def affectnet(tmp_path: Path) -> Path:
    rows = [
        ["1/a.jpg", 10, 20, 100, 50, "1;2;3;4", 1, 0.8, 0.2],  # happy
        ["1/b.jpg", 0, 0, 30, 30, "1;2", 7, -0.5, 0.6],  # contempt
        ["2/c.jpg", 0, 0, 30, 30, "1;2", 10, -2, -2],  # no-face
        ["2/d.jpg", 0, 0, 30, 30, "1;2", 6, -2, -2],  # anger, unratable
    ]
    for row in rows:
        _touch(tmp_path / "Manually_Annotated_Images" / row[0])
    return _csv(tmp_path / "Manually_Annotated_file_lists" / "training.csv", AFFECTNET_HEADER, rows)


def test_affectnet_classification_needs_a_decision_on_contempt(affectnet: Path) -> None:
    own = read_dataset(affectnet, "affectnet")
    assert own.labels[-1] == "contempt" and own.y_true().tolist() == [1, 7, 6]
    assert own.skipped == {"ignored label 'no-face'": 1}
    first = own[0]
    assert first.path == affectnet.parent.parent / "Manually_Annotated_Images" / "1" / "a.jpg"
    assert first.box == (10, 20, 110, 70) and first.split == "training"
    assert first.extra["landmarks"] == (1.0, 2.0, 3.0, 4.0)
    assert own[2].valence is None and np.isnan(own.valence_arousal()[2]).all()
    with pytest.raises(InputError, match=r"training\.csv:3: affectnet label 'contempt' \(1 "):
        read_dataset(affectnet, "affectnet", labels=FER7)
    fer = read_dataset(affectnet, "affectnet", labels=FER7, unmapped="skip")
    assert [fer.labels[i] for i in fer.y_true()] == ["happy", "angry"]
    assert fer.skipped["unmapped label 'contempt'"] == 1
    merged = read_dataset(affectnet, "affectnet", labels=FER7, label_map={"contempt": "disgust"})
    assert [merged.labels[i] for i in merged.y_true()] == ["happy", "disgust", "angry"]
    dropped = read_dataset(affectnet, "affectnet", labels=FER7, label_map={"contempt": None})
    assert dropped.skipped["label 'contempt' dropped by label_map"] == 1


def test_affectnet_valence_arousal_task(affectnet: Path) -> None:
    data = read_dataset(affectnet, "affectnet", labels=("valence", "arousal"))
    assert data.task == "valence_arousal" and data.labels == ("valence", "arousal")
    np.testing.assert_allclose(data.y_true(), [[0.8, 0.2], [-0.5, 0.6]])
    assert data.skipped == {"no valence/arousal": 2}
    with pytest.raises(InputError, match="one split"):
        read_dataset(affectnet, "affectnet", split="training")


def test_affectnet_missing_column_names_file(affectnet: Path) -> None:
    _csv(affectnet, AFFECTNET_HEADER[:-1], [["1/a.jpg", 1, 1, 5, 5, "1;2", 1, 0.1]])
    with pytest.raises(InputError, match=r"training\.csv:1: AffectNet CSV lacks .*'arousal'"):
        read_dataset(affectnet, "affectnet")


# --------------------------------------------------------------------------- CAER-S, AFEW, folder
def test_caer_s_split_folders(tmp_path: Path) -> None:
    for split, emotion, name in [
        ("train", "Anger", "0001.png"),
        ("train", "Happy", "0002.png"),
        ("test", "Surprise", "0003.png"),
        ("test", "Surprise", "notes.txt"),
    ]:
        _touch(tmp_path / split / emotion / name)
    data = read_dataset(tmp_path, "caer-s")
    assert [(s.split, s.native, s.path.name) for s in data] == [
        ("train", "anger", "0001.png"),
        ("train", "happy", "0002.png"),
        ("test", "surprise", "0003.png"),
    ]
    assert data.y_true().tolist() == [0, 3, 6] and data.labels == CAER_S_LABELS
    assert len(read_dataset(tmp_path, "caer-s", split="Test")) == 1
    fer = read_dataset(tmp_path, "caer-s", labels=FER7)
    assert fer.y_true().tolist() == [0, 3, 5]
    _touch(tmp_path / "train" / "Contempt" / "9.png")
    with pytest.raises(InputError, match=r"unknown CAER-S class folder .*Contempt"):
        read_dataset(tmp_path, "caer-s")
    with pytest.raises(InputError, match=r"has no val/ folder"):
        read_dataset(tmp_path, "caer-s", split="val")
    with pytest.raises(InputError, match="none of the CAER-S split folders"):
        read_dataset(tmp_path / "train", "caer-s")


def test_afew_through_read_dataset(tmp_path: Path) -> None:
    _touch(tmp_path / "Train" / "Happy" / "1.avi")
    _touch(tmp_path / "Val" / "Sad" / "2.avi")
    data = read_dataset(tmp_path, "afew")
    assert [(s.split, s.native) for s in data] == [("Train", "happy"), ("Val", "sad")]
    assert read_dataset(tmp_path, "afew", split="val").y_true().tolist() == [5]
    with pytest.raises(InputError, match="not a folder"):
        read_dataset(tmp_path / "absent", "afew")


def test_generic_folder_per_class(tmp_path: Path) -> None:
    for rel in ("Happy/a.jpg", "Happy/b.PNG", "sad/c.jpg", "sad/.hidden.jpg", "sad/d.txt"):
        _touch(tmp_path / "set" / rel)
    _touch(tmp_path / "set" / "loose.jpg")
    data = read_dataset(tmp_path / "set", "folder")
    assert data.labels == ("Happy", "sad") and data.y_true().tolist() == [0, 0, 1]
    fer = read_dataset(tmp_path / "set", "folder", labels=FER7)
    assert [fer.labels[i] for i in fer.y_true()] == ["happy", "happy", "sad"]
    only_png = read_dataset(tmp_path / "set", "folder", extensions=(".png",))
    assert [s.path.name for s in only_png] == ["b.PNG"]
    _touch(tmp_path / "split" / "val" / "Fear" / "x.jpg")
    assert read_dataset(tmp_path / "split", "folder", split="VAL")[0].split == "VAL"
    with pytest.raises(InputError, match=r"has no class sub-folders"):
        read_dataset(tmp_path / "set" / "sad", "folder")
    _touch(tmp_path / "set" / "bored" / "e.jpg")
    with pytest.raises(InputError, match=r"folder label 'bored' \(1 samples\) has no counterpart"):
        read_dataset(tmp_path / "set", "folder", labels=FER7)


# --------------------------------------------------------------------------- EMOTIC
def _emotic_row(index: int, name: str, cats: str, cont: str, bbox: str = "[10, 20, 110, 220]"):
    return [index, "mscoco/images", name, "[640, 480]", bbox, cats, cont, "Male", "Adult"]


@pytest.fixture
def emotic(tmp_path: Path) -> Path:
    annotations = tmp_path / "emotic_pre"
    _csv(
        annotations / "train.csv",
        list(EMOTIC_COLUMNS),
        [
            _emotic_row(0, "a.jpg", "['Engagement', 'Happiness']", "[10, 1, 5]"),
            _emotic_row(1, "b.jpg", "['Doubt/Confusion']", "[5.5, 7.75, 6]"),
        ],
    )
    _csv(
        annotations / "test.csv",
        list(EMOTIC_COLUMNS),
        [_emotic_row(0, "c.jpg", "['Peace', 'Engagement', 'Esteem']", "[4.0, 3.5, 6.5]")],
    )
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _touch(tmp_path / "emotic" / "mscoco" / "images" / name)
    return annotations


def test_emotic_multi_label_vectors_and_valence_arousal(emotic: Path) -> None:
    data = read_dataset(emotic / "train.csv", "emotic")
    assert data.task == "multilabel" and data.labels == EMOTIC_LABELS
    truth = data.y_true()
    assert truth.shape == (2, 26) and truth.dtype == np.int8
    assert [[EMOTIC_LABELS[j] for j in np.flatnonzero(row)] for row in truth] == [
        ["engagement", "happiness"],
        ["doubt/confusion"],
    ]
    first = data[0]
    assert first.path == emotic.parent / "emotic" / "mscoco" / "images" / "a.jpg"
    assert first.box == (10, 20, 110, 220) and first.split == "train"
    assert (first.valence, first.arousal) == (1.0, -1.0) and first.extra["vad"] == (10, 1, 5)
    assert data[1].valence == 0.0 and data[1].arousal == pytest.approx(0.5)
    both = read_dataset(emotic, "emotic")
    assert [s.split for s in both] == ["train", "train", "test"]
    (test,) = read_dataset(emotic, "emotic", split="test")
    assert test.native == ("peace", "engagement", "esteem")
    va = read_dataset(emotic, "emotic", labels=("valence", "arousal"))
    np.testing.assert_allclose(va.y_true()[2], [(4 - 5.5) / 4.5, (3.5 - 5.5) / 4.5])
    few = read_dataset(emotic, "emotic", labels=("happiness", "engagement"), unmapped="skip")
    assert few.y_true().tolist() == [[1, 1], [0, 0], [0, 1]]
    assert few.skipped["unmapped label 'doubt/confusion' (occurrences)"] == 1
    with pytest.raises(InputError, match=r"train\.csv:3: emotic label 'doubt/confusion'"):
        read_dataset(emotic, "emotic", labels=("happiness", "engagement"))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            _emotic_row(2, "b.jpg", "['Joyful']", "[5, 5, 5]"),
            r"train\.csv:3: unknown emotic label 'Joyful'",
        ),
        (
            _emotic_row(2, "b.jpg", "Peace", "[5, 5, 5]"),
            r"train\.csv:3: column 'Categorical_Labels'",
        ),
        (_emotic_row(2, "b.jpg", "['Peace']", "[5, 5]"), r"train\.csv:3: Continuous_Labels must"),
        (
            _emotic_row(2, "b.jpg", "['Peace']", "[0, 5, 5]"),
            r"train\.csv:3: .* outside EMOTIC's 1\.\.10",
        ),
        (
            _emotic_row(2, "b.jpg", "['Peace']", "[5, 5, 5]", "[1, 2, 3]"),
            r"train\.csv:3: column 'BBox'",
        ),
        (_emotic_row(2, "b.jpg", "['Peace']", "[5, 5, 5]", "[9, 2, 3, 4]"), r"train\.csv:3: BBox"),
        (_emotic_row(2, "b.jpg", "['Peace']", "__import__('os')"), r"train\.csv:3: column 'Cont"),
    ],
)
def test_emotic_bad_rows_name_file_and_line(emotic: Path, row: list[object], message: str) -> None:
    good = _emotic_row(0, "a.jpg", "['Peace']", "[5, 5, 5]")
    _csv(emotic / "train.csv", list(EMOTIC_COLUMNS), [good, row])
    with pytest.raises(InputError, match=message):
        read_dataset(emotic / "train.csv", "emotic")


def test_emotic_missing_column_and_split_errors(emotic: Path) -> None:
    _csv(emotic / "val.csv", [c for c in EMOTIC_COLUMNS if c != "BBox"], [])
    with pytest.raises(InputError, match=r"val\.csv:1: EMOTIC CSV lacks columns \['BBox'\]"):
        read_dataset(emotic, "emotic", split="val")
    with pytest.raises(InputError, match="EMOTIC split must be one of"):
        read_dataset(emotic, "emotic", split="dev")


# --------------------------------------------------------------------------- MELD
def _meld_row(sr: int, text: str, emotion: str, dialog: int, utt: int, start: str = "00:16:16,059"):
    return [sr, text, "Chandler", emotion, "neutral", dialog, utt, 8, 21, start, "00:16:21,731"]


@pytest.fixture
def meld(tmp_path: Path) -> Path:
    rows = [
        _meld_row(1, "also I was the point person", "neutral", 1, 0),
        _meld_row(2, "You must\u2019ve had your hands full.", "joy", 0, 1),
        _meld_row(3, "That I did.", "surprise", 0, 0),
    ]
    _csv(tmp_path / "train_sent_emo.csv", list(MELD_COLUMNS), rows)
    for dialog, utt in ((0, 0), (0, 1), (1, 0)):
        _touch(tmp_path / "train_splits" / f"dia{dialog}_utt{utt}.mp4")
    return tmp_path


def test_meld_dialogs_in_utterance_order(meld: Path) -> None:
    data = read_dataset(meld / "train_sent_emo.csv", "meld")
    assert data.labels == MELD_LABELS
    assert [(s.dialog_id, s.utterance_id, s.native) for s in data] == [
        ("0", "0", "surprise"),
        ("0", "1", "joy"),
        ("1", "0", "neutral"),
    ]
    assert data.dialogs() == {"0": (0, 1), "1": (2,)}
    second = data[1]
    assert second.path == meld / "train_splits" / "dia0_utt1.mp4"
    assert second.text == "You must\u2019ve had your hands full." and second.speaker == "Chandler"
    assert second.start == pytest.approx(16 * 60 + 16.059) and second.split == "train"
    assert second.extra == {"sentiment": "neutral", "season": 8, "episode": 21, "sr_no": 2}
    assert second.source == f"{meld / 'train_sent_emo.csv'}:3"
    fer = read_dataset(meld, "meld", split="train", labels=FER7)
    assert [fer.labels[i] for i in fer.y_true()] == ["surprise", "happy", "neutral"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_meld_row(9, "x", "joyful", 2, 0), r"train_sent_emo\.csv:3: unknown meld label 'joyful'"),
        (_meld_row(9, "x", "joy", 0, 0), r"train_sent_emo\.csv:3: dialogue 0 utterance 0 already"),
        (_meld_row(9, "x", "joy", 2, 0, "16:16"), r"train_sent_emo\.csv:3: column 'StartTime'"),
        (_meld_row(9, "x", "joy", "two", 0), r"train_sent_emo\.csv:3: column 'Dialogue_ID'"),
        (_meld_row(9, "x", "joy", 5, 0), r"train_sent_emo\.csv:3: missing file .*dia5_utt0\.mp4"),
    ],
)
def test_meld_bad_rows_name_file_and_line(meld: Path, row: list[object], message: str) -> None:
    _csv(meld / "train_sent_emo.csv", list(MELD_COLUMNS), [_meld_row(1, "a", "joy", 0, 0), row])
    with pytest.raises(InputError, match=message):
        read_dataset(meld / "train_sent_emo.csv", "meld")


def test_meld_missing_column_and_media_root(meld: Path) -> None:
    clips = meld / "elsewhere"
    _touch(clips / "dia3_utt4.mp4")
    row = _meld_row(1, "hi", "anger", 3, 4)
    path = _csv(meld / "dev_sent_emo.csv", list(MELD_COLUMNS), [row])
    assert read_dataset(path, "meld", media_root=clips)[0].path == clips / "dia3_utt4.mp4"
    header = [c for c in MELD_COLUMNS if c != "Utterance_ID"]
    _csv(path, header, [row[:6] + row[7:]])
    with pytest.raises(InputError, match=r"dev_sent_emo\.csv:1: MELD CSV lacks .*'Utterance_ID'"):
        read_dataset(path, "meld")


# --------------------------------------------------------------------------- IEMOCAP
EVALUATION = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[1.0100 - 2.0000]\tSes01F_impro01_M000\texc\t[4.0000, 4.5000, 3.0000]
C-E1:\tExcited;\t()

[10.0000 - 12.5000]\tSes01F_impro01_M001\txxx\t[3.0000, 3.0000, 3.0000]

[13.0000 - 14.0000]\tSes01F_impro01_F001\tfru\t[1.0000, 5.0000, 4.0000]
"""


@pytest.fixture
def iemocap(tmp_path: Path) -> Path:
    session = tmp_path / "IEMOCAP_full_release" / "Session1"
    evaluation = session / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    evaluation.parent.mkdir(parents=True)
    evaluation.write_text(EVALUATION, encoding="utf-8")
    (session / "dialog" / "EmoEvaluation" / "Categorical").mkdir()
    transcript = session / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    transcript.parent.mkdir(parents=True)
    transcript.write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        "Ses01F_impro01_M000 [001.0100-002.0000]: Do you have your forms?\n",
        encoding="utf-8",
    )
    for turn in ("F000", "M000", "M001", "F001"):
        _touch(session / "sentences" / "wav" / "Ses01F_impro01" / f"Ses01F_impro01_{turn}.wav")
    return tmp_path / "IEMOCAP_full_release"


def test_iemocap_consensus_lines_in_time_order(iemocap: Path) -> None:
    data = read_dataset(iemocap, "iemocap")
    assert data.labels == IEMOCAP_LABELS and data.skipped == {"ignored label 'xxx'": 1}
    assert [(s.utterance_id[-4:], s.native) for s in data] == [
        ("M000", "excited"),
        ("F000", "neutral"),
        ("F001", "frustration"),
    ]
    first = data[0]
    assert first.path == (
        iemocap / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_M000.wav"
    )
    assert first.dialog_id == "Ses01F_impro01" and first.speaker == "Ses01_M"
    assert first.text == "Do you have your forms?" and data[2].text is None
    assert (first.start, first.end, first.split) == (1.01, 2.0, "session1")
    assert (first.valence, first.arousal) == (0.5, 0.75) and first.extra["vad"] == (4, 4.5, 3)
    evaluation = iemocap / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    assert first.source == f"{evaluation}:7"
    six = read_dataset(evaluation, "iemocap", labels=IEMOCAP_SIX)
    assert [six.labels[i] for i in six.y_true()] == ["excited", "neutral", "frustration"]
    four = read_dataset(
        evaluation.parent,
        "iemocap",
        labels=("neutral", "happy", "sad", "angry"),
        label_map={"excited": "happy"},
        unmapped="skip",
    )
    assert four.y_true().tolist() == [1, 0]
    assert four.skipped["unmapped label 'frustration'"] == 1
    va = read_dataset(iemocap, "iemocap", labels=("Valence", "Arousal"))
    assert len(va) == 4 and va.y_true()[3].tolist() == [-1.0, 1.0]
    assert va.dialogs() == {"Ses01F_impro01": (0, 1, 2, 3)}
    assert len(read_dataset(iemocap, "iemocap", split="Session1")) == 3
    with pytest.raises(InputError, match="no iemocap samples found"):
        read_dataset(iemocap, "iemocap", split="Session5")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "[1.0 - 2.0]\tSes01F_impro01_F009\tjoy\t[3.0, 3.0, 3.0]",
            r"\.txt:13: unknown IEMOCAP emotion code 'joy'",
        ),
        ("[1.0 - 2.0]\tSes01F_impro01_F009\tneu", r"\.txt:13: expected '\[start - end\]"),
        (
            "[1.0 - 2.0]\tSes01F_impro01_F009\tneu\t[3.0, 9.0, 3.0]",
            r"\.txt:13: \[V, A, D\] must be",
        ),
        (
            "[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[3.0, 3.0, 3.0]",
            r"\.txt:13: turn Ses01F_impro01_F000 already on line 3",
        ),
    ],
)
def test_iemocap_bad_lines_name_file_and_line(iemocap: Path, line: str, message: str) -> None:
    evaluation = iemocap / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    evaluation.write_text(EVALUATION + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_dataset(iemocap, "iemocap", missing_files="keep")


# --------------------------------------------------------------------------- JSONL
def _jsonl(path: Path, records: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_single_multi_and_regression(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.wav", "c.mp4"):
        _touch(tmp_path / name)
    path = _jsonl(
        tmp_path / "set.jsonl",
        [
            {"path": "a.jpg", "label": "Happy", "valence": 0.5, "arousal": 0.1, "who": "x"},
            "",
            "// a comment",
            {"paths": ["c.wav", "c.mp4"], "label": 4, "dialog_id": 7, "utterance_id": "0"},
            {"path": "b.jpg", "label": "angry", "split": "test", "box": [1, 2, 3, 4]},
        ],
    )
    data = read_dataset(path, "jsonl", labels=FER7)
    assert [data.labels[i] for i in data.y_true()] == ["happy", "sad", "angry"]
    assert data[0].extra == {"who": "x"} and data[1].paths == (
        tmp_path / "c.wav",
        tmp_path / "c.mp4",
    )
    assert data[1].dialog_id == "7" and data[2].box == (1.0, 2.0, 3.0, 4.0)
    assert data[1].source == f"{path}:4"
    with pytest.raises(
        InputError, match=r"set\.jsonl:1: split 'test' asked but the record has none"
    ):
        read_dataset(path, "jsonl", labels=FER7, split="test")
    va = read_dataset(path, "jsonl", labels=("valence", "arousal"))
    assert len(va) == 1 and va.skipped == {"no valence/arousal": 2}
    multi = _jsonl(
        tmp_path / "multi.jsonl",
        [{"path": "a.jpg", "labels": ["peace", "fear"]}, {"path": "b.jpg", "labels": []}],
    )
    data = read_dataset(multi, "jsonl")
    assert data.task == "multilabel" and data.labels == ("fear", "peace")
    assert data.y_true().tolist() == [[1, 1], [0, 0]]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"path": "a.jpg", "label": "happy"', r"bad\.jsonl:2: not valid JSON"),
        ("[1, 2]", r"bad\.jsonl:2: expected a JSON object, got list"),
        ({"label": "happy"}, r"bad\.jsonl:2: needs 'path'"),
        ({"path": "a.jpg"}, r"bad\.jsonl:2: no 'label', 'labels' or valence/arousal"),
        ({"path": "a.jpg", "label": 3}, r"bad\.jsonl:2: integer label 3 needs labels="),
        (
            {"path": "a.jpg", "labels": ["sad"]},
            r"bad\.jsonl:2: mixes single labels and label lists",
        ),
        (
            {"path": "a.jpg", "valence": 2, "arousal": 0},
            r"bad\.jsonl:2: 'valence' must be a number in",
        ),
        ({"path": "a.jpg", "valence": 0.1, "label": "sad"}, r"bad\.jsonl:2: give both valence"),
        ({"path": "a.jpg", "label": True}, r"bad\.jsonl:2: label must be a name"),
    ],
)
def test_jsonl_bad_records_name_file_and_line(tmp_path: Path, record: object, message: str) -> None:
    _touch(tmp_path / "a.jpg")
    path = _jsonl(tmp_path / "bad.jsonl", [{"path": "a.jpg", "label": "happy"}, record])
    with pytest.raises(InputError, match=message):
        read_dataset(path, "jsonl")


# --------------------------------------------------------------------------- into the metrics
def test_dataset_feeds_compute_metrics(rafdb: Path, emotic: Path) -> None:
    data = read_dataset(rafdb, "rafdb", labels=FER7)
    scores = np.eye(len(FER7))[data.y_true()]
    result = compute_metrics(data.task, data.y_true(), scores, labels=data.labels)
    assert result.war == 1.0 and result.labels == FER7
    assert data.counts()["happy"] == 1 and sum(data.counts().values()) == len(data)
    multi = read_dataset(emotic, "emotic")
    truth = multi.y_true()
    result = compute_metrics(multi.task, truth, truth + 0.1, labels=multi.labels)
    assert result.mean_ap == 1.0 and result.positives[EMOTIC_LABELS.index("engagement")] == 2
