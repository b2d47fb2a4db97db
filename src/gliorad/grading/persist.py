"""Saving and loading fitted grading models with skops (never pickle).

A saved model is two files in one folder: ``model.skops`` (the fitted
:class:`~gliorad.grading.model.GradingModel`, another candidate of
:mod:`gliorad.grading.candidates`, an :class:`~gliorad.grading.auto.AutoGradingModel` holding
the chosen one, or a :class:`~gliorad.grading.stacking.StackedGradingModel`, written by
:func:`skops.io.dump`) and ``model.json`` (feature columns, positive class, settings, selected
features, provenance).
:func:`load_model` asks skops which types the file holds and loads it only when every type that
skops does not trust by default is one gliorad itself writes (:data:`TRUSTED_TYPES`); a file
holding anything else is refused, naming the types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.io import atomic_path, write_json

__all__ = ["TRUSTED_TYPES", "load_model", "read_model_info", "save_model"]

MODEL_FILE = "model.skops"
INFO_FILE = "model.json"

#: Types in a fitted grading model that skops 0.16 does not trust by default: gliorad's own
#: estimators and the scikit-learn / numpy internals they hold (checked by the tests against
#: ``skops.io.get_untrusted_types`` for every model variant and every candidate).
TRUSTED_TYPES: tuple[str, ...] = (
    "gliorad.grading.auto.AutoGradingModel",
    "gliorad.grading.candidates.BoostingGrader",
    "gliorad.grading.candidates.ForestGrader",
    "gliorad.grading.candidates.LogisticGrader",
    "gliorad.grading.candidates.SVMGrader",
    "gliorad.grading.candidates.SoftVoteGrader",
    "gliorad.grading.model.GradingModel",
    "gliorad.grading.model.TunedSVC",
    "gliorad.grading.stacking.StackedGradingModel",
    "gliorad.selection.CorrelationFilter",
    "gliorad.selection.LassoSelector",
    "gliorad.selection.LeveneSelector",
    "gliorad.selection.RandomForestTopK",
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.tree._tree.Tree",
)


def _model_types() -> dict[type, str]:
    """The grading model types gliorad saves, each with the attribute that marks it fitted."""
    from gliorad.grading.auto import AutoGradingModel
    from gliorad.grading.candidates import CandidateModel, SoftVoteGrader
    from gliorad.grading.model import GradingModel
    from gliorad.grading.stacking import StackedGradingModel

    return {GradingModel: "pipeline_", StackedGradingModel: "final_",
            CandidateModel: "estimator_", SoftVoteGrader: "estimators_",
            AutoGradingModel: "estimator_"}


def save_model(model: Any, folder: str | Path, info: dict[str, Any]) -> Path:
    """Write ``model.skops`` and ``model.json`` into ``folder`` (each atomically)."""
    import skops.io as sio

    fitted = any(isinstance(model, t) and hasattr(model, a) for t, a in _model_types().items())
    if not fitted:
        raise GlioradInputError("save_model expects a fitted grading model (GradingModel, a "
                                "candidate, AutoGradingModel or StackedGradingModel)")
    folder = Path(folder)
    with atomic_path(folder / MODEL_FILE) as tmp:
        sio.dump(model, tmp)
    write_json(info, folder / INFO_FILE)
    return folder / MODEL_FILE


def _model_path(path: str | Path) -> Path:
    p = Path(path)
    return p / MODEL_FILE if p.is_dir() else p


def load_model(path: str | Path):
    """Load a model saved by :func:`save_model` (give the folder or the ``.skops`` file)."""
    import skops.io as sio

    p = _model_path(path)
    if not p.is_file():
        raise GlioradInputError(f"{p}: model file not found (expected {MODEL_FILE} written by "
                                "'gliorad grade fit')")
    try:
        untrusted = sio.get_untrusted_types(file=p)
    except Exception as err:  # skops raises several types for files that are not its format
        raise GlioradInputError(f"{p}: not a skops model file: {err}") from err
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise GlioradInputError(
            f"{p}: holds types gliorad does not write ({', '.join(unknown)}); refusing to "
            "load it")
    try:
        model = sio.load(p, trusted=list(untrusted))
    except Exception as err:
        raise GlioradInputError(f"{p}: cannot load the model: {err}") from err
    if not isinstance(model, tuple(_model_types())):
        raise GlioradInputError(f"{p}: holds a {type(model).__name__}, not a grading model")
    return model


def read_model_info(path: str | Path) -> dict[str, Any]:
    """The ``model.json`` beside a saved model (empty dict when absent)."""
    p = _model_path(path).parent / INFO_FILE
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GlioradInputError(f"{p}: not valid JSON: {err}") from err
