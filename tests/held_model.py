"""A ``module:function`` model whose factory waits until the test lets it go: a retrain that reaches it holds
the retrain lock (the model is built inside it) for as long as the test needs, with no timing involved."""

import math
import threading

from torch import nn

entered = threading.Event()  # set once a job builds the model (it holds the lock then)
release = threading.Event()  # set by the test to let the job go on


def build(input_shape, output_size, **kwargs):
    entered.set()
    if not release.wait(120):
        raise RuntimeError("the test never released the held model")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), output_size))
