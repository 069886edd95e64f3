"""Kept so that models logged before the package layout changed (pickled as
``hyperflow.pyfunc_model.HyperflowModel``) still load; new code imports ``hyperflow.tracking.model``."""

from hyperflow.tracking.model import HyperflowModel  # noqa: F401
