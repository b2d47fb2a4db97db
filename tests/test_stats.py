"""Tests of gliorad.stats.

(a) agreement with R 4.2 reference values (tests/reference/stats/expected.json, written by
    tests/reference/make_stats_reference.R from the committed CSV fixtures; R is not needed at
    test time except for the reproduction test),
(b) mathematical properties,
(c) input shapes, edge cases and input errors.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gliorad import stats as S
from gliorad.errors import GlioradInputError
from gliorad.stats import cohort as stats_cohort
from gliorad.stats import common as stats_common
from gliorad.stats import concordance as stats_concordance
from gliorad.stats import fisher as stats_fisher

REF_DIR = Path(__file__).parent / "reference" / "stats"
R_SCRIPT = Path(__file__).parent / "reference" / "make_stats_reference.R"
EXPECTED = json.loads((REF_DIR / "expected.json").read_text(encoding="utf-8"))


@functools.cache
def fixture(name: str) -> pd.DataFrame:
    return pd.read_csv(REF_DIR / f"{name}.csv")


def _ids(cases: list[dict], *keys: str) -> list[str]:
    return ["-".join(str(c[k]) for k in keys) for c in cases]


# ==============================================================================================
# (a) Reference values from R
# ==============================================================================================


@pytest.mark.parametrize("ref", EXPECTED["auc"], ids=_ids(EXPECTED["auc"], "dataset", "score"))
def test_roc_auc_ci_matches_pROC(ref):
    d = fixture(ref["dataset"])
    res = S.roc_auc_ci(d["y"], d[ref["score"]])
    # r <- roc(d$y, d[[score]], direction = "<", levels = c(0, 1)); auc(r)
    assert res.auc == pytest.approx(ref["auc"], abs=1e-6)
    # sqrt(var(r, method = "delong"))
    assert res.se == pytest.approx(ref["se"], abs=1e-6)
    # ci.auc(r, method = "delong")[c(1, 3)]
    assert res.ci_low == pytest.approx(ref["ci_low"], abs=1e-6)
    assert res.ci_high == pytest.approx(ref["ci_high"], abs=1e-6)
    # length(r$cases), length(r$controls)
    assert (res.n_pos, res.n_neg) == (ref["n_pos"], ref["n_neg"])
    assert S.roc_auc(d["y"], d[ref["score"]]) == pytest.approx(ref["auc"], abs=1e-12)


@pytest.mark.parametrize(
    "ref", EXPECTED["delong"], ids=_ids(EXPECTED["delong"], "dataset", "score_a", "score_b")
)
def test_delong_test_matches_roc_test(ref):
    d = fixture(ref["dataset"])
    res = S.delong_test(d["y"], d[ref["score_a"]], d[ref["score_b"]])
    # t <- roc.test(roc(d$y, d[[a]], direction = "<", levels = c(0, 1)),
    #               roc(d$y, d[[b]], direction = "<", levels = c(0, 1)),
    #               method = "delong", paired = TRUE)
    assert res.auc_a == pytest.approx(ref["auc_a"], abs=1e-6)  # t$estimate[1]
    assert res.auc_b == pytest.approx(ref["auc_b"], abs=1e-6)  # t$estimate[2]
    assert res.z == pytest.approx(ref["z"], abs=1e-6)  # t$statistic
    assert res.p == pytest.approx(ref["p"], abs=1e-6)  # t$p.value
    assert res.ci_low == pytest.approx(ref["ci_low"], abs=1e-6)  # t$conf.int[1]
    assert res.ci_high == pytest.approx(ref["ci_high"], abs=1e-6)  # t$conf.int[2]
    assert res.diff == pytest.approx(ref["auc_a"] - ref["auc_b"], abs=1e-6)


@pytest.mark.parametrize(
    "ref", EXPECTED["coords"], ids=_ids(EXPECTED["coords"], "dataset", "score", "threshold")
)
def test_threshold_metrics_match_pROC_coords(ref):
    d = fixture(ref["dataset"])
    res = S.threshold_metrics(d["y"], d[ref["score"]], threshold=ref["threshold"])
    # coords(roc(d$y, d[[score]], direction = "<", levels = c(0, 1)), x = threshold,
    #        input = "threshold", ret = c("tp", "fp", "tn", "fn", "sensitivity",
    #        "specificity", "accuracy", "ppv", "npv"))
    assert (res.tp, res.fp, res.tn, res.fn) == (ref["tp"], ref["fp"], ref["tn"], ref["fn"])
    for ours, theirs in [("sensitivity", "sensitivity"), ("specificity", "specificity"),
                         ("accuracy", "accuracy"), ("precision", "ppv"), ("npv", "npv")]:
        assert getattr(res, ours) == pytest.approx(ref[theirs], abs=1e-12), ours
    assert res.f1 == pytest.approx(2 * res.tp / (2 * res.tp + res.fp + res.fn))
    assert res.notes == ()


def _complete(d: pd.DataFrame, *columns: str) -> pd.DataFrame:
    return d.dropna(subset=["time", "event", *columns])


@pytest.mark.parametrize(
    "ref", EXPECTED["concordance"], ids=_ids(EXPECTED["concordance"], "dataset", "risk")
)
def test_concordance_matches_survival(ref):
    d = _complete(fixture(ref["dataset"]), ref["risk"])
    res = S.concordance_ci(d["time"], d["event"], d[ref["risk"]])
    # f <- concordance(Surv(time, event) ~ risk, data = d, reverse = TRUE)
    assert res.c_index == pytest.approx(ref["concordance"], abs=1e-6)  # f$concordance
    assert res.se == pytest.approx(math.sqrt(ref["var"]), abs=1e-4)  # sqrt(f$var)
    assert res.se**2 == pytest.approx(ref["var"], rel=1e-9)  # f$var (exact IJ, tighter)
    # f$count (concordant / discordant / tied.x / tied.y + tied.xy)
    assert (res.concordant, res.discordant, res.tied_risk) == (
        ref["concordant"], ref["discordant"], ref["tied.x"])
    assert res.tied_time == ref["tied.y"] + ref["tied.xy"]
    assert res.n == ref["n"]  # f$n
    assert S.concordance_index(d["time"], d["event"], d[ref["risk"]]) == res.c_index


@pytest.mark.parametrize(
    "ref", EXPECTED["compare_concordance"],
    ids=_ids(EXPECTED["compare_concordance"], "dataset", "risk_a", "risk_b"),
)
def test_compare_concordance_matches_joint_ij(ref):
    d = _complete(fixture(ref["dataset"]), ref["risk_a"], ref["risk_b"])
    res = S.compare_concordance(d["time"], d["event"], d[ref["risk_a"]], d[ref["risk_b"]])
    # fix1 <- function(x) coxph(Surv(time, event) ~ x, init = 1, iter.max = 0)
    # j <- concordance(fix1(d[[a]]), fix1(d[[b]]))    # == crossprod of the two fits' dfbeta
    assert res.c_a == pytest.approx(ref["c_a"], abs=1e-6)  # j$concordance[1]
    assert res.c_b == pytest.approx(ref["c_b"], abs=1e-6)  # j$concordance[2]
    assert res.diff == pytest.approx(ref["diff"], abs=1e-6)  # c(1, -1) %*% j$concordance
    # sqrt(c(1, -1) %*% j$var %*% c(1, -1))
    assert res.se_diff == pytest.approx(ref["se_diff"], abs=1e-4)
    assert res.se_diff == pytest.approx(ref["se_diff"], rel=1e-9)
    assert res.z == pytest.approx(ref["z"], abs=1e-6)  # diff / se
    assert res.p == pytest.approx(ref["p"], abs=1e-6)  # 2 * pnorm(-abs(z))


@pytest.mark.parametrize("kind", S.ICC_KINDS)
@pytest.mark.parametrize("dataset", ["icc1", "icc2"])
def test_icc_matches_psych(dataset, kind):
    table = S.icc(fixture(f"{dataset}_a"), fixture(f"{dataset}_b"), kind=kind)
    refs = [r for r in EXPECTED["icc"] if r["dataset"] == dataset and r["kind"] == kind]
    assert list(table.index) == [r["feature"] for r in refs]
    for ref in refs:
        row = table.loc[ref["feature"]]
        # ICC(cbind(a[[f]], b[[f]]), lmer = FALSE, alpha = 0.05)$results[
        #   "Single_random_raters" (ICC(2,1)) | "Single_fixed_raters" (ICC(3,1)), ]
        assert row["icc"] == pytest.approx(ref["icc"], abs=1e-6)  # $ICC
        assert row["ci_low"] == pytest.approx(ref["ci_low"], abs=1e-6)  # $`lower bound`
        assert row["ci_high"] == pytest.approx(ref["ci_high"], abs=1e-6)  # $`upper bound`
        assert row["F"] == pytest.approx(ref["F"], rel=1e-9)  # $F
        assert row["p"] == pytest.approx(ref["p"], rel=1e-6, abs=1e-12)  # $p
        assert row["note"] == ""


COHORT_GROUPS = {"asah": "outcome", "lung": "sex", "roc_synth": "y"}


@pytest.mark.parametrize(
    "ref", EXPECTED["cohort"], ids=_ids(EXPECTED["cohort"], "dataset", "variable")
)
def test_cohort_table_matches_R(ref):
    d = fixture(ref["dataset"])
    group = COHORT_GROUPS[ref["dataset"]]
    kind = ref["kind"]
    table = S.cohort_table(d, group, **{kind: [ref["variable"]]})
    head = table.iloc[0]
    if kind == "continuous":
        # wilcox.test(d[[v]] ~ factor(d[[group]]), exact = FALSE, correct = TRUE)$p.value
        assert head["p"] == pytest.approx(ref["p"], rel=1e-6, abs=1e-12)
        assert head["test"] == S.MANN_WHITNEY
        for g, (q1, med, q3) in ref["quartiles"].items():
            # quantile(x[g == level], c(0.25, 0.5, 0.75))   (type 7)
            assert head[g] == f"{med:.1f} ({q1:.1f}\u2013{q3:.1f})"
    else:
        # tab <- table(d[[v]], d[[group]]); if any(chisq.test(tab)$expected < 5)
        #   fisher.test(tab)$p.value else chisq.test(tab)$p.value
        assert head["p"] == pytest.approx(ref["p"], rel=1e-6, abs=1e-12)
        assert head["test"].startswith({"fisher": "Fisher exact", "chisq": "chi-square"}[
            ref["test"]])
        levels = table.iloc[1:]
        for g, counts in ref["counts"].items():
            ours = {lev: int(cell.split(" ")[0]) for lev, cell in zip(levels["level"], levels[g])}
            assert ours == {k: v for k, v in counts.items() if v or k in ours}


@pytest.mark.needs_r
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not installed")
def test_reference_script_reproduces_committed_json(tmp_path):
    probe = subprocess.run(
        ["Rscript", "-e", "library(pROC); library(survival); library(psych); library(jsonlite)"],
        check=False, capture_output=True, encoding="utf-8", errors="replace", timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"R packages missing: {probe.stderr.strip()[-200:]}")
    subprocess.run(["Rscript", str(R_SCRIPT), str(tmp_path)], check=True, capture_output=True,
                   timeout=300)
    fresh = json.loads((tmp_path / "expected.json").read_text(encoding="utf-8"))
    _assert_json_close(fresh, EXPECTED)


def _assert_json_close(a, b, path="$"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            _assert_json_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_json_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float | int) and not isinstance(a, bool):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-15), path
    else:
        assert a == b, path


# ==============================================================================================
# (b) Properties
# ==============================================================================================


def _synthetic_roc(n=120, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    a = y + rng.normal(size=n)
    b = np.round(0.5 * y + rng.normal(size=n), 1)
    return y.astype(int), a, b


def _synthetic_surv(n=150, seed=2, ties=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(10 * np.exp(-x))
    c = rng.uniform(0, 25, size=n)
    time = np.minimum(t, c)
    if ties:
        time = np.ceil(time)
    return time, (t <= c).astype(int), x


def test_delong_test_is_antisymmetric():
    y, a, b = _synthetic_roc()
    ab, ba = S.delong_test(y, a, b), S.delong_test(y, b, a)
    assert ba.p == pytest.approx(ab.p, abs=1e-15)
    assert ba.diff == pytest.approx(-ab.diff, abs=1e-15)
    assert ba.z == pytest.approx(-ab.z, abs=1e-12)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low), abs=1e-12)


def test_delong_test_of_a_score_with_itself_is_null():
    y, a, _ = _synthetic_roc()
    res = S.delong_test(y, a, a)
    assert (res.diff, res.se_diff, res.z, res.p) == (0.0, 0.0, 0.0, 1.0)


def test_delong_variance_equals_bruteforce_placements():
    y, a, _ = _synthetic_roc(n=60, seed=5)
    a = np.round(a, 1)  # ties
    pos, neg = a[y == 1], a[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    res = S.roc_auc_ci(y, a)
    assert res.auc == pytest.approx(auc, abs=1e-14)
    assert res.se == pytest.approx(math.sqrt(var), rel=1e-12)


def test_perfect_separation_gives_auc_one():
    y = [0, 0, 0, 1, 1, 1]
    res = S.roc_auc_ci(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert (res.auc, res.se, res.ci_low, res.ci_high) == (1.0, 0.0, 1.0, 1.0)
    assert S.roc_auc_ci(y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]).auc == 0.0  # never flipped


def test_c_index_of_negated_risk_is_one_minus_c():
    time, event, risk = _synthetic_surv(ties=False)
    c = S.concordance_ci(time, event, risk)
    c_neg = S.concordance_ci(time, event, -risk)
    assert c_neg.c_index == pytest.approx(1 - c.c_index, abs=1e-14)
    assert c_neg.se == pytest.approx(c.se, rel=1e-12)


def test_perfect_risk_gives_c_index_one():
    time, event, _ = _synthetic_surv(ties=False)
    assert S.concordance_index(time, event, -time) == 1.0
    assert S.concordance_index(time, event, time) == 0.0


def _naive_pairs(time, event, risk):
    """O(n^2) reference of survival's comparable-pair rules (higher risk = shorter)."""
    n = len(time)
    conc = np.zeros(n, int)
    disc = np.zeros(n, int)
    tied = np.zeros(n, int)
    for i, j in itertools.permutations(range(n), 2):
        if not event[i]:
            continue
        if time[j] > time[i] or (time[j] == time[i] and not event[j]):
            kind = conc if risk[i] > risk[j] else disc if risk[i] < risk[j] else tied
            kind[i] += 1
            kind[j] += 1
    return conc, disc, tied


