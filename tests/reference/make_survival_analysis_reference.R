# Reference values for tests/test_survival_analysis.py and tests/test_signature.py, computed with
# R 4.2 + survival + rms on the analysis table written by
# tests/reference/survival_analysis/make_table.py (gliorad's survival analysis of a seeded
# synthetic two-centre cohort: train centre B, validate centre A).
#
# The factors of the integrated and clinical models are selected here, by the paper's rule on the
# training cohort (univariate P < 0.05, then multivariable P < 0.05 among those, refitted once; a
# factor's P is the joint Wald test of its coefficients, as rms::anova), from the candidates of
# spec.json; its integrated_factors / clinical_factors (gliorad's choice) are not read.
#
# Usage (from the repository root):
#   Rscript tests/reference/make_survival_analysis_reference.R [data_dir] [out_dir]
# Both default to tests/reference/survival_analysis. Reads analysis_table.csv and spec.json;
# writes expected.json. Deterministic.
suppressPackageStartupMessages({
  library(survival)
  library(rms)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "tests/reference/survival_analysis"
out_dir <- if (length(args) >= 2) args[2] else "tests/reference/survival_analysis"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

spec <- fromJSON(file.path(data_dir, "spec.json"), simplifyVector = TRUE)
d <- read.csv(file.path(data_dir, "analysis_table.csv"), stringsAsFactors = FALSE)
for (f in names(spec$references)) {
  d[[f]] <- relevel(factor(d[[f]]), ref = spec$references[[f]])
}
train <- d[d$cohort == spec$training, ]
ext <- d[d$cohort %in% spec$external, ]

formula_of <- function(factors) as.formula(paste("Surv(os_days, event) ~", paste(factors, collapse = " + ")))

# a Cox fit that warns (no convergence, a level without events) would make a meaningless reference
cox_train <- function(factors) {
  withCallingHandlers(coxph(formula_of(factors), data = train),
                      warning = function(w) stop("coxph(", deparse(formula_of(factors)), "): ",
                                                 conditionMessage(w)))
}

# P of each factor: joint Wald test b' V^-1 b of its coefficients (df = their number; for a
# one-coefficient factor the coefficient's Wald P); the same as rms::anova(cph(...))
factor_p <- function(fit) {
  b <- coef(fit)
  V <- vcov(fit)
  a <- attr(model.matrix(fit), "assign")
  terms_ <- attr(terms(fit), "term.labels")
  p <- sapply(seq_along(terms_), function(i) {
    j <- which(a == i)
    stat <- drop(t(b[j]) %*% solve(V[j, j, drop = FALSE], b[j]))
    pchisq(stat, df = length(j), lower.tail = FALSE)
  })
  setNames(as.list(p), terms_)
}

p_threshold <- 0.05  # the paper's (SurvivalConfig.p_threshold)
select_paper <- function(candidates) {
  p_uni <- lapply(setNames(candidates, candidates), function(f) factor_p(cox_train(f))[[f]])
  step1 <- candidates[unlist(p_uni) < p_threshold]
  if (length(step1) == 0) stop("no candidate has univariate P < ", p_threshold)
  p_multi <- factor_p(cox_train(step1))
  step2 <- step1[unlist(p_multi[step1]) < p_threshold]
  if (length(step2) == 0) stop("no factor has multivariable P < ", p_threshold)
  list(p_threshold = p_threshold, p_univariate = p_uni, selected_univariate = step1,
       p_multivariable = p_multi, selected = step2)
}

coef_list <- function(fit) {
  sm <- summary(fit)
  list(names = names(coef(fit)), coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
       hr = unname(sm$conf.int[, 1]), lower = unname(sm$conf.int[, 3]),
       upper = unname(sm$conf.int[, 4]), p = unname(sm$coefficients[, 5]), n = fit$n,
       nevent = fit$nevent)
}

conc <- function(data, lp) {
  f <- concordance(Surv(data$os_days, data$event) ~ lp, reverse = TRUE)
  list(c_index = unname(f$concordance), se = sqrt(unname(f$var)))
}

# paired comparison of two C-indices from the IJ influences (survival's cord.work)
compare <- function(data, lp_a, lp_b) {
  fa <- concordance(Surv(data$os_days, data$event) ~ lp_a, reverse = TRUE, influence = 1)
  fb <- concordance(Surv(data$os_days, data$event) ~ lp_b, reverse = TRUE, influence = 1)
  v <- crossprod(cbind(fa$dfbeta, fb$dfbeta))
  diff <- unname(fa$concordance - fb$concordance)
  se <- sqrt(drop(c(1, -1) %*% v %*% c(1, -1)))
  list(c_a = unname(fa$concordance), c_b = unname(fb$concordance), diff = diff, se = se,
       p = 2 * pnorm(-abs(diff / se)))
}

model_case <- function(factors) {
  fml <- formula_of(factors)
  fit <- coxph(fml, data = train)                                   # Efron ties (default)
  lp_train <- predict(fit, type = "lp")
  lp_ext <- predict(fit, newdata = ext, type = "lp")
  refit <- coxph(fml, data = ext)
  sf <- summary(survfit(fit, newdata = ext[1:5, ]), times = spec$times)
  dd <<- datadist(train[, factors, drop = FALSE]); options(datadist = "dd")
  cf <- cph(fml, data = train, x = TRUE, y = TRUE, surv = TRUE, eps = 1e-10, tol = 1e-13)  # rms, converged
  nom <- nomogram(cf, maxscale = 100)
  info <- attr(nom, "info")
  lp_rms <- predict(cf, newdata = ext[1:5, ], type = "lp")
  list(
    factors = factors,
    training = coef_list(fit),
    c_training = conc(train, lp_train),
    c_external = conc(ext, lp_ext),
    external_refit = coef_list(refit),
    surv_external_first5 = unname(sf$surv),
    rms_coef = unname(coef(cf)),
    nomogram_scale = info$sc,
    nomogram_total_points_first5 = unname((lp_rms - info$Intercept) * info$sc),
    lp_training = unname(lp_train),
    lp_external = unname(lp_ext)
  )
}

univariate <- lapply(spec$candidates, function(f) coef_list(coxph(formula_of(f), data = train)))
names(univariate) <- spec$candidates

selection_integrated <- select_paper(spec$candidates)
selection_clinical <- select_paper(spec$clinical_candidates)
integrated <- model_case(selection_integrated$selected)
clinical <- model_case(selection_clinical$selected)

null_fit <- coxph(Surv(os_days, event) ~ 1, data = train, ties = "breslow")
null_residuals <- list(time = train$os_days, event = train$event,
                       martingale = unname(residuals(null_fit, type = "martingale")),
                       deviance = unname(residuals(null_fit, type = "deviance")))

km_groups <- function(data) {
  s <- survdiff(Surv(os_days, event) ~ signature, data = data)
  list(chisq = s$chisq, p = pchisq(s$chisq, length(s$n) - 1, lower.tail = FALSE))
}

out <- list(
  univariate = univariate,
  selection_integrated = selection_integrated,
  selection_clinical = selection_clinical,
  integrated = integrated,
  clinical = clinical,
  compare_training = compare(train, integrated$lp_training, clinical$lp_training),
  compare_external = compare(ext, integrated$lp_external, clinical$lp_external),
  logrank_training = km_groups(train),
  logrank_external = km_groups(ext),
  null_residuals = null_residuals,
  meta = list(R = R.version.string, survival = as.character(packageVersion("survival")),
              rms = as.character(packageVersion("rms")))
)
write_json(out, file.path(out_dir, "expected.json"), digits = NA, auto_unbox = TRUE,
           pretty = TRUE, na = "string")
