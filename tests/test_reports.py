"""Reports: strict JSON, rich tables, PNG figures, the HTML page and its checker."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from edge_sdk.reports import ReportError
from edge_sdk.reports.html import Figure, HtmlTable, Section, check_page, png_size, write_page
from edge_sdk.reports.jsonio import dumps, write_json
from edge_sdk.reports.plots import (
    ParityBar,
    confusion_matrix_png,
    cost_vs_size_png,
    latency_histogram_png,
    parity_errors_png,
    require_matplotlib,
)
from edge_sdk.reports.tables import confusion_table, metrics_table
from edge_sdk.reports.writers import accuracy_tables, write_accuracy_report

LABELS = ("angry", "happy", "neutral")


def _render(table) -> str:
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()


def test_json_is_strict() -> None:
    @dataclass
    class Row:
        value: float
        array: np.ndarray

    text = dumps(
        {
            "nan": math.nan,
            "inf": np.float32(np.inf),
            "row": Row(1.5, np.arange(3)),
            "path": Path("a/b"),
            "tuple": (1, 2),
        }
    )
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data == {
        "nan": None,
        "inf": None,
        "row": {"value": 1.5, "array": [0, 1, 2]},
        "path": "a/b",
        "tuple": [1, 2],
    }


def test_write_json_reports_unwritable_paths(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match="cannot write"):
        write_json(blocker / "sub" / "out.json", {})


def test_png_figures_have_their_sizes(tmp_path) -> None:
    matrix = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 4]])
    paths = [
        confusion_matrix_png(tmp_path / "confusion.png", matrix, LABELS),
        latency_histogram_png(tmp_path / "latency.png", {"a": [1.0, 1.2, 1.1, 3.0], "b": [2.0]}),
        parity_errors_png(
            tmp_path / "parity.png",
            [
                ParityBar("g.y ort-cpu/fp32", 3e-7, 1e-5, True),
                ParityBar("g.z", 0.2, 1e-5, False),
                ParityBar("g.w int8", 0.0, None, True),
            ],
        ),
        cost_vs_size_png(
            tmp_path / "cost.png", {"pnet": {"height": [(12, 0.3), (360, 12.0), (960, 70.0)]}}
        ),
    ]
    for path in paths:
        width, height = png_size(path)
        assert width >= 300 and height >= 200, path
    with pytest.raises(ReportError, match="does not fit"):
        confusion_matrix_png(tmp_path / "x.png", matrix[:2], LABELS)
    (tmp_path / "fake.png").write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(ReportError, match="not a PNG"):
        png_size(tmp_path / "fake.png")


def test_missing_matplotlib_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ReportError, match=r"pip install 'edge-sdk\[report\]'"):
        require_matplotlib()


def test_missing_matplotlib_fails_the_cli_early(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from edge_sdk.cli import app

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = CliRunner().invoke(app, ["verify", str(tmp_path), "--report", str(tmp_path / "r")])
    assert result.exit_code == 2 and "edge-sdk[report]" in result.output


def test_page_is_valid_and_the_checker_finds_problems(tmp_path) -> None:
    latency_histogram_png(tmp_path / "lat.png", {"x": [1.0, 2.0, 3.0]})
    (tmp_path / "data.json").write_text("{}")
    page = write_page(
        tmp_path / "index.html",
        "report <with> & escapes",
        [
            Section(
                "one",
                paragraphs=("a < b",),
                tables=(HtmlTable(("k", "v"), [["x", "<script>"]], caption="c"),),
                figures=(Figure("lat.png", "latency"),),
                links=(("data.json", "data"),),
            )
        ],
        status=True,
    )
    assert check_page(page) == []
    text = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;" in text and "<script" not in text
    width, height = png_size(tmp_path / "lat.png")
    assert f'width="{width}" height="{height}"' in text

    broken = tmp_path / "broken.html"
    broken.write_text(
        "<html><head><title>t</title></head><body><div><p>x</div>"
        '<img src="missing.png"><a href="../outside.json">o</a>'
        "<script>console.log(1)</script></body></html>",
        encoding="utf-8",
    )
    problems = "\n".join(check_page(broken))
    for expected in (
        "DOCTYPE",
        "</div> closes <p>",
        "missing file 'missing.png'",
        "outside the report directory",
        "<script>",
    ):
        assert expected in problems
    with pytest.raises(ReportError, match="missing"):
        write_page(tmp_path / "bad.html", "t", [Section("s", figures=(Figure("no.png", "x"),))])


@dataclass(frozen=True)
class _Metrics:
    """The shape of edge_sdk.metrics.ClassificationMetrics that reports rely on."""

    labels: tuple[str, ...]
    confusion: np.ndarray

    @property
    def scores(self) -> dict[str, float]:
        diagonal = np.trace(self.confusion) / self.confusion.sum()
        return {"war": float(diagonal), "uar": float("nan")}

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "scores": self.scores,
            "per_class": {k: {"recall": 0.5, "support": 3} for k in self.labels},
            "confusion": self.confusion.tolist(),
        }


def test_accuracy_report_for_the_accuracy_check(tmp_path) -> None:
    metrics = _Metrics(LABELS, np.array([[3, 0, 1], [0, 4, 0], [1, 1, 2]]))
    page = write_accuracy_report(
        metrics,
        tmp_path / "acc",
        title="accuracy face-fer7",
        context={"samples": 12},
        passed=True,
    )
    assert check_page(page) == []
    assert png_size(tmp_path / "acc" / "confusion.png")[0] >= 300
    saved = json.loads((tmp_path / "acc" / "accuracy.json").read_text(encoding="utf-8"))
    assert saved["passed"] is True and saved["context"] == {"samples": 12}
    assert saved["metrics"]["scores"]["uar"] is None  # NaN -> null
    rendered = "\n".join(_render(t) for t in accuracy_tables(metrics))
    assert "war" in rendered and "0.7500" in rendered and "true \\ predicted" in rendered


def test_tables_render() -> None:
    text = _render(metrics_table({"war": 0.5, "per_class": {"happy": 0.9}}, title="m"))
    assert "per_class.happy" in text and "0.9000" in text
    text = _render(confusion_table([[1, 2], [3, 4]], ("a", "b")))
    assert "a" in text and "4" in text


def test_real_metrics_objects_fit_the_report(tmp_path) -> None:
    metrics_module = pytest.importorskip("edge_sdk.metrics")
    if not hasattr(metrics_module, "compute_metrics"):
        pytest.skip("edge_sdk.metrics has no compute_metrics yet")
    y_true = np.array([0, 1, 2, 1, 0, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    metrics = metrics_module.compute_metrics("classification", y_true, y_pred, labels=LABELS)
    page = write_accuracy_report(metrics, tmp_path / "real")
    assert check_page(page) == []


def test_progress_bar_advances() -> None:
    import io

    from edge_sdk.reports.progress import progress_steps

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    with progress_steps("verify", console) as on_step:
        on_step(1, 2, "classifier: torch reference")
        on_step(2, 2, "classifier: ort-cpu/fp32")
    assert "verify" in stream.getvalue()
    with progress_steps("quiet", console, enabled=False) as on_step:
        on_step(1, 1, "nothing shown")
