# Reference values for tests/test_survival_*.py, computed with R 4.2 + survival + rms + maxstat.
#
# Usage (from the repository root):
#   Rscript tests/reference/make_survival_reference.R [data_dir] [out_dir]
# Both default to tests/reference/survival. Reads lung.csv, veteran.csv (exported from
# survival::lung / survival::veteran, with event = status - 1 for lung) and glioma_synth.csv
# (tests/reference/survival/make_synthetic.py); writes km.json, logrank.json, cox.json,
# nomogram.json, calibrate.json, maxstat.json. Deterministic (seeded bootstrap).
suppressPackageStartupMessages({
  library(survival)
  library(rms)
  library(maxstat)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "tests/reference/survival"
out_dir <- if (length(args) >= 2) args[2] else "tests/reference/survival"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

write_ref <- function(x, name) {
  x$meta <- list(
    R = R.version.string,
    survival = as.character(packageVersion("survival")),
    rms = as.character(packageVersion("rms")),
    maxstat = as.character(packageVersion("maxstat"))
  )
  write_json(x, file.path(out_dir, name), digits = NA, auto_unbox = TRUE, pretty = TRUE,
             na = "string")
}

lung <- read.csv(file.path(data_dir, "lung.csv"))
veteran <- read.csv(file.path(data_dir, "veteran.csv"))
synth <- read.csv(file.path(data_dir, "glioma_synth.csv"))
veteran$celltype <- factor(veteran$celltype)   # levels: adeno (reference), large, smallcell, squamous
synth$histology <- factor(synth$histology)     # levels: A (reference), O, OA
synth$sex <- factor(synth$sex)                 # levels: F (reference), M

# ---------------------------------------------------------------- Kaplan-Meier
km_case <- function(d, conf_type) {
  fit <- survfit(Surv(time, event) ~ 1, data = d, conf.type = conf_type)
  list(time = fit$time, n_risk = fit$n.risk, n_event = fit$n.event, n_censor = fit$n.censor,
       surv = fit$surv, std_err_log = fit$std.err, lower = fit$lower, upper = fit$upper)
}
km <- list()
for (ds in c("lung", "veteran", "synth")) {
  for (ct in c("log", "log-log", "plain")) {
    km[[paste(ds, ct, sep = "/")]] <- km_case(get(ds), ct)
  }
}
s <- summary(survfit(Surv(time, event) ~ 1, data = lung), times = c(0, 5, 100, 365, 1000))
km$summary_lung <- list(time = s$time, n_risk = s$n.risk, surv = s$surv, std_err = s$std.err,
                        lower = s$lower, upper = s$upper)
write_ref(km, "km.json")

# ---------------------------------------------------------------- log-rank
lr_case <- function(formula, d) {
  r <- survdiff(formula, data = d)
  list(chisq = r$chisq, df = length(r$n) - 1, p = pchisq(r$chisq, length(r$n) - 1, lower.tail = FALSE),
       groups = names(r$n), n = as.vector(r$n), observed = r$obs, expected = r$exp,
       var = r$var)
}
write_ref(list(
  lung_sex = lr_case(Surv(time, event) ~ sex, lung),
  veteran_celltype = lr_case(Surv(time, event) ~ celltype, veteran),
  veteran_trt = lr_case(Surv(time, event) ~ trt, veteran),
  synth_histology = lr_case(Surv(time, event) ~ histology, synth)
), "logrank.json")

# ---------------------------------------------------------------- Cox
cox_case <- function(formula, d, newdata, times, terms) {
  fit <- coxph(formula, data = d, model = TRUE)                     # Efron ties (default)
  sm <- summary(fit)
  sf <- summary(survfit(fit, newdata = newdata), times = times)     # Efron baseline (ctype 2)
  zph <- list()
  for (tr in c("km", "identity", "rank", "log")) {
    z <- cox.zph(fit, transform = tr)$table
    zph[[tr]] <- list(terms = rownames(z), chisq = z[, "chisq"], df = z[, "df"], p = z[, "p"])
  }
  zcol <- cox.zph(fit, terms = FALSE)$table
  zph$km_columns <- list(terms = rownames(zcol), chisq = zcol[, "chisq"], df = zcol[, "df"],
                         p = zcol[, "p"])
  wald <- sapply(terms, function(cols) {                               # joint Wald per factor
    b <- coef(fit)[cols]; V <- vcov(fit)[cols, cols, drop = FALSE]
    pchisq(drop(t(b) %*% solve(V, b)), length(cols), lower.tail = FALSE)
  })
  list(names = names(coef(fit)), coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
       hr = unname(sm$conf.int[, 1]), lower = unname(sm$conf.int[, 3]),
       upper = unname(sm$conf.int[, 4]), p = unname(sm$coefficients[, 5]),
       loglik = fit$loglik, means = unname(fit$means), n = fit$n, nevent = fit$nevent,
       p_factor = as.list(wald),
       newdata = newdata, times = times, surv_newdata = unname(sf$surv), zph = zph)
}
lung_cc <- na.omit(lung[, c("time", "event", "age", "sex", "ph.ecog")])
cox <- list(
  lung = cox_case(Surv(time, event) ~ age + sex + ph.ecog, lung_cc,
                  data.frame(age = c(50, 70), sex = c(1, 2), ph.ecog = c(0, 2)),
                  c(100, 365, 700),
                  list(age = "age", sex = "sex", ph.ecog = "ph.ecog")),
  veteran = cox_case(Surv(time, event) ~ trt + karno + age + celltype, veteran,
                     data.frame(trt = c(1, 2), karno = c(40, 80), age = c(60, 45),
                                celltype = factor(c("smallcell", "squamous"),
                                                  levels = levels(veteran$celltype))),
                     c(30, 100, 365),
                     list(trt = "trt", karno = "karno", age = "age",
                          celltype = c("celltypelarge", "celltypesmallcell", "celltypesquamous"))),
  synth = cox_case(Surv(time, event) ~ age + histology + signature, synth,
                   data.frame(age = c(30, 50, 70), signature = c(-1, 0, 1.5),
                              histology = factor(c("A", "O", "OA"), levels = levels(synth$histology))),
                   c(365, 1095, 1825),
                   list(age = "age", histology = c("histologyO", "histologyOA"),
                        signature = "signature"))
)
# univariate models of the synthetic cohort (one coxph per factor)
cox$synth_univariate <- lapply(list(age = "age", histology = "histology", sex = "sex",
                                    signature = "signature"), function(f) {
  fit <- coxph(as.formula(paste("Surv(time, event) ~", f)), data = synth)
  sm <- summary(fit)
  list(names = names(coef(fit)), coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
       hr = unname(sm$conf.int[, 1]), lower = unname(sm$conf.int[, 3]),
       upper = unname(sm$conf.int[, 4]), p = unname(sm$coefficients[, 5]),
       p_wald_joint = unname(sm$waldtest["pvalue"]))
})
write_ref(cox, "cox.json")

# ---------------------------------------------------------------- nomogram (rms)
surv_ticks <- c(0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
nomo_case <- function(formula, d, factors, times, newdata) {
  dd <<- datadist(d); options(datadist = "dd")
  fit <- cph(formula, data = d, x = TRUE, y = TRUE, surv = TRUE)    # default eps = 1e-4
  surv <- Survival(fit)
  funs <- lapply(times, function(t) { force(t); function(x) surv(t, x) })
  names(funs) <- paste0("S", times)
  nom <- nomogram(fit, fun = funs, fun.at = surv_ticks, lp = TRUE)
  info <- attr(nom, "info")
  axes <- lapply(factors, function(f) list(values = nom[[f]][[f]], points = unname(nom[[f]]$points)))
  names(axes) <- factors
  surv_axes <- lapply(names(funs), function(nm) list(points = nom[[nm]]$x, probs = nom[[nm]]$x.real))
  names(surv_axes) <- names(funs)
  lp <- predict(fit, newdata = newdata, type = "lp")                   # centred
  list(coef = as.list(coef(fit)), scale = info$sc, intercept = info$Intercept,
       axes = axes, total_points = nom$total.points$x,
       lp_axis = list(points = nom$lp$x, values = nom$lp$x.real), survival = surv_axes,
       times = times, newdata = newdata, lp = unname(lp),
       total_points_newdata = unname((lp - info$Intercept) * info$sc),
       surv_newdata = lapply(times, function(t) unname(surv(t, lp))))
}
nomo <- list(
  synth = nomo_case(Surv(time, event) ~ age + histology + signature, synth,
                    c("age", "histology", "signature"), c(365, 1095, 1825),
                    data.frame(age = c(30, 50, 70, 41), signature = c(-1, 0, 1.5, 2.2),
                               histology = c("A", "O", "OA", "A"))),
  veteran = nomo_case(Surv(time, event) ~ trt + karno + celltype + age, veteran,
                      c("trt", "karno", "celltype", "age"), c(30, 90, 180),
                      data.frame(trt = c(1, 2, 2), karno = c(30, 60, 90), age = c(70, 55, 40),
                                 celltype = c("adeno", "large", "squamous")))
)
write_ref(nomo, "nomogram.json")

# ---------------------------------------------------------------- calibrate (rms, cmethod = "KM")
cal_case <- function(formula, d, u, m, B, seed) {
  dd <<- datadist(d); options(datadist = "dd")
  fit <- cph(formula, data = d, x = TRUE, y = TRUE, surv = TRUE, time.inc = u)
  set.seed(seed)
  idx <- t(replicate(B, sample(nrow(d), replace = TRUE))) - 1L     # the draws predab.resample makes
  set.seed(seed)
  cal <- suppressWarnings(calibrate(fit, cmethod = "KM", u = u, m = m, B = B))
  cal <- unclass(cal)
  list(u = u, m = m, B = B, seed = seed, boot_indices = idx,
       mean_predicted = unname(cal[, "mean.predicted"]), KM = unname(cal[, "KM"]),
       std_err = unname(cal[, "std.err"]), index_orig = unname(cal[, "index.orig"]),
       optimism = unname(cal[, "mean.optimism"]), KM_corrected = unname(cal[, "KM.corrected"]),
       n = unname(cal[, "n"]))
}
cal_cases <- function() list(
  synth = cal_case(Surv(time, event) ~ age + histology + signature, synth, 730, 60, 20, 2022),
  veteran = cal_case(Surv(time, event) ~ karno + celltype, veteran, 180, 34, 10, 7)
)
calib <- list(default_eps = cal_cases())
# rms refits each bootstrap sample with cph's default eps = 1e-4 (loose convergence); the same
# calibration with cph's eps tightened to 1e-9 (coxph's default) isolates the method from that.
cph_tight <- rms::cph
formals(cph_tight)$eps <- 1e-9
assignInNamespace("cph", cph_tight, ns = "rms")
calib$tight_eps <- cal_cases()
write_ref(calib, "calibrate.json")

# ---------------------------------------------------------------- maxstat
ms_case <- function(formula, d) {
  out <- list()
  for (pm in c("Lau94", "Lau92")) {
    r <- maxstat.test(formula, data = d, smethod = "LogRank", pmethod = pm)
    out[[pm]] <- list(statistic = unname(r$statistic), p = unname(r$p.value),
                      estimate = unname(r$estimate), cuts = r$cuts, stats = r$stats)
  }
  out
}
write_ref(list(
  synth_signature = ms_case(Surv(time, event) ~ signature, synth),
  veteran_karno = ms_case(Surv(time, event) ~ karno, veteran),
  lung_age = ms_case(Surv(time, event) ~ age, lung)
), "maxstat.json")
