"""Networks, each written once for 2D and 3D (``spatial_dims``).

* :class:`RecombinationUNet` (``unet.py``): the paper's segmentation U-Net with recombination
  blocks and squeeze-and-excitation (``blocks.py``).
"""

from gliorad.nets.blocks import RecombinationBlock, SEBlock
from gliorad.nets.unet import RecombinationUNet

__all__ = ["RecombinationBlock", "RecombinationUNet", "SEBlock"]

# ResNet18 (2D/3D, optional SE after stage 4, heads) and the torchvision-format weight loader.
from gliorad.nets.resnet import (
    PAPER_WIDTHS,
    ResNet18,
    WeightLoadReport,
    load_torchvision_weights,
)

__all__ += ["PAPER_WIDTHS", "ResNet18", "WeightLoadReport", "load_torchvision_weights"]
