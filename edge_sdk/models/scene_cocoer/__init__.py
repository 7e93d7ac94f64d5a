"""Family ``scene-cocoer`` (CocoER): registration in ``family``, blocks, losses, settings.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
