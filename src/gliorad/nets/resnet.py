"""ResNet18 for 2D and 3D (``spatial_dims``) with an optional squeeze-and-excitation block after the
fourth residual stage, optional heads, and a loader for torchvision-format (ImageNet) weights.

Layout: input ``(B, in_channels, *spatial)`` (``(B, C, H, W)`` in 2D, ``(B, C, D, H, W)`` in 3D),
any spatial size of at least 1 voxel. The stem (7x7(x7) convolution with stride 2, batch norm,
ReLU, 3x3(x3) max-pooling with stride 2) and stages 2-4 (stride 2) each halve the size (rounding
up), so the fourth stage's map is ``ceil(n / 32)`` voxels per axis: a 96x128x96 patch gives
3x4x3, a 240x240 slice 8x8. :meth:`ResNet18.features` returns the global average pool of that
map (after the SE block when ``se=True``): ``(B, widths[-1])``, 512 for the true ResNet18.
**Batch norm in training mode needs more than one value per channel**: a batch of one sample
whose fourth-stage map is a single voxel (inputs of 32 voxels or fewer per axis) cannot be
trained on; :func:`stage4_size` gives the map size for a check.

The backbone is MONAI's :class:`~monai.networks.nets.ResNet` (basic blocks, layers [2, 2, 2, 2],
projection shortcuts without bias), whose parameter names are torchvision's ``resnet18`` names
(``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ..., ``layer2.0.downsample.0.weight``,
``layer2.0.downsample.1.*``), so an ImageNet state dict in torchvision format loads directly into
the 2D network (:func:`load_torchvision_weights`; torchvision itself is not needed). The SE block
is ``se.*``, heads are ``head.*`` (``grade_head.*`` / ``survival_head.*`` for the dual head);
torchvision's classifier ``fc.*`` is never loaded.

Heads (:data:`HEADS`): ``none`` (forward returns the pooled features), ``linear`` (one fully
connected layer), ``two_fc`` (the paper's CNN-alone classifier, Table 2: "512 CNN features ...
then through two fully connected layers": Linear -> ReLU -> Dropout -> Linear) and ``dual`` (the
2D dual-task network: a grade head (``two_fc`` or ``linear``, one logit) and a survival head (one
linear output) sharing the backbone; forward returns ``(B, 2)``: column 0 the grade logit,
column 1 the survival output).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from monai.networks.nets import ResNet
from torch import nn

from gliorad.errors import GlioradInputError, check_option
from gliorad.features.config import DUAL_GRADE_HEADS, PAPER_WIDTHS  # settings' defaults (no torch)
from gliorad.nets.blocks import SEBlock, _check_dims, _check_positive

HEADS: dict[str, str] = {
    "none": "no head: forward returns the pooled features (B, widths[-1])",
    "linear": "one fully connected layer to num_outputs",
    "two_fc": "two fully connected layers (Linear, ReLU, Dropout, Linear), the paper's CNN-alone "
              "classifier",
    "dual": "grade logit (two_fc or linear) and survival output (linear), forward returns (B, 2)",
}


def stage4_size(size: Sequence[int]) -> tuple[int, ...]:
    """Spatial size of the fourth stage's map for an input of ``size`` voxels per axis."""
    out = []
    for n in size:
        for _ in range(5):  # stem conv, max-pool, stages 2-4: each ceil(n / 2)
            n = math.floor((n - 1) / 2) + 1
        out.append(n)
    return tuple(out)


def _two_fc(in_features: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, out))


