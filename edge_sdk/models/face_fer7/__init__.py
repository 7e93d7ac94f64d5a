"""Family ``face-fer7``: registration in ``family``; the MTCNN and mini-XCEPTION networks.

Imports nothing, so looking one family up does not load the others' PyTorch code.
"""
