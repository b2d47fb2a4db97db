"""The shared training loop: loss values, checkpoints, resume, early stopping, bad options."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from monai.transforms import RandFlip, Randomizable

from gliorad.errors import GlioradInputError
from gliorad.nets import RecombinationUNet
from gliorad.training import (
    DiceBCELoss,
    TrainConfig,
    TrainingDivergedError,
    epoch_seed,
    fit,
    load_weights,
    resolve_device,
    save_weights,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------------------ loss
def test_dice_bce_loss_hand_computed():
    """Paper eq. 1-3 on two voxels of one channel, computed by hand:

    logits (0, ln 3) -> p = (1/2, 3/4); y = (0, 1)
    Dice = 1 - 2 * (3/4) / (5/4 + 1) = 1 - 1.5 / 2.25 = 1/3
    BCE  = -(ln(1 - 1/2) + ln(3/4)) / 2 = (ln 2 + ln 4/3) / 2
    """
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 2)
    target = torch.tensor([0.0, 1.0]).view(1, 1, 2)
    expected = 1 / 3 + (math.log(2) + math.log(4 / 3)) / 2
    value = DiceBCELoss(smooth=0.0)(logits, target)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # with the default smoothing 1e-5 in numerator and denominator
    dice = 1 - (1.5 + 1e-5) / (2.25 + 1e-5)
    assert DiceBCELoss()(logits, target).item() == pytest.approx(dice + (math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)


def test_dice_bce_loss_against_numpy_on_a_batch():
    """Batch Dice (sums over batch and voxels, per channel, mean over channels) + mean BCE."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    y = (rng.random((2, 3, 4, 5)) > 0.6).astype(np.float32)
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    inter = (p * y).sum(axis=(0, 2, 3))
    dice = 1 - (2 * inter) / (p.sum(axis=(0, 2, 3)) + y.sum(axis=(0, 2, 3)))
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    got = DiceBCELoss(smooth=0.0)(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert got == pytest.approx(dice.mean() + bce, rel=1e-5)


def test_loss_perfect_prediction_is_near_zero_and_shape_mismatch_raises():
    y = torch.zeros(1, 1, 4, 4)
    y[..., 1:3, 1:3] = 1
    assert DiceBCELoss()(torch.where(y > 0, 30.0, -30.0), y).item() < 1e-6
    with pytest.raises(GlioradInputError, match=r"shape \(1, 2, 4, 4\) and target \(1, 1, 4, 4\)"):
        DiceBCELoss()(torch.zeros(1, 2, 4, 4), y)


# --------------------------------------------------------------------------------------- fitting
class FlipDataset(torch.utils.data.Dataset):
    """Small seeded 3D volumes whose label is a bright cube; a MONAI random flip per item (to check
    that the per-epoch reseeding reaches random transforms)."""

    def __init__(self, n: int = 6):
        rng = np.random.default_rng(0)
        self.items = []
        for _ in range(n):
            y = np.zeros((1, 8, 8, 8), np.float32)
            a = rng.integers(0, 4, 3)
            y[0, a[0]:a[0] + 4, a[1]:a[1] + 4, a[2]:a[2] + 4] = 1
            x = y + rng.normal(0, 0.3, y.shape).astype(np.float32)
            self.items.append((x, y))
        self.flip = RandFlip(prob=0.5, spatial_axis=0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        x, y = self.items[i]
        self.flip.randomize(None)
        return {"image": torch.as_tensor(self.flip(x, randomize=False)).as_tensor(),
                "label": torch.as_tensor(self.flip(y, randomize=False)).as_tensor()}


def make_model() -> RecombinationUNet:
    torch.manual_seed(0)
    return RecombinationUNet(3, 1, 1, features=(2, 4), bottleneck=4, expand_channels=4, se_reduction=2)


def val_fn(data):
    def validate(model):
        losses = []
        for item in data:
            out = model(item["image"][None])
            losses.append(float(DiceBCELoss()(out, item["label"][None])))
        return {"val_loss": float(np.mean(losses)), "val_dice": 1.0 - float(np.mean(losses))}
    return validate


CFG = {"batch_size": 2, "lr": 1e-2, "plateau_patience": 0, "seed": 3, "device": "cpu"}


def test_resume_continues_the_same_run(tmp_path):
    data = FlipDataset()
    val = val_fn([FlipDataset(2)[i] for i in range(2)])
    straight = make_model()
    res_a = fit(straight, data, DiceBCELoss(), tmp_path / "a", TrainConfig(epochs=4, **CFG),
                validate=val, progress=False)
    part = make_model()
    fit(part, data, DiceBCELoss(), tmp_path / "b", TrainConfig(epochs=2, **CFG), validate=val, progress=False)
    resumed = make_model()  # a fresh process would start from a fresh model: the checkpoint wins
    res_b = fit(resumed, data, DiceBCELoss(), tmp_path / "b", TrainConfig(epochs=4, **CFG),
                validate=val, progress=False)
    assert res_b.resumed_from == 2 and res_b.epochs_run == 4
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(res_a.history) == strip(res_b.history)
    lrs = [r["lr"] for r in res_a.history]
    assert lrs[0] == 1e-2 and len(set(lrs)) >= 1
    assert res_a.best_epoch == res_b.best_epoch


def test_killed_while_saving_starts_over_to_the_same_weights(tmp_path, caplog):
    """SIGKILL between writing last.safetensors and train_state.json leaves files of two epochs:
    the run starts over (the earlier weights are gone) and ends as an uninterrupted run."""
    data = FlipDataset()
    val = val_fn([FlipDataset(2)[i] for i in range(2)])
    straight = make_model()
    fit(straight, data, DiceBCELoss(), tmp_path / "a", TrainConfig(epochs=3, **CFG), validate=val,
        progress=False)
    fit(make_model(), data, DiceBCELoss(), tmp_path / "b", TrainConfig(epochs=2, **CFG), validate=val,
        progress=False)
    state_file = tmp_path / "b" / "train_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    state_file.write_text(json.dumps({**state, "epoch": 1}), encoding="utf-8")  # json of epoch 1
    resumed = make_model()
    with caplog.at_level("WARNING", logger="gliorad.training"):
        res = fit(resumed, data, DiceBCELoss(), tmp_path / "b", TrainConfig(epochs=3, **CFG),
                  validate=val, progress=False)
    assert re.search(r"checkpoint files disagree on the epoch \(\[1, 2\]\).*starts over", caplog.text)
    assert res.resumed_from is None and res.epochs_run == 3
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_files_and_finished_run_is_returned(tmp_path):
    data = FlipDataset(4)
    model = make_model()
    res = fit(model, data, DiceBCELoss(), tmp_path, TrainConfig(epochs=2, monitor="train_loss", **CFG),
              progress=True)
    for name in ("last.safetensors", "best.safetensors", "train_state.pt", "train_state.json", "history.json"):
        assert (tmp_path / name).is_file(), name
    hist = json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))
    assert [r["epoch"] for r in hist] == [1, 2]
    assert set(hist[0]) >= {"train_loss", "lr", "seconds"}
    meta = load_weights(make_model(), tmp_path / "best.safetensors")
    assert int(meta["epoch"]) == res.best_epoch
    before = (tmp_path / "last.safetensors").read_bytes()
    again = fit(make_model(), data, DiceBCELoss(), tmp_path, TrainConfig(epochs=2, monitor="train_loss", **CFG),
                progress=False)
    assert again.epochs_run == 2 and again.history == res.history
    assert (tmp_path / "last.safetensors").read_bytes() == before


