"""Hyperparameter search: spaces, strategies, pruning and the search runner."""