@pytest.mark.parametrize("seed", range(5))
def test_pair_counts_equal_bruteforce(seed):
    rng = np.random.default_rng(seed)
    n = 40
    time = rng.integers(1, 8, size=n).astype(float)
    event = rng.random(n) < 0.6
    risk = rng.integers(0, 5, size=n).astype(float)
    counts = stats_concordance._pair_counts(time, event, risk)
    conc, disc, tied = _naive_pairs(time, event, risk)
    np.testing.assert_array_equal(counts.concordant, conc)
    np.testing.assert_array_equal(counts.discordant, disc)
    np.testing.assert_array_equal(counts.tied_risk, tied)


def test_compare_concordance_is_antisymmetric_and_null_for_same_risk():
    time, event, a = _synthetic_surv()
    b = np.round(a + np.random.default_rng(3).normal(size=a.size), 0)
    ab, ba = S.compare_concordance(time, event, a, b), S.compare_concordance(time, event, b, a)
    assert ba.diff == pytest.approx(-ab.diff) and ba.p == pytest.approx(ab.p)
    same = S.compare_concordance(time, event, a, a)
    assert (same.diff, same.se_diff, same.z, same.p) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_is_reproducible_with_the_same_seed():
    y, a, _ = _synthetic_roc()
    r1 = S.bootstrap_ci(S.roc_auc, y, a, n_boot=200, seed=7, stratify=y)
    r2 = S.bootstrap_ci(S.roc_auc, y, a, n_boot=200, seed=7, stratify=y)
    r3 = S.bootstrap_ci(S.roc_auc, y, a, n_boot=200, seed=8, stratify=y)
    np.testing.assert_array_equal(r1.distribution, r2.distribution)
    assert r1.ci == r2.ci
    assert not np.array_equal(r1.distribution, r3.distribution)
    assert r1.estimate == S.roc_auc(y, a)
    assert r1.ci == tuple(np.quantile(r1.distribution, [0.025, 0.975]))
    assert r1.ci_low < r1.estimate < r1.ci_high


