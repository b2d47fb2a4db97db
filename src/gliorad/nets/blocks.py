"""Building blocks of the segmentation network: squeeze-and-excitation and the recombination block.

Both work for 2D and 3D tensors (``spatial_dims``); the layout is ``(batch, channels, *spatial)``.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.factories import Conv, Norm
from torch import nn

from gliorad.errors import GlioradInputError


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise GlioradInputError(f"spatial_dims {spatial_dims!r} is not valid; expected 2 or 3")
    return spatial_dims


def _check_positive(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise GlioradInputError(f"{name} {value!r} is not valid; expected a positive integer")
    return int(value)


class SEBlock(nn.Module):
    """Channel squeeze-and-excitation (Hu et al. 2018): ``x * sigmoid(W2 relu(W1 mean(x)))``.

    A thin wrapper over MONAI's :class:`~monai.networks.blocks.ChannelSELayer` that accepts any
    ``reduction`` (the hidden width is ``max(1, channels // reduction)``). Every channel of the
    output is the input channel times one weight in (0, 1) computed from the channel means.
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 4):
        super().__init__()
        _check_dims(spatial_dims)
        channels = _check_positive("channels", channels)
        reduction = _check_positive("se_reduction", reduction)
        self.layer = ChannelSELayer(spatial_dims, channels, r=min(reduction, channels))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The excitation weights, shape ``(batch, channels)``, each in (0, 1)."""
        b, c = x.shape[:2]
        return self.layer.fc(self.layer.avg_pool(x).view(b, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class RecombinationBlock(nn.Module):
    """The paper's recombination block.

    ``1x1x1 conv (in -> expand) -> batch norm -> ReLU -> 3x3x3 conv (expand -> out) -> batch norm ->
    ReLU -> squeeze-and-excitation``. The paper expands to 64 channels with the 1x1x1 convolution
    and does not say what follows the 3x3x3 convolution; gliorad follows it with batch norm and ReLU
    (as the original recombination block does) so that the SE block sees rectified features.

    Input ``(B, in_channels, *spatial)`` -> output ``(B, out_channels, *spatial)``, any spatial size.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        expand_channels: int = 64,
        se_reduction: int = 4,
    ):
        super().__init__()
        _check_dims(spatial_dims)
        in_channels = _check_positive("in_channels", in_channels)
        out_channels = _check_positive("out_channels", out_channels)
        expand_channels = _check_positive("expand_channels", expand_channels)
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.expand = conv(in_channels, expand_channels, kernel_size=1, bias=False)
        self.norm1 = norm(expand_channels)
        self.conv = conv(expand_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = norm(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.se = SEBlock(spatial_dims, out_channels, se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.expand(x)))
        x = self.act(self.norm2(self.conv(x)))
        return self.se(x)
