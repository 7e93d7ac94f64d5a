"""Issue #11, sections 6 and 7: every failure a user can cause reaches them as an EdgeSDKError
(one line and exit code 2 on the command line), and the newcomer findings: silent exports and
training, an untimed decode in ``--json``, tables cut mid-word at 80 columns, the detector
listed twice in ``Recognizer.backends``, a slow refusal of ``--config``, a title ending in a
colon.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

import edge_sdk
from edge_sdk.api import Recognizer
from edge_sdk.cli import app
from edge_sdk.errors import ClosedError, EdgeSDKError, InputError
from tests.conftest import ASTRONAUT

runner = CliRunner()
WIDTH = 80


def _invoke(*args: str, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


def _one_error_line(result) -> str:
    """The single ``error:`` line ending a failed command's stderr (progress lines may come
    before it), with exit code 2 and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    return errors[0]


# ------------------------------------------------------------------ section 6: error surface
@pytest.mark.parametrize("target", ["file", "file/inside"])
def test_export_out_on_an_existing_file_is_one_line_exit_2(tmp_path: Path, target: str) -> None:
    existing = tmp_path / "file"
    existing.write_text("keep me")
    line = _one_error_line(_invoke("export", "face-fer7", "--out", str(tmp_path / target)))
    assert "--out" in line and "not a directory" in line
    assert existing.read_text() == "keep me"


def test_export_out_as_a_file_refuses_before_importing_torch(tmp_path: Path) -> None:
    """`--out /etc/passwd` took a whole export (5 s) before a FileExistsError traceback."""
    existing = tmp_path / "passwd"
    existing.write_text("root:x:0:0")
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from edge_sdk.cli import app\n"
        f"r = CliRunner().invoke(app, ['export', 'face-fer7', '--out', {str(existing)!r}])\n"
        "print(r.exit_code, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_os_error_from_a_command_is_one_line_exit_2(tmp_path: Path) -> None:
    """No command lets an OSError through as a traceback: /proc takes no new folders."""
    line = _one_error_line(
        _invoke("train", "face-caf", "--epochs", "1", "--batches", "1", "--batch-size", "2",
                "--out", "/proc/edge-sdk-no-such-dir/ckpt.safetensors")
    )  # fmt: skip
    assert "edge-sdk-no-such-dir" in line or "/proc" in line


def test_train_out_on_a_directory_is_refused_before_training(tmp_path: Path) -> None:
    line = _one_error_line(_invoke("train", "face-caf", "--out", str(tmp_path)))
    assert "is a directory" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "deep"),
        (b'{"family": "\xff\xfe"}', "UTF-8"),
    ],
    ids=["deep", "not-utf8"],
)
def test_unreadable_manifests_are_one_line_exit_2(tmp_path: Path, content: bytes, message: str):
    (tmp_path / "manifest.json").write_bytes(content)
    for args in (["devices", "--bundle", str(tmp_path)], ["verify", str(tmp_path)],
                 ["predict", str(ASTRONAUT), "--bundle", str(tmp_path)]):  # fmt: skip
        line = _one_error_line(_invoke(*args))
        assert message in line, line


