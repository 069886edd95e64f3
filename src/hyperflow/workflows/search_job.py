"""A search ready to run, as its set-up leaves it (:mod:`~hyperflow.workflows.search_setup`, or
:mod:`~hyperflow.workflows.search_objective_setup` for a function of the user's own)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.core.data import Dataset


@dataclass
class SearchJob:
    """A search ready to run: its settings (a resume's as recorded, with the changes it may make), data and space."""

    settings: SearchConfig
    base: TrainConfig  # every trial's training settings but its point (an objective's search: seed, experiment)
    dataset: Dataset | None  # None: an objective of the user's own, which loads its own data
    space: dict[str, Any]
    space_path: Path | None  # the file the space came from (None: the space a resumed search recorded)
    space_edited: bool  # a resume given another space than the search recorded
    at_once: int  # trials run at once (parallelism, resolved)
    resumed: Any = None  # the search run a resume continues (as read before it is reopened)
    changed: dict[str, str] = field(default_factory=dict)  # settings a resume changed: key -> new value
    function: Callable[..., Any] | None = None  # an objective of the user's own (settings.objective names it)

    @property
    def name(self) -> str:
        """What the search's run name and default model name say it searches: the data or the function."""
        if self.dataset is not None:
            return self.dataset.name
        return re.sub(r"[^A-Za-z0-9_-]+", "-", str(self.settings.objective).rpartition(":")[2]).strip("-")

    @property
    def space_text(self) -> str:
        return yaml.safe_dump(self.space, sort_keys=False)
