"""Deployment: ONNX export with a parity check, INT8 quantization, pruning and distillation (see each module)."""
