"""Family ``face-caf`` (CAF valence/arousal): registration in ``family``, losses, metrics.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
