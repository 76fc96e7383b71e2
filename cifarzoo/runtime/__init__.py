"""Inference backends behind one interface, :class:`~cifarzoo.runtime.predictor.Predictor`.

- ``predictor``: the shared numpy/PIL half (decode, batch, softmax, top-k). Torch-free.
- ``onnx``: onnxruntime. Torch-free: ``cifarzoo predict`` on ONNX never imports torch.
- ``torch_runner``: the one torch inference runner (eval mode, autocast, channels_last, restored afterwards).
- ``torchscript``: a traced module on the torch runner.

Import the submodule you need; this package imports none of them, so the ONNX path stays light.
"""
