"""Prepared inputs of the feature CNNs read once (issue 20, item 2): the input cache of
:func:`gliorad.features.deep.prepare_all`, shared by the fold networks of the out-of-fold and
cross-fitted runs; the deep stages refuse torchrun."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from gliorad.errors import GlioradInputError
from gliorad.features import deep, deep3d

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


def _prep(files, settings):
    x = float(sum(len(str(p)) for p in files.values())) * settings["k"]
    return np.full((2, 3), x, np.float32), {"x": x, "n": len(files)}


def test_prepare_all_reads_a_case_once_and_again_when_its_inputs_change(tmp_path, monkeypatch):
    files = {}
    for pid in ("a", "b"):
        f = tmp_path / f"{pid}.nii.gz"
        f.write_bytes(pid.encode())
        files[pid] = {"t1": f}
    calls = []

    def spy(f, s):
        calls.append(str(f["t1"]))
        return _prep(f, s)

    cache = tmp_path / "inputs"
    arrays, records = deep.prepare_all(spy, files, {"k": 1}, 1, input_cache=cache)
    assert len(calls) == 2
    again, rec2 = deep.prepare_all(spy, files, {"k": 1}, 1, input_cache=cache)
    assert len(calls) == 2  # from the cache
    assert all(np.array_equal(arrays[p], again[p]) for p in files) and rec2 == records
    deep.prepare_all(spy, files, {"k": 2}, 1, input_cache=cache)  # other settings
    assert len(calls) == 4
    os.utime(files["a"]["t1"], ns=(1, 1))  # a changed file
    deep.prepare_all(spy, files, {"k": 1}, 1, input_cache=cache)
    assert calls[4:] == [str(files["a"]["t1"])]
    key = deep.input_key(spy, files["b"], {"k": 1})
    (cache / f"{key}.npy").write_bytes(b"damaged")
    fixed, _ = deep.prepare_all(spy, files, {"k": 1}, 1, input_cache=cache)
    assert calls[5:] == [str(files["b"]["t1"])] and np.array_equal(fixed["b"], arrays["b"])
    assert list(fixed) == ["a", "b"]  # the cohort's order


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from gliorad.clinical import read_clinical
    from gliorad.cohort import discover_cohort
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("deepin") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=8, seed=3, spacing=4.0, grade_slope=2.5), n_jobs=1)
    return discover_cohort(root), read_clinical(root / "clinical.csv")


def _cfg():
    from gliorad.features.config import Deep3DConfig, Net3DConfig
    from gliorad.training import TrainConfig

    return Deep3DConfig(size=(16, 16, 16), net=Net3DConfig(widths=(2, 4, 4, 8), hidden=8),
                        val_fraction=0.0, weights="last", predict_batch_size=1,
                        train=TrainConfig(epochs=1, batch_size=2, monitor="train_loss"))


def test_out_of_fold_reads_each_patient_once_and_predicts_as_without_the_cache(cohort, tmp_path,
                                                                                monkeypatch):
    coh, clin = cohort
    ids = sorted(clin.index[clin["grade_group"].notna()])
    assert len(ids) == 8
    prepared: list[str] = []
    real = deep.prepare_all

    def spy(fn, files, settings, n_jobs, executor=None, input_cache=None):
        if input_cache is None:
            prepared.extend(files)
        return real(fn, files, settings, n_jobs, executor, input_cache)

    monkeypatch.setattr(deep, "prepare_all", spy)
    pred = deep3d.cnn3d_out_of_fold(coh, clin, ids, tmp_path / "cv", _cfg(), folds=2, progress=False)
    assert sorted(prepared) == ids  # two fold networks, each patient read and cropped once
    assert not list((tmp_path / "cv").glob(".inputs-*"))  # the cache went with the call
    # fold 1's network trained and predicted without the cache: the same probabilities
    fold1 = pred[pred["fold"] == 1]
    test = sorted(fold1["patient_id"])
    trained = sorted(set(ids) - set(test))
    alone = deep3d.deep_features_3d(coh, clin, trained, tmp_path / "alone", _cfg(), ids=test,
                                    progress=False)
    got = alone.predictions.set_index("patient_id").loc[test, "probability"]
    pd.testing.assert_series_equal(got, fold1.set_index("patient_id").loc[test, "probability"],
                                   check_names=False)


def test_deep_stage_refuses_torchrun(cohort, tmp_path, monkeypatch):
    coh, clin = cohort
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(GlioradInputError, match=r"3D deep-feature stage runs as one process.*torchrun"):
        deep3d.deep_features_3d(coh, clin, coh.ids[:4], tmp_path / "x", _cfg(), progress=False)
