"""Engines: the jobs the CLI runs, on the runtime, io and registry layers below.

evaluate (metrics on any backend), calibrate (temperature scaling), report and html_report (its files and its
one-page HTML), export (ONNX/TorchScript with parity checks), publish (Hub folders and uploads), convert
(foreign checkpoints), compare (runs' curves), explain (Grad-CAM), benchmark (img/s per backend and precision)
and demo (the Gradio app). Training, which validates through ``evaluate``, is the layer above
(``cifarzoo.training``).
"""
