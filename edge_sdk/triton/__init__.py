"""Triton Inference Server model repositories from bundles (``edge-sdk export-triton``).

:mod:`~edge_sdk.triton.repository` writes the repository, :mod:`~edge_sdk.triton.pbtxt`
renders and checks ``config.pbtxt``, :mod:`~edge_sdk.triton.python_model` is the
Python-backend model shipped into it.
"""

from edge_sdk.triton.repository import TritonRepository, export_triton_repository

__all__ = ["TritonRepository", "export_triton_repository"]