def test_stratified_bootstrap_keeps_class_sizes():
    y = np.array([0] * 30 + [1] * 5)
    x = np.arange(35.0)
    res = S.bootstrap_ci(lambda yy, xx: float(np.sum(yy)), y, x, n_boot=50, stratify=y)
    assert set(res.distribution) == {5.0}
    assert res.stratified and res.method == "percentile"


@pytest.mark.parametrize("kind", S.ICC_KINDS)
def test_icc_of_identical_tables_is_one(kind):
    a = fixture("icc1_a")
    table = S.icc(a, a.copy(), kind=kind)
    assert (table["icc"] == 1.0).all()
    np.testing.assert_allclose(table[["ci_low", "ci_high"]].to_numpy(), 1.0, rtol=1e-14)
    assert (table["p"] == 0.0).all() and np.isinf(table["F"]).all()
    assert table["note"].str.startswith("zero residual variance").all()


def test_icc3_ignores_a_rater_offset_but_icc2_does_not():
    rng = np.random.default_rng(0)
    a = rng.normal(10, 3, size=30)
    assert S.icc_single(a, a + 2.0, kind="ICC(3,1)").icc == pytest.approx(1.0)
    assert S.icc_single(a, a + 2.0, kind="ICC(2,1)").icc < 0.9


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.32])
def test_intervals_follow_alpha(alpha):
    """Every interval is at the level asked for (the R references are all at alpha = 0.05):
    Wald intervals are ``estimate -/+ z_{1-alpha/2} * se``, the bootstrap's are the
    ``alpha/2`` and ``1 - alpha/2`` quantiles, and the ICC's narrow as alpha grows."""
    z = sps.norm.ppf(1 - alpha / 2)
    assert stats_common.wald_ci(0.5, 0.1, alpha) == pytest.approx((0.5 - 0.1 * z, 0.5 + 0.1 * z))
    y, a, b = _synthetic_roc()
    auc = S.roc_auc_ci(y, a, alpha=alpha)
    assert 0 < auc.ci_low and auc.ci_high < 1  # not clipped
    assert (auc.ci_low, auc.ci_high) == pytest.approx((auc.auc - z * auc.se, auc.auc + z * auc.se))
    d = S.delong_test(y, a, b, alpha=alpha)
    assert (d.ci_low, d.ci_high) == pytest.approx((d.diff - z * d.se_diff, d.diff + z * d.se_diff))
    time, event, risk = _synthetic_surv()
    other = risk + np.random.default_rng(3).normal(size=risk.size)
    c = S.concordance_ci(time, event, risk, alpha=alpha)
    assert 0 < c.ci_low and c.ci_high < 1
    assert (c.ci_low, c.ci_high) == pytest.approx((c.c_index - z * c.se, c.c_index + z * c.se))
    cc = S.compare_concordance(time, event, risk, other, alpha=alpha)
    assert (cc.ci_low, cc.ci_high) == pytest.approx(
        (cc.diff - z * cc.se_diff, cc.diff + z * cc.se_diff))
    boot = S.bootstrap_ci(S.roc_auc, y, a, n_boot=50, alpha=alpha, stratify=y)
    assert (boot.ci_low, boot.ci_high) == pytest.approx(
        tuple(np.quantile(boot.distribution, [alpha / 2, 1 - alpha / 2])))
    rng = np.random.default_rng(4)
    ta = rng.normal(size=(30, 3))
    tb = ta + rng.normal(scale=0.5, size=ta.shape)
    for kind in S.ICC_KINDS:
        wide = S.icc(ta, tb, kind=kind, alpha=alpha / 2)
        narrow = S.icc(ta, tb, kind=kind, alpha=alpha)
        assert (wide["ci_low"] < narrow["ci_low"]).all() and (
            wide["ci_high"] > narrow["ci_high"]).all(), kind


