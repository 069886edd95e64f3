"""Ctrl-C and SIGTERM held back while a model version is registered and its run ends, so that a version
never comes from a run that then ends KILLED, nor a command report KILLED for a run it finished.

The holding itself is :class:`hyperflow.runtime.signals.Hold`'s (the first signal held, one line; a second one
stops at once); what is MLflow's is here: when the hold ends, a held signal stops what the caller does next if a
run is still open around it (a retrain's), and is left to the process's exit once the command's work is done.
"""

from __future__ import annotations

import mlflow

from hyperflow.runtime import signals


class HeldSignals(signals.Hold):
    """``hold()`` before the step that must not be cut short, ``release()`` once its run has ended."""

    def release(self, *, failed: bool = False) -> None:
        """Handlers back as they were; a held signal stops the caller if a run is still open around it
        (not when an exception is already on its way: ``failed``)."""
        held = self.let_go(failed=failed)
        if held is not None and mlflow.active_run() is not None:
            signals.stop(held)