def test_early_stopping_and_plateau(tmp_path):
    data = FlipDataset(2)
    res = fit(make_model(), data, DiceBCELoss(), tmp_path,
              TrainConfig(epochs=10, early_stopping=2, plateau_patience=0, seed=0, device="cpu",
                          monitor="val_loss"),
              validate=lambda m: {"val_loss": 1.0}, progress=False)
    assert res.stopped_early and res.epochs_run == 3 and res.best_epoch == 1
    lrs = [r["lr"] for r in res.history]
    assert lrs == [5e-4, 5e-4, 2.5e-4]  # lr used in each epoch: halved after each one without improvement


def test_resume_with_other_settings_is_refused(tmp_path):
    data = FlipDataset(2)
    cfg = TrainConfig(epochs=1, monitor="train_loss", **CFG)
    fit(make_model(), data, DiceBCELoss(), tmp_path, cfg, progress=False)
    with pytest.raises(GlioradInputError, match=r"other settings \(lr: 0.01 -> 0.001\)"):
        fit(make_model(), data, DiceBCELoss(), tmp_path, cfg.model_copy(update={"lr": 1e-3}), progress=False)
    # resume=False starts over
    res = fit(make_model(), data, DiceBCELoss(), tmp_path, cfg.model_copy(update={"lr": 1e-3}),
              resume=False, progress=False)
    assert res.resumed_from is None and res.epochs_run == 1


