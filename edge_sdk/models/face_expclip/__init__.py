"""Family ``face-expclip`` (Exp-CLIP zero-shot expressions): registration in ``family``.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
