"""A ``module:function`` model that records, in a file of its own, the torch thread count the process had
when the model was built (after the trial's settings were applied): ``model_kwargs: {out: <folder>}``."""

import math
import os
import uuid
from pathlib import Path

import torch
from torch import nn


def build(input_shape, output_size, out=None, **kwargs):
    Path(out, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.threads").write_text(str(torch.get_num_threads()))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), output_size))