class ResNet18(ResNet):
    """ResNet18 (basic blocks, [2, 2, 2, 2]) in 2D or 3D with an optional SE block after stage 4.

    Parameters
    ----------
    spatial_dims : 2 or 3.
    in_channels : input channels (sequences); 3 for ImageNet weights without adaptation.
    widths : channels of the four stages; :data:`PAPER_WIDTHS` (64, 128, 256, 512) is ResNet18.
        Narrower widths exist for tests and small demos; the feature count is ``widths[-1]``.
    se : squeeze-and-excitation block on the fourth stage's output (the paper's "SE block ...
        after the fourth residual block").
    se_reduction : SE reduction ratio (hidden width ``widths[-1] // se_reduction``).
    head : one of :data:`HEADS`.
    num_outputs : outputs of a ``linear`` / ``two_fc`` head (1 = one logit).
    hidden : width of the first layer of a ``two_fc`` head.
    dropout : dropout between the two layers of a ``two_fc`` head.
    grade_head : ``two_fc`` or ``linear``, the grade head of ``head="dual"``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 3,
        widths: Sequence[int] = PAPER_WIDTHS,
        se: bool = False,
        se_reduction: int = 16,
        head: str = "none",
        num_outputs: int = 1,
        hidden: int = 256,
        dropout: float = 0.0,
        grade_head: str = "two_fc",
    ):
        _check_dims(spatial_dims)
        in_channels = _check_positive("in_channels", in_channels)
        widths = [_check_positive("widths", w) for w in widths]
        if len(widths) != 4:
            raise GlioradInputError(f"widths {list(widths)}: expected 4 channel counts (one per stage)")
        check_option("head", head, HEADS)
        check_option("grade_head", grade_head, DUAL_GRADE_HEADS)
        num_outputs = _check_positive("num_outputs", num_outputs)
        hidden = _check_positive("hidden", hidden)
        if not 0.0 <= float(dropout) < 1.0:
            raise GlioradInputError(f"dropout {dropout!r}: expected a value in [0, 1)")
        super().__init__(
            block="basic", layers=[2, 2, 2, 2], block_inplanes=list(widths),
            spatial_dims=spatial_dims, n_input_channels=in_channels, conv1_t_size=7,
            conv1_t_stride=2, feed_forward=False, bias_downsample=False,
        )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.widths = tuple(widths)
        self.n_features = widths[-1]
        self.head_type = head
        self.se = SEBlock(spatial_dims, widths[-1], se_reduction) if se else None
        n = widths[-1]
        if head == "linear":
            self.head = nn.Linear(n, num_outputs)
        elif head == "two_fc":
            self.head = _two_fc(n, hidden, num_outputs, float(dropout))
        elif head == "dual":
            self.grade_head = (_two_fc(n, hidden, 1, float(dropout)) if grade_head == "two_fc"
                               else nn.Linear(n, 1))
            self.survival_head = nn.Linear(n, 1)
        for m in self.modules():  # heads: zero bias (weights keep PyTorch's default init)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def stage4(self, x: torch.Tensor) -> torch.Tensor:
        """The fourth stage's map (after the SE block when present): ``(B, widths[-1], *map)``."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.se(x) if self.se is not None else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool of the fourth stage (after SE): ``(B, widths[-1])``."""
        return torch.flatten(self.avgpool(self.stage4(x)), 1)

    def head_outputs(self, f: torch.Tensor) -> torch.Tensor:
        """The head applied to pooled features ``f`` (``f`` itself for ``head="none"``)."""
        if self.head_type == "none":
            return f
        if self.head_type == "dual":
            return torch.cat([self.grade_head(f), self.survival_head(f)], dim=1)
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_outputs(self.features(x))


