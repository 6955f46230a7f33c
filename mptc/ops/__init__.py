"""The ``ai.mptc`` operators: NumPy references, ONNX function bodies and optional ``onnx.defs`` schemas."""
