"""The paper's grading tables: Table S3 (radiomics per sequence), Table 1 (fused), Table 2 (CNN).

Feature sets are named by convention (case-sensitive):

=============================  ====================================================  ==========
name                           what                                                  table
=============================  ====================================================  ==========
``radiomics_<seq>``            radiomics of one sequence (``t1``, ``t1ce``, ``t2``,   S3
                               ``flair``, or any other name)
``fused_<input>_<block>``      radiomics + 3D-CNN deep features, one table            1
``deep_<input>_<block>``       3D-CNN deep features alone; fused here with the best   1 (fused)
                               radiomics set of Table S3 (or ``fuse_with``) when no
                               ``fused_<input>_<block>`` is given
``cnn_<input>_<block>``        the CNN's own HGG probabilities (two fully connected   2
                               layers, trained elsewhere), in ``cnn_predictions``
``stacked_<input>_<block>``    not in the paper: the radiomics model of ``fuse_with``  1
                               and the CNN's **out-of-sample** probabilities (in
                               ``stack_scores``, named ``cnn_<input>_<block>``)
                               stacked by a logistic regression
                               (:class:`~gliorad.grading.stacking.StackedGradingModel`)
=============================  ====================================================  ==========

``<input>`` is ``patch`` (tumour-centred patches, paper 96x128x96) or ``full`` (complete MRI);
``<block>`` is ``se`` (ResNet18 + SE block) or ``nose`` (baseline ResNet18). The rows are labelled
as in the paper: "Baseline (MRI patches)", "Baseline + SE module (MRI patches)", "Baseline
(complete MRI)", "Baseline + SE module (complete MRI)".

Every feature set is evaluated by the same grading model and scheme
(:func:`~gliorad.grading.evaluate.cross_validate_grading` or
:func:`~gliorad.grading.evaluate.split_evaluate_grading`) on the same patients, so the folds (or
the split) are identical for every row and DeLong tests pair correctly. The CNN rows use the
CNN's probabilities for the same patients: for repeated CV these must be out-of-fold
probabilities for every patient; for a split, those of the test patients are used. Table values
are the headline metrics (repeat 1 for CV; the test part for a split). ``comparisons`` gives the
paired DeLong P of the best fused (or stacked) model vs the best CNN model (the paper's "0.958
vs 0.852, P = 0.013") and vs the best radiomics model.

``fuse_with="best"`` takes the radiomics set with the highest **validation-part** AUC under a
split (choosing it by the test part would let the test labels shape the fused model), and the
highest cross-validated AUC under CV (slightly optimistic; give ``fuse_with`` to avoid it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliorad import stats
from gliorad.errors import GlioradInputError
from gliorad.grading.config import GradingConfig
from gliorad.grading.evaluate import (
    GradingResult,
    binary_metrics,
    cross_validate_grading,
    split_evaluate_grading,
)
from gliorad.tables import GradeLabels

__all__ = ["PaperTables", "markdown_table", "paper_tables", "parse_set_name",
           "radiomics_by_sequence"]

log = logging.getLogger(__name__)

SEQUENCE_LABELS = {"t1": "T1WI", "t1ce": "T1-Gd", "t2": "T2WI", "flair": "T2-FLAIR"}
#: The radiomics set of every sequence together (``grading.all_sequences``; not in the paper).
ALL_SEQUENCES = "radiomics_all"
INPUT_LABELS = {"patch": "MRI patches", "full": "complete MRI"}
BLOCK_LABELS = {"nose": "Baseline", "se": "Baseline + SE module"}
ROW_ORDER = [("patch", "nose"), ("patch", "se"), ("full", "nose"), ("full", "se")]
_NAME = re.compile(r"^(radiomics)_(\w+)$|^(fused|deep|cnn|stacked)_(patch|full)_(se|nose)$")
CONVENTION = ("radiomics_<sequence>, fused_<patch|full>_<se|nose>, deep_<patch|full>_<se|nose> "
              "(feature sets) and cnn_<patch|full>_<se|nose> (CNN predictions)")


def parse_set_name(name: str) -> tuple[str, str]:
    """``("radiomics", "t1ce")``, ``("fused", "patch_se")``, ... ; raise for other names."""
    m = _NAME.match(name)
    if not m:
        raise GlioradInputError(f"feature set name {name!r} does not follow the convention "
                                f"{CONVENTION}")
    if m.group(1):
        return "radiomics", m.group(2)
    return m.group(3), f"{m.group(4)}_{m.group(5)}"


def radiomics_by_sequence(
    table: pd.DataFrame, sequences: tuple[str, ...] | None = None, combined: bool = False,
) -> dict[str, pd.DataFrame]:
    """Split one radiomics table with ``<sequence>_...`` columns (as ``gliorad features
    radiomics`` writes) into ``radiomics_<sequence>`` sets; ``combined`` (not in the paper) adds
    ``radiomics_all``, every sequence's columns, where there are at least two sequences.

    ``sequences`` defaults to every prefix of :data:`SEQUENCE_LABELS` found in the columns.
    Columns of no listed sequence are an error (they would silently drop out of Table S3).
    """
    names = [str(c) for c in table.columns]
    found = sequences or tuple(s for s in SEQUENCE_LABELS if any(n.startswith(f"{s}_")
                                                                 for n in names))
    if not found:
        raise GlioradInputError(
            "radiomics table: no column starts with a sequence prefix "
            f"({', '.join(f'{s}_' for s in SEQUENCE_LABELS)})")
    out = {}
    used: set[str] = set()
    for seq in found:
        cols = [c for c, n in zip(table.columns, names, strict=True) if n.startswith(f"{seq}_")]
        if not cols:
            raise GlioradInputError(f"radiomics table: no column starts with {seq + '_'!r}")
        out[f"radiomics_{seq}"] = table[cols]
        used.update(map(str, cols))
    left = [n for n in names if n not in used]
    if left:
        raise GlioradInputError(
            f"radiomics table: {len(left)} column(s) belong to no sequence in "
            f"{', '.join(found)}: {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
    if combined and len(out) > 1:
        out[ALL_SEQUENCES] = table
    return out


def _row_label(kind: str, detail: str) -> str:
    if kind == "radiomics":
        return "All sequences" if detail == "all" else SEQUENCE_LABELS.get(detail, detail)
    inp, block = detail.split("_")
    label = f"{BLOCK_LABELS[block]} ({INPUT_LABELS[inp]})"
    return f"Stacked: radiomics + CNN scores, {label}" if kind == "stacked" else label


@dataclass
class PaperTables:
    """The tables (``table_s3``, ``table_1``, ``table_2``, ``comparisons``) and what made them."""

    tables: dict[str, pd.DataFrame]
    results: dict[str, GradingResult]
    scores: dict[str, pd.Series]
    labels: pd.Series
    scheme: str
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        titles = {"table_s3": "Table S3. Grading with radiomics of each sequence",
                  "table_1": "Table 1. Grading with fused CNN + radiomics features",
                  "table_2": "Table 2. Grading with the CNN alone",
                  "comparisons": "DeLong comparisons (same patients)"}
        scheme = ("repeated stratified CV, out-of-fold predictions of repeat 1"
                  if self.scheme == "cv" else "test part of a stratified split")
        parts = [(f"# Grading tables (HGG = positive class; {scheme}; "
                 f"{int(self.labels.sum())} HGG, {int((self.labels == 0).sum())} LGG)"), ""]
        for key, title in titles.items():
            table = self.tables.get(key)
            if table is None or table.empty:
                continue
            shown = table if key == "comparisons" else table[
                ["Methods", "AUC (95% CI)", "Accuracy", "Sensitivity", "Precision"]]
            parts += [f"## {title}", "", markdown_table(shown), ""]
        if self.notes:
            parts += ["Notes:", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(parts)

    def write(self, folder: str | Path) -> None:
        """CSV per table, ``tables.md``, per-model predictions and metrics (atomic files)."""
        from gliorad.io import write_json, write_text

        folder = Path(folder)
        for key, table in self.tables.items():
            write_text(table.to_csv(index=False, float_format="%.10g"), folder / f"{key}.csv")
        write_text(self.to_markdown(), folder / "tables.md")
        for name, s in self.scores.items():
            df = pd.DataFrame({"patient_id": s.index, "label": self.labels.loc[s.index].to_numpy(),
                               "probability": s.to_numpy()})
            write_text(df.to_csv(index=False, float_format="%.10g"),
                       folder / "predictions" / f"{name}.csv")
        write_json({name: r.metrics for name, r in self.results.items()},
                   folder / "metrics.json")
        write_json({"scheme": self.scheme, "notes": list(self.notes)}, folder / "notes.json")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-style Markdown table (numbers to 3 decimals; P values to 3 significant digits)."""
    def fmt(col: str, v: Any) -> str:
        if isinstance(v, float | np.floating):
            if not np.isfinite(v):
                return ""
            if col == "p" or col.endswith("P"):
                return "<0.001" if v < 0.001 else f"{v:.3f}"
            return f"{v:.3f}"
        return str(v)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" if df[c].dtype == object else "---:" for c in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(str(c), v) for c, v in zip(df.columns, r, strict=True)) + " |"
            for r in df.itertuples(index=False)]
    return "\n".join([header, sep, *rows])


