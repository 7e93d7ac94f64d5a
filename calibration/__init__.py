"""INT8 calibration: data readers per modality, ONNX Runtime QDQ quantisation, TensorRT cache.

Not implemented yet (tracked as its own issue); the package exists so the layout is stable.
"""
