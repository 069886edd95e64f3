"""hyperflow: train PyTorch networks with sound hyperparameters, every experiment tracked in MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hyperflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"