# ------------------------------------------------------------------------------ torchvision weights
@dataclass
class WeightLoadReport:
    """What :func:`load_torchvision_weights` did: keys loaded, keys of the file not used
    (``skipped``: the ImageNet classifier ``fc.*``; ``unexpected``: not in the network), keys of the
    backbone the file lacks (``missing``), and ``notes`` (e.g. conv1 adapted to other channels)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "n_loaded": len(self.loaded), "skipped": self.skipped,
                "unexpected": self.unexpected, "missing": self.missing, "notes": self.notes}


def backbone_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the torchvision-compatible backbone (everything but SE and heads)."""
    own = ("se.", "head.", "grade_head.", "survival_head.")
    return [k for k in model.state_dict() if not k.startswith(own)]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a PyTorch file (``torch.load`` with
    ``weights_only=True``: no code is run). A dict holding the weights under ``state_dict`` or
    ``model`` is unwrapped; a ``module.`` prefix (DataParallel) is removed."""
    p = Path(path)
    if not p.is_file():
        raise GlioradInputError(f"{p}: weights file not found")
    try:
        if p.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch / safetensors raise many types for unreadable files
        raise GlioradInputError(
            f"{p}: cannot read a state dict ({type(err).__name__}: {str(err)[:300]}); expected a "
            "torchvision-format .pth/.pt file or a .safetensors file"
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state:
        raise GlioradInputError(f"{p}: holds no state dict (a mapping of names to tensors)")
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise GlioradInputError(f"{p}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k.removeprefix("module.")] = v
    return out


def load_torchvision_weights(
    model: ResNet18, path: str | os.PathLike, *, strict: bool = True, adapt_conv1: bool = True,
) -> WeightLoadReport:
    """Load a torchvision-format ``resnet18`` state dict (e.g. ImageNet weights) into the backbone.

    Keys are matched by name (the backbone uses torchvision's names); ``fc.*`` (the ImageNet
    classifier) is skipped; the SE block and the heads keep their initialisation. A shape
    mismatch raises :class:`GlioradInputError` naming the key and both shapes. For a 3-channel
    2D network ``conv1.weight`` loads unchanged; for another channel count ``C`` with
    ``adapt_conv1`` it becomes the RGB mean repeated ``C`` times and scaled by ``3 / C`` (the
    usual adaptation, recorded in ``notes``). ``num_batches_tracked`` buffers absent from older
    files are not an error. With ``strict`` (default), backbone keys missing from the file or file
    keys unknown to the network (other than ``fc.*``) are an error; otherwise they are reported.
    """
    if not isinstance(model, ResNet18):
        raise GlioradInputError(f"model of type {type(model).__name__}: expected a gliorad ResNet18")
    state = read_state_dict(path)
    report = WeightLoadReport(str(path))
    own = model.state_dict()
    wanted = set(backbone_keys(model))
    new: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, tensor in state.items():
        if key.startswith("fc."):
            report.skipped.append(key)
            continue
        if key not in wanted:
            report.unexpected.append(key)
            continue
        target = own[key]
        if (key == "conv1.weight" and adapt_conv1 and tensor.ndim == target.ndim
                and tensor.shape[0] == target.shape[0] and tensor.shape[2:] == target.shape[2:]
                and tensor.shape[1] == 3 and target.shape[1] != 3):
            c = target.shape[1]
            tensor = tensor.mean(dim=1, keepdim=True).repeat(1, c, *[1] * (tensor.ndim - 2)) * (3.0 / c)
            report.notes.append(f"conv1.weight adapted from 3 input channels to {c} "
                                "(RGB mean repeated, scaled by 3/C)")
        if tuple(tensor.shape) != tuple(target.shape):
            problems.append(
                f"{path}: key {key!r} has shape {tuple(tensor.shape)} in the file but "
                f"{tuple(target.shape)} in the network (spatial_dims={model.spatial_dims}, "
                f"in_channels={model.in_channels}, widths={list(model.widths)}); expected a "
                "torchvision resnet18 state dict for a 2D network with the true ResNet18 widths"
            )
            continue
        new[key] = tensor.to(dtype=target.dtype)
    if problems:
        raise GlioradInputError(problems)
    report.missing = sorted(k for k in wanted - set(new) if not k.endswith("num_batches_tracked"))
    if not new:
        raise GlioradInputError(
            f"{path}: no key of the file matches the ResNet18 backbone (file keys start "
            f"{sorted(state)[:3]}); expected torchvision resnet18 names such as conv1.weight, "
            "layer1.0.conv1.weight"
        )
    if strict and (report.missing or report.unexpected):
        msg = [f"{path}: not a complete torchvision resnet18 state dict"]
        if report.missing:
            msg.append(f"keys missing from the file ({len(report.missing)}): "
                       f"{', '.join(report.missing[:8])}{' ...' if len(report.missing) > 8 else ''}")
        if report.unexpected:
            msg.append(f"keys of the file unknown to the network ({len(report.unexpected)}): "
                       f"{', '.join(report.unexpected[:8])}"
                       f"{' ...' if len(report.unexpected) > 8 else ''}")
        msg.append("pass strict=False to load the matching keys only")
        raise GlioradInputError(msg)
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    return report
