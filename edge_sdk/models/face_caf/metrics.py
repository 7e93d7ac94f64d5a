"""Valence/arousal metrics of the CAF family (RMSE, PCC, CCC per dimension).

They live in :mod:`edge_sdk.metrics` with the other accuracy metrics (one copy); this module
keeps the family-side import path working.
"""

from __future__ import annotations

from edge_sdk.metrics import DIMENSIONS, ccc, pcc, rmse, va_metrics

__all__ = ["DIMENSIONS", "ccc", "pcc", "rmse", "va_metrics"]
