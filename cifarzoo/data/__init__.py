"""Datasets and preprocessing. ``specs``, ``preprocess`` and ``files`` are torch-free."""
