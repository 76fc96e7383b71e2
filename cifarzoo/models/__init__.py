"""Network definitions: pure ``nn.Module`` classes and their builders, with no file or network I/O.

``specs`` (architecture tables) is torch-free so that the registry and the CLI can describe models without
importing torch; ``factory.build_model`` and the module classes import torch.
"""
