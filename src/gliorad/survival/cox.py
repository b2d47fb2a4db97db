"""Cox proportional-hazards model: a scikit-learn-style wrapper over lifelines' ``CoxPHFitter``.

Coefficients and standard errors agree with R 4.2 ``survival::coxph`` (Efron ties, R's
default) to ~1e-6; lifelines does the fitting. What lifelines does not do the way R does is
added here: dummy coding of categorical factors against a chosen reference level, the Efron
baseline hazard used by ``survfit.coxph`` / ``rms::cph(surv=TRUE)``, and centred linear
predictors (``predict(fit, type="lp")``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival._design import Design, as_frame
from gliorad.survival._risksets import baseline_cumhaz
from gliorad.survival._validate import as_1d_float, check_lengths, check_survival

_TIME, _EVENT = "__gliorad_time__", "__gliorad_event__"


class CoxModel(BaseEstimator):
    """Cox proportional-hazards regression (Efron ties), R ``coxph`` compatible.

    Parameters
    ----------
    categorical : dict, optional
        ``{factor: reference_level}`` for factors to dummy-code (``None`` as reference = first
        level). Object, string, bool and categorical columns are always treated as categorical.
    baseline : {"efron", "breslow"}
        Baseline hazard estimator. ``"efron"`` (default) is what R's ``survfit.coxph`` and
        ``rms::cph(surv=TRUE)`` use for an Efron fit; ``"breslow"`` is lifelines' estimator.
        They differ only when event times are tied.
    penalizer : float
        Ridge penalty passed to lifelines (0 = ordinary partial likelihood, as R).
    tol : float
        Newton-Raphson convergence tolerance (lifelines ``precision``).
    max_steps : int
        Maximum Newton-Raphson iterations.

    Attributes
    ----------
    design_ : Design
        Factor coding learnt from the training table.
    coef_, se_ : pandas.Series
        Log hazard ratios and their standard errors, indexed by design column.
    cov_ : pandas.DataFrame
        Covariance matrix of ``coef_`` (inverse information).
    means_ : pandas.Series
        Training means of the design columns (R ``fit$means``); linear predictors are centred
        at these.
    baseline_ : pandas.DataFrame
        ``time, cumhaz, surv``: baseline cumulative hazard / survival at the mean covariates,
        at every distinct training time (R ``survfit(fit)`` with no ``newdata``).
    linear_predictors_ : numpy.ndarray
        Centred training linear predictors (R ``fit$linear.predictors``).
    log_likelihood_, log_likelihood_null_ : float
        Partial log-likelihood at the estimate and at ``beta = 0``.
    n_samples_, n_events_ : int
    max_time_ : float
        Last training follow-up time.
    lifelines_model_ : lifelines.CoxPHFitter
        The underlying fitted lifelines model.

    Notes
    -----
    - Only Efron's tie handling is available for fitting (lifelines implements no other); it
      is R's default. ``coxph(ties="breslow")`` fits are not reproduced.
    - Centring: linear predictors are centred at the column means of the design matrix, as
      ``rms::cph`` (and ``coxph.fit``) do. R >= 3.0 ``coxph()`` instead sets the "mean" of 0/1
      columns (e.g. dummies) to 0, so ``predict(coxph_fit, type="lp")`` differs from
      :meth:`predict_risk` by a constant for such models; predicted survival, hazard ratios,
      concordance and ``cox.zph`` are unaffected.
    """

    def __init__(
        self,
        categorical: Mapping[str, object] | None = None,
        baseline: str = "efron",
        penalizer: float = 0.0,
        tol: float = 1e-10,
        max_steps: int = 100,
    ):
        self.categorical = categorical
        self.baseline = baseline
        self.penalizer = penalizer
        self.tol = tol
        self.max_steps = max_steps

    # ------------------------------------------------------------------ fitting
    def fit(self, X: object, time: object, event: object) -> CoxModel:
        """Fit the model.

        Parameters
        ----------
        X : pandas.DataFrame or array-like (n, p)
            Factors; no missing values.
        time, event : array-like (n,)
            Follow-up times (>= 0) and event indicators (1 = event).

        Returns
        -------
        CoxModel
            ``self``.
        """
        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError

        check_option("baseline", self.baseline, ("efron", "breslow"))
        frame = as_frame(X)
        t, e = check_survival(time, event)
        check_lengths(X=frame, time=t)
        design = Design.from_frame(frame, self.categorical)
        D = design.transform(frame)
        data = D.reset_index(drop=True).assign(**{_TIME: t, _EVENT: e})
        fitter = CoxPHFitter(penalizer=self.penalizer)
        try:
            fitter.fit(
                data,
                duration_col=_TIME,
                event_col=_EVENT,
                fit_options={"precision": self.tol, "max_steps": self.max_steps},
            )
        except ConvergenceError as exc:
            raise GlioradInputError(
                f"Cox model did not converge ({str(exc).splitlines()[0]}); check for factors "
                "that separate events perfectly or levels with no events"
            ) from None
        cols = design.columns
        self.design_ = design
        self.feature_names_in_ = np.asarray(design.names, dtype=object)
        self.n_features_in_ = len(design.names)
        self.coef_ = fitter.params_[cols].rename("coef")
        self.se_ = fitter.standard_errors_[cols].rename("se")
        self.cov_ = fitter.variance_matrix_.loc[cols, cols]
        self.means_ = D.mean(axis=0)
        self.log_likelihood_ = float(fitter.log_likelihood_)
        lr = fitter.log_likelihood_ratio_test()
        self.log_likelihood_null_ = self.log_likelihood_ - float(lr.test_statistic) / 2.0
        self.n_samples_ = int(t.size)
        self.n_events_ = int(e.sum())
        self.max_time_ = float(t.max())
        self.lifelines_model_ = fitter
        self.linear_predictors_ = self._lp(D)
        times, cumhaz = baseline_cumhaz(t, e, self.linear_predictors_, ties=self.baseline)
        self.baseline_ = pd.DataFrame({"time": times, "cumhaz": cumhaz, "surv": np.exp(-cumhaz)})
        return self

    # --------------------------------------------------------------- prediction
    def _lp(self, D: pd.DataFrame) -> np.ndarray:
        # Row-wise sum, not a BLAS matrix-vector product: gemv can round identical rows
        # differently (blocked / FMA paths), so patients with the same covariates got risks
        # 2e-16 apart, which broke the risk ties that R keeps (C-index, nomogram groups).
        Z = np.ascontiguousarray(D.to_numpy(dtype=float) - self.means_.to_numpy())
        return (Z * self.coef_.to_numpy()).sum(axis=1)

    def design_matrix(self, X: object) -> pd.DataFrame:
        """Dummy-coded design matrix of ``X`` with the training coding."""
        check_is_fitted(self)
        return self.design_.transform(as_frame(X))

    def predict_risk(self, X: object) -> np.ndarray:
        """Centred linear predictor ``(x - means) @ coef`` (R ``predict(fit, type="lp")``).

        Higher means higher hazard; ``exp`` of it is the relative hazard versus the mean.
        """
        check_is_fitted(self)
        return self._lp(self.design_matrix(X))

    def predict(self, X: object) -> np.ndarray:
        """Alias of :meth:`predict_risk` (scikit-survival convention: higher = riskier)."""
        return self.predict_risk(X)

    def baseline_survival_at(self, times: object) -> np.ndarray:
        """Baseline survival ``S0(t)`` at the mean covariates (step function, NaN after the
        last training time unless ``S0`` already reached 0 there, as ``rms::Survival``)."""
        check_is_fitted(self)
        at = as_1d_float(times, "times")
        bt = self.baseline_["time"].to_numpy()
        bs = self.baseline_["surv"].to_numpy()
        idx = np.searchsorted(bt, at, side="right") - 1
        s0 = np.where(idx >= 0, bs[np.maximum(idx, 0)], 1.0)
        return np.where((at > bt[-1]) & (bs[-1] > 0), np.nan, s0)

    def predict_survival(self, X: object, times: object) -> np.ndarray:
        """Predicted survival probabilities ``S0(t) ** exp(lp)``.

        Matches ``summary(survfit(fit, newdata=X), times=times)$surv`` in R (transposed) and
        rms ``survest`` / ``Survival(fit)(times, lp)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_samples, n_times)``.
        """
        lp = self.predict_risk(X)
        s0 = self.baseline_survival_at(times)
        return s0[None, :] ** np.exp(lp)[:, None]

    def score(self, X: object, time: object, event: object) -> float:
        """Harrell's concordance index of ``predict_risk`` (lifelines implementation)."""
        from lifelines.utils import concordance_index

        t, e = check_survival(time, event, require_event=False)
        return float(concordance_index(t, -self.predict_risk(X), e))
