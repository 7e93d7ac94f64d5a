"""Family ``dialog-m2fnet`` (M2FNet): registration in ``family`` and its helper modules.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