def test_annotate_to_a_text_file_is_one_line_exit_2(face_bundle, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    line = _one_error_line(
        _invoke("predict", str(ASTRONAUT), "--bundle", str(face_bundle.root),
                "--annotate", str(target))
    )  # fmt: skip
    assert "out.txt" in line and not target.exists()


def test_predict_after_close_is_a_closed_error(face_bundle, device, astronaut) -> None:
    recognizer = edge_sdk.load(face_bundle.root, device=device)
    assert recognizer.predict(astronaut).faces
    recognizer.close()
    recognizer.close()  # closing twice is harmless
    with pytest.raises(ClosedError, match="closed"):
        recognizer.predict(astronaut)
    with pytest.raises(ClosedError):
        recognizer.open_dialog()
    assert issubclass(ClosedError, EdgeSDKError)


def test_close_racing_predict_gives_results_or_closed_errors(face_bundle, device) -> None:
    """A caller racing ``close()`` sees results or a ClosedError, never the pool's
    RuntimeError ('cannot schedule new futures after shutdown')."""
    small = np.zeros((64, 64, 3), dtype=np.uint8)
    recognizer = edge_sdk.load(face_bundle.root, device=device)
    outcomes: list[BaseException | None] = []

    def caller() -> None:
        while True:
            try:
                recognizer.predict(small)
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcomes.append(exc)
                return
            outcomes.append(None)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    recognizer.close()
    for thread in threads:
        thread.join(timeout=30)
    errors = [o for o in outcomes if o is not None]
    assert len(errors) == 3 and all(isinstance(e, ClosedError) for e in errors), errors
    assert None in outcomes  # the callers did run before the close


@pytest.mark.parametrize(
    ("bundle", "named"),
    [(123, "int"), (b"bundle", "bytes"), ({"a": 1}, "dict"), ([ASTRONAUT.parent, 4.5], "float")],
)
def test_load_of_something_not_a_bundle_names_its_type(bundle, named: str) -> None:
    with pytest.raises(InputError, match=rf"load\(\) takes .*{named}"):
        edge_sdk.load(bundle)


def test_recognizer_of_something_not_a_bundle_names_its_type(device) -> None:
    with pytest.raises(InputError, match="got int"):
        Recognizer(123, device)
    with pytest.raises(InputError, match="got str"):
        Recognizer(["not opened"], device)


@pytest.mark.parametrize(
    "options",
    [
        {"workers": 0},
        {"workers": -2},
        {"workers": 1.5},
        {"workers": True},
        {"max_queue": -1},
        {"max_queue": "16"},
        {"queue_timeout": -1},
        {"queue_timeout": math.nan},
        {"queue_timeout": math.inf},
        {"wrokers": 2},
    ],
)
def test_bad_recognizer_options_are_input_errors_before_any_export(
    options, tmp_path: Path, monkeypatch
) -> None:
    """Checked first: ``load(workers=0)`` exported the default bundle (5 s), then raised
    the executor's plain ValueError."""
    home = tmp_path / "home"
    monkeypatch.setenv("EDGE_SDK_HOME", str(home))
    with pytest.raises(InputError, match=next(iter(options))) as caught:
        edge_sdk.load(**options)
    assert isinstance(caught.value, ValueError)  # InputError is a ValueError too
    assert not home.exists()  # nothing was exported


# ------------------------------------------------------------------- section 7: newcomers
def test_backends_list_each_detector_graph_once(face_bundle, device) -> None:
    # (numpy integers pass the option checks: they are integers)
    with edge_sdk.load(
        face_bundle.root, device=device, workers=np.int64(1), max_queue=0, queue_timeout=2
    ) as recognizer:
        backends = recognizer.backends
    assert {"detector/pnet", "detector/rnet", "detector/onet", "face-fer7/classifier"} == set(
        backends
    )


def test_predict_json_times_the_decode(face_bundle) -> None:
    """The CLI decoded before ``predict``: ``--json`` said decode took 0.02 ms for a PNG
    whose decode takes milliseconds."""
    result = _invoke("predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--json")
    assert result.exit_code == 0, result.output
    timings = json.loads(result.stdout)["timings_ms"]
    assert timings["decode"] > 0.5, timings  # a 512x512 PNG: ~3-10 ms
    assert timings["total"] >= timings["decode"] + timings["detect"]


def test_first_predict_shows_the_default_export_off_a_terminal(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    result = _invoke("predict", str(ASTRONAUT))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any("exporting the built-in face-fer7" in line and "pnet" in line for line in lines)
    assert any("writing the manifest" in line for line in lines), lines
    assert len(lines) == len(set(lines)) <= 12  # one line per stage, not per item
    assert "happy" in result.stdout
    again = _invoke("predict", str(ASTRONAUT))
    assert again.exit_code == 0 and again.stderr == ""  # cached: nothing to report


def test_export_and_train_print_one_line_per_stage_off_a_terminal(tmp_path: Path) -> None:
    checkpoint = tmp_path / "caf.safetensors"
    trained = _invoke("train", "face-caf", "--epochs", "3", "--batches", "2", "--batch-size",
                      "2", "--out", str(checkpoint))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    lines = trained.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"train face-caf: epoch {e}/3" for e in (1, 2, 3)
    ]
    exported = _invoke("export", "face-caf", "--checkpoint", str(checkpoint),
                       "--out", str(tmp_path / "bundle"))  # fmt: skip
    assert exported.exit_code == 0, exported.output
    stages = [line.split(" (")[0] for line in exported.stderr.splitlines()]
    assert stages == [
        "export face-caf: building the PyTorch modules",
        "export face-caf: ONNX export of regressor",
        "export face-caf: parity of regressor against PyTorch",
        "export face-caf: writing the manifest",
    ]


def test_progress_off_a_terminal_prints_stages_only_when_asked() -> None:
    from edge_sdk.reports.progress import progress_steps

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=WIDTH)
    with progress_steps("job", console, lines=True) as on_step:
        for i in range(50):
            on_step(i, 50, "stage A" if i < 30 else "stage B")
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == [
        "job: stage A",
        "job: stage B",
    ]
    quiet = io.StringIO()
    with progress_steps("job", Console(file=quiet, force_terminal=False)) as on_step:
        on_step(1, 2, "stage A")
    assert quiet.getvalue() == ""


