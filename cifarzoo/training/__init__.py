"""The training engine: recipes (typed TOML), on-device augmentation, the loop, checkpoints and DDP."""
