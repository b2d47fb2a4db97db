"""``gliorad survival cv|fit|validate``: the LGG survival analysis on a feature table and a
clinical table (thin layer over :mod:`gliorad.survival`: ``evaluation``, ``crossval``,
``artifacts`` and ``bundle``).

Settings: a preset (``paper`` or ``demo``), then a YAML file (its ``survival:`` section holds
:class:`~gliorad.survival.config.SurvivalConfig` keys, its ``clinical:`` section the clinical
table's columns / units), then the command-line options. Outputs go to ``--out`` as a whole: the
folder is built under a temporary name and renamed when complete; a folder whose
``provenance.json`` has the same settings and input hashes is left as it is ("up to date"); any
other existing folder is replaced only with ``--overwrite``. Exit 2 lists each problem on its own
``error:`` line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from gliorad.commands._common import (
    NonfiniteOpt,
    Options,
    OutOpt,
    PresetOpt,
    command_group,
    exit_on_input_error,
    with_options,
)
from gliorad.errors import GlioradInputError

app = command_group(
    "survival",
    "LGG survival: deep-radiomics signature, risk groups, Cox models, nomograms, validation.")

FeaturesArg = Annotated[Path, typer.Argument(help="Feature table (CSV/TSV/Parquet), one row per patient.")]
ClinicalArg = Annotated[Path, typer.Argument(help="Clinical table (CSV/TSV): os_time, event, factors.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="YAML with a 'survival:' (and optionally 'clinical:') section.")]
TimeUnitOpt = Annotated[str | None, typer.Option(
    help="Unit of os_time in the clinical table: days, months or years (default: the "
    "--config's clinical.time_unit, else days).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing, different output folder.")]
ExtraOpt = Annotated[list[Path] | None, typer.Option(
    "--extra-features", help="More feature tables joined by patient id (e.g. the 2D CNN features); "
    "repeatable; patients must be in every table.")]


# ------------------------------------------------------------------------------------ settings
def _merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    """The settings merge rule inside the survival section (a given split replaces the preset's)."""
    from gliorad.settings import WHOLE, merge, relative

    return merge(base, upd, relative(WHOLE, "survival"))


def _settings(
    preset: str, config: Path | None, time_unit: str | None, cli: dict[str, Any]
) -> tuple[Any, Any]:
    """(SurvivalConfig, ClinicalConfig) from preset < YAML < command line."""
    from gliorad.config import ClinicalConfig
    from gliorad.errors import check_option
    from gliorad.settings import read_yaml_mapping, validate
    from gliorad.survival.config import PRESETS, SurvivalConfig

    data: dict[str, Any] = PRESETS.data(preset, "--preset")
    clinical: dict[str, Any] = {}
    if config is not None:
        doc = read_yaml_mapping(config)
        unknown = [k for k in doc if k not in {"survival", "clinical", "cohort"}]
        if unknown:
            raise GlioradInputError(f"{config}: unknown top-level key(s) {unknown}; expected survival, clinical")
        data = _merge(data, doc.get("survival") or {})
        clinical = dict(doc.get("clinical") or {})
    data = _merge(data, cli)
    if time_unit is not None:
        clinical["time_unit"] = check_option("--time-unit", time_unit, ["days", "months", "years"])
    source = str(config) if config else "settings"
    return (validate(SurvivalConfig, data, source),
            validate(ClinicalConfig, clinical, source, "clinical"))


_RULES = ("paper", "prespecified")


def _cli_overrides(
    split: str | None, split_column: str | None, train: str | None, external: list[str] | None,
    train_fraction: float | None, sequence: str | None, sequences: str | None,
    deep_prefix: str | None, seed: int | None, jobs: int | None,
    clinical_selection: str | None = None, integrated_selection: str | None = None,
    model: str | None = None, candidates: str | None = None, signature_term: str | None = None,
    factor_rules: str | None = None,
) -> dict[str, Any]:
    from gliorad.errors import check_option
    from gliorad.survival.config import SurvivalConfig

    out: dict[str, Any] = SurvivalConfig.command_line(model, candidates)
    for key, opt, value, allowed in (
            ("clinical_selection", "--clinical-selection", clinical_selection, _RULES),
            ("integrated_selection", "--integrated-selection", integrated_selection, _RULES),
            ("signature_term", "--signature-term", signature_term, ("group", "continuous"))):
        if value is not None:
            out[key] = check_option(opt, value, allowed)
    if factor_rules is not None:
        rules = [r.strip() for r in factor_rules.split(",") if r.strip()]
        if not rules:
            raise GlioradInputError(f"--factor-rules {factor_rules!r}: expected a comma-separated "
                                    "list of paper, prespecified")
        out.setdefault("search", {})["factor_rules"] = [
            check_option("--factor-rules", r, _RULES) for r in rules]
    sp: dict[str, Any] = {}
    if split is not None:
        sp["method"] = check_option("--split", split, ["column", "random", "none"])
    if split_column is not None:
        sp["column"] = split_column
    if train is not None:
        sp["train"] = train
    if external:
        sp["external"] = list(external)
    if train_fraction is not None:
        sp["train_fraction"] = train_fraction
    if sp:
        out["split"] = sp
    sq: dict[str, Any] = {}
    if sequence is not None:
        sq["force"] = sequence
    if sequences is not None:
        items = [s.strip() for s in sequences.split(",") if s.strip()]
        sq["sequences"] = [] if items == ["none"] else items
        if not items:
            raise GlioradInputError(f"--sequences {sequences!r}: expected a comma-separated list or 'none'")
    if deep_prefix is not None:
        sq["deep_prefix"] = None if deep_prefix.strip().lower() in ("", "none") else deep_prefix
    if sq:
        out["sequence"] = sq
    if seed is not None:
        out["seed"] = seed
    if jobs is not None:
        out["n_jobs"] = jobs
    return out


# ----------------------------------------------------------------------------------- plumbing
def _read_inputs(
    features: Path, clinical: Path, ccfg: Any, survival: bool = True, extra: list[Path] | None = None,
    *, nonfinite: str = "missing", drop: bool = True, cleaning: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """(features, clinical). Feature tables are cleaned (:func:`gliorad.tables.clean_features`:
    ``nonfinite``; ``drop`` empty / constant columns, not when applying a bundle); each change is
    printed as a warning and, when ``cleaning`` is given, recorded there per input name."""
    from gliorad.clinical import read_clinical
    from gliorad.tables import read_features

    def read_feature_table(path: Path, name: str) -> Any:
        table, record = read_features(path, first_column_id=True, nonfinite=nonfinite, drop=drop)
        for line in record.warnings():
            typer.echo(f"warning: {line}", err=True)
        if cleaning is not None:
            cleaning[name] = record.to_dict()
        return table

    problems: list[str] = []
    feats = clin = None
    try:
        feats = read_feature_table(features, "features")
        for i, path in enumerate(extra or [], start=1):
            more = read_feature_table(path, f"extra_features_{i}")
            clash = sorted(set(more.columns) & set(feats.columns))
            if clash:
                raise GlioradInputError(f"{path}: column(s) {clash[:5]} also in {features}")
            ids = feats.index.intersection(more.index, sort=False)
            lost = len(feats.index.union(more.index)) - len(ids)
            if lost:
                typer.echo(f"warning: {lost} patient(s) are not in every feature table and are "
                           f"left out ({features.name}, {path.name})", err=True)
            feats = feats.loc[ids].join(more.loc[ids])
    except GlioradInputError as err:
        problems += err.problems
    try:
        clin = read_clinical(clinical, ccfg, require=("os_time", "event") if survival else ())
    except GlioradInputError as err:
        problems += err.problems
    if problems:
        raise GlioradInputError(problems)
    return feats, clin


def _input_files(features: Path, clinical: Path, extra: list[Path] | None) -> dict[str, Path]:
    files = {"features": features, "clinical": clinical}
    files.update({f"extra_features_{i}": p for i, p in enumerate(extra or [], start=1)})
    return files


def _provenance(command: str, cfg: Any, ccfg: Any, inputs: dict[str, Path]) -> dict[str, Any]:
    import datetime

    from gliorad.io import file_hash
    from gliorad.survival.bundle import versions

    missing = [f"{p}: {name} not found" for name, p in inputs.items() if not Path(p).is_file()]
    if missing:
        raise GlioradInputError(missing)

    return {
        "stage": f"survival {command}",
        "key": {
            "command": command,
            "config": cfg.model_dump(mode="json"),
            "clinical": ccfg.model_dump(mode="json"),
            "inputs": {name: {"path": str(p), "sha256": file_hash(p)} for name, p in inputs.items()},
        },
        "seed": cfg.seed,
        "versions": versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _up_to_date(out: Path, provenance: dict[str, Any], overwrite: bool) -> bool:
    from gliorad.provenance import finished_run

    if not out.exists() or not any(out.iterdir()):
        return False
    if not overwrite and finished_run(out, (), lambda prov: prov.get("key") == provenance["key"]):
        return True
    if not overwrite:
        raise GlioradInputError(
            f"{out}: output folder exists with other settings or inputs; pass --overwrite to replace it"
        )
    return False


def _build_folder(
    command: str, cfg: Any, ccfg: Any, features: Path, clinical: Path, out: Path,
    build: SimpleNamespace,
    analyse: Callable[[Any, Any], Any], write: Callable[..., dict[str, Any]],
    *, inputs: dict[str, Path] | None = None, key: dict[str, Any] | None = None,
    training: bool = True,
) -> dict[str, Any] | None:
    """The body of every command: provenance; None (after saying so) when ``out`` already holds
    this run; else read the inputs, ``analyse(features, clinical)`` and write the result with
    ``write(result, folder, provenance, table_cleaning=...)`` into ``out`` as a whole. Returns
    the metrics. ``build``: the :data:`BUILD` options (extra feature tables, overwrite,
    non-finite cells).

    ``inputs``: files hashed besides the tables; ``key``: more provenance key entries;
    ``training``: the tables need survival columns and empty / constant feature columns are
    dropped (``fit`` / ``cv``); not when applying a bundle (``validate``).
    ``provenance["table_cleaning"]``: what reading the feature tables changed (also kept in
    ``metrics.json``)."""
    from gliorad.io import atomic_dir

    extra, nonfinite = build.extra_features, build.nonfinite
    prov = _provenance(command, cfg, ccfg, {**(inputs or {}), **_input_files(features, clinical, extra)})
    prov["key"].update(key or {})
    prov["key"]["nonfinite"] = nonfinite
    if _up_to_date(out, prov, build.overwrite):
        typer.echo(f"up to date: {out} (same {'settings' if training else 'bundle'} and inputs)")
        return None
    cleaning: dict[str, Any] = {}
    feats, clin = _read_inputs(features, clinical, ccfg, survival=training, extra=extra,
                               nonfinite=nonfinite, drop=training, cleaning=cleaning)
    prov["table_cleaning"] = cleaning
    result = analyse(feats, clin)
    with atomic_dir(out) as tmp:
        return write(result, tmp, prov, table_cleaning=cleaning)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return "(" + "-".join(_fmt(v, digits) for v in x) + ")"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _models_summary(metrics: dict[str, Any]) -> None:
    """One line per Cox model: its factor rule, and why it is absent or is the clinical one."""
    for which, info in (metrics.get("models") or {}).items():
        line = f"{which} model ({info.get('rule')} rule): "
        if not info.get("fitted"):
            line += f"not built: {info.get('reason')}"
        elif info.get("same_as_clinical"):
            line += f"the clinical model ({info.get('reason')})"
        else:
            line += ", ".join(info.get("factors") or []) + (
                f" ({info['reason']})" if info.get("reason") else "")
        typer.echo(line)


def _search_summary(search: dict[str, Any] | None) -> None:
    """The model search (not with --model paper): each candidate's inner C-index, the choice."""
    if not search:
        return
    typer.echo(f"model {search['setting']}: {search['chosen']} ({search['why']})")
    for c in search["candidates"]:
        ext = ", ".join(f"{k} {_fmt(v.get('c_index'))}" for k, v in c["external"].items())
        typer.echo(f"  {c['name']:<9} inner C {_fmt(c['inner_c_index'])}"
                   + (f"; after the choice, for reporting: {ext}" if ext else "")
                   + (f" ({c['reason']})" if c.get("reason") else ""))


def _summary(metrics: dict[str, Any]) -> None:
    typer.echo(f"{'cohort':<14}{'role':<10}{'n':>5}{'events':>8}  {'C integrated (95% CI)':<26}"
               f"{'C clinical (95% CI)':<26}{'compare P':>10}{'log-rank P':>12}")
    for name, c in metrics["cohorts"].items():
        typer.echo(
            f"{name:<14}{c['role']:<10}{c['n_analysed']:>5}{c.get('n_events', '-'):>8}  "
            f"{_fmt(c.get('c_index_integrated')) + ' ' + _fmt(c.get('c_index_integrated_ci')):<26}"
            f"{_fmt(c.get('c_index_clinical')) + ' ' + _fmt(c.get('c_index_clinical_ci')):<26}"
            f"{_fmt(c.get('compare_p')):>10}{_fmt(c.get('logrank_p'), 4):>12}"
        )
    for w in metrics.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)


# ------------------------------------------------------------------------------------ commands
def _inputs(
    features: FeaturesArg,
    clinical: ClinicalArg,
    out: OutOpt,
    config: ConfigOpt = None,
    preset: PresetOpt = "paper",
    time_unit: TimeUnitOpt = None,
) -> None:
    """The arguments and leading options of ``fit`` and ``cv`` (never called: :data:`INPUTS`)."""


def _rule_option(model: str, prespecified: str) -> Any:
    """The ``--<model>-selection`` option type: the factor rule of one Cox model."""
    return Annotated[str | None, typer.Option(
        f"--{model}-selection", help=f"Factor rule of the {model} Cox model: paper (univariate "
        f"then multivariable P < p_threshold) or prespecified ({prespecified}, no P-value "
        "selection).")]


def _model_options(
    split: Annotated[str | None, typer.Option(
        "--split", help="column (by --split-column), random, or none (all patients train).")
    ] = None,
    split_column: Annotated[str | None, typer.Option(
        help="Clinical column that names the cohort.")] = None,
    train: Annotated[str | None, typer.Option(
        "--train", help="Training value of the split column (paper: B).")] = None,
    external: Annotated[list[str] | None, typer.Option(
        "--external", help="External validation value(s) of the split column; repeatable "
        "(default: all others).")] = None,
    train_fraction: Annotated[float | None, typer.Option(
        help="Training fraction of a random split.")] = None,
    sequence: Annotated[str | None, typer.Option(
        "--sequence", help="Force the signature's radiomics sequence (skip the choice by AUC).")
    ] = None,
    sequences: Annotated[str | None, typer.Option(
        help="Comma-separated candidate sequences (column prefixes), e.g. t1,t1ce,t2; 'none' = "
        "all features.")] = None,
    deep_prefix: Annotated[str | None, typer.Option(
        help="Prefix of the deep (2D CNN) feature columns; 'none': radiomics only (a table "
        "without them).")] = None,
    clinical_selection: _rule_option("clinical", "every listed factor") = None,
    integrated_selection: _rule_option("integrated", "every listed factor plus the signature") = None,
    signature_term: Annotated[str | None, typer.Option(
        "--signature-term", help="How the signature enters the integrated Cox model: group (the "
        "paper's high/low split, default) or continuous (its z-scored score, HR per SD).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="How the image signature is made: paper (the paper's signature, the "
        "default), coxnet, rsf, gbcox, clinical (no signature), or auto (the best inner "
        "cross-validated C-index in the training cohort; writes candidates.csv).")] = None,
    candidates: Annotated[str | None, typer.Option(
        "--candidates", help="Comma-separated candidates --model auto searches (default: all: "
        "paper,clinical,coxnet,gbcox,rsf).")] = None,
    factor_rules: Annotated[str | None, typer.Option(
        "--factor-rules", help="Comma-separated factor rules the search also chooses among, one "
        "for both Cox models, e.g. paper,prespecified (default: none, the --clinical-selection / "
        "--integrated-selection rules).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", min=1, help="Parallel workers (random forests).")] = None,
) -> None:
    """The model-building options of ``fit`` and ``cv``, the settings :func:`_cli_overrides`
    makes of them (never called: :data:`MODEL`)."""


def _build_options(
    extra_features: ExtraOpt = None,
    overwrite: OverwriteOpt = False,
    nonfinite: NonfiniteOpt = "missing",
) -> None:
    """The options every command ends with: how the tables are read and an existing output
    folder treated (never called: :data:`BUILD`, read by :func:`_build_folder`)."""


INPUTS = Options(_inputs)
MODEL = Options(_model_options)
BUILD = Options(_build_options)


def _train(command: str, inputs: SimpleNamespace, model: SimpleNamespace,
           changes: dict[str, Any], build: SimpleNamespace,
           analyse: Callable[..., Any], write: Callable[..., dict[str, Any]]
           ) -> dict[str, Any] | None:
    """``fit`` / ``cv``: the settings (preset < YAML < the model options and ``changes``), then
    :func:`_build_folder` with ``analyse(features, clinical, cfg)``."""
    cli = {**_cli_overrides(**vars(model)), **changes}
    cfg, ccfg = _settings(inputs.preset, inputs.config, inputs.time_unit, cli)
    return _build_folder(command, cfg, ccfg, inputs.features, inputs.clinical, inputs.out, build,
                         lambda f, c: analyse(f, c, cfg), write)


@app.command()
@with_options
def fit(
    inputs: SimpleNamespace = INPUTS,
    model: SimpleNamespace = MODEL,
    build: SimpleNamespace = BUILD,
) -> None:
    """Fit the signature and nomograms on the training cohort, validate on the others; write
    metrics.json, signature.json, Tables 3/4, figures and the model bundle."""
    with exit_on_input_error():
        from gliorad.survival.artifacts import write_analysis
        from gliorad.survival.evaluation import run_analysis

        metrics = _train("fit", inputs, model, {}, build, run_analysis, write_analysis)
    if metrics is None:
        return
    sig = metrics["signature"]
    typer.echo(f"signature ({len(sig['features'])} features, sequence {sig['sequence']}): {sig['formula']}")
    typer.echo(f"cut-off ({sig['cutoff_method']}): {sig['cutoff']:.4g}; integrated factors: "
               f"{metrics['integrated_factors']}; clinical factors: {metrics['clinical_factors']}")
    _search_summary(metrics.get("model_search"))
    _models_summary(metrics)
    _summary(metrics)
    typer.echo(f"wrote {inputs.out}")


@app.command()
@with_options
def cv(
    inputs: SimpleNamespace = INPUTS,
    folds: Annotated[int | None, typer.Option(min=2, help="Cross-validation folds.")] = None,
    model: SimpleNamespace = MODEL,
    build: SimpleNamespace = BUILD,
) -> None:
    """Cross-validate the whole model building inside the training cohort (held-out C-indices
    of the signature, integrated and clinical models; cross-validated risk groups)."""
    with exit_on_input_error():
        from gliorad.survival.artifacts import write_cv
        from gliorad.survival.crossval import cross_validate

        changes = {"cv_folds": folds} if folds is not None else {}
        metrics = _train("cv", inputs, model, changes, build, cross_validate, write_cv)
    if metrics is None:
        return
    s = metrics["summary"]
    typer.echo(f"{s['folds']}-fold cross-validation in cohort {s['training']} "
               f"({s['n_patients']} patients, {s['n_events']} events)")
    for key in ("signature", "integrated", "clinical"):
        typer.echo(f"  C-index {key:<11} {_fmt(s[f'c_index_{key}_mean'])} +/- {_fmt(s[f'c_index_{key}_sd'])}")
    typer.echo(f"  cross-validated risk groups: log-rank P {_fmt(s.get('cv_logrank_p'), 4)}")
    for w in metrics.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"wrote {inputs.out}")


@app.command()
@with_options
def validate(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder (from 'survival fit', <out>/bundle).")],
    features: FeaturesArg,
    clinical: ClinicalArg,
    out: OutOpt,
    cohort_column: Annotated[str | None, typer.Option(
        help="Clinical column splitting the new patients into cohorts (default: one cohort).")] = None,
    name: Annotated[str, typer.Option(help="Cohort name without --cohort-column.")] = "validation",
    config: ConfigOpt = None,
    time_unit: TimeUnitOpt = None,
    build: SimpleNamespace = BUILD,
) -> None:
    """Apply a saved bundle (signature, cut-off, nomograms) unchanged to new patients: risk
    groups, survival predictions, and with os_time/event the C-indices, log-rank and calibration."""
    with exit_on_input_error():
        from gliorad.survival.artifacts import write_analysis
        from gliorad.survival.bundle import load_bundle
        from gliorad.survival.evaluation import apply_models

        models = load_bundle(bundle)
        _, ccfg = _settings("paper", config, time_unit, {})
        metrics = _build_folder(
            "validate", models.config, ccfg, features, clinical, out, build,
            lambda f, c: apply_models(models, f, c, by=cohort_column, name=name),
            lambda result, tmp, prov, **kw: write_analysis(result, tmp, prov, bundle=False, **kw),
            inputs={"bundle": bundle / "bundle.json", "signature": bundle / "signature.skops"},
            key={"cohort_column": cohort_column, "name": name}, training=False)
    if metrics is None:
        return
    _summary(metrics)
    typer.echo(f"wrote {out}")