#: qnorm(1 - alpha / 2) in R 4.2:
#:   Rscript -e 'cat(sprintf("%.17g", qnorm(1 - c(0.01, 0.05, 0.1, 0.32) / 2)), sep = "\n")'
R_QNORM = {0.01: 2.5758293035488999, 0.05: 1.9599639845400536, 0.10: 1.6448536269514715,
           0.32: 0.99445788320975281}


def test_wald_interval_widths_follow_R_qnorm():
    """Every Wald interval is ``estimate -/+ qnorm(1 - alpha/2) * se``, as R's
    ``confint.default(fit, level = 1 - alpha)`` and ``pROC::ci.auc(r, conf.level = 1 - alpha,
    method = "delong")``: its width changes with alpha exactly as the normal quantile,
    ``width(alpha) / width(0.05) = qnorm(1 - alpha/2) / qnorm(0.975)``. (Issue 17: an interval
    that ignored alpha passed every test, the R references being at alpha = 0.05.)"""
    y, a, b = _synthetic_roc()
    time, event, risk = _synthetic_surv()
    other = risk + np.random.default_rng(3).normal(size=risk.size)

    def intervals(alpha):  # name -> (ci_low, ci_high, se)
        auc = S.roc_auc_ci(y, a, alpha=alpha)
        d = S.delong_test(y, a, b, alpha=alpha)
        c = S.concordance_ci(time, event, risk, alpha=alpha)
        cc = S.compare_concordance(time, event, risk, other, alpha=alpha)
        return {"roc_auc_ci": (auc.ci_low, auc.ci_high, auc.se),
                "delong_test": (d.ci_low, d.ci_high, d.se_diff),
                "concordance_ci": (c.ci_low, c.ci_high, c.se),
                "compare_concordance": (cc.ci_low, cc.ci_high, cc.se_diff)}

    at05 = intervals(0.05)
    for alpha, q in R_QNORM.items():
        for name, (low, high, se) in intervals(alpha).items():
            assert se > 0 and (high - low) / (2 * se) == pytest.approx(q, rel=1e-12), (name, alpha)
            low05, high05, _ = at05[name]
            assert (high - low) / (high05 - low05) == pytest.approx(q / R_QNORM[0.05], rel=1e-12)
    assert at05["roc_auc_ci"][0] > 0 and intervals(0.01)["roc_auc_ci"][1] < 1  # never clipped


