"""The names the scene-cocoer graphs, the workspace and its result agree on.

Why a module of its own: the exporter's graph outputs, the workspace's inputs and the result's
level order must be the same names; keeping them in one dependency-free place lets the result
type and the sidecar use them without importing the workspace's numerics.
"""

from __future__ import annotations

FAMILY = "scene-cocoer"
LEVELS = ("context", "body", "head")
LEVEL_OUTPUTS = ("z_c", "z_b", "z_h")  # graph output name of each level, same order
PSEUDO_LABEL = "y_t"
IGNORED_OUTPUTS = ("z_t",)
LEVEL_LOGITS = "level_logits"