def test_export_refuses_config_for_a_pretrained_family_without_building(tmp_path: Path):
    """``export face-fer7 --config tiny`` imported every family (torch) before refusing."""
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from edge_sdk.cli import app\n"
        "r = CliRunner().invoke(app, ['export', 'face-fer7', '--config', 'tiny', '--out', "
        f"{str(tmp_path / 'x')!r}])\n"
        "print(r.exit_code, 'torch' in sys.modules, r.output.strip())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    code, torch_loaded, message = out.stdout.split(" ", 2)
    assert (code, torch_loaded) == ("2", "False"), out.stdout + out.stderr
    assert "not --config" in message and not (tmp_path / "x").exists()


# --------------------------------------------------------------------- tables at 80 columns
def _tokens(table: Table) -> set[str]:
    """Every word of every cell and header (markup removed)."""
    words: set[str] = set()
    for column in table.columns:
        for cell in (column.header, *column.cells):
            if isinstance(cell, str):
                words.update(Text.from_markup(cell).plain.split())
    return words


def _render(renderable, width: int = WIDTH) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()


def _assert_fits(table: Table) -> None:
    from edge_sdk.reports.tables import fit

    text = _render(fit(table))
    assert max(len(line) for line in text.splitlines()) <= WIDTH, text
    assert "…" not in text, text
    broken = sorted(t for t in _tokens(table) if t not in text)
    assert not broken, f"split mid-word: {broken}\n{text}"


def test_verify_and_bench_tables_fit_80_columns_without_splitting_words(
    face_bundle, device
) -> None:
    """At 80 columns rich cut ``ort-cpu/fp32`` into ``ort-cp`` / ``u/fp32``."""
    from edge_sdk.checks.bench import bench
    from edge_sdk.checks.verify import verify
    from edge_sdk.reports.tables import bench_tables, verify_tables

    checked = verify(face_bundle, device, sizes=("opt",))
    timed = bench(face_bundle, device, warmup=0, runs=2, batches=[1, 2], sweep_points=2,
                  images=[ASTRONAUT])  # fmt: skip
    for table in (*verify_tables(checked), *bench_tables(timed)):
        _assert_fits(table)


def test_fit_keeps_words_whole_where_rich_would_split_them() -> None:
    from edge_sdk.reports.tables import fit

    table = Table(title="wide")
    for header in ("graph", "backend", "reason", "other reason"):
        table.add_column(header)
    table.add_row("classifier", "ort-tensorrt/fp16", "TensorrtExecutionProvider " * 3,
                  "a fairly long sentence that wraps between its words " * 2)  # fmt: skip
    plain = _render(table)
    assert "ort-tensorrt/fp16" not in plain or "…" in plain  # rich alone splits or cuts
    _assert_fits(table)
    wide = _render(fit(table), width=400)
    assert max(len(line) for line in wide.splitlines()) > WIDTH  # fit only ever shrinks


def test_cli_tables_fit_80_columns(face_bundle, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    root = str(face_bundle.root)
    for args, words in (
        (["devices", "--bundle", root], ["TensorrtExecutionProvider", "ort-tensorrt"]),
        (["predict", str(ASTRONAUT), "--bundle", root], ["happy", "1.0000"]),
        (["verify", root, "--sizes", "opt"], ["ort-cpu/fp32", "probabilities", "classifier"]),
    ):
        result = _invoke(*args)
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.stdout.splitlines()) <= WIDTH, result.stdout
        assert "…" not in result.stdout
        for word in words:
            assert word in result.stdout, (word, result.stdout)


def test_bench_titles_do_not_end_in_a_bare_colon(face_bundle, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    result = _invoke("bench", str(face_bundle.root), "--warmup", "0", "--runs", "2",
                     "--batches", "1", "--no-sweep", "--graphs", "classifier")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert not [line for line in lines if line.endswith(":")], result.stdout
    assert f"bench {face_bundle.manifest.family}/{face_bundle.manifest.variant}" in result.stdout
