"""Checks that run a bundle and judge it: parity across backends (``verify``), latency
(``bench``) and accuracy on a labelled data set (``accuracy``). Each returns a structured
result; :mod:`edge_sdk.reports` turns results into JSON, tables, plots and an HTML page.
"""
