"""Engines: predict (and, later, train and evaluate), built on the models and io layers."""