def test_fisher_rx2_equals_scipy_for_2x2():
    for table in ([[8, 2], [1, 5]], [[3, 3], [3, 3]], [[0, 5], [7, 1]], [[12, 1], [9, 4]]):
        assert S.fisher_exact_rx2(table) == pytest.approx(sps.fisher_exact(table).pvalue,
                                                          rel=1e-10)


# ==============================================================================================
# (c) Shapes and edge cases
# ==============================================================================================


def test_lists_numpy_and_pandas_inputs_agree():
    y, a, b = _synthetic_roc()
    as_np = S.delong_test(y, a, b)
    assert S.delong_test(y.tolist(), a.tolist(), b.tolist()) == as_np
    assert S.delong_test(pd.Series(y, index=np.arange(y.size)[::-1]), pd.Series(a),
                         pd.Series(b)) == as_np
    assert S.delong_test(y.astype(bool), a, b) == as_np
    time, event, risk = _synthetic_surv()
    ref = S.concordance_ci(time, event, risk)
    assert S.concordance_ci(time.tolist(), event.tolist(), risk.tolist()) == ref
    assert S.concordance_ci(pd.Series(time), pd.Series(event.astype(bool)),
                            pd.Series(risk)) == ref


def test_icc_accepts_arrays_and_aligns_dataframes():
    a, b = fixture("icc1_a"), fixture("icc1_b")
    from_frames = S.icc(a, b)
    from_arrays = S.icc(a.to_numpy(), b.to_numpy())
    np.testing.assert_allclose(from_arrays[["icc", "ci_low", "ci_high"]].to_numpy(),
                               from_frames[["icc", "ci_low", "ci_high"]].to_numpy())
    shuffled = b.iloc[::-1, ::-1]  # same labels, other order
    pd.testing.assert_frame_equal(S.icc(a, shuffled), from_frames)
    single = S.icc_single(a["f3"], b["f3"], kind="ICC(2,1)")
    assert single.icc == pytest.approx(from_frames.loc["f3", "icc"])
    assert list(from_frames.columns) == ["icc", "ci_low", "ci_high", "F", "p", "note"]


