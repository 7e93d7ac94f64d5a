"""Family ``av-fbp``: registration in ``family``, the fusion blocks, the data set adapter.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
