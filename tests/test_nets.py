"""Networks: output shapes for odd sizes (2D and 3D), SE behaviour, recombination block layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gliorad.errors import GlioradInputError
from gliorad.nets import RecombinationBlock, RecombinationUNet, SEBlock

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


def tiny_unet(spatial_dims: int = 3, in_channels: int = 2, out_channels: int = 1, **kw) -> RecombinationUNet:
    torch.manual_seed(0)
    args = {"features": (4, 8), "bottleneck": 8, "expand_channels": 8, "se_reduction": 2, **kw}
    return RecombinationUNet(spatial_dims, in_channels, out_channels, **args)


@pytest.mark.parametrize("size", [(17, 23, 19), (16, 16, 16), (5, 9, 3), (1, 1, 1)])
def test_unet_3d_output_shape_any_size(size):
    net = tiny_unet(out_channels=3).eval()
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [(21, 30), (32, 32), (7, 1)])
def test_unet_2d_output_shape_any_size(size):
    net = tiny_unet(spatial_dims=2, in_channels=3).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, *size))
    assert y.shape == (1, 1, *size)


def test_unet_padding_does_not_change_multiples():
    """On a size divisible by 2**depth no padding happens: the padded and direct paths agree."""
    net = tiny_unet().eval()
    x = torch.randn(1, 2, 8, 12, 16)
    with torch.no_grad():
        assert net(x).shape == (1, 1, 8, 12, 16)
    assert net.multiple == 4


def test_unet_without_bottleneck_and_four_levels():
    net = RecombinationUNet(3, 1, 1, features=(2, 2, 2, 2), bottleneck=None, expand_channels=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 17, 16, 15)).shape == (1, 1, 17, 16, 15)
    assert net.multiple == 16


def test_unet_backward_and_paper_layout():
    net = RecombinationUNet()  # the paper: 4 levels, 1x1x1 conv to 64 channels in every block
    assert len(net.encoder) == 4 and len(net.decoder) == 4
    for block in [*net.encoder, *net.decoder, net.bottleneck]:
        assert block.expand.kernel_size == (1, 1, 1) and block.expand.out_channels == 64
        assert block.conv.kernel_size == (3, 3, 3)
    for up in net.up:
        assert up.kernel_size == (2, 2, 2) and up.stride == (2, 2, 2)
    small = tiny_unet()
    y = small(torch.randn(2, 2, 8, 8, 8))
    y.mean().backward()
    assert all(p.grad is not None for p in small.parameters())


def test_unet_channels_last_gives_the_same_output():
    net = tiny_unet().eval()
    x = torch.randn(1, 2, 9, 10, 11)
    with torch.no_grad():
        a = net(x)
        b = net.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_se_output_is_input_times_channel_weights_in_0_1():
    torch.manual_seed(1)
    se = SEBlock(3, 6, reduction=2)
    x = torch.randn(2, 6, 4, 5, 3)
    y = se(x)
    w = se.weights(x)
    assert w.shape == (2, 6)
    assert ((w > 0) & (w < 1)).all()
    torch.testing.assert_close(y, x * w[:, :, None, None, None])


def test_se_constant_input_hand_computed():
    """Constant channels c: mean = c, w = sigmoid(W2 relu(W1 c + b1) + b2), output c * w."""
    se = SEBlock(2, 4, reduction=2)
    fc1, fc2 = se.layer.fc[0], se.layer.fc[2]
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, 0.0]]))
        fc1.bias.copy_(torch.tensor([0.1, -0.2]))
        fc2.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [0.5, 0.5]]))
        fc2.bias.copy_(torch.zeros(4))
    c = np.array([1.0, 2.0, 3.0, -4.0])
    x = torch.tensor(c, dtype=torch.float32)[None, :, None, None].expand(1, 4, 3, 5).contiguous()
    h = np.maximum(np.array([[1, 0, -1, 0.5], [0, 2, 0, 0]]) @ c + [0.1, -0.2], 0)
    w = 1 / (1 + np.exp(-(np.array([[1, 0], [0, 1], [-1, 1], [0.5, 0.5]]) @ h)))
    expected = (c * w)[None, :, None, None] * np.ones((1, 4, 3, 5))
    np.testing.assert_allclose(se(x).detach().numpy(), expected, rtol=1e-6)


def test_se_zero_weights_halve_the_input():
    se = SEBlock(3, 3)
    with torch.no_grad():
        for p in se.parameters():
            p.zero_()
    x = torch.full((1, 3, 2, 2, 2), 7.0)
    torch.testing.assert_close(se(x), x * 0.5)


def test_recombination_block_shapes():
    blk = RecombinationBlock(3, 3, 5, expand_channels=12)
    assert blk(torch.randn(2, 3, 7, 6, 5)).shape == (2, 5, 7, 6, 5)
    blk2 = RecombinationBlock(2, 1, 2, expand_channels=4, se_reduction=16)  # reduction > channels
    assert blk2(torch.randn(1, 1, 9, 4)).shape == (1, 2, 9, 4)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"spatial_dims": 4}, r"spatial_dims 4 .*expected 2 or 3"),
    ({"features": ()}, r"features \[\] .*at least one level"),
    ({"features": (4, 0)}, r"features 0 .*positive integer"),
    ({"in_channels": 0}, r"in_channels 0 .*positive integer"),
    ({"expand_channels": -1}, r"expand_channels -1 .*positive integer"),
    ({"bottleneck": 0}, r"bottleneck 0 .*positive integer"),
])
def test_unet_bad_options(kwargs, pattern):
    with pytest.raises(GlioradInputError, match=pattern):
        RecombinationUNet(**kwargs)


def test_unet_wrong_input_rank():
    with pytest.raises(GlioradInputError, match=r"input of shape \(2, 8, 8\) .*3 spatial"):
        tiny_unet()(torch.randn(2, 8, 8))


def test_se_bad_channels():
    with pytest.raises(GlioradInputError, match=r"channels 0 is not valid"):
        SEBlock(3, 0)
