"""Kept so that models logged before the package layout changed (their pickled preprocessing names
``hyperflow.data.Preprocessor``) still load; new code imports ``hyperflow.core.data``."""

from hyperflow.core.data import *  # noqa: F403
from hyperflow.core.data import Preprocessor  # noqa: F401
