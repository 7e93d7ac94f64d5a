"""PyTorch -> ONNX export per family, third-party weight import, and bundle writing."""
