"""Family ``face-blazeface``: registration in ``family``; the network read from .tflite.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
