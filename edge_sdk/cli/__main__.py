"""``python -m edge_sdk.cli``: the same as the ``edge-sdk`` command."""

from edge_sdk.cli import main

main()
