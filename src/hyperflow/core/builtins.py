"""The built-in datasets, no download: scikit-learn's digits, breast_cancer, wine and diabetes, and
``shapes``, a synthetic segmentation set made from a fixed seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

BUILTINS = ("digits", "breast_cancer", "wine", "diabetes", "shapes")
SHAPES_VERSION = "1"
BUILTIN_TARGET = "target"  # the target column of the built-in tables


def builtin_frame(name: str) -> tuple[pd.DataFrame, str]:
    from sklearn import datasets as skdatasets

    loader = getattr(skdatasets, f"load_{name}")
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    target = BUILTIN_TARGET
    if name != "diabetes" and getattr(bunch, "target_names", None) is not None:
        names = np.asarray(bunch.target_names)
        frame[target] = names[frame[target].to_numpy()]
    return frame, target


def make_shapes(n: int = 512, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic segmentation set: noisy grayscale images with 1-3 random discs/rectangles and their
    binary masks. Fixed seed, so it is the same data everywhere (versioned by SHAPES_VERSION)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(4, size - 4, 2)
            if rng.random() < 0.5:
                r = rng.uniform(3, size / 5)
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            else:
                h, w = rng.uniform(3, size / 4, 2)
                shape = (abs(yy - cy) <= h) & (abs(xx - cx) <= w)
            mask |= shape
        images[i, 0] = mask * rng.uniform(0.5, 1.0) + rng.normal(0, 0.25, (size, size))
        masks[i, 0] = mask
    return images, masks
