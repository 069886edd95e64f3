"""Arrays from an ``.npz`` (X and y): the shapes, types and values training can use, each mistake one line.

X is a table of numbers (N, features), images (N, H, W) or (N, C, H, W); y holds one label or value per sample
(N,) — or, for images, a binary mask per image of their height and width, (N, H, W) or (N, 1, H, W). The
layout is checked from the file's array headers before torch is imported (:func:`check_npz`), and again with
the arrays (:func:`check_layout`, :func:`finite_images`). Pure numpy.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path

import numpy as np

from hyperflow.errors import UsageError

log = logging.getLogger(__name__)

NUMBER_KINDS = "biuf"  # bool, int, unsigned, float: what X (and a mask) may hold
LABEL_KINDS = NUMBER_KINDS + "US"  # labels may also be text


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def check_layout(
    name: str,
    x_shape: tuple[int, ...],
    x_dtype: np.dtype,
    y_shape: tuple[int, ...],
    y_dtype: np.dtype,
    task: str | None,
) -> str:
    """What the arrays are — ``"table"``, ``"labels"`` (images with one label per sample) or ``"masks"``
    (images with a mask each) — or a one-line UsageError saying what does not fit and the shapes that would."""
    if not x_shape or not y_shape:
        raise UsageError(
            f"{name}: X and y must be arrays with one sample per row, got X {_shape(x_shape)} and y {_shape(y_shape)}"
        )
    for label, dtype, kinds in (("X", x_dtype, NUMBER_KINDS), ("y", y_dtype, LABEL_KINDS)):
        if dtype.kind not in kinds:
            what = "numbers" if kinds == NUMBER_KINDS else "numbers or text labels"
            raise UsageError(
                f"{name}: {label} must hold {what}, but its dtype is {dtype}: convert it before "
                f"saving (e.g. {label}.astype('float32'))"
            )
    if x_shape[0] != y_shape[0]:
        raise UsageError(f"{name}: X has {x_shape[0]} samples but y has {y_shape[0]}: they must match")
    if x_shape[0] == 0:
        raise UsageError(f"{name}: X and y hold no samples (X {_shape(x_shape)}): add samples")
    if len(x_shape) not in (2, 3, 4):
        raise UsageError(f"{name}: X must be (N, features), (N, H, W) or (N, C, H, W), got shape {_shape(x_shape)}")
    if 0 in x_shape[1:]:
        raise UsageError(f"{name}: X has an empty dimension (shape {_shape(x_shape)}): each sample needs values")
    labels = math.prod(y_shape[1:]) == 1  # (N,), (N, 1), ...
    if len(x_shape) == 2:
        if task == "segmentation":
            raise UsageError(
                f"{name}: task=segmentation needs images and masks, but X is a table "
                f"{_shape(x_shape)}: use task=classification or regression"
            )
        if not labels:
            raise UsageError(
                f"{name}: y must hold one label or value per sample, shape (N,), but it has shape "
                f"{_shape(y_shape)} (X is a table {_shape(x_shape)})"
            )
        return "table"
    size = _shape((x_shape[0], *x_shape[-2:]))
    masks = len(y_shape) in (3, 4) and y_shape[-2:] == x_shape[-2:] and math.prod(y_shape[1:-2]) == 1
    if task == "segmentation" and not masks:
        raise UsageError(
            f"{name}: task=segmentation needs a mask per image of the images' height and width, y "
            f"{size} or with one channel, but y has shape {_shape(y_shape)}"
        )
    if task in ("classification", "regression") and not labels:
        held = "a mask per image" if masks else f"shape {_shape(y_shape)}"
        raise UsageError(
            f"{name}: task={task} needs one label per sample, y ({x_shape[0]},), but y holds {held}: "
            + ("use task=segmentation (or leave task out)" if masks else "save one label per sample")
        )
    if not (labels or masks):
        raise UsageError(
            f"{name}: y has shape {_shape(y_shape)}, which is neither one label per sample, "
            f"({x_shape[0]},), nor a mask per image of the images' height and width, {size} "
            f"(X has shape {_shape(x_shape)}): save y in one of these shapes"
        )
    if masks and not labels and y_dtype.kind not in NUMBER_KINDS:
        raise UsageError(f"{name}: masks must be binary numbers (0/1), but y holds {y_dtype} values")
    return "masks" if masks and not labels else "labels"


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of the arrays X and y of an ``.npz``, read from their headers only (no data); {} where the
    file cannot be read this way (loading it then says why)."""
    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key not in ("X", "y"):
                    continue
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh)
                    found[key] = (tuple(shape), dtype)
    except Exception as exc:  # not a zip, a compressed member it cannot read, a header of a newer version
        log.debug("no quick look at %s: %s", path, exc)
        return {}
    return found


def check_npz(path: Path, task: str | None) -> None:
    """The layout of an ``.npz``'s X and y (:func:`check_layout`) from their headers: before torch is imported."""
    headers = npz_headers(path)
    if "X" in headers and "y" in headers:
        check_layout(path.stem, *headers["X"], *headers["y"], task)


def finite_images(name: str, X: np.ndarray) -> np.ndarray:
    """Images as float32, refused (one line) when a value is not a finite float32 number (NaN, inf, or beyond
    ±3.4e38): normalisation and training would turn every loss into NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        images = np.asarray(X, dtype=np.float32)
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UsageError(
            f"{name}: X holds values that are not finite float32 numbers (NaN, inf or beyond ±3.4e38) "
            f"in {int(bad.sum())} of {len(images)} samples (e.g. sample {first}, counting from 0): "
            f"replace or drop them"
        )
    return images
