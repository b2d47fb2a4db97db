"""The paper's U-Net: recombination blocks with squeeze-and-excitation, written once for 2D and 3D.

Layout: input ``(B, in_channels, *spatial)``, output ``(B, out_channels, *spatial)`` holding
**logits** (apply a sigmoid per channel; for one foreground channel this equals the paper's
two-class softmax). Any spatial size is accepted: the input is zero-padded at the far end of each
axis to a multiple of ``2 ** len(features)`` and the output cropped back (pass sizes that are
already multiples, e.g. 128 for four levels, to avoid the padding).

Beyond the paper (both off by default, the paper's network unchanged):

* ``strides``: the pooling factor of each level per spatial axis, e.g. ``((1, 2, 2), (2, 2, 2),
  ...)`` for a stack of thick slices (tensor axis order, z first): a level with factor 1 on an
  axis does not pool it, as nnU-Net does for anisotropic data, so a 26-slice stack is not reduced
  to a handful of slices while its in-plane grid is.
* ``deep_supervision``: 1x1x1 heads on the ``deep_supervision`` decoder levels below the top; in
  training mode the network then returns a list ``[full resolution, 1/2, 1/4, ...]`` of logits
  (what :class:`gliorad.training.DeepSupervisionLoss` reads); in eval mode only the full-resolution
  logits, so prediction is unchanged.
"""

from __future__ import annotations

import math
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
    strides : pooling factor per level and spatial axis (None: 2 on every axis of every level).
    deep_supervision : number of extra heads on the decoder levels below the top (0: none).
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
        strides: Sequence[Sequence[int]] | None = None,
        deep_supervision: int = 0,
    ):
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims)
        features = [_check_positive("features", f) for f in features]
        if not features:
            raise GlioradInputError("features [] is not valid; expected at least one level")
        if strides is None:
            strides = [(2,) * spatial_dims] * len(features)
        self.strides = [tuple(int(v) for v in st) for st in strides]
        if len(self.strides) != len(features) or any(
                len(st) != spatial_dims or min(st) < 1 for st in self.strides):
            raise GlioradInputError(
                f"strides {strides!r} is not valid; expected {len(features)} levels of "
                f"{spatial_dims} positive factors")
        self.multiples = [math.prod(st[a] for st in self.strides) for a in range(spatial_dims)]
        self.multiple = max(self.multiples)
        if not 0 <= int(deep_supervision) < len(features):
            raise GlioradInputError(
                f"deep_supervision {deep_supervision!r} is not valid; expected 0 to {len(features) - 1}")
        self.deep_supervision = int(deep_supervision)
        kw = {"expand_channels": expand_channels, "se_reduction": se_reduction}
        block = RecombinationBlock
        self.encoder = nn.ModuleList()
        c = _check_positive("in_channels", in_channels)
        for f in features:
            self.encoder.append(block(spatial_dims, c, f, **kw))
            c = f
        pool = Pool[Pool.MAX, spatial_dims]
        self.pools = nn.ModuleList(pool(kernel_size=st, stride=st) for st in self.strides)
        self.bottleneck = (
            block(spatial_dims, c, _check_positive("bottleneck", bottleneck), **kw)
            if bottleneck is not None else nn.Identity()
        )
        c = bottleneck if bottleneck is not None else c
        up = Conv[Conv.CONVTRANS, spatial_dims]
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for f, st in zip(reversed(features), reversed(self.strides)):
            self.up.append(up(c, f, kernel_size=st, stride=st))
            self.decoder.append(block(spatial_dims, 2 * f, f, **kw))
            c = f
        conv = Conv[Conv.CONV, spatial_dims]
        k = _check_positive("out_channels", out_channels)
        self.head = conv(c, k, 1)
        # heads of the decoder levels 1/2, 1/4, ... (the decoder's outputs below the top)
        self.aux_heads = nn.ModuleList(
            conv(f, k, 1) for f in list(features)[1:1 + self.deep_supervision])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise GlioradInputError(
                f"input of shape {tuple(x.shape)} is not valid; expected (batch, channels) + "
                f"{self.spatial_dims} spatial dimensions"
            )
        size = x.shape[2:]
        pad = [(-s) % m for s, m in zip(size, self.multiples)]
        if any(pad):
            # F.pad takes (last axis low, high, second-to-last low, high, ...).
            x = F.pad(x, [p for q in reversed(pad) for p in (0, q)])
        skips = []
        for enc, pool in zip(self.encoder, self.pools):
            x = enc(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(x)
        levels = []
        for up, dec, skip in zip(self.up, self.decoder, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
            levels.append(x)
        x = self.head(x)
        if any(pad):
            x = x[(slice(None), slice(None), *(slice(0, s) for s in size))]
        if not (self.training and self.aux_heads):
            return x
        # levels[-1] is the top; levels[-2] is 1/2 resolution, and so on
        aux = [head(levels[-2 - i]) for i, head in enumerate(self.aux_heads)]
        return [x, *aux]
