"""Workflows: train, lr_find, search, promote, retrain (with its lock), predict, and the gate and scoring
promotion uses. The only code that knows about runs, trials, aliases and locks; it reaches MLflow only
through ``hyperflow.tracking``."""
