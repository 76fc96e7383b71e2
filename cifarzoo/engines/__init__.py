"""Engines: the jobs the CLI runs, on the runtime, io and registry layers below.

evaluate (metrics on any backend), report (its files), export (ONNX/TorchScript with parity checks), publish
(Hub folders and uploads), convert (foreign checkpoints), compare (runs' curves) and explain (Grad-CAM).
Training, which validates through ``evaluate``, is the layer above (``cifarzoo.training``).
"""
