# Reference values for the pre-specified Cox models of tests/test_survival_robustness.py
# (survival.clinical_selection / integrated_selection: prespecified), computed with R 4.2 +
# survival on the committed cohort written by tests/reference/prespecified/make_cohort.py.
#
# The pre-specified rule fits every listed factor, no P-value selection. `enhancement` has a
# single level in the cohort, so gliorad leaves it out (with a warning); R would refuse it
# ("contrasts can be applied only to factors with 2 or more levels"), so the formulas here
# list the factors that are left.
#
# Usage (from the repository root):
#   Rscript tests/reference/make_prespecified_reference.R [data_dir] [out_dir]
# Both default to tests/reference/prespecified. Reads cohort.csv; writes expected.json.
# Deterministic.
suppressPackageStartupMessages({
  library(survival)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "tests/reference/prespecified"
out_dir <- if (length(args) >= 2) args[2] else "tests/reference/prespecified"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

d <- read.csv(file.path(data_dir, "cohort.csv"), stringsAsFactors = FALSE)
d$grade <- relevel(factor(d$grade), ref = "II")
d$histology <- relevel(factor(d$histology), ref = "astrocytoma")
d$signature <- relevel(factor(d$signature), ref = "low")

model <- function(factors) {
  fml <- as.formula(paste("Surv(os_days, event) ~", paste(factors, collapse = " + ")))
  fit <- coxph(fml, data = d)                                       # Efron ties (default)
  sm <- summary(fit)
  lp <- predict(fit, type = "lp")
  conc <- concordance(Surv(d$os_days, d$event) ~ lp, reverse = TRUE)
  list(factors = factors, names = names(coef(fit)), coef = unname(coef(fit)),
       se = unname(sqrt(diag(vcov(fit)))), hr = unname(sm$conf.int[, 1]),
       lower = unname(sm$conf.int[, 3]), upper = unname(sm$conf.int[, 4]),
       p = unname(sm$coefficients[, 5]), n = fit$n, nevent = fit$nevent,
       loglik = unname(fit$loglik), c_index = unname(conc$concordance),
       c_se = sqrt(unname(conc$var)))
}

out <- list(
  clinical = model(c("age", "grade", "histology")),
  integrated = model(c("age", "grade", "histology", "signature")),
  meta = list(r = R.version.string, survival = as.character(packageVersion("survival")))
)
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "expected.json"))
cat("wrote", file.path(out_dir, "expected.json"), "\n")
