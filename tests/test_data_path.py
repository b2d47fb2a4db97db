"""The training data path (issue 20): loaders of the training loop, item seeds, global batches
cut into ranks' shares, the on-disk volume cache, patches from memory and from disk."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from monai.transforms import RandFlip

from gliorad.cohort import discover_cohort
from gliorad.config import CohortConfig
from gliorad.errors import GlioradInputError
from gliorad.segmentation import get_preset, resolve_regions, train_segmentation
from gliorad.segmentation.data import CaseCache
from gliorad.segmentation.train import PatchDataset, crop_size
from gliorad.training import TrainConfig, fit
from gliorad.training_runtime import (
    BackgroundBatches,
    ItemSeeded,
    ShardedBatches,
    data_device,
    item_seed,
    resolved_loader,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------ global batches
@pytest.mark.parametrize("n,b,world", [(8, 1, 1), (7, 2, 1), (8, 1, 2), (7, 2, 2), (5, 1, 3)])
def test_sharded_batches_cut_one_permutation_into_global_batches(n, b, world):
    """Rank r's k-th batch is items [r b, (r + 1) b) of the k-th global batch of one seeded
    permutation; one process keeps a short last batch, several fill it from the start."""
    shares = [list(ShardedBatches(n, b, seed=11, world=world, rank=r)) for r in range(world)]
    assert all(len(s) == len(ShardedBatches(n, b, 11, world, r)) for r, s in enumerate(shares))
    steps = len(shares[0])
    assert all(len(s) == steps for s in shares)  # every rank trains the same number of steps
    glued = [i for k in range(steps) for r in range(world) for i in shares[r][k]]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(11)).tolist()
    assert glued[:n] == perm  # the permutation, in order
    if world == 1:
        assert len(glued) == n and [len(x) for x in shares[0]] == [b] * (n // b) + ([n % b] if n % b else [])
    else:
        assert len(glued) == steps * b * world and glued[n:] == (perm * 2)[:len(glued) - n]
        assert all(len(x) == b for s in shares for x in s)


def test_item_seeds_do_not_depend_on_the_order_of_drawing():
    class Flips(torch.utils.data.Dataset):
        def __init__(self):
            self.flip = RandFlip(prob=0.5, spatial_axis=0)

        def __len__(self):
            return 6

        def __getitem__(self, i):
            self.flip.randomize(None)
            return self.flip._do_transform, float(self.flip.R.random())

    data = ItemSeeded(Flips(), 123)
    forward = [data[i] for i in range(6)]
    backward = [data[i] for i in reversed(range(6))][::-1]
    assert forward == backward
    assert len({f[1] for f in forward}) == 6  # each item its own stream
    assert item_seed(123, 0) != item_seed(124, 0) and item_seed(123, 0) != item_seed(123, 1)


# --------------------------------------------------------------------------------- the loaders
class FlipDataset(torch.utils.data.Dataset):
    def __init__(self, n: int = 6, fail_at: int | None = None):
        rng = np.random.default_rng(0)
        self.items = []
        for _ in range(n):
            y = np.zeros((1, 8, 8, 8), np.float32)
            a = rng.integers(0, 4, 3)
            y[0, a[0]:a[0] + 4, a[1]:a[1] + 4, a[2]:a[2] + 4] = 1
            self.items.append((y + rng.normal(0, 0.3, y.shape).astype(np.float32), y))
        self.flip = RandFlip(prob=0.5, spatial_axis=0)
        self.fail_at = fail_at

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise GlioradInputError(f"item {i} cannot be read")
        x, y = self.items[i]
        self.flip.randomize(None)
        return {"image": torch.as_tensor(self.flip(x, randomize=False)).as_tensor(),
                "label": torch.as_tensor(self.flip(y, randomize=False)).as_tensor()}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv3d(2, 1, 1))


def _mse(out, target):
    return torch.mean((out - target) ** 2)


def _weights(tmp_path, name, **settings):
    cfg = TrainConfig(epochs=2, batch_size=2, lr=1e-2, seed=4, device="cpu", monitor="train_loss",
                      **settings)
    model = _model()
    fit(model, FlipDataset(), _mse, tmp_path / name, cfg, progress=False)
    return torch.cat([v.flatten() for v in model.state_dict().values()])


def test_thread_loader_gives_the_process_loaders_batches(tmp_path):
    """A background thread making the batches (no workers) draws exactly what the loop drew
    itself; thread workers draw item-seeded items, the same for any number of threads, and the
    same as item seeds in the loop."""
    base = _weights(tmp_path, "p0")
    assert torch.equal(base, _weights(tmp_path, "t0", loader="thread"))
    seeded = _weights(tmp_path, "s0", item_seeds=True)
    assert not torch.equal(base, seeded)
    for workers in (1, 2):
        assert torch.equal(seeded, _weights(tmp_path, f"t{workers}", loader="thread", num_workers=workers))


@pytest.mark.parametrize("settings", [{"loader": "thread"}, {"loader": "thread", "num_workers": 2}])
def test_an_error_in_the_background_reaches_the_training_loop(tmp_path, settings):
    cfg = TrainConfig(epochs=1, batch_size=1, device="cpu", monitor="train_loss", **settings)
    with pytest.raises(GlioradInputError, match="item 3 cannot be read"):
        fit(_model(), FlipDataset(fail_at=3), _mse, tmp_path / "x", cfg, progress=False)


def test_background_stops_when_the_loop_stops():
    bg = BackgroundBatches(range(100), ahead=2)
    it = iter(bg)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # joins the thread
    assert list(BackgroundBatches(range(5))) == [0, 1, 2, 3, 4] and len(BackgroundBatches(range(5))) == 5


def test_loader_settings_resolve_and_bad_values_name_the_field():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolved_loader(TrainConfig(), cpu) == "process"
    assert resolved_loader(TrainConfig(), gpu) == "thread"
    assert resolved_loader(TrainConfig(loader="process"), gpu) == "process"
    assert data_device(TrainConfig(), gpu) == gpu  # volumes on the GPU with the thread loader
    assert data_device(TrainConfig(loader="process"), gpu) == cpu  # no CUDA in worker processes
    assert data_device(TrainConfig(data_device="cpu"), gpu) == cpu
    assert data_device(TrainConfig(), cpu) == cpu
    for field, value in (("loader", "gpu"), ("data_device", "cuda:1")):
        with pytest.raises(ValueError, match=re.escape(field)):
            TrainConfig(**{field: value})
    dumped = TrainConfig().model_dump()
    assert not {"loader", "data_device", "item_seeds"} & set(dumped)  # fingerprints unchanged
    assert TrainConfig(loader="thread").model_dump()["loader"] == "thread"


# ------------------------------------------------------------------------------ volume cache
@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("cache") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=3, seed=2, spacing=4.0), n_jobs=1)
    return root


def _tiny_cfg():
    cfg = get_preset("demo")
    return cfg.model_copy(update={"spacing": 4.0, "patch_size": (16, 16, 16), "samples_per_volume": 1})


def _cache(root, cfg, **kw):
    cohort = discover_cohort(root, CohortConfig(sequences=list(cfg.sequences)))
    return CaseCache(cohort, cfg, resolve_regions(cfg, cohort.naming), crop_size(cfg), **kw), cohort


def test_disk_cache_holds_the_same_arrays_and_survives_between_runs(tiny_cohort, tmp_path, monkeypatch):
    cfg = _tiny_cfg()
    memory, cohort = _cache(tiny_cohort, cfg)
    disk, _ = _cache(tiny_cohort, cfg.model_copy(update={"cache_gb": 0.0}), disk_dir=tmp_path / "v")
    for pid in cohort.ids:
        a, b = memory.get(pid), disk.get(pid)
        assert isinstance(b["image"], np.memmap) and not b["image"].flags.writeable
        for k in ("image", "label", "label_fg_indices", "label_bg_indices"):
            assert np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype
        assert disk.meta[pid] == memory.meta[pid]
    assert len([p for p in (tmp_path / "v").iterdir() if not p.name.startswith(".")]) == 3
    assert disk.items == {}  # nothing held in memory at cache_gb 0

    import gliorad.segmentation.data as data_mod

    def no_reading(*a, **k):
        raise AssertionError("read again")

    monkeypatch.setattr(data_mod, "load_case", no_reading)
    again, _ = _cache(tiny_cohort, cfg, disk_dir=tmp_path / "v")  # a later run, in memory
    pid = cohort.ids[0]
    item = again.get(pid)
    assert not isinstance(item["image"], np.memmap) and np.array_equal(item["image"], memory.get(pid)["image"])
    assert again.meta[pid] == memory.meta[pid]


def test_disk_key_follows_inputs_and_settings_and_damaged_entries_are_rebuilt(tiny_cohort, tmp_path):
    cfg = _tiny_cfg()
    cache, cohort = _cache(tiny_cohort, cfg, disk_dir=tmp_path / "v", disk_all=True)
    pid = cohort.ids[0]
    key = cache.disk_key(pid)
    assert key == _cache(tiny_cohort, cfg)[0].disk_key(pid)
    assert key != _cache(tiny_cohort, cfg.model_copy(update={"spacing": 5.0}))[0].disk_key(pid)
    assert key != _cache(tiny_cohort, cfg.model_copy(update={"label_mode": "regions"}))[0].disk_key(pid)
    assert key != cache.disk_key(cohort.ids[1])
    cache.get(pid)  # disk_all: written although it fits in memory
    entry = tmp_path / "v" / key
    assert json.loads((entry / "meta.json").read_text(encoding="utf-8"))["shape"]
    (entry / "image.npy").write_bytes(b"damaged")
    fresh, _ = _cache(tiny_cohort, cfg, disk_dir=tmp_path / "v")
    assert fresh._from_disk(pid) is None  # unreadable: made again
    assert np.array_equal(fresh.get(pid)["image"], cache.get(pid)["image"])
    no_seg, _ = _cache(tiny_cohort, cfg)
    del no_seg.cohort.patients[pid].files["seg"]
    with pytest.raises(GlioradInputError, match=rf"patient '{pid}': no manual segmentation"):
        no_seg.disk_key(pid)


def test_patches_from_disk_equal_patches_from_memory(tiny_cohort, tmp_path):
    cfg = _tiny_cfg()
    memory, cohort = _cache(tiny_cohort, cfg)
    disk, _ = _cache(tiny_cohort, cfg.model_copy(update={"cache_gb": 0.0}), disk_dir=tmp_path / "v")
    a, b = PatchDataset(memory, cohort.ids, 6), PatchDataset(disk, cohort.ids, 6)
    for ds in (a, b):
        ds.transform.set_random_state(seed=5)
    for i in range(6):
        pa, pb = a[i], b[i]
        assert all(torch.equal(x[k], y[k]) for x, y in zip(pa, pb) for k in ("image", "label"))
        sa, sb = a.seeded_item(i, 99), b.seeded_item(i, 99)  # thread-local copies, own seed
        assert all(torch.equal(x[k], y[k]) for x, y in zip(sa, sb) for k in ("image", "label"))
        assert torch.equal(a.seeded_item(i, 99)[0]["image"], sa[0]["image"])


def _tiny_train_cfg():
    cfg = _tiny_cfg()
    return cfg.model_copy(update={
        "net": cfg.net.model_copy(update={"features": (2, 4), "bottleneck": 4, "expand_channels": 4}),
        "train": cfg.train.model_copy(update={"epochs": 1, "batch_size": 1, "device": "cpu"}),
        "inference": cfg.inference.model_copy(update={"roi_size": (32, 32, 32), "device": "cpu"}),
        "val_fraction": 0.34})


def test_train_segmentation_with_a_cache_folder_trains_the_same_weights(tiny_cohort, tmp_path):
    cfg = _tiny_train_cfg()
    cohort = discover_cohort(tiny_cohort)
    train_segmentation(cohort, tmp_path / "a", cfg, progress=False, cache_dir=False)
    train_segmentation(cohort, tmp_path / "b", cfg, progress=False, cache_dir=tmp_path / "v")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert len([p for p in (tmp_path / "v").iterdir() if not p.name.startswith(".")]) == 3
    assert not (tmp_path / "b" / "cache").exists()  # nothing of the cache in the model folder

    # prediction reading the next patient ahead in a thread writes the same masks
    from gliorad.segmentation import load_model, predict_cohort

    model = load_model(tmp_path / "a")
    predict_cohort(cohort, model, tmp_path / "m1", progress=False, read_ahead=False)
    predict_cohort(cohort, model, tmp_path / "m2", progress=False, read_ahead=True)
    for pid in cohort.ids:
        assert (tmp_path / "m1" / f"{pid}.nii.gz").read_bytes() == (tmp_path / "m2" / f"{pid}.nii.gz").read_bytes()


def test_read_ahead_reads_the_next_patient_and_reports_its_error_in_turn():
    from gliorad.segmentation.infer import _ReadAhead

    calls = []

    def read(pid):
        calls.append(pid)
        if pid == "b":
            raise GlioradInputError("patient 'b': cannot read t1")
        return pid.upper()

    ahead = _ReadAhead(read, ["a", "b", "c"])
    assert ahead.get("a") == "A"
    with pytest.raises(GlioradInputError, match="patient 'b': cannot read t1"):
        ahead.get("b")  # read while 'a' was predicted; its error raised now
    assert ahead.get("c") == "C"
    ahead.close()
    assert sorted(calls) == ["a", "b", "c"]  # each patient read once (b while a was)


def test_float16_inference_precision_is_a_known_setting():
    from gliorad.segmentation import validate_config
    from gliorad.segmentation.infer import DTYPES

    cfg = validate_config({"inference": {"precision": "float16"}}, "test")
    assert DTYPES[cfg.inference.precision] == torch.float16
    with pytest.raises(GlioradInputError, match=r"inference\.precision.*float16"):
        validate_config({"inference": {"precision": "half"}}, "test")
