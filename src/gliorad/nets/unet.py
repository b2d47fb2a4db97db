"""The paper's U-Net: recombination blocks with squeeze-and-excitation, written once for 2D and 3D.

Layout: input ``(B, in_channels, *spatial)``, output ``(B, out_channels, *spatial)`` holding
**logits** (apply a sigmoid per channel; for one foreground channel this equals the paper's
two-class softmax). Any spatial size is accepted: the input is zero-padded at the far end of each
axis to a multiple of ``2 ** len(features)`` and the output cropped back (pass sizes that are
already multiples, e.g. 128 for four levels, to avoid the padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from gliorad.errors import GlioradInputError
from gliorad.nets.blocks import RecombinationBlock, _check_dims, _check_positive


class RecombinationUNet(nn.Module):
    """Encoder of ``len(features)`` recombination blocks, each followed by 2x max-pooling; an
    optional bottleneck recombination block; a decoder of as many blocks (2x2x2 transposed
    convolution with stride 2, concatenation with the encoder's skip, recombination block); a
    1x1x1 convolution to ``out_channels`` logits.

    Parameters
    ----------
    spatial_dims : 2 or 3.
    in_channels : number of input sequences.
    out_channels : 1 for the whole tumour (the paper), 3 for the BraTS regions WT/TC/ET.
    features : output channels of the encoder blocks, top to bottom (the paper has four levels).
    bottleneck : channels of the bottleneck block at the lowest resolution (None: no bottleneck;
        the first transposed convolution then reads the last pooled encoder output).
    expand_channels : channels of every recombination block's 1x1x1 convolution (paper: 64).
    se_reduction : squeeze-and-excitation reduction ratio.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 1,
        features: Sequence[int] = (16, 32, 64, 128),
        bottleneck: int | None = 256,
        expand_channels: int = 64,
        se_reduction: int = 4,
    ):
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims)
        features = [_check_positive("features", f) for f in features]
        if not features:
            raise GlioradInputError("features [] is not valid; expected at least one level")
        self.multiple = 2 ** len(features)
        kw = {"expand_channels": expand_channels, "se_reduction": se_reduction}
        block = RecombinationBlock
        self.encoder = nn.ModuleList()
        c = _check_positive("in_channels", in_channels)
        for f in features:
            self.encoder.append(block(spatial_dims, c, f, **kw))
            c = f
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.bottleneck = (
            block(spatial_dims, c, _check_positive("bottleneck", bottleneck), **kw)
            if bottleneck is not None else nn.Identity()
        )
        c = bottleneck if bottleneck is not None else c
        up = Conv[Conv.CONVTRANS, spatial_dims]
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for f in reversed(features):
            self.up.append(up(c, f, kernel_size=2, stride=2))
            self.decoder.append(block(spatial_dims, 2 * f, f, **kw))
            c = f
        self.head = Conv[Conv.CONV, spatial_dims](c, _check_positive("out_channels", out_channels), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise GlioradInputError(
                f"input of shape {tuple(x.shape)} is not valid; expected (batch, channels) + "
                f"{self.spatial_dims} spatial dimensions"
            )
        size = x.shape[2:]
        pad = [(-s) % self.multiple for s in size]
        if any(pad):
            # F.pad takes (last axis low, high, second-to-last low, high, ...).
            x = F.pad(x, [p for q in reversed(pad) for p in (0, q)])
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.decoder, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        x = self.head(x)
        if any(pad):
            x = x[(slice(None), slice(None), *(slice(0, s) for s in size))]
        return x
