"""ResNet18 2D/3D (+SE, heads) and the torchvision-format weight loader."""

from __future__ import annotations

import pytest
import torch

from gliorad.errors import GlioradInputError
from gliorad.nets import PAPER_WIDTHS, ResNet18, load_torchvision_weights
from gliorad.nets.resnet import backbone_keys, read_state_dict, stage4_size

TINY = (4, 8, 8, 16)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


def torchvision_resnet18_keys() -> list[str]:
    """torchvision.models.resnet18().state_dict() keys, written out independently of MONAI:
    conv1, bn1, four stages of two BasicBlocks (conv1/bn1/conv2/bn2), a 1x1 projection
    (downsample.0 conv, downsample.1 batch norm) in the first block of stages 2-4, then fc."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{b}" for b in bn)]
    for stage in (1, 2, 3, 4):
        for block in (0, 1):
            p = f"layer{stage}.{block}"
            keys += [f"{p}.conv1.weight", *(f"{p}.bn1.{b}" for b in bn),
                     f"{p}.conv2.weight", *(f"{p}.bn2.{b}" for b in bn)]
            if stage > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{b}" for b in bn)]
    return keys + ["fc.weight", "fc.bias"]


# ------------------------------------------------------------------------------- architecture
def test_backbone_keys_are_torchvision_resnet18_names():
    model = ResNet18(spatial_dims=2, in_channels=3, se=True, head="two_fc")
    tv = torchvision_resnet18_keys()
    assert len(tv) == 122  # len(torchvision.models.resnet18().state_dict())
    assert backbone_keys(model) == tv[:-2]
    sd = model.state_dict()
    # shapes of torchvision's resnet18 (ImageNet checkpoint resnet18-f37072fd.pth)
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert sum(v.numel() for k, v in sd.items() if k in tv and "num_batches" not in k
               and "running" not in k) == 11_176_512  # resnet18 parameters without fc


@pytest.mark.parametrize("dims,shape", [(2, (2, 3, 40, 36)), (3, (2, 2, 20, 24, 18))])
@pytest.mark.parametrize("se", [False, True])
def test_shapes_2d_3d(dims, shape, se):
    torch.manual_seed(0)
    model = ResNet18(dims, shape[1], widths=TINY, se=se, head="none").eval()
    x = torch.randn(*shape)
    f = model.features(x)
    assert f.shape == (2, TINY[-1])
    assert torch.equal(model(x), f)
    assert model.stage4(x).shape[2:] == stage4_size(shape[2:])
    assert ("se.layer.fc.0.weight" in model.state_dict()) == se


def test_true_resnet18_gives_512_features():
    model = ResNet18(3, 3, widths=PAPER_WIDTHS, se=True).eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 8, 8, 8)).shape == (1, 512)
    assert model.n_features == 512


def test_stage4_size_of_paper_inputs():
    assert stage4_size((96, 128, 96)) == (3, 4, 3)
    assert stage4_size((240, 240)) == (8, 8)
    assert stage4_size((32, 33, 1)) == (1, 2, 1)


def test_se_block_rescales_stage4_channels():
    torch.manual_seed(1)
    model = ResNet18(3, 1, widths=TINY, se=True).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        h = model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.act(model.bn1(model.conv1(x))))))))
        w = model.se.weights(h)
        assert torch.allclose(model.stage4(x), h * w[:, :, None, None, None])
        assert ((w > 0) & (w < 1)).all()


@pytest.mark.parametrize("head,outputs", [("linear", 3), ("two_fc", 1), ("dual", 2)])
def test_heads(head, outputs):
    torch.manual_seed(2)
    model = ResNet18(2, 3, widths=TINY, head=head, num_outputs=outputs, hidden=8).eval()
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, outputs)
    assert torch.equal(model.head_outputs(model.features(x)), out)
    if head == "dual":
        f = model.features(x)
        assert torch.equal(out[:, 0:1], model.grade_head(f))
        assert torch.equal(out[:, 1:2], model.survival_head(f))
    if head == "two_fc":
        assert [type(m).__name__ for m in model.head] == ["Linear", "ReLU", "Dropout", "Linear"]


def test_eval_mode_features_do_not_depend_on_batch_mates():
    torch.manual_seed(3)
    model = ResNet18(2, 3, widths=TINY, se=True).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        together = model.features(x)
        alone = torch.cat([model.features(x[i:i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, rtol=1e-4, atol=1e-5)  # equal up to rounding


@pytest.mark.parametrize("kwargs,pattern", [
    ({"spatial_dims": 4}, r"spatial_dims 4 is not valid; expected 2 or 3"),
    ({"head": "mlp"}, r"head 'mlp' is not valid; expected one of: none, linear, two_fc, dual"),
    ({"widths": (8, 16, 32)}, r"widths \[8, 16, 32\]: expected 4 channel counts"),
    ({"widths": (8, 0, 16, 32)}, r"widths 0 is not valid; expected a positive integer"),
    ({"in_channels": 0}, r"in_channels 0 is not valid"),
    ({"dropout": 1.0}, r"dropout 1.0: expected a value in \[0, 1\)"),
    ({"grade_head": "three_fc"}, r"grade_head 'three_fc' is not valid; expected one of: two_fc, linear"),
])
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(GlioradInputError, match=pattern):
        ResNet18(**{"spatial_dims": 2, **kwargs})


# ------------------------------------------------------------------------------- weight loader
def _torchvision_style_file(tmp_path, widths=TINY, seed=5, fmt="pth", drop=(), extra=None,
                            wrap=None, prefix=""):
    """A torchvision-format state dict made from a seeded network: backbone + fc (1000 classes)."""
    torch.manual_seed(seed)
    src = ResNet18(2, 3, widths=widths)
    state = {k: v.clone() for k, v in src.state_dict().items() if k not in drop}
    state["fc.weight"] = torch.randn(1000, widths[-1])
    state["fc.bias"] = torch.randn(1000)
    state.update(extra or {})
    state = {prefix + k: v for k, v in state.items()}
    if wrap:
        state = {wrap: state}
    path = tmp_path / f"resnet18.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path, src


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_loader_loads_matching_keys_and_skips_fc(tmp_path, fmt):
    path, src = _torchvision_style_file(tmp_path, fmt=fmt)
    torch.manual_seed(99)
    model = ResNet18(2, 3, widths=TINY, se=True, head="dual", hidden=8)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_torchvision_weights(model, path)
    after = model.state_dict()
    for k in backbone_keys(model):
        assert torch.equal(after[k], src.state_dict()[k]), k
    for k in after:  # SE and heads keep their initialisation
        if k not in backbone_keys(model):
            assert torch.equal(after[k], own[k]), k
    assert report.loaded == sorted(backbone_keys(model))
    assert report.skipped == ["fc.bias", "fc.weight"] or sorted(report.skipped) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == []


def test_loader_accepts_old_files_wrappers_and_dataparallel_prefix(tmp_path):
    nbt = [k for k in ResNet18(2, 3, widths=TINY).state_dict() if k.endswith("num_batches_tracked")]
    path, src = _torchvision_style_file(tmp_path, drop=nbt, wrap="state_dict", prefix="module.")
    model = ResNet18(2, 3, widths=TINY)
    report = load_torchvision_weights(model, path)
    assert report.missing == []
    assert torch.equal(model.state_dict()["layer3.0.conv1.weight"], src.state_dict()["layer3.0.conv1.weight"])


def test_loader_shape_mismatch_names_key_and_shapes(tmp_path):
    path, _ = _torchvision_style_file(tmp_path, widths=(4, 8, 8, 32))
    model = ResNet18(2, 3, widths=TINY)
    with pytest.raises(GlioradInputError,
                       match=r"key 'layer4\.0\.conv1\.weight' has shape \(32, 8, 3, 3\) in the file "
                             r"but \(16, 8, 3, 3\) in the network"):
        load_torchvision_weights(model, path)


def test_loader_refuses_2d_weights_for_3d_network(tmp_path):
    path, _ = _torchvision_style_file(tmp_path)
    with pytest.raises(GlioradInputError, match=r"key 'conv1\.weight' has shape \(4, 3, 7, 7\) .* "
                                                r"\(4, 3, 7, 7, 7\) in the network"):
        load_torchvision_weights(ResNet18(3, 3, widths=TINY), path)


def test_loader_missing_and_unexpected_keys(tmp_path):
    path, _ = _torchvision_style_file(tmp_path, drop=("layer1.0.conv1.weight",),
                                      extra={"layer5.0.conv1.weight": torch.zeros(1)})
    model = ResNet18(2, 3, widths=TINY)
    with pytest.raises(GlioradInputError, match=r"keys missing from the file \(1\): "
                                                r"layer1\.0\.conv1\.weight"):
        load_torchvision_weights(model, path)
    report = load_torchvision_weights(model, path, strict=False)
    assert report.missing == ["layer1.0.conv1.weight"]
    assert report.unexpected == ["layer5.0.conv1.weight"]


def test_loader_adapts_conv1_to_one_channel(tmp_path):
    path, src = _torchvision_style_file(tmp_path)
    model = ResNet18(2, 1, widths=TINY)
    report = load_torchvision_weights(model, path)
    rgb = src.state_dict()["conv1.weight"]
    assert torch.allclose(model.state_dict()["conv1.weight"], rgb.sum(dim=1, keepdim=True))
    assert "adapted from 3 input channels to 1" in report.notes[0]
    with pytest.raises(GlioradInputError, match=r"'conv1\.weight' has shape \(4, 3, 7, 7\)"):
        load_torchvision_weights(ResNet18(2, 1, widths=TINY), path, adapt_conv1=False)


class _NotATensor:
    pass


def test_loader_bad_files(tmp_path):
    model = ResNet18(2, 3, widths=TINY)
    with pytest.raises(GlioradInputError, match=r"weights file not found"):
        load_torchvision_weights(model, tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GlioradInputError, match=r"garbage\.pth: cannot read a state dict"):
        load_torchvision_weights(model, garbage)
    code = tmp_path / "code.pth"
    torch.save({"conv1.weight": _NotATensor()}, code)  # weights_only=True refuses to unpickle it
    with pytest.raises(GlioradInputError, match=r"code\.pth: cannot read a state dict"):
        read_state_dict(code)
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(GlioradInputError, match=r"no key of the file matches the ResNet18 backbone"):
        load_torchvision_weights(model, other)
