"""Shared fixtures: seeded synthetic images and cohorts made at test time; the real sample data
in ../shared/data only through ``shared_data`` (skips when absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

BRATS2018 = {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"}
BRATS2023 = {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"}


def make_image(
    shape=(10, 12, 8), seed: int = 0, dtype=np.int16, spacing=(1.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0), array: np.ndarray | None = None,
) -> sitk.Image:
    """A small random image; ``shape`` is numpy (z, y, x) order."""
    if array is None:
        rng = np.random.default_rng(seed)
        array = (rng.normal(500, 100, shape)).astype(dtype)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def make_seg(shape=(10, 12, 8), labels=(1, 2, 4)) -> sitk.Image:
    arr = np.zeros(shape, np.uint8)
    z, y, x = (s // 2 for s in shape)
    arr[z - 2:z + 2, y - 2:y + 2, x - 2:x + 2] = labels[0]
    for i, lab in enumerate(labels[1:]):
        arr[z - 1 + i, y, x] = lab
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 1.0))
    return img


@pytest.fixture
def make_cohort(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a cohort folder of small valid patients in BraTS 2018 or 2023 naming."""

    def _make(ids=("P001", "P002"), naming: str = "brats2018", seg: bool = True,
              sequences=("t1", "t1ce", "t2", "flair"), root: Path | None = None) -> Path:
        suffixes = BRATS2018 if naming == "brats2018" else BRATS2023
        root = root or tmp_path / "cohort"
        for k, pid in enumerate(ids):
            d = root / pid
            d.mkdir(parents=True, exist_ok=True)
            for j, seq in enumerate(sequences):
                sitk.WriteImage(make_image(seed=10 * k + j), str(d / f"{pid}{suffixes[seq]}.nii.gz"))
            if seg:
                sitk.WriteImage(make_seg(), str(d / f"{pid}{suffixes['seg']}.nii.gz"))
        return root

    return _make


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data (real sample data) is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one thread for a test module (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    tensors run faster on one thread, and far faster on a machine shared with other jobs."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