def _row(label: str, name: str, m: dict[str, Any]) -> dict[str, Any]:
    def num(v):
        return float("nan") if v is None else float(v)

    return {
        "Methods": label,
        "AUC (95% CI)": f"{m['auc']:.3f} ({m['auc_ci_low']:.3f}, {m['auc_ci_high']:.3f})",
        "Accuracy": num(m["accuracy"]), "Sensitivity": num(m["sensitivity"]),
        "Precision": num(m["precision"]), "Specificity": num(m["specificity"]),
        "auc": m["auc"], "auc_ci_low": m["auc_ci_low"], "auc_ci_high": m["auc_ci_high"],
        "auc_mean": m.get("auc_mean"), "auc_sd": m.get("auc_sd"),
        "n_pos": m["n_pos"], "n_neg": m["n_neg"], "set": name,
    }


def _cnn_scores(name: str, pred: pd.Series | pd.DataFrame) -> pd.Series:
    """Probabilities indexed by patient id from a Series or a predictions DataFrame."""
    if isinstance(pred, pd.Series):
        s = pred.astype(float)
    elif isinstance(pred, pd.DataFrame):
        df = pred
        if "patient_id" in df.columns:
            df = df.set_index("patient_id")
        if "probability" not in df.columns:
            raise GlioradInputError(f"CNN predictions {name!r}: no 'probability' column; "
                                    f"columns are {', '.join(map(str, df.columns))}")
        if "repeat" in df.columns:
            df = df[df["repeat"] == df["repeat"].min()]
        s = df["probability"].astype(float)
    else:
        raise GlioradInputError(f"CNN predictions {name!r} must be a Series or DataFrame, got "
                                f"{type(pred).__name__}")
    s.index = s.index.map(str)
    if s.index.duplicated().any():
        raise GlioradInputError(f"CNN predictions {name!r}: patient id(s) repeated: "
                                f"{', '.join(s.index[s.index.duplicated()][:5])}")
    if not np.all(np.isfinite(s.to_numpy())):
        raise GlioradInputError(f"CNN predictions {name!r}: non-finite probabilities")
    return s


