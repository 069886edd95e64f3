"""Workflows: orchestration around the core; the only code that knows about MLflow runs."""
