"""Model factories keyed by name: ``mlp``, ``cnn``, ``unet``, or ``package.module:function``.

A user factory is called as ``function(input_shape, output_size, **model_kwargs)`` and must return a
``torch.nn.Module`` mapping a float batch shaped ``(N, *input_shape)`` to ``(N, output_size)`` logits
(classification), ``(N, 1)`` values (regression) or ``(N, 1, H, W)`` mask logits (segmentation).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from hyperflow.core.factory import import_factory
from hyperflow.errors import UsageError

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def mlp(
    input_shape: tuple[int, ...],
    output_size: int,
    width: int = 256,
    depth: int = 2,
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
) -> nn.Sequential:
    """Fully connected net: ``depth`` hidden layers of ``width`` units (inputs of any shape are flattened)."""
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    fan_in = int(torch.tensor(input_shape).prod())
    for _ in range(depth):
        layers.append(nn.Linear(fan_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(_ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, output_size))
    return nn.Sequential(*layers)


def _conv_block(c_in: int, c_out: int, activation: str, batch_norm: bool) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm),
        *([nn.BatchNorm2d(c_out)] if batch_norm else []),
        _ACTIVATIONS[activation](),
    ]


def cnn(
    input_shape: tuple[int, ...],
    output_size: int,
    channels: int = 16,
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = True,
    image_shape: tuple[int, ...] | None = None,
) -> nn.Sequential:
    """Small conv net: two conv-pool stages (channels, 2*channels), global average pooling, linear head.
    ``image_shape`` (C, H, W) reshapes flat table rows into images (digits as 1x8x8)."""
    shape = tuple(image_shape or input_shape)
    if len(shape) != 3:
        raise UsageError(
            f"model=cnn needs image inputs (C, H, W), but the data has shape {tuple(input_shape)}: "
            f"use model=mlp, or an image dataset (digits, an .npz of images)"
        )
    layers: list[nn.Module] = [nn.Unflatten(1, shape)] if len(input_shape) == 1 else []
    layers += [
        *_conv_block(shape[0], channels, activation, batch_norm),
        nn.MaxPool2d(2),
        *_conv_block(channels, 2 * channels, activation, batch_norm),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(2 * channels, output_size))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """A small two-level U-Net (Ronneberger et al., 2015) for binary masks; H and W divisible by 4."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        channels: int = 16,
        activation: str = "relu",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        c = channels

        def double(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                *_conv_block(c_in, c_out, activation, batch_norm), *_conv_block(c_out, c_out, activation, batch_norm)
            )

        self.down1, self.down2, self.bottom = double(in_channels, c), double(c, 2 * c), double(2 * c, 4 * c)
        self.pool = nn.MaxPool2d(2)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2), double(4 * c, 2 * c)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2), double(2 * c, c)
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        b = self.bottom(self.pool(d2))
        u2 = self.dec2(torch.cat([self.up2(b), d2], dim=1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], dim=1))
        return self.head(u1)


def unet(
    input_shape: tuple[int, ...],
    output_size: int,
    channels: int = 16,
    activation: str = "relu",
    batch_norm: bool = True,
) -> UNet:
    if len(input_shape) != 3 or input_shape[1] % 4 or input_shape[2] % 4:
        raise UsageError(f"model=unet needs images (C, H, W) with H and W divisible by 4, got {tuple(input_shape)}")
    return UNet(input_shape[0], output_size, channels, activation, batch_norm)


def _check_kwargs(name: str, factory: Callable[..., nn.Module], kwargs: dict) -> None:
    """Refuse ``model_kwargs`` a user's factory takes no argument for (unless it takes ``**kwargs``), naming the
    ones it takes after ``input_shape`` and ``output_size``."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a C function): the call itself says
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    takes = [p.name for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [str(k) for k in kwargs if k not in takes]
    if unknown:
        raise UsageError(
            f"model_kwargs {', '.join(unknown)}: model '{name}' takes no such argument; it takes "
            f"{', '.join(takes) if takes else 'none besides input_shape and output_size'}"
        )


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    output_size: int,
    *,
    task: str,
    image_shape: tuple[int, ...] | None = None,
    width: int = 256,
    depth: int = 2,
    channels: int = 16,
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    model_kwargs: dict | None = None,
) -> nn.Module:
    """Build a named model for the data's input shape and output size."""
    if task == "segmentation" and name in ("mlp", "cnn"):
        raise UsageError(f"model={name} cannot predict masks: use model=unet for segmentation")
    if name == "unet" and task != "segmentation":
        raise UsageError(f"model=unet predicts masks, but the task is {task}: use model=mlp or cnn")
    if name == "mlp":
        return mlp(input_shape, output_size, width, depth, dropout, activation, batch_norm)
    if name == "cnn":
        return cnn(input_shape, output_size, channels, dropout, activation, True, image_shape)
    if name == "unet":
        return unet(input_shape, output_size, channels, activation, True)
    factory = import_factory(name)
    _check_kwargs(name, factory, model_kwargs or {})
    try:
        model = factory(tuple(input_shape), output_size, **(model_kwargs or {}))
    except Exception as exc:
        raise UsageError(
            f"model '{name}' raised {type(exc).__name__}: {exc} (it is called as "
            f"function(input_shape, output_size, **model_kwargs))"
        ) from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"model '{name}' returned {type(model).__name__}, not a torch.nn.Module")
    return model
