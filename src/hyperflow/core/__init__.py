"""The core: pure PyTorch and pandas. Data, models, losses, optimizers, the trainer, the LR range test,
pruning rules, metrics and plots. Imports neither MLflow nor hyperopt; returns result objects."""
