"""Reading and writing model files, below the runtime: every file name (``layout``), the resolver that turns a
zoo name, folder, exported file or ``hf://`` id into a path (``resolve``), checkpoints and the one network builder
(``checkpoint``), ImageNet backbones (``pretrained``), the Hugging Face Hub (``hub``), ONNX/TorchScript export and
parity (``export``), sha256 pins (``integrity``) and a run's ``metrics.jsonl`` (``run_metrics``).
"""