def test_icc_zero_variance_feature_is_nan_with_note():
    a = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "const": [0.1] * 4})
    b = pd.DataFrame({"x": [1.1, 2.2, 2.9, 4.3], "const": [0.1] * 4})
    table = S.icc(a, b)
    assert np.isnan(table.loc["const", ["icc", "ci_low", "ci_high", "F", "p"]].astype(float)).all()
    assert table.loc["const", "note"].startswith("zero variance")
    assert table.loc["x", "note"] == "" and 0.9 < table.loc["x", "icc"] <= 1


def test_icc_feature_constant_within_each_table_is_nan_with_note():
    table = S.icc([[1.0], [1.0], [1.0]], [[2.0], [2.0], [2.0]], kind="ICC(3,1)")
    assert math.isnan(table.iloc[0]["icc"])
    assert table.iloc[0]["note"].startswith("zero variance")


def test_two_per_class_hand_computed():
    # positives 0.35, 0.8; negatives 0.1, 0.4 -> placements (0.5, 1) and (1, 0.5)
    res = S.roc_auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert res.auc == 0.75
    assert res.se == pytest.approx(math.sqrt(0.125 / 2 + 0.125 / 2))
    assert res.ci_high == 1.0  # clipped like pROC
    assert res.ci_low == pytest.approx(0.75 - sps.norm.ppf(0.975) * res.se)
    test = S.delong_test([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.4, 0.1, 0.8, 0.35])
    assert 0 <= test.p <= 1


def test_ties_everywhere():
    y = [0, 1, 0, 1, 0, 1]
    flat = [1.0] * 6
    res = S.roc_auc_ci(y, flat)
    assert (res.auc, res.se, res.ci_low, res.ci_high) == (0.5, 0.0, 0.5, 0.5)
    assert S.delong_test(y, flat, flat).p == 1.0
    time = [1, 2, 2, 3, 3, 4]
    event = [1, 1, 0, 1, 1, 0]
    c = S.concordance_ci(time, event, flat)
    assert c.c_index == 0.5 and c.concordant == c.discordant == 0
    assert c.tied_time == 1  # the two events at time 3


def test_event_and_censoring_at_the_same_time_are_comparable():
    # event at t=2 vs censored at t=2: the event is the shorter one
    c = S.concordance_ci([2, 2], [1, 0], [5.0, 1.0])
    assert (c.c_index, c.concordant, c.tied_time) == (1.0, 1, 0)


def test_threshold_metrics_explain_undefined_rates():
    res = S.threshold_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert (res.tp, res.fp, res.tn, res.fn) == (0, 0, 2, 2)
    assert math.isnan(res.precision) and res.sensitivity == 0.0 and res.recall == 0.0
    assert any(n.startswith("precision undefined") for n in res.notes)
    at = S.threshold_metrics([0, 1], [0.5, 0.5], threshold=0.5)  # score >= threshold
    assert (at.tp, at.fp) == (1, 1)


