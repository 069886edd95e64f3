"""hyperflow: train PyTorch networks with sound hyperparameters, every experiment tracked in MLflow."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``hyperflow.__version__``, read from the installed package when asked: importlib.metadata takes ~50 ms to
    import, which every command would otherwise pay before its first line (a bad input's refusal included)."""
    if name != "__version__":
        raise AttributeError(f"module 'hyperflow' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hyperflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.1.0"
