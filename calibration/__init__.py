"""INT8 calibration: calibration data, recorded graph inputs, ONNX Runtime QDQ quantisation.

One reader contract (ONNX Runtime's ``get_next()``) feeds both ONNX Runtime's static
quantisation and, on TensorRT 8.x, the implicit-calibration path.
"""
