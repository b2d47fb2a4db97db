"""Every candidate's outer performance when the grading model is chosen automatically.

With ``grading.model: auto`` each outer fold (or the split's training part) fits
:class:`~gliorad.grading.auto.AutoGradingModel` with ``refit="all"``: its inner search on the
fold's training patients picks the model, and every candidate is also refitted on those patients,
so each candidate has outer out-of-fold predictions, as the chosen model has. From them
:func:`candidate_results` makes:

``candidates.csv`` (:data:`TABLE_COLUMNS`, one row per candidate and one for ``auto``, the
    nested choice itself) -- the AUC and its DeLong 95% CI follow the main model's convention
    (:mod:`gliorad.grading.evaluate`): repeat 1's out-of-fold predictions of every patient (the
    split's test part), with ``auc_mean`` / ``auc_sd`` over repeats; ``diff_vs_paper``, its CI
    and ``p_vs_paper`` are the paired DeLong test against the paper's recipe on the same
    patients (repeat 1 / the test part); ``n_chosen`` / ``chosen_fraction`` count the outer
    folds whose inner search chose the candidate; ``inner_auc_mean`` is its mean inner AUC over
    those searches; ``n_features_mean`` and ``top_features`` describe the features it used
    (selection frequency over outer folds, for the candidates that select: ``paper``, the
    logistic models' non-zero coefficients). A candidate that failed on a fold has no value
    where that fold's patients are needed (None), and ``note`` says why.
``candidate_predictions.csv`` -- ``patient_id, label, candidate, probability, fold, repeat,
    split``.
``candidate_selection.csv`` -- ``candidate, feature, n_selected, frequency`` over the outer
    folds, for the selecting candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gliorad import stats

__all__ = ["SELECTING", "TABLE_COLUMNS", "CandidateResult", "candidate_results", "search_record"]

#: The candidates whose fitted model uses a subset of the features.
SELECTING = ("paper", "logistic_l1", "logistic_enet")
TABLE_COLUMNS = ("candidate", "auc", "auc_ci_low", "auc_ci_high", "auc_mean", "auc_sd",
                 "validation_auc", "diff_vs_paper", "diff_ci_low", "diff_ci_high", "p_vs_paper",
                 "n_chosen", "chosen_fraction", "inner_auc_mean", "n_failed_folds",
                 "n_features_mean", "top_features", "note")
TOP = 5


@dataclass
class CandidateResult:
    """The candidates of an automatic choice, evaluated (see the module text)."""

    predictions: pd.DataFrame
    table: pd.DataFrame
    selection: pd.DataFrame
    choices: list[dict[str, Any]]

    def block(self) -> dict[str, Any]:
        """The ``candidates`` entry of ``metrics.json``."""
        from gliorad.grading.auto import CHOICE_RULE

        rows = self.table.astype(object).where(self.table.notna(), None)
        return {"rule": CHOICE_RULE, "table": rows.to_dict(orient="records"),
                "choices": self.choices,
                "comparison": "paired DeLong test of each candidate against paper on the same "
                              "patients (repeat 1 / the test part)"}


def search_record(est: Any, X_test: Any) -> dict[str, Any]:
    """What one outer fold keeps of a fitted ``AutoGradingModel(refit="all")``: the choice, the
    inner scores, every candidate's HGG probabilities for ``X_test`` and the features each
    used."""
    from gliorad.grading.auto import used_features

    return {"chosen": est.chosen_, "reason": est.choice_reason_,
            "inner": [dict(r) for r in est.inner_scores_],
            "scores": est.candidate_scores(X_test),
            "refit_errors": dict(est.refit_errors_),
            "used": {n: (None if e is None else used_features(e))
                     for n, e in est.fitted_.items()}}


def _auc(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float] | None:
    try:
        a = stats.roc_auc_ci(y, p)
    except ValueError:  # one class among these patients: no AUC
        return None
    return a.auc, a.ci_low, a.ci_high


def candidate_results(fits: Sequence[dict[str, Any]], meta: Sequence[dict[str, Any]],
                      held_out: Sequence[np.ndarray], parts: Sequence[np.ndarray],
                      ids: pd.Index, y: pd.Series, main: pd.DataFrame,
                      scheme: str) -> CandidateResult:
    """The candidates' outer predictions and table from the outer fits.

    ``fits[i]["search"]`` is :func:`search_record` of outer fit ``i``; ``meta[i]`` its
    ``repeat`` and ``fold``; ``held_out[i]`` the positions (in ``ids``/``y``) it predicted and
    ``parts[i]`` their part names (``cv-test``, or ``validation`` / ``test``); ``main`` the
    main (``auto``) predictions frame; ``scheme`` ``cv`` or ``split``.
    """
    names = list(dict.fromkeys(n for f in fits for n in f["search"]["scores"]))
    rows, notes = [], {n: [] for n in names}
    for f, m, pos, part in zip(fits, meta, held_out, parts, strict=True):
        s = f["search"]
        for n in names:
            prob = s["scores"].get(n)
            if prob is None:
                why = s["refit_errors"].get(n, "not formed in this fold")
                notes[n].append(f"repeat {m['repeat']} fold {m['fold']}: {why}")
                continue
            rows.append(pd.DataFrame({"patient_id": ids[pos], "label": y.iloc[pos].to_numpy(),
                                      "candidate": n, "probability": prob, "fold": m["fold"],
                                      "repeat": m["repeat"], "split": part}))
    columns = ["patient_id", "label", "candidate", "probability", "fold", "repeat", "split"]
    pred = (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns))
    pred = pred.sort_values(["candidate", "repeat", "fold", "patient_id"], ignore_index=True)
    order = {n: i for i, n in enumerate(names)}
    pred = pred.iloc[np.argsort(pred["candidate"].map(order).to_numpy(), kind="stable")]
    pred = pred.reset_index(drop=True)

    evaluated = {"auto": main.assign(candidate="auto")[columns], **{
        n: pred[pred["candidate"] == n] for n in names}}
    headline = "test" if scheme == "split" else "cv-test"
    n_ref = len(main[main["split"] == headline]) if scheme == "split" else len(ids)
    ref = _reference(evaluated.get("paper"), scheme, n_ref)
    selection = _selection(fits)
    table = [_row(n, p, fits, scheme, n_ref, ref, notes.get(n, []), selection)
             for n, p in evaluated.items()]
    choices = [{"repeat": m["repeat"], "fold": m["fold"], "chosen": f["search"]["chosen"],
                "reason": f["search"]["reason"]} for f, m in zip(fits, meta, strict=True)]
    return CandidateResult(predictions=pred, table=pd.DataFrame(table, columns=TABLE_COLUMNS),
                           selection=selection, choices=choices)


def _headline(p: pd.DataFrame, scheme: str, n: int, part: str = "test") -> pd.DataFrame | None:
    """Repeat 1 (cv) or the split's ``part``, when it has all ``n`` of its patients."""
    p = p[p["split"] == part] if scheme == "split" else p[p["repeat"] == 1]
    return p.set_index("patient_id") if len(p) == n and n else None


