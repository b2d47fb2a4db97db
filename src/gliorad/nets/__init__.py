"""Networks, each written once for 2D and 3D (``spatial_dims``).

* :class:`RecombinationUNet` (``unet.py``): the paper's segmentation U-Net with recombination
  blocks and squeeze-and-excitation (``blocks.py``).
"""

from gliorad.nets.blocks import RecombinationBlock, SEBlock
from gliorad.nets.unet import RecombinationUNet

__all__ = ["RecombinationBlock", "RecombinationUNet", "SEBlock"]
