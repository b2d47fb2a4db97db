"""Saved survival model bundle: apply the signature, cut-off and nomograms to new patients.

A bundle is a folder:

``bundle.json``
    Format version, settings (:class:`~gliorad.survival.config.SurvivalConfig`), training
    cohort, chosen sequence, signature formula, cut-off, factor coding (references, pooled
    levels, imputation values), the factors of the integrated and clinical models, ``models``
    (each model's factor rule, whether it was fitted, whether the integrated model is the
    clinical one, and the reason when a model is absent or equals the other), library versions.
``signature.skops``
    The fitted :class:`DeepRadiomicsSignature`, or the candidate of ``survival.model`` (issue
    18: :mod:`gliorad.survival.candidates`; ``bundle.json`` then names it in
    ``signature_model`` and keeps the search's choice in ``model_search``) (skops; loaded with
    an explicit trusted-type list). The random survival forest and the boosted Cox model hold
    scikit-survival estimators: such a bundle loads only with the scikit-survival minor version
    it was saved with.
``cox_integrated.skops``, ``cox_clinical.skops``
    The fitted Cox models as plain dictionaries of arrays and lists (coefficients, covariance,
    design coding, means, Efron baseline), rebuilt into :class:`CoxModel` objects on loading;
    nomograms are rebuilt from them. A model that was not built (no factor kept or
    estimable) has no file; an integrated model that is the clinical one is saved under both
    names.

Nothing is pickled; skops refuses any type not in :data:`TRUSTED_TYPES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.survival._design import Design, Term
from gliorad.survival.candidates import SignatureModel
from gliorad.survival.coding import FactorCoding
from gliorad.survival.config import SurvivalConfig
from gliorad.survival.cox import CoxModel
from gliorad.survival.cox_tables import CoxFit, coef_table
from gliorad.survival.models import SurvivalModels, build_nomograms
from gliorad.survival.signature import DeepRadiomicsSignature

FORMAT_VERSION = 1
#: Types skops may instantiate from ``signature.skops`` (besides its built-in safe types): the
#: paper's signature, the candidates, and the scikit-learn / scikit-survival internals of the
#: forest and the boosted model (checked by the tests against ``skops.io.get_untrusted_types``).
TRUSTED_TYPES = [
    "gliorad.survival.signature.DeepRadiomicsSignature",
    "gliorad.survival.candidates.BoostedSignature",
    "gliorad.survival.candidates.CoxnetSignature",
    "gliorad.survival.candidates.ForestSignature",
    "gliorad.survival.candidates.NoSignature",
    "sklearn.tree._tree.Tree",
    "sksurv.ensemble.boosting.GradientBoostingSurvivalAnalysis",
    "sksurv.ensemble.forest.RandomSurvivalForest",
    "sksurv.ensemble.survival_loss.CoxPH",
    "sksurv.functions.StepFunction",
    "sksurv.linear_model.coxph.BreslowEstimator",
    "sksurv.tree.tree.SurvivalTree",
]
#: Candidates whose saved state is scikit-survival's (not portable across its minor versions).
SKSURV_STATE = ("rsf", "gbcox")

__all__ = [
    "FORMAT_VERSION",
    "SKSURV_STATE",
    "TRUSTED_TYPES",
    "cox_from_dict",
    "cox_to_dict",
    "load_bundle",
    "save_bundle",
    "versions",
]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def cox_to_dict(model: CoxModel) -> dict[str, Any]:
    """A fitted :class:`CoxModel` as plain lists / arrays (no pandas, no lifelines)."""
    terms = [
        {"name": t.name, "kind": t.kind, "columns": list(t.columns), "reference": _plain(t.reference),
         "levels": [_plain(v) for v in t.levels], "low": float(t.low), "high": float(t.high)}
        for t in model.design_.terms
    ]
    categorical = None if model.categorical is None else {str(k): _plain(v) for k, v in model.categorical.items()}
    return {
        "params": {"categorical": categorical, "baseline": model.baseline,
                   "penalizer": float(model.penalizer), "tol": float(model.tol),
                   "max_steps": int(model.max_steps)},
        "terms": terms,
        "columns": list(model.coef_.index),
        "coef": model.coef_.to_numpy(float),
        "se": model.se_.to_numpy(float),
        "cov": model.cov_.to_numpy(float),
        "means": model.means_.to_numpy(float),
        "baseline_time": model.baseline_["time"].to_numpy(float),
        "baseline_cumhaz": model.baseline_["cumhaz"].to_numpy(float),
        "linear_predictors": np.asarray(model.linear_predictors_, float),
        "log_likelihood": float(model.log_likelihood_),
        "log_likelihood_null": float(model.log_likelihood_null_),
        "n_samples": int(model.n_samples_),
        "n_events": int(model.n_events_),
        "max_time": float(model.max_time_),
    }


def cox_from_dict(d: dict[str, Any]) -> CoxModel:
    """Rebuild a fitted :class:`CoxModel` from :func:`cox_to_dict` output (predictions, tables
    and nomograms work; ``lifelines_model_`` is not restored)."""
    try:
        model = CoxModel(**d["params"])
        design = Design(tuple(
            Term(name=t["name"], kind=t["kind"], columns=tuple(t["columns"]), reference=t["reference"],
                 levels=tuple(t["levels"]), low=t["low"], high=t["high"])
            for t in d["terms"]
        ))
        cols = list(d["columns"])
        model.design_ = design
        model.feature_names_in_ = np.asarray(design.names, dtype=object)
        model.n_features_in_ = len(design.names)
        model.coef_ = pd.Series(np.asarray(d["coef"], float), index=cols, name="coef")
        model.se_ = pd.Series(np.asarray(d["se"], float), index=cols, name="se")
        model.cov_ = pd.DataFrame(np.asarray(d["cov"], float), index=cols, columns=cols)
        model.means_ = pd.Series(np.asarray(d["means"], float), index=cols)
        cumhaz = np.asarray(d["baseline_cumhaz"], float)
        model.baseline_ = pd.DataFrame({"time": np.asarray(d["baseline_time"], float),
                                        "cumhaz": cumhaz, "surv": np.exp(-cumhaz)})
        model.linear_predictors_ = np.asarray(d["linear_predictors"], float)
        model.log_likelihood_ = float(d["log_likelihood"])
        model.log_likelihood_null_ = float(d["log_likelihood_null"])
        model.n_samples_ = int(d["n_samples"])
        model.n_events_ = int(d["n_events"])
        model.max_time_ = float(d["max_time"])
    except (KeyError, TypeError, ValueError) as err:
        raise GlioradInputError(f"Cox model in the bundle is malformed ({err!r})") from err
    return model


def versions() -> dict[str, str]:
    """Versions of gliorad, Python and the libraries a survival model depends on."""
    from gliorad.provenance import versions as recorded

    return recorded("numpy", "pandas", "scikit-learn", "scikit-survival", "lifelines")


def save_bundle(models: SurvivalModels, folder: str | Path) -> Path:
    """Write the bundle of fitted :class:`~gliorad.survival.models.SurvivalModels` to
    ``folder`` (files written atomically)."""
    import skops.io as sio

    from gliorad.io import write_bytes, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(sio.dumps(models.signature), folder / "signature.skops")
    for which in ("integrated", "clinical"):
        fit = getattr(models, which)
        path = folder / f"cox_{which}.skops"
        if fit is not None:
            write_bytes(sio.dumps(cox_to_dict(fit.model)), path)
        elif path.exists():
            path.unlink()
    meta = {
        "format": FORMAT_VERSION,
        "config": models.config.model_dump(mode="json"),
        "training": models.training,
        "sequence": models.sequence,
        "feature_columns": list(models.feature_columns),
        "cutoff": float(models.cutoff),
        "cutoff_method": models.cutoff_method,
        "cutoff_detail": models.cutoff_detail,
        "coding": models.coding.to_dict(),
        "integrated_factors": list(models.integrated_factors),
        "clinical_factors": list(models.clinical_factors),
        "models": models.model_info,
        "signature_formula": models.signature.formula_text(),
        "versions": versions(),
    }
    if models.signature_scale is not None:  # signature_term: continuous
        meta["signature_z"] = {"center": models.signature_center, "scale": models.signature_scale,
                               "formula": "signature_z = (signature_score - center) / scale"}
    if models.search is not None:  # a model other than the paper's (its bundles keep their bytes)
        meta["signature_model"] = models.search.chosen_model
        meta["model_search"] = {k: v for k, v in models.search.to_dict().items()
                                if k in ("setting", "chosen", "why", "inner_folds",
                                         "chosen_factor_rule")}
    write_json(meta, folder / "bundle.json")
    return folder


def _load_skops(path: Path, trusted: list[str]) -> Any:
    import skops.io as sio

    if not path.is_file():
        raise GlioradInputError(f"{path}: bundle file not found")
    data = path.read_bytes()
    try:
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in trusted]
    except Exception as err:  # skops raises various errors on a corrupt file
        raise GlioradInputError(f"{path}: not a readable skops file ({err})") from err
    if untrusted:
        raise GlioradInputError(f"{path}: refusing to load untrusted type(s) {untrusted}")
    return sio.loads(data, trusted=trusted)


def _check_sksurv(meta_path: Path, saved: str | None, kind: str) -> None:
    """A bundle whose signature holds scikit-survival state loads with the same minor version."""
    now = versions().get("scikit-survival")
    if saved is None or now is None or saved.split(".")[:2] != now.split(".")[:2]:
        raise GlioradInputError(
            f"{meta_path}: the signature ({kind}) was saved with scikit-survival {saved}; "
            f"scikit-survival {now} is installed: install scikit-survival=={saved} (its saved "
            "state is not portable across minor versions), or refit the survival models")


def load_bundle(folder: str | Path) -> SurvivalModels:
    """Load a bundle saved by :func:`save_bundle` into
    :class:`~gliorad.survival.models.SurvivalModels` (nomograms rebuilt)."""
    import json

    folder = Path(folder)
    meta_path = folder / "bundle.json"
    if not meta_path.is_file():
        raise GlioradInputError(f"{folder}: not a survival bundle (no bundle.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GlioradInputError(f"{meta_path}: not valid JSON ({err})") from err
    if meta.get("format") != FORMAT_VERSION:
        raise GlioradInputError(
            f"{meta_path}: bundle format {meta.get('format')!r} is not supported (expected {FORMAT_VERSION})"
        )
    cfg = SurvivalConfig.model_validate(meta["config"])
    kind = meta.get("signature_model", "paper")
    if kind in SKSURV_STATE:
        _check_sksurv(meta_path, (meta.get("versions") or {}).get("scikit-survival"), kind)
    signature = _load_skops(folder / "signature.skops", TRUSTED_TYPES)
    if not isinstance(signature, DeepRadiomicsSignature | SignatureModel):
        raise GlioradInputError(f"{folder / 'signature.skops'}: does not hold a DeepRadiomicsSignature "
                                "or a survival candidate (gliorad.survival.candidates)")
    fits = {}
    for which in ("integrated", "clinical"):
        path = folder / f"cox_{which}.skops"
        if not path.exists() and not meta[f"{which}_factors"]:
            fits[which] = None
            continue
        model = cox_from_dict(_load_skops(path, []))
        fits[which] = CoxFit(table=coef_table(model, cfg.factor_labels()), model=model,
                             factors=list(model.feature_names_in_))
    zed = meta.get("signature_z") or {}
    models = SurvivalModels(
        config=cfg, training=meta["training"], sequence=meta["sequence"],
        feature_columns=list(meta["feature_columns"]), signature=signature,
        cutoff=float(meta["cutoff"]), cutoff_method=meta["cutoff_method"],
        coding=FactorCoding.from_dict(meta["coding"]), integrated=fits["integrated"],
        clinical=fits["clinical"], integrated_factors=list(meta["integrated_factors"]),
        clinical_factors=list(meta["clinical_factors"]), cutoff_detail=meta.get("cutoff_detail", {}),
        model_info=dict(meta.get("models") or {}),
        signature_center=zed.get("center"), signature_scale=zed.get("scale"),
    )
    build_nomograms(models)
    return models