def _reference(paper: pd.DataFrame | None, scheme: str, n: int) -> pd.Series | None:
    if paper is None:
        return None
    h = _headline(paper, scheme, n)
    return None if h is None else h["probability"]


def _row(name: str, p: pd.DataFrame, fits, scheme: str, n: int, ref: pd.Series | None,
         notes: list[str], selection: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TABLE_COLUMNS)
    row["candidate"] = name
    h = _headline(p, scheme, n)
    if h is not None:
        auc = _auc(h["label"].to_numpy(), h["probability"].to_numpy())
        if auc is not None:
            row["auc"], row["auc_ci_low"], row["auc_ci_high"] = auc
        if ref is not None and name != "paper":
            t = stats.delong_test(h["label"].to_numpy(), h["probability"].to_numpy(),
                                  ref.loc[h.index].to_numpy())
            row.update(diff_vs_paper=t.diff, diff_ci_low=t.ci_low, diff_ci_high=t.ci_high,
                       p_vs_paper=t.p)
    if scheme == "cv":
        per = []
        for r in sorted(p["repeat"].unique()):
            g = p[p["repeat"] == r]
            if len(g) == n:
                a = _auc(g["label"].to_numpy(), g["probability"].to_numpy())
                per += [] if a is None else [a[0]]
        row["auc_mean"] = float(np.mean(per)) if per else None
        row["auc_sd"] = float(np.std(per, ddof=1)) if len(per) > 1 else None
    else:
        v = p[p["split"] == "validation"]
        a = _auc(v["label"].to_numpy(), v["probability"].to_numpy()) if len(v) else None
        row["validation_auc"] = None if a is None else a[0]
    if name == "auto":
        return row
    searches = [f["search"] for f in fits]
    chosen = sum(s["chosen"] == name for s in searches)
    inner = [r for s in searches for r in s["inner"] if r["candidate"] == name]
    scored = [r["inner_auc"] for r in inner if r["inner_auc"] is not None]
    failed = [r for r in inner if r["status"] != "ok"]
    row.update(n_chosen=chosen, chosen_fraction=chosen / len(searches),
               inner_auc_mean=float(np.mean(scored)) if scored else None,
               n_failed_folds=len(failed) + len(notes))
    used = [s["used"].get(name) for s in searches if s["used"].get(name) is not None]
    if used:
        row["n_features_mean"] = float(np.mean([len(u) for u in used]))
    top = selection[selection["candidate"] == name].head(TOP)
    if len(top):
        row["top_features"] = "; ".join(f"{f} ({q:.2f})" for f, q in
                                        zip(top["feature"], top["frequency"], strict=True))
    reasons = [f"inner: {r['reason']}" for r in failed[:1]] + notes[:1]
    row["note"] = " | ".join(reasons) or None
    return row


def _selection(fits) -> pd.DataFrame:
    """How often each selecting candidate used each feature over the outer folds."""
    out = []
    n = len(fits)
    for name in SELECTING:
        counts: dict[str, int] = {}
        for f in fits:
            for feat in f["search"]["used"].get(name) or []:
                counts[feat] = counts.get(feat, 0) + 1
        out += [{"candidate": name, "feature": k, "n_selected": v, "frequency": v / n}
                for k, v in counts.items()]
    table = pd.DataFrame(out, columns=["candidate", "feature", "n_selected", "frequency"])
    rank = table["candidate"].map({c: i for i, c in enumerate(SELECTING)})
    return (table.assign(_rank=rank)
            .sort_values(["_rank", "n_selected", "feature"], ascending=[True, False, True])
            .drop(columns="_rank").reset_index(drop=True))
