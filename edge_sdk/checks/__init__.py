"""Checks that run a bundle and judge it: parity across backends (``verify``) and latency
(``bench``). Each returns a structured result; :mod:`edge_sdk.reports` turns results into
JSON, tables, plots and an HTML page.
"""
