"""Offline training: train, export to ONNX, calibrate and evaluate the export, write its card."""
