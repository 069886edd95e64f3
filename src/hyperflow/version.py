"""hyperflow's version, read from the installed package when first asked: importlib.metadata takes ~50 ms to
import, which every command would otherwise pay before its first line (a bad input's refusal included). The
package's own modules read it here; ``hyperflow.__version__`` is the same for users."""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("hyperflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.1.0"
