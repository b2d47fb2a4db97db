#!/usr/bin/env Rscript
# Reference values for src/gliorad/stats/, computed with R (>= 4.2) and the packages
# pROC, survival, psych (ICC with lmer = FALSE, so lme4 is not needed) and jsonlite.
#
# Usage (from the repository root):
#   Rscript tests/reference/make_stats_reference.R                   # -> tests/reference/stats/expected.json
#   Rscript tests/reference/make_stats_reference.R OUT_DIR           # -> OUT_DIR/expected.json
#   Rscript tests/reference/make_stats_reference.R --write-fixtures  # (re)write the input CSVs too
#
# Input CSVs (tests/reference/stats/*.csv) are committed; --write-fixtures regenerates them from
# public R data sets (pROC::aSAH, survival::lung) and seeded synthetic data, so they are
# reproducible. tests/test_stats.py reads expected.json; R is not needed to run the tests.

suppressPackageStartupMessages({
  library(pROC)
  library(survival)
  library(psych)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
fixture_dir <- file.path(dirname(normalizePath(script)), "stats")
write_fixtures <- "--write-fixtures" %in% args
args <- setdiff(args, "--write-fixtures")
out_dir <- if (length(args) >= 1) args[[1]] else fixture_dir
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

fixture <- function(name) file.path(fixture_dir, name)
write_csv <- function(df, name) write.csv(df, fixture(name), row.names = FALSE, quote = TRUE)

# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------
make_fixtures <- function() {
  data(aSAH, package = "pROC", envir = environment())
  write_csv(data.frame(
    y = as.integer(aSAH$outcome == "Poor"), outcome = as.character(aSAH$outcome),
    gender = as.character(aSAH$gender), age = aSAH$age,
    wfns = as.integer(as.character(aSAH$wfns)), s100b = aSAH$s100b, ndka = aSAH$ndka
  ), "asah.csv")

  lung <- survival::lung
  write_csv(data.frame(
    time = lung$time, event = as.integer(lung$status == 2), age = lung$age,
    sex = ifelse(lung$sex == 1, "male", "female"), ph.ecog = lung$ph.ecog,
    ph.karno = lung$ph.karno, wt.loss = lung$wt.loss
  ), "lung.csv")

  set.seed(20240501)
  n <- 250
  y <- rbinom(n, 1, 0.35)
  latent <- 0.9 * y + rnorm(n)
  write_csv(data.frame(
    y = y,
    score_a = round(latent, 6),
    score_b = round(0.6 * latent + rnorm(n, sd = 0.8), 1),    # many ties
    score_c = findInterval(latent + rnorm(n, sd = 0.5), c(-1, 0, 1, 2)),  # 5 levels
    age = round(rnorm(n, 55 + 5 * y, 12)),
    site = sample(c("A", "B", "C"), n, replace = TRUE, prob = c(0.5, 0.3, 0.2)),
    grade = sample(c("II", "III", "IV"), n, replace = TRUE, prob = c(0.85, 0.12, 0.03)),
    rare = rbinom(n, 1, 0.01 + 0.06 * y)   # 2 x 2 table with expected counts < 5: Fisher
  ), "roc_synth.csv")

  set.seed(20240502)
  n <- 400
  x <- rnorm(n)
  t_event <- rexp(n, rate = 0.05 * exp(0.7 * x))
  t_cens <- runif(n, 0, 40)
  write_csv(data.frame(
    time = ceiling(pmin(t_event, t_cens)),   # integer times: many ties, event vs censored too
    event = as.integer(t_event <= t_cens),
    risk_a = round(x + rnorm(n, sd = 0.5), 4),
    risk_b = findInterval(x + rnorm(n, sd = 1), c(-1, 0, 1))   # 4 levels: heavy ties
  ), "surv_synth.csv")

  set.seed(20240503)
  make_icc <- function(n, sds, bias) {
    truth <- sapply(seq_along(sds), function(j) rnorm(n, 10 * j, 3))
    a <- truth + sapply(sds, function(s) rnorm(n, 0, s))
    b <- sweep(truth + sapply(sds, function(s) rnorm(n, 0, s)), 2, bias, "+")
    colnames(a) <- colnames(b) <- paste0("f", seq_along(sds))
    list(a = round(a, 5), b = round(b, 5))
  }
  s1 <- make_icc(40, sds = c(0.3, 1, 2, 3, 5, 8, 1, 0.5), bias = c(0, 0, 1, 0, -2, 0, 3, 0.2))
  write_csv(as.data.frame(s1$a), "icc1_a.csv")
  write_csv(as.data.frame(s1$b), "icc1_b.csv")
  s2 <- make_icc(10, sds = c(0.5, 2, 6, 20), bias = c(0, 1, -1, 0))
  write_csv(as.data.frame(s2$a), "icc2_a.csv")
  write_csv(as.data.frame(s2$b), "icc2_b.csv")
}
if (write_fixtures) make_fixtures()

read_fixture <- function(name) read.csv(fixture(name), stringsAsFactors = FALSE)
asah <- read_fixture("asah.csv")
lung <- read_fixture("lung.csv")
roc_synth <- read_fixture("roc_synth.csv")
surv_synth <- read_fixture("surv_synth.csv")

# ------------------------------------------------------------------------------------------
# ROC: AUC + DeLong CI, paired DeLong test, coords at fixed thresholds
# ------------------------------------------------------------------------------------------
make_roc <- function(d, s) roc(d$y, d[[s]], direction = "<", levels = c(0, 1), quiet = TRUE)

auc_ref <- function(dataset, d, s) {
  r <- make_roc(d, s)
  ci <- ci.auc(r, method = "delong")
  list(dataset = dataset, score = s, auc = as.numeric(auc(r)),
       se = sqrt(var(r, method = "delong")), ci_low = ci[1], ci_high = ci[3],
       n_pos = length(r$cases), n_neg = length(r$controls))
}

delong_ref <- function(dataset, d, a, b) {
  t <- roc.test(make_roc(d, a), make_roc(d, b), method = "delong", paired = TRUE)
  list(dataset = dataset, score_a = a, score_b = b, auc_a = unname(t$estimate[1]),
       auc_b = unname(t$estimate[2]), z = unname(t$statistic), p = t$p.value,
       ci_low = t$conf.int[1], ci_high = t$conf.int[2])
}

coords_ref <- function(dataset, d, s, threshold) {
  r <- make_roc(d, s)
  co <- coords(r, x = threshold, input = "threshold", transpose = FALSE,
               ret = c("tp", "fp", "tn", "fn", "sensitivity", "specificity", "accuracy",
                       "ppv", "npv"))
  c(list(dataset = dataset, score = s, threshold = threshold), as.list(co[1, ]))
}

roc_sets <- list(asah = asah, roc_synth = roc_synth)
auc_out <- list(
  auc_ref("asah", asah, "s100b"), auc_ref("asah", asah, "ndka"), auc_ref("asah", asah, "wfns"),
  auc_ref("roc_synth", roc_synth, "score_a"), auc_ref("roc_synth", roc_synth, "score_b"),
  auc_ref("roc_synth", roc_synth, "score_c")
)
delong_out <- list(
  delong_ref("asah", asah, "s100b", "ndka"), delong_ref("asah", asah, "wfns", "s100b"),
  delong_ref("roc_synth", roc_synth, "score_a", "score_b"),
  delong_ref("roc_synth", roc_synth, "score_b", "score_c")
)
coords_out <- list(
  coords_ref("asah", asah, "s100b", 0.205), coords_ref("asah", asah, "wfns", 2.5),
  coords_ref("roc_synth", roc_synth, "score_a", 0.5123)
)

# ------------------------------------------------------------------------------------------
# Concordance: Harrell's C, IJ variance, paired comparison via joint IJ covariance
# ------------------------------------------------------------------------------------------
conc_ref <- function(dataset, d, risk) {
  d <- d[complete.cases(d[, c("time", "event", risk)]), ]
  f <- concordance(Surv(d$time, d$event) ~ d[[risk]], reverse = TRUE)
  c(list(dataset = dataset, risk = risk, n = f$n, concordance = f$concordance, var = f$var),
    as.list(f$count))
}

compare_ref <- function(dataset, d, a, b) {
  d <- d[complete.cases(d[, c("time", "event", a, b)]), ]
  # Public multi-fit API: coxph with the coefficient fixed at 1 (init = 1, iter.max = 0) so the
  # linear predictor orders subjects exactly as the raw risk score.
  fix1 <- function(x) suppressWarnings(
    coxph(Surv(d$time, d$event) ~ x, init = 1, iter.max = 0))
  joint <- concordance(fix1(d[[a]]), fix1(d[[b]]))
  # Same matrix from the single fits' IJ influence (what survival:::cord.work does).
  fa <- concordance(Surv(d$time, d$event) ~ d[[a]], reverse = TRUE, influence = 1)
  fb <- concordance(Surv(d$time, d$event) ~ d[[b]], reverse = TRUE, influence = 1)
  vmat <- crossprod(cbind(fa$dfbeta, fb$dfbeta))
  stopifnot(isTRUE(all.equal(unname(joint$var), unname(vmat))),
            isTRUE(all.equal(unname(joint$concordance), c(fa$concordance, fb$concordance))))
  contrast <- c(1, -1)
  diff <- sum(contrast * joint$concordance)
  se <- sqrt(drop(t(contrast) %*% joint$var %*% contrast))
  z <- diff / se
  list(dataset = dataset, risk_a = a, risk_b = b, c_a = fa$concordance, c_b = fb$concordance,
       diff = diff, var_a = vmat[1, 1], var_b = vmat[2, 2], cov_ab = vmat[1, 2],
       se_diff = se, z = z, p = 2 * pnorm(-abs(z)))
}

conc_out <- list(
  conc_ref("lung", lung, "age"), conc_ref("lung", lung, "ph.ecog"),
  conc_ref("lung", lung, "ph.karno"), conc_ref("lung", lung, "wt.loss"),
  conc_ref("surv_synth", surv_synth, "risk_a"), conc_ref("surv_synth", surv_synth, "risk_b")
)
compare_out <- list(
  compare_ref("lung", lung, "age", "ph.ecog"), compare_ref("lung", lung, "ph.karno", "wt.loss"),
  compare_ref("surv_synth", surv_synth, "risk_a", "risk_b")
)

# ------------------------------------------------------------------------------------------
# ICC (psych::ICC, ANOVA estimates)
# ------------------------------------------------------------------------------------------
icc_ref <- function(dataset, prefix) {
  a <- read_fixture(paste0(prefix, "_a.csv"))
  b <- read_fixture(paste0(prefix, "_b.csv"))
  rows <- list()
  for (f in colnames(a)) {
    res <- ICC(cbind(a[[f]], b[[f]]), lmer = FALSE, alpha = 0.05)$results
    for (kind in c("Single_random_raters", "Single_fixed_raters")) {
      r <- res[kind, ]
      rows[[length(rows) + 1]] <- list(
        dataset = dataset, feature = f, kind = ifelse(kind == "Single_random_raters",
                                                      "ICC(2,1)", "ICC(3,1)"),
        icc = r$ICC, F = r$F, p = r$p, ci_low = r$`lower bound`, ci_high = r$`upper bound`)
    }
  }
  rows
}
icc_out <- c(icc_ref("icc1", "icc1"), icc_ref("icc2", "icc2"))

# ------------------------------------------------------------------------------------------
# Cohort table: wilcox.test / chisq.test / fisher.test
# ------------------------------------------------------------------------------------------
continuous_ref <- function(dataset, d, group, v) {
  d <- d[!is.na(d[[v]]), ]
  g <- factor(d[[group]])
  quart <- lapply(split(d[[v]], g), function(x) unname(quantile(x, c(0.25, 0.5, 0.75))))
  list(dataset = dataset, group = group, variable = v, kind = "continuous",
       p = wilcox.test(d[[v]] ~ g, exact = FALSE, correct = TRUE)$p.value,
       test = "wilcox", quartiles = quart)
}

categorical_ref <- function(dataset, d, group, v) {
  d <- d[!is.na(d[[v]]), ]
  tab <- table(d[[v]], d[[group]])
  expected <- suppressWarnings(chisq.test(tab)$expected)
  if (any(expected < 5)) {
    p <- fisher.test(tab, workspace = 2e7)$p.value
    test <- "fisher"
  } else {
    p <- chisq.test(tab)$p.value
    test <- "chisq"
  }
  counts <- lapply(colnames(tab), function(g) as.list(setNames(as.integer(tab[, g]), rownames(tab))))
  names(counts) <- colnames(tab)
  list(dataset = dataset, group = group, variable = v, kind = "categorical", p = p,
       test = test, counts = counts)
}

cohort_out <- list(
  continuous_ref("asah", asah, "outcome", "age"),
  continuous_ref("asah", asah, "outcome", "s100b"),
  continuous_ref("asah", asah, "outcome", "ndka"),
  categorical_ref("asah", asah, "outcome", "gender"),
  categorical_ref("asah", asah, "outcome", "wfns"),
  continuous_ref("lung", lung, "sex", "age"),
  continuous_ref("lung", lung, "sex", "ph.karno"),
  continuous_ref("lung", lung, "sex", "wt.loss"),
  categorical_ref("lung", lung, "sex", "ph.ecog"),
  categorical_ref("lung", lung, "sex", "event"),
  continuous_ref("roc_synth", roc_synth, "y", "age"),
  categorical_ref("roc_synth", roc_synth, "y", "site"),
  categorical_ref("roc_synth", roc_synth, "y", "grade"),
  categorical_ref("roc_synth", roc_synth, "y", "rare")
)

# ------------------------------------------------------------------------------------------
out <- list(
  meta = list(R = R.version.string, pROC = as.character(packageVersion("pROC")),
              survival = as.character(packageVersion("survival")),
              psych = as.character(packageVersion("psych"))),
  auc = auc_out, delong = delong_out, coords = coords_out, concordance = conc_out,
  compare_concordance = compare_out, icc = icc_out, cohort = cohort_out
)
write_json(out, file.path(out_dir, "expected.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE)
cat("wrote", file.path(out_dir, "expected.json"), "\n")
