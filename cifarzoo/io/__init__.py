"""Reading and writing models: checkpoints (safetensors + config.json), pretrained backbones, the Hub."""
