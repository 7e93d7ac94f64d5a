"""Reports for checks: JSON for machines, rich tables for people, PNG plots and one HTML page.

One responsibility per module:

- :mod:`~edge_sdk.reports.jsonio`: results -> strict JSON (NaN/Inf become null).
- :mod:`~edge_sdk.reports.tables`: results -> rich tables.
- :mod:`~edge_sdk.reports.plots`: PNG figures (matplotlib, imported only when plotting).
- :mod:`~edge_sdk.reports.html`: one self-contained HTML page linking the PNGs, and a
  standard-library checker for such pages.
- :mod:`~edge_sdk.reports.progress`: progress bars for long checks.
- :mod:`~edge_sdk.reports.writers`: one call per check that writes JSON + PNGs + HTML into
  a ``--report`` directory (:func:`write_verify_report`, :func:`write_bench_report`,
  :func:`write_accuracy_report`).
"""

from __future__ import annotations

from edge_sdk.errors import EdgeSDKError


class ReportError(EdgeSDKError):
    """A report cannot be written (missing plotting library, unwritable directory)."""


__all__ = ["ReportError"]
