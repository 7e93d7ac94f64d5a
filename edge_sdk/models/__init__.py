"""Model definitions (PyTorch references) and the registry that rebuilds them by name.

Importing this package does not import torch; the modules that define networks are imported
on first use, so a device without torch can still read manifests and run ONNX graphs.
"""

from edge_sdk.models.registry import build_module, register_architecture

__all__ = ["build_module", "register_architecture"]
