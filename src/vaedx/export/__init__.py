"""Portable copies of a trained model (ONNX, TorchScript) checked against the PyTorch original."""