def test_cohort_table_layout_missing_values_and_categoricals():
    df = pd.DataFrame({
        "grade": ["LGG"] * 6 + ["HGG"] * 6,
        "age": [30, 35, np.nan, 40, 41, 50, 60, 61, 65, 70, 72, 80],
        "sex": pd.Categorical(["F", "M"] * 6, categories=["M", "F", "unused"]),
        "site": ["a"] * 12,
    })
    table = S.cohort_table(df, "grade", continuous=["age"], categorical=["sex", "site"])
    assert list(table.columns) == ["variable", "level", "statistic", "HGG", "LGG", "n_missing",
                                   "p", "test"]
    age = table.iloc[0]
    assert age["n_missing"] == 1 and age["LGG"] == "40.0 (35.0\u201341.0)"
    sex = table[table["variable"] == "sex"]
    assert list(sex["level"]) == ["", "M", "F"]  # categorical order, unused level dropped
    assert sex.iloc[0]["test"] == S.FISHER and sex.iloc[1:]["p"].isna().all()
    assert list(sex.iloc[1:]["LGG"]) == ["3 (50.0%)", "3 (50.0%)"]
    site = table[table["variable"] == "site"].iloc[0]
    assert math.isnan(site["p"]) and site["test"] == "not tested: only one level"


def test_cohort_table_untestable_continuous_and_mixed_levels():
    df = pd.DataFrame({"g": [0, 0, 1, 1], "x": [2.0] * 4, "c": [1, "a", 1, "a"]})
    table = S.cohort_table(df, "g", continuous=["x"], categorical=["c"])
    assert math.isnan(table.iloc[0]["p"]) and table.iloc[0]["test"] == (
        "not tested: all values identical")
    assert list(table["level"].iloc[2:]) == ["1", "a"]


def test_fisher_falls_back_to_seeded_monte_carlo_when_too_large(monkeypatch):
    table = np.array([[30, 25], [45, 43], [24, 26], [3, 0]])
    exact = S.fisher_exact_rx2(table)
    monkeypatch.setattr(stats_fisher, "FISHER_MAX_TABLES", 10)
    with pytest.raises(GlioradInputError, match=r"more than the exact Fisher test's limit"):
        S.fisher_exact_rx2(table)
    p, test = stats_cohort._categorical_test(table)
    assert test == S.FISHER_MC and p == pytest.approx(exact, abs=0.01)
    assert stats_cohort._categorical_test(table) == (p, test)  # seeded


# ==============================================================================================
# (c) Input errors
# ==============================================================================================