def test_amp_on_cpu_uses_bfloat16_autocast(tmp_path):
    # channels-last + bfloat16 on CPU gave NaN in about half of the runs; fit() now keeps contiguous
    # memory there, so repeated runs must all be finite and identical.
    losses = []
    for i in range(4):
        res = fit(make_model(), FlipDataset(4), DiceBCELoss(), tmp_path / str(i),
                  TrainConfig(epochs=1, batch_size=2, amp=True, monitor="train_loss", device="cpu"),
                  progress=False)
        losses.append(res.history[0]["train_loss"])
    assert all(math.isfinite(v) for v in losses)
    assert len(set(losses)) == 1


def test_diverging_loss_raises(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"training loss is nan at epoch 1, step 1"):
        fit(make_model(), FlipDataset(2), lambda out, y: out.sum() * float("nan"), tmp_path,
            TrainConfig(epochs=1, monitor="train_loss", device="cpu"), progress=False)


def test_bad_options(tmp_path):
    data = FlipDataset(2)
    with pytest.raises(GlioradInputError, match=r"monitor 'val_loss' needs a validate callable"):
        fit(make_model(), data, DiceBCELoss(), tmp_path, TrainConfig(epochs=1, device="cpu"), progress=False)
    with pytest.raises(GlioradInputError, match=r"monitor 'val_auc' is not among the values .*val_loss"):
        fit(make_model(), data, DiceBCELoss(), tmp_path / "x",
            TrainConfig(epochs=1, monitor="val_auc", device="cpu"),
            validate=lambda m: {"val_loss": 0.5}, progress=False)
    with pytest.raises(GlioradInputError, match=r"train_data is empty"):
        fit(make_model(), [], DiceBCELoss(), tmp_path / "y", TrainConfig(monitor="train_loss"), progress=False)
    with pytest.raises(ValueError, match=r"device 'tpu' is not valid; expected one of: auto, cpu, cuda"):
        TrainConfig(device="tpu")
    with pytest.raises(GlioradInputError, match=r"device 'gpu' is not valid; expected one of: auto, cpu, cuda"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(GlioradInputError, match=r"device 'cuda' was asked for but no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(GlioradInputError, match=r"batch has keys \['x'\]; the default prepare_batch needs"):
        fit(make_model(), [{"x": torch.zeros(1, 8, 8, 8)}], DiceBCELoss(), tmp_path / "z",
            TrainConfig(epochs=1, monitor="train_loss", device="cpu"), progress=False)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = save_weights(make_model(), tmp_path / "w.safetensors", {"epoch": "1"})
    other = RecombinationUNet(3, 1, 1, features=(2, 8), bottleneck=4, expand_channels=4)
    with pytest.raises(GlioradInputError, match=r"w.safetensors: weights do not fit the network"):
        load_weights(other, path)
    with pytest.raises(GlioradInputError, match=r"nope.safetensors: weights file not found"):
        load_weights(other, tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(GlioradInputError, match=r"bad.safetensors: cannot read safetensors"):
        load_weights(other, tmp_path / "bad.safetensors")


def test_epoch_seed_depends_on_seed_and_epoch_only():
    assert epoch_seed(0, 1) == epoch_seed(0, 1)
    assert len({epoch_seed(s, e) for s in range(3) for e in range(3)}) == 9


def test_tuple_batches_and_randomizable_in_dataset(tmp_path):
    """(x, y) tuples work with the default prepare_batch; MONAI Randomizable state is reseeded."""
    class Noisy(torch.utils.data.Dataset, Randomizable):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            y = torch.zeros(1, 8, 8, 8)
            y[:, 2:6, 2:6, 2:6] = 1
            return y + float(self.R.normal(0, 0.1)), y

    a, b = make_model(), make_model()
    cfg = TrainConfig(epochs=2, monitor="train_loss", device="cpu", seed=5)
    fit(a, Noisy(), DiceBCELoss(), tmp_path / "a", cfg, progress=False)
    fit(b, Noisy(), DiceBCELoss(), tmp_path / "b", cfg, progress=False)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)
