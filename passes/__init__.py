"""ONNX graph passes (onnx-ir): exported ternary ONNX -> packed ``ai.mptc`` ONNX.

Entry point: :func:`mptc.passes.pipeline.optimize` / :func:`~mptc.passes.pipeline.optimize_file`;
one pass per module (``fold_weight_quantizers``, ``pack_ternary_weights``,
``fold_sign_into_binary_input``, ``fold_batch_norm_into_scale``, ``attach_function_bodies``); :mod:`mptc.passes.inspect` summarises
a model per layer.
"""