def test_mismatched_lengths_raise():
    with pytest.raises(GlioradInputError, match=r"y has 4 values but score has 3"):
        S.roc_auc_ci([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"y has 4 values but score_b has 5"):
        S.delong_test([0, 1, 0, 1], [1, 2, 3, 4], [1, 2, 3, 4, 5])
    with pytest.raises(GlioradInputError, match=r"time has 3 values but risk has 2"):
        S.concordance_ci([1, 2, 3], [1, 0, 1], [0.1, 0.2])
    with pytest.raises(GlioradInputError, match=r"arrays\[0\] has 3 values but arrays\[1\] has 2"):
        S.bootstrap_ci(S.roc_auc, [0, 1, 1], [0.1, 0.2])
    with pytest.raises(GlioradInputError, match=r"table_a has shape \(3, 2\) but table_b has"):
        S.icc(np.ones((3, 2)), np.ones((4, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad):
    with pytest.raises(GlioradInputError, match=r"score has 1 non-finite value\(s\) \(first at "
                                                r"position 2: .*\); expected finite numbers"):
        S.roc_auc_ci([0, 1, 0, 1], [0.1, 0.2, bad, 0.4])
    with pytest.raises(GlioradInputError, match=r"time has 1 non-finite value"):
        S.concordance_ci([1.0, bad, 3.0], [1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"table_b has 1 non-finite value.*row 1, column 0"):
        S.icc([[1.0], [2.0], [3.0]], [[1.0], [bad], [3.0]])


def test_label_errors_raise():
    with pytest.raises(GlioradInputError, match=r"y has a single class \(all 4 labels are 1\)"):
        S.roc_auc_ci([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(GlioradInputError, match=r"y has a single class \(all 3 labels are 0\)"):
        S.roc_auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"y has value 2 at position 1; expected only 0/1"):
        S.roc_auc_ci([0, 2, 1, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(GlioradInputError, match=r"1 positive\(s\) and 3 negative\(s\).*at least 2"):
        S.roc_auc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(GlioradInputError, match=r"y is not numeric"):
        S.roc_auc_ci(["a", "b"], [0.1, 0.2])


def test_survival_errors_raise():
    with pytest.raises(GlioradInputError, match=r"event is all censored \(0 events among 3"):
        S.concordance_ci([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"time has 1 negative value\(s\) \(first at "
                                                r"position 1: -2\); expected times >= 0"):
        S.concordance_index([1, -2, 3], [1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"event has value 2 at position 0"):
        S.compare_concordance([1, 2], [2, 0], [0.1, 0.2], [0.2, 0.1])
    with pytest.raises(GlioradInputError, match=r"no comparable pairs"):
        S.concordance_ci([5, 5, 5], [1, 1, 1], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, "x"])
def test_alpha_outside_unit_interval_raises(alpha):
    y, a, b = _synthetic_roc(n=30)
    with pytest.raises(GlioradInputError, match=r"alpha .* (outside \(0, 1\)|not a number)"):
        S.roc_auc_ci(y, a, alpha=alpha)
    with pytest.raises(GlioradInputError, match=r"alpha"):
        S.delong_test(y, a, b, alpha=alpha)
    with pytest.raises(GlioradInputError, match=r"alpha"):
        S.concordance_ci([1, 2, 3], [1, 1, 0], [3, 2, 1], alpha=alpha)
    with pytest.raises(GlioradInputError, match=r"alpha"):
        S.icc([[1, 2], [3, 5]], [[1, 2], [3, 4]], alpha=alpha)
    with pytest.raises(GlioradInputError, match=r"alpha"):
        S.bootstrap_ci(np.mean, a, alpha=alpha)


def test_bootstrap_failures_are_errors_not_nan():
    y = np.array([0] * 9 + [1])
    s = np.linspace(0, 1, 10)
    with pytest.raises(GlioradInputError, match=r"bootstrap resample \d+ \(pass stratify=<class "
                                                r"labels>.*single class"):
        S.bootstrap_ci(S.roc_auc, y, s, n_boot=200)
    res = S.bootstrap_ci(S.roc_auc, y, s, n_boot=200, stratify=y)
    assert np.isfinite(res.distribution).all()
    with pytest.raises(GlioradInputError, match=r"metric returned nan on the full data"):
        S.bootstrap_ci(lambda x: float("nan"), s)
    with pytest.raises(GlioradInputError, match=r"n_boot 0 is not a positive integer"):
        S.bootstrap_ci(np.mean, s, n_boot=0)
    with pytest.raises(GlioradInputError, match=r"arrays\[0\] has 10 values but stratify has 3"):
        S.bootstrap_ci(np.mean, s, stratify=[0, 1, 0])


def test_icc_errors_raise():
    with pytest.raises(GlioradInputError, match=r"kind 'ICC\(1,1\)' is not valid; expected one "
                                                r"of: ICC\(2,1\), ICC\(3,1\)"):
        S.icc([[1], [2]], [[1], [2]], kind="ICC(1,1)")
    a = pd.DataFrame({"f1": [1.0, 2.0, 3.0]})
    with pytest.raises(GlioradInputError, match=r"differ in their columns \(e.g. \['f1', 'f2'\]"):
        S.icc(a, pd.DataFrame({"f2": [1.0, 2.0, 3.0]}))
    with pytest.raises(GlioradInputError, match=r"differ in their rows"):
        S.icc(a, a.set_axis([5, 6, 7]))
    with pytest.raises(GlioradInputError, match=r"table_a has 1 row\(s\); the ICC needs at least 2"):
        S.icc([[1.0]], [[2.0]])


def test_cohort_table_errors_raise():
    df = pd.DataFrame({"g": ["a", "b", "c", "a"], "x": [1, 2, 3, "oops"], "y": [1, 2, 3, 4]})
    with pytest.raises(GlioradInputError, match=r"group_col 'g' has 3 group\(s\).*expected "
                                                r"exactly 2"):
        S.cohort_table(df, "g", continuous=["y"])
    with pytest.raises(GlioradInputError, match=r"column\(s\) \['nope'\] not in the table"):
        S.cohort_table(df, "g", continuous=["nope"])
    two = df[df["g"] != "c"]
    with pytest.raises(GlioradInputError, match=r"continuous column 'x' row 3: 'oops' is not a "
                                                r"number"):
        S.cohort_table(two, "g", continuous=["x"])
    with pytest.raises(GlioradInputError, match=r"group_col 'g' has 1 missing value"):
        S.cohort_table(two.assign(g=["a", None, "b"]), "g", continuous=["y"])