def paper_tables(
    feature_sets: dict[str, pd.DataFrame],
    labels: pd.Series | GradeLabels,
    cnn_predictions: dict[str, pd.Series | pd.DataFrame] | None = None,
    config: GradingConfig | None = None,
    scheme: str = "cv",
    fuse_with: str = "best",
    n_jobs: int = 1,
    split_parts: Mapping[str, str] | None = None,
    stack_scores: dict[str, pd.Series | pd.DataFrame] | None = None,
) -> PaperTables:
    """Evaluate every feature set with the grading model and build the paper's tables.

    Parameters
    ----------
    feature_sets : name -> DataFrame (patients x features, indexed by patient id); names follow
        the module's convention.
    labels : Series of 0/1 (1 = HGG) indexed by patient id, or GradeLabels
    cnn_predictions : name (``cnn_<input>_<block>``) -> Series of HGG probabilities indexed by
        patient id, or a DataFrame with ``patient_id`` (or that index) and ``probability``
        (and optionally ``repeat``: the first repeat is used)
    config : GradingConfig (default: ``paper`` preset)
    scheme : ``"cv"`` (repeated stratified CV) or ``"split"`` (config.split_ratios)
    fuse_with : ``"best"`` (the radiomics set with the highest validation-part AUC under a split,
        cross-validated AUC under CV) or a radiomics set name; used to build ``fused_*`` from
        ``deep_*`` sets and ``stacked_*`` from ``stack_scores``
    n_jobs : folds fitted in parallel
    split_parts : patient id -> ``train`` / ``val`` / ``test``: a fixed split for
        ``scheme="split"`` (e.g. the one the CNNs were trained on) instead of a new one
    stack_scores : name (``cnn_<input>_<block>``) -> the CNN's HGG probabilities, as
        ``cnn_predictions``, but **out-of-sample for every patient** (e.g. out-of-fold from
        cross-fitted networks for the training part, the full network's for the others); each
        gives a ``stacked_<input>_<block>`` row of Table 1. Every evaluated patient needs one.

    Returns
    -------
    PaperTables
    """
    from gliorad.errors import check_option

    check_option("scheme", scheme, ("cv", "split"))
    config = config or GradingConfig.preset("paper")
    cnn_predictions = dict(cnn_predictions or {})
    y = labels.y if isinstance(labels, GradeLabels) else pd.Series(labels)
    y.index = y.index.map(str)
    kinds = {name: parse_set_name(name) for name in feature_sets}
    for name in cnn_predictions:
        if parse_set_name(name)[0] != "cnn":
            raise GlioradInputError(f"CNN prediction name {name!r} must be cnn_<patch|full>_"
                                    "<se|nose>")
    for name, kind in kinds.items():
        if kind[0] == "cnn":
            raise GlioradInputError(f"{name!r} is a CNN prediction name; pass it in "
                                    "cnn_predictions, not feature_sets")
    if not feature_sets:
        raise GlioradInputError(f"no feature sets given; expected names like {CONVENTION}")
    cnn = {name: _cnn_scores(name, p) for name, p in cnn_predictions.items()}
    stack_scores = dict(stack_scores or {})
    for name in stack_scores:
        if _NAME.match(name) is None or parse_set_name(name)[0] != "cnn":
            raise GlioradInputError(f"stack score name {name!r} must be cnn_<patch|full>_"
                                    "<se|nose>")
    stack = {name: _cnn_scores(name, p) for name, p in stack_scores.items()}
    for name, sc in stack.items():
        bad = sc[(sc < 0) | (sc > 1)]
        if len(bad):
            raise GlioradInputError(f"stack scores {name!r}: patient {bad.index[0]!r} has "
                                    f"{float(bad.iloc[0])!r}, not a probability in [0, 1]")

    # the patients every set and every CNN prediction has
    common = pd.Index(y.index)
    sets = {}
    for name, df in feature_sets.items():
        df = df.copy()
        df.index = df.index.map(str)
        sets[name] = df
        common = common.intersection(df.index, sort=False)
    if scheme == "cv":
        for s in cnn.values():
            common = common.intersection(s.index, sort=False)
    notes = []
    dropped = pd.Index(y.index).difference(common)
    if len(dropped):
        notes.append(f"{len(dropped)} labelled patient(s) are missing from at least one feature "
                     f"set{' or CNN prediction' if scheme == 'cv' and cnn else ''} and were "
                     f"left out: {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}")
        log.warning(notes[-1])
    y = y.loc[common]
    if min(int(y.sum()), int((y == 0).sum())) < 2:
        raise GlioradInputError(f"only {len(y)} patients are in every feature set and the "
                                "labels; need at least 2 of each class")

    def evaluate(X: pd.DataFrame, model: Any = None) -> GradingResult:
        X = X.loc[common]
        if scheme == "cv":
            return cross_validate_grading(X, y, config, model=model, n_jobs=n_jobs)
        return split_evaluate_grading(X, y, config, model=model, n_jobs=n_jobs,
                                      parts=split_parts)

    results: dict[str, GradingResult] = {}
    for name, (kind, _) in kinds.items():
        if kind in ("radiomics", "fused"):
            log.info("grading feature set %s (%d features)", name, sets[name].shape[1])
            results[name] = evaluate(sets[name])

    radiomics = [n for n, k in kinds.items() if k[0] == "radiomics"]
    deep = [n for n, k in kinds.items() if k[0] == "deep"]
    if deep or stack:
        if fuse_with == "best":
            if not radiomics:
                raise GlioradInputError(
                    f"deep feature sets and stack scores ({', '.join(deep + list(stack))}) need "
                    "a radiomics_<sequence> set to fuse with, or give fused_<input>_<block> tables")

            def choice(n: str) -> float:  # validation part under a split, CV AUC under CV
                return results[n].metrics.get("validation", results[n].metrics)["auc"]

            base = max(radiomics, key=choice)
            how = ("validation-part" if "validation" in results[base].metrics else
                   "cross-validated" if scheme == "cv" else "test-part (no validation part)")
            notes.append(f"radiomics set fused with the CNN: {base} (highest {how} AUC, "
                         f"{choice(base):.3f})")
        else:
            if fuse_with not in sets or kinds[fuse_with][0] != "radiomics":
                raise GlioradInputError(f"fuse_with {fuse_with!r} is not one of the radiomics "
                                        f"sets: {', '.join(radiomics) or '(none)'}")
            base = fuse_with
        for name in deep:
            fused = "fused_" + kinds[name][1]
            if fused in sets:
                notes.append(f"{name} not fused: {fused} was given explicitly")
                continue
            table = pd.concat([sets[base].loc[common].add_prefix(f"{base}/"),
                               sets[name].loc[common].add_prefix(f"{name}/")], axis=1)
            notes.append(f"{fused} = {base} ({sets[base].shape[1]} features) + {name} "
                         f"({sets[name].shape[1]} features)")
            kinds[fused] = ("fused", kinds[name][1])
            log.info("grading fused set %s (%d features)", fused, table.shape[1])
            results[fused] = evaluate(table)
        from gliorad.grading.stacking import StackedGradingModel

        for name, sc in stack.items():
            missing = common.difference(sc.index)
            if len(missing):
                raise GlioradInputError(
                    f"stack scores {name!r} lack {len(missing)} patient(s): "
                    f"{', '.join(missing[:10])}; stacking needs an out-of-sample score for "
                    "every patient")
            detail = parse_set_name(name)[1]
            col = f"{name}/probability"
            table = pd.concat([sets[base].loc[common].add_prefix(f"{base}/"),
                               sc.loc[common].rename(col)], axis=1)
            model = StackedGradingModel(config.make_model(), score_columns=(col,),
                                        cv=config.inner_cv, random_state=config.seed)
            stacked = f"stacked_{detail}"
            kinds[stacked] = ("stacked", detail)
            notes.append(f"{stacked} = {base} (its grading model's out-of-fold scores) + {name} "
                         "(out-of-sample CNN scores), stacked by a logistic regression")
            log.info("grading stacked set %s", stacked)
            results[stacked] = evaluate(table, model)
            w = pd.DataFrame([f["best_params"]["stack_weights"] for f in results[stacked].fits])
            notes.append(f"{stacked} weights (log-odds per unit logit"
                         f"{', mean over folds' if len(w) > 1 else ''}): "
                         + ", ".join(f"{k} {v:+.3f}" for k, v in w.mean().items()))

    first = next(iter(results.values()))
    eval_y = first.labels()
    eval_ids = eval_y.index
    scores = {}
    for name, r in results.items():
        s = r.scores()
        if set(s.index) != set(eval_ids):  # same patients and seed give the same folds/split
            raise GlioradInputError(f"{name}: evaluated on other patients than the first set")
        scores[name] = s.loc[eval_ids]
    for name, s in cnn.items():
        missing = eval_ids.difference(s.index)
        if len(missing):
            raise GlioradInputError(
                f"CNN predictions {name!r} lack {len(missing)} evaluated patient(s): "
                f"{', '.join(missing[:10])}")
        scores[name] = s.loc[eval_ids]

    tables: dict[str, pd.DataFrame] = {}
    rows_s3 = [_row(_row_label("radiomics", kinds[n][1]), n, results[n].metrics)
               for n in radiomics]
    tables["table_s3"] = pd.DataFrame(rows_s3)
    fused_names = [f"{k}_{i}_{b}" for k in ("fused", "stacked") for i, b in ROW_ORDER
                   if f"{k}_{i}_{b}" in results]
    tables["table_1"] = pd.DataFrame(
        [_row(_row_label(kinds[n][0], kinds[n][1]), n, results[n].metrics) for n in fused_names])
    cnn_names = [f"cnn_{i}_{b}" for i, b in ROW_ORDER if f"cnn_{i}_{b}" in cnn]
    cnn_metrics = {n: binary_metrics(eval_y, scores[n], config.threshold) for n in cnn_names}
    tables["table_2"] = pd.DataFrame(
        [_row(_row_label("cnn", parse_set_name(n)[1]), n, cnn_metrics[n]) for n in cnn_names])

    def best(names: list[str], metric: dict[str, float]) -> str | None:
        return max(names, key=lambda n: metric[n]) if names else None

    auc = {n: results[n].metrics["auc"] for n in results}
    auc.update({n: m["auc"] for n, m in cnn_metrics.items()})
    pairs = []
    best_fused = best(fused_names, auc)
    for other, what in ((best(cnn_names, auc), "best CNN"),
                        (best(radiomics, auc), "best radiomics")):
        if best_fused and other:
            t = stats.delong_test(eval_y.to_numpy(), scores[best_fused].to_numpy(),
                                  scores[other].to_numpy())
            pairs.append({"comparison": f"best fused vs {what}", "model_a": best_fused,
                          "model_b": other, "auc_a": t.auc_a, "auc_b": t.auc_b,
                          "diff": t.diff, "ci_low": t.ci_low, "ci_high": t.ci_high,
                          "z": t.z, "p": t.p})
    tables["comparisons"] = pd.DataFrame(pairs)
    return PaperTables(tables=tables, results=results, scores=scores, labels=eval_y,
                       scheme=scheme, notes=notes)
