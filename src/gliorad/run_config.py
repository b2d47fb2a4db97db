"""The configuration of ``gliorad run``: one YAML file with a section per stage.

A run config extends :class:`gliorad.config.GlioradConfig` (``cohort``, ``clinical``) with:

``run``           seed and worker count shared by every stage; ``nonfinite`` (feature-table cells)
``synthetic``     optional: generate a synthetic two-centre cohort instead of reading ``cohort.root``
                  (:class:`gliorad.synthetic.SynthConfig`; the demo)
``preprocess``    ``enabled`` (default false), ``preset`` and :class:`~gliorad.preprocess.config.PreprocessConfig` fields
``segmentation``  ``enabled``, ``preset``, ``train_patients`` (a seeded subset of the grading
                  training part; null: all) and :class:`~gliorad.segmentation.SegmentationConfig` fields
``radiomics``     ``params`` (``fast``, ``paper`` or a parameter file), ``sequences``, ``region``,
                  ``peritumoural_mm`` (ring features outside the region; [] = off)
``agreement``     ICC of automatic- vs manual-mask radiomics: ``enabled``, ``kind``, ``threshold``
``deep3d``        ``enabled``, ``preset``, ``variants``, ``cross_fit`` (folds of cross-fitted CNNs
                  whose out-of-fold scores feed the stacked grading rows; 0: off) and
                  :class:`~gliorad.features.deep3d.Deep3DConfig` fields
``deep2d``        ``enabled``, ``preset``, ``imagenet_weights``, ``cross_fit`` (folds of cross-fitted
                  networks whose out-of-fold head outputs replace the 2D CNN's features in the
                  survival signature; 0: off) and :class:`~gliorad.features.deep2d.Deep2DConfig` fields
``grading``       ``enabled``, ``preset``, ``scheme`` and :class:`~gliorad.grading.config.GradingConfig` fields
``survival``      ``enabled``, ``preset`` and :class:`~gliorad.survival.config.SurvivalConfig` fields
``report``        ``enabled``, ``title``

A stage section starts from its ``preset`` and overrides the fields it gives (the merge rule of
:mod:`gliorad.settings`: nested mappings merge, ``survival.split`` is replaced whole), so
``segmentation: {preset: demo, train: {epochs: 40}}`` is the demo network trained longer. Every section is validated by the stage's own settings class when the file is loaded:
an unknown key or a bad value is an error that names the file, the key, the value and the
allowed values. The packaged presets (``gliorad config show demo|paper|best``) are documented YAML
files in ``gliorad/presets/``: ``paper`` reproduces the publication, ``demo`` runs it on a
synthetic cohort in minutes, ``best`` is ``paper`` with the model searches (``grading.model`` and
``survival.model`` ``auto``) and cross-fitted 2D CNN inputs to the signature (``deep2d.cross_fit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gliorad.config import ClinicalConfig, CohortConfig
from gliorad.errors import GlioradInputError, check_option
from gliorad.settings import WHOLE, Strict, merge, read_yaml_mapping, relative, validate

PRESET_DIR = Path(__file__).parent / "presets"
RUN_PRESETS = ("demo", "paper", "best")
DEEP3D_VARIANTS = {
    "patch_se": {"input": "patch", "net": {"se": True}},
    "patch_nose": {"input": "patch", "net": {"se": False}},
    "full_se": {"input": "full", "net": {"se": True}},
    "full_nose": {"input": "full", "net": {"se": False}},
}
SECTIONS = ("run", "cohort", "clinical", "synthetic", "preprocess", "segmentation", "radiomics",
            "agreement", "deep3d", "deep2d", "grading", "survival", "report")


class RunSettings(Strict):
    # where the per-case work runs (gliorad.executor): left out of dumps at the defaults, so
    # workspaces made before the option keep theirs; never part of a stage's fingerprint
    OMITTED_AT_DEFAULT = ("executor", "scheduler", "retries")

    seed: int = 0
    n_jobs: int = Field(2, ge=1, description="worker processes / torch threads")
    nonfinite: Literal["missing", "error"] = Field(
        "missing", description="feature-table cells that are spreadsheet errors or infinite: "
                               "read as missing (counted) or refused")
    executor: Literal["local", "dask"] = Field(
        "local", description="where the cohort stages' per-case work runs: this machine "
        "(joblib) or a Dask cluster (docs/scaling.md)")
    scheduler: str | None = Field(
        None, description="the Dask scheduler's address (tcp://host:8786); none with executor "
        "dask: a local Dask cluster of n_jobs workers")
    retries: int = Field(2, ge=0, description="reruns of a case that fails on a Dask cluster")

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        from gliorad.executor import check_scheduler

        if v is None:
            return v
        try:
            return check_scheduler(v, "scheduler")
        except GlioradInputError as err:
            raise ValueError(err.problems[0].removeprefix(f"scheduler {v!r}: ")) from None

    @model_validator(mode="after")
    def _scheduler_needs_dask(self) -> RunSettings:
        if self.scheduler is not None and self.executor != "dask":
            raise ValueError(f"scheduler {self.scheduler!r} is set but executor is "
                             f"{self.executor!r}; set executor: dask to use it")
        return self


class RadiomicsSection(Strict):
    OMITTED_AT_DEFAULT = ("peritumoural_mm",)  # no rings: dumps of older runs unchanged

    params: str = "fast"
    sequences: list[str] | None = None
    region: str = "whole"
    peritumoural_mm: list[float] = Field(
        default_factory=list, description="ring boundaries in mm for first-order features in "
        "shells outside the region ([0, 5, 10]: rings 0-5 and 5-10 mm; [] = off); "
        "gliorad.features.peritumoural")

    @field_validator("peritumoural_mm", mode="before")
    @classmethod
    def _rings(cls, v: Any) -> Any:
        from gliorad.features.config import ring_problem

        out, problem = ring_problem(v)
        if problem:
            raise ValueError(problem)
        return list(out)



class AgreementSection(Strict):
    enabled: bool = True
    kind: str = "ICC(2,1)"
    threshold: float = Field(0.75, gt=0, lt=1)


class ReportSection(Strict):
    enabled: bool = True
    title: str = "gliorad report"


def _merge(base: Mapping, update: Mapping, section: str | None = None) -> dict:
    """:func:`gliorad.settings.merge` at the run config's root, or inside ``section``."""
    return merge(base, update, WHOLE if section is None else relative(WHOLE, section))


def _split(section: Mapping[str, Any], reserved: Mapping[str, Any], where: str
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stage section's reserved keys (with defaults) and the stage-config fields."""
    if not isinstance(section, Mapping):
        raise GlioradInputError(f"{where}: expected a mapping, got {type(section).__name__}")
    own = {k: section.get(k, v) for k, v in reserved.items()}
    rest = {k: v for k, v in section.items() if k not in reserved}
    if "enabled" in own and not isinstance(own["enabled"], bool):
        raise GlioradInputError(f"{where}.enabled: expected true or false (got {own['enabled']!r})")
    return own, rest


@dataclass(frozen=True)
class RunConfig:
    """A validated run config: typed settings per stage plus the raw mapping it came from."""

    source: str
    raw: dict[str, Any]
    run: RunSettings
    cohort: CohortConfig
    clinical: ClinicalConfig
    synthetic: Any | None              # SynthConfig
    preprocess: Any | None             # PreprocessConfig (None: disabled)
    segmentation: Any | None           # SegmentationConfig (None: manual masks only)
    segmentation_train_patients: int | None  # a seeded subset of the grading training patients
    radiomics: RadiomicsSection
    agreement: AgreementSection
    deep3d: dict[str, Any]             # variant -> Deep3DConfig ({} : disabled)
    deep3d_cross_fit: int              # folds of the cross-fitted CNNs for stacking (0: off)
    deep2d: Any | None                 # Deep2DConfig
    imagenet_weights: Path | None
    grading: Any | None                # GradingConfig (None: grading off)
    grading_scheme: str
    survival: Any | None               # SurvivalConfig
    report: ReportSection
    deep2d_cross_fit: int = 0          # folds of the cross-fitted 2D CNNs for the signature (0: off)
    notes: tuple[str, ...] = ()        # what the config resolution changed (config check prints)

    def section_json(self, name: str) -> Any:
        """The resolved settings of a section as JSON-able data (stage fingerprints)."""
        value = getattr(self, name)
        if isinstance(value, dict):
            return {k: v.model_dump(mode="json") for k, v in value.items()}
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return value

    def resolved(self) -> dict[str, Any]:
        """Every section fully resolved (presets expanded): written to the workspace."""
        out = {"source": self.source, "run": self.section_json("run"),
               "cohort": self.cohort.model_dump(mode="json"),
               "clinical": self.clinical.model_dump(mode="json")}
        for name in ("synthetic", "preprocess", "segmentation", "radiomics", "agreement", "deep3d",
                     "deep2d", "grading", "survival", "report"):
            out[name] = self.section_json(name)
        out["grading_scheme"] = self.grading_scheme
        out["deep3d_cross_fit"] = self.deep3d_cross_fit
        if self.deep2d_cross_fit:  # off: left out, so configs made before it keep their dump
            out["deep2d_cross_fit"] = self.deep2d_cross_fit
        out["segmentation_train_patients"] = self.segmentation_train_patients
        out["imagenet_weights"] = str(self.imagenet_weights) if self.imagenet_weights else None
        return out


def preset_path(name: str) -> Path:
    check_option("run preset", name, RUN_PRESETS)
    return PRESET_DIR / f"{name}.yaml"


def preset_text(name: str) -> str:
    """The documented YAML of a packaged preset (``gliorad config show``)."""
    return preset_path(name).read_text(encoding="utf-8")


def preset_data(name: str, where: str = "run preset", _seen: tuple[str, ...] = ()
                ) -> dict[str, Any]:
    """The settings of a packaged preset, with those of the preset it starts from (its own
    ``preset:`` key, e.g. ``best`` starts from ``paper``) laid under them by the merge rule."""
    check_option(where, str(name), RUN_PRESETS)
    if name in _seen:
        raise GlioradInputError(f"run preset {name!r}: the presets start from each other in a "
                                f"circle ({' -> '.join((*_seen, name))})")
    path = preset_path(name)
    data = read_yaml_mapping(path)
    if "preset" in data:
        base = preset_data(str(data.pop("preset")), f"{path}: preset", (*_seen, name))
        data = _merge(_own_cohort(base, data), data)
    return data


def load_run_config(spec: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """A packaged preset name (``demo``, ``paper``, ``best``) or a YAML file; a file may begin
    with ``preset: demo`` to start from a packaged preset (as ``best`` starts from ``paper``).
    ``overrides`` (nested) are applied last."""
    if isinstance(spec, str) and spec in RUN_PRESETS:
        path, data = preset_path(spec), preset_data(spec)
    else:
        path = Path(spec)
        if not path.is_file() and str(spec) not in RUN_PRESETS and "/" not in str(spec) \
                and not str(spec).endswith((".yaml", ".yml")):
            raise GlioradInputError(
                f"run config {str(spec)!r} is neither a preset ({', '.join(RUN_PRESETS)}) nor a file")
        data = read_yaml_mapping(path)
        if "preset" in data:
            name = data.pop("preset")
            data = _merge(_own_cohort(preset_data(str(name), f"{path}: preset"), data), data)
    data.pop("preset", None)
    if overrides:
        data = _merge(_own_cohort(data, overrides), overrides)
    return parse_run_config(data, str(path), base=path.parent)


def _own_cohort(base: Mapping[str, Any], update: Mapping[str, Any]) -> Mapping[str, Any]:
    """``base`` without its ``synthetic:`` section when ``update`` names a cohort folder of its
    own (``cohort.root``) and no synthetic cohort: your cohort, not the preset's generated one."""
    cohort = update.get("cohort")
    if isinstance(cohort, Mapping) and cohort.get("root") is not None and "synthetic" not in update:
        return {k: v for k, v in base.items() if k != "synthetic"}
    return base


def parse_run_config(data: Mapping[str, Any], source: str = "config",
                     base: Path | None = None) -> RunConfig:
    """Validate a run-config mapping (see the module docstring). Only the stages' light settings
    modules are imported (no torch, SimpleITK, pyradiomics or scikit-learn)."""
    from gliorad.features.config import DEEP2D_PRESETS, DEEP3D_PRESETS, Deep2DConfig, Deep3DConfig
    from gliorad.grading.config import PRESETS as GRADING_PRESETS
    from gliorad.grading.config import GradingConfig
    from gliorad.preprocess.config import PRESETS as PREPROCESS_PRESETS
    from gliorad.preprocess.config import make_config
    from gliorad.segmentation.config import PRESETS as SEG_PRESETS
    from gliorad.segmentation.config import SegmentationConfig
    from gliorad.survival.config import PRESETS as SURV_PRESETS
    from gliorad.survival.config import SurvivalConfig
    from gliorad.synthetic_config import SynthConfig

    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise GlioradInputError(f"{source}: unknown section(s) {', '.join(map(repr, unknown))}; "
                                f"expected: {', '.join(SECTIONS)}")
    sec = {name: (data.get(name) if data.get(name) is not None else {}) for name in SECTIONS}
    where = lambda name: f"{source}: {name}"

    run = validate(RunSettings, sec["run"], source, "run")
    cohort = validate(CohortConfig, sec["cohort"], source, "cohort")
    clinical = validate(ClinicalConfig, sec["clinical"], source, "clinical")
    if base is not None:
        if cohort.root is not None and not cohort.root.is_absolute():
            cohort = cohort.model_copy(update={"root": base / cohort.root})
        if clinical.path is not None and not clinical.path.is_absolute():
            clinical = clinical.model_copy(update={"path": base / clinical.path})
    synthetic = None
    if data.get("synthetic") is not None:
        synthetic = validate(SynthConfig, {"seed": run.seed, **sec["synthetic"]}, source, "synthetic")
    elif cohort.root is None:
        raise GlioradInputError(f"{where('cohort')}.root: required (the cohort folder), unless a "
                                "'synthetic:' section asks for a generated cohort")
    if synthetic is None and clinical.path is None:
        raise GlioradInputError(f"{where('clinical')}.path: required (the clinical table)")

    notes: list[str] = []
    seqs = _SequenceRule(list(cohort.sequences), source, notes)

    own, rest = _split(sec["preprocess"], {"enabled": False, "preset": "raw"}, where("preprocess"))
    preprocess = None
    if own["enabled"]:
        if synthetic is not None:
            raise GlioradInputError(f"{where('preprocess')}.enabled: a synthetic cohort is generated "
                                    "already preprocessed; set enabled: false")
        from gliorad.preprocess.config import PreprocessConfig

        rest = {**rest, "sequences": seqs.resolve("preprocess", "sequences", rest.get("sequences"),
                                                  PreprocessConfig().sequences)}
        reference = rest.get("reference", PreprocessConfig().reference)
        if reference not in rest["sequences"]:
            raise GlioradInputError(
                f"{where('preprocess')}.reference: {reference!r} (the sequence the others are "
                f"registered to) is not among the sequences {', '.join(rest['sequences'])}; set "
                "preprocess.reference to one of them (T1-Gd is the paper's choice)")
        check_option(f"{where('preprocess')}.preset", str(own["preset"]), PREPROCESS_PRESETS)
        try:
            preprocess = make_config(str(own["preset"]), **rest)
        except GlioradInputError as err:  # lines start with "preprocess."
            raise GlioradInputError([f"{source}: {p}" for p in err.problems]) from err

    own, rest = _split(sec["segmentation"], {"enabled": True, "preset": "demo", "train_patients": None},
                       where("segmentation"))
    segmentation, seg_train_n = None, own["train_patients"]
    if seg_train_n is not None and (not isinstance(seg_train_n, int) or isinstance(seg_train_n, bool)
                                    or seg_train_n < 2):
        raise GlioradInputError(f"{where('segmentation')}.train_patients: expected an integer >= 2 "
                                f"or null (all training patients) (got {seg_train_n!r})")
    if own["enabled"]:
        seg_base = SEG_PRESETS.config(str(own["preset"]), where=f"{where('segmentation')}.preset"
                                      ).model_dump()
        seg_base["sequences"] = seqs.resolve("segmentation", "sequences", rest.pop("sequences", None),
                                             seg_base["sequences"])
        segmentation = validate(SegmentationConfig, _merge(seg_base, rest, "segmentation"), source,
                                "segmentation")
        if segmentation.plan is not None:
            notes.append(
                "segmentation.plan: spacing, patch_size, net.features and the pooling strides "
                + ("and sequences (every one of cohort.sequences all training patients have) "
                   if segmentation.plan.all_sequences else "")
                + "are chosen from the training patients when the U-Net trains (segment/model/"
                "plans.json); the values shown for them here are the preset's starting points")

    radiomics = _check_radiomics(validate(RadiomicsSection, sec["radiomics"], source, "radiomics"),
                                 where("radiomics"), base)
    if radiomics.sequences is not None:
        seqs.resolve("radiomics", "sequences", radiomics.sequences, [])
    rad_seqs = _SequenceRule(list(radiomics.sequences or cohort.sequences), source, notes,
                             "radiomics.sequences" if radiomics.sequences else "cohort.sequences")
    agreement = validate(AgreementSection, sec["agreement"], source, "agreement")

    own, rest = _split(sec["deep3d"], {"enabled": True, "preset": "demo", "variants": ["patch_se"],
                                       "cross_fit": 0}, where("deep3d"))
    deep3d_cfgs: dict[str, Any] = {}
    cross_fit = _folds(own["cross_fit"], where("deep3d"))
    if own["enabled"]:
        variants = own["variants"]
        if not isinstance(variants, list) or not variants or len(set(variants)) != len(variants):
            raise GlioradInputError(f"{where('deep3d')}.variants: expected a non-empty list without "
                                    f"duplicates of {', '.join(DEEP3D_VARIANTS)} (got {variants!r})")
        base3 = DEEP3D_PRESETS.config(str(own["preset"]), where=f"{where('deep3d')}.preset")
        base3 = base3.model_copy(update={"sequences": seqs.resolve(
            "deep3d", "sequences", rest.pop("sequences", None), base3.sequences)})
        for v in variants:
            check_option(f"{where('deep3d')}.variants", str(v), DEEP3D_VARIANTS)
            merged = _merge(_merge(base3.model_dump(), rest, "deep3d"), DEEP3D_VARIANTS[v], "deep3d")
            deep3d_cfgs[v] = validate(Deep3DConfig, merged, source, "deep3d")

    own, rest = _split(sec["deep2d"], {"enabled": True, "preset": "demo", "imagenet_weights": None,
                                       "cross_fit": 0}, where("deep2d"))
    deep2d_cfg, weights = None, None
    cross_fit_2d = _folds(own["cross_fit"], where("deep2d"))
    if own["enabled"]:
        base2 = DEEP2D_PRESETS.config(str(own["preset"]), where=f"{where('deep2d')}.preset")
        base2 = base2.model_copy(update={"sequences": seqs.resolve(
            "deep2d", "sequences", rest.pop("sequences", None), base2.sequences)})
        deep2d_cfg = validate(Deep2DConfig, _merge(base2.model_dump(), rest, "deep2d"), source,
                              "deep2d")
        if own["imagenet_weights"] is not None:
            weights = Path(str(own["imagenet_weights"]))
            if base is not None and not weights.is_absolute():
                weights = base / weights
            if not weights.is_file():
                raise GlioradInputError(f"{where('deep2d')}.imagenet_weights: {weights} does not exist")

    own, rest = _split(sec["grading"], {"enabled": True, "preset": "demo", "scheme": "split"},
                       where("grading"))
    check_option(f"{where('grading')}.preset", str(own["preset"]), GRADING_PRESETS)
    check_option(f"{where('grading')}.scheme", str(own["scheme"]), ("split", "cv"))
    scheme = str(own["scheme"])
    grading = None
    if own["enabled"]:
        if scheme == "cv" and cross_fit and deep3d_cfgs:
            raise GlioradInputError(f"{where('deep3d')}.cross_fit: the stacked rows need "
                                    "grading.scheme split (the cross-fitted networks cover the "
                                    "split's training part); set cross_fit: 0 for scheme cv")
        grading = validate(GradingConfig, {**GRADING_PRESETS[str(own["preset"])], "seed": run.seed,
                                           **rest}, source, "grading")
    elif deep3d_cfgs:  # the 3D CNN learns the grade and feeds only the grading models
        notes[:] = [n for n in notes if not n.startswith("deep3d.")]
        notes.append("deep3d: off, because grading.enabled is false (the 3D CNN serves grading)")
        deep3d_cfgs, cross_fit = {}, 0

    own, rest = _split(sec["survival"], {"enabled": True, "preset": "demo"}, where("survival"))
    survival = None
    if own["enabled"]:
        check_option(f"{where('survival')}.preset", str(own["preset"]), SURV_PRESETS)
        merged = _merge({**SURV_PRESETS[str(own["preset"])], "seed": run.seed, "n_jobs": run.n_jobs},
                        rest, "survival")
        given = ((rest.get("sequence") or {}).get("sequences")
                 if isinstance(rest.get("sequence"), Mapping) else None)
        candidates = merged.get("sequence", {}).get("sequences", ["t1", "t1ce", "t2"])
        if given is not None or candidates:  # [] = every feature column, no sequence choice
            merged = _merge(merged, {"sequence": {"sequences": rad_seqs.resolve(
                "survival", "sequence.sequences", given, candidates)}}, "survival")
        if deep2d_cfg is None:
            merged = _merge(merged, {"sequence": {"deep_prefix": None}}, "survival")
        survival = validate(SurvivalConfig, merged, source, "survival")
    elif deep2d_cfg is not None:  # the 2D CNN's features feed only the survival signature
        notes[:] = [n for n in notes if not n.startswith("deep2d.")]
        notes.append("deep2d: off, because survival.enabled is false (the 2D CNN serves the "
                     "survival signature)")
        deep2d_cfg, weights = None, None
    if grading is None and survival is None:
        notes.append("grading and survival are both off: the run makes masks and features only")

    report = validate(ReportSection, sec["report"], source, "report")
    if segmentation is None and agreement.enabled:
        agreement = agreement.model_copy(update={"enabled": False})
        notes.append("agreement: off, because segmentation.enabled is false (the ICC compares "
                     "automatic with manual masks)")
    return RunConfig(source=source, raw=dict(data), run=run, cohort=cohort, clinical=clinical,
                     synthetic=synthetic, preprocess=preprocess, segmentation=segmentation,
                     segmentation_train_patients=seg_train_n,
                     radiomics=radiomics, agreement=agreement, deep3d=deep3d_cfgs,
                     deep3d_cross_fit=cross_fit if deep3d_cfgs else 0, deep2d=deep2d_cfg,
                     imagenet_weights=weights, grading=grading, grading_scheme=scheme,
                     survival=survival, report=report,
                     deep2d_cross_fit=cross_fit_2d if deep2d_cfg is not None else 0,
                     notes=tuple(notes))


def _folds(value: Any, where: str) -> int:
    """A section's ``cross_fit``: 0 (off) or a number of folds >= 2."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 1 or value < 0:
        raise GlioradInputError(f"{where}.cross_fit: expected 0 (off) or a number of folds >= 2 "
                                f"(got {value!r})")
    return value


class _SequenceRule:
    """One source of truth for sequences: a stage's sequences default to the cohort's.

    A stage given its own ``sequences`` must use only sequences the cohort has (else an error
    naming the stage, the key and the available sequences). A stage that was not given any keeps
    its preset's choice (the paper's) when the cohort has all of those sequences, and otherwise
    takes the cohort's own, with a note.
    """

    def __init__(self, available: list[str], source: str, notes: list[str],
                 what: str = "cohort.sequences") -> None:
        self.available, self.source, self.notes, self.what = available, source, notes, what

    def resolve(self, stage: str, key: str, given: Any, preset: list[str]) -> list[str]:
        if given is not None:
            if not isinstance(given, list) or not all(isinstance(s, str) for s in given):
                raise GlioradInputError(f"{self.source}: {stage}.{key}: expected a list of "
                                        f"sequence names (got {given!r})")
            lacking = [s for s in given if s not in self.available]
            if lacking:
                raise GlioradInputError(
                    f"{self.source}: {stage}.{key}: {', '.join(lacking)} not in {self.what} "
                    f"(the cohort has {', '.join(self.available)}); set {stage}.{key} to some of "
                    f"those, or add the sequence to {self.what} if the cohort has it")
            return list(given)
        if all(s in self.available for s in preset):
            return list(preset)
        lacking = [s for s in preset if s not in self.available]
        self.notes.append(f"{stage}.{key}: the preset's {', '.join(preset)} needs "
                          f"{', '.join(lacking)}, which {self.what} lacks; using "
                          f"{', '.join(self.available)}")
        return list(self.available)


def _check_radiomics(section: RadiomicsSection, where: str, base: Path | None) -> RadiomicsSection:
    """Check the parameter preset or file (a relative file path is taken from the config's
    folder) and the region; returns the section with the resolved parameter path. A parameter
    file is validated by pyradiomics (which loads SimpleITK); a shipped preset needs no check."""
    from gliorad.features.config import RADIOMICS_PRESETS, REGIONS

    params = section.params
    if params not in RADIOMICS_PRESETS:
        from gliorad.features.radiomics import load_params

        if base is not None and not Path(params).is_absolute():
            params = str(base / params)
        try:
            load_params(params)
        except GlioradInputError as err:
            raise GlioradInputError([f"{where}.params: {p}" for p in err.problems]) from err
    if section.region not in REGIONS:
        raise GlioradInputError(f"{where}.region: {section.region!r} is not valid; expected one of: "
                                f"{', '.join(REGIONS)}")
    return section.model_copy(update={"params": params})


def check_run_inputs(cfg: RunConfig) -> list[str]:
    """What can be checked before the first stage, from the clinical table alone: each enabled
    analysis has the columns and the patients it needs, and the grading split can be made.

    Raises :class:`GlioradInputError` naming the config keys to change; returns notes (patients
    the analyses will leave out). A synthetic cohort is generated complete and is not checked.
    """
    if cfg.synthetic is not None or cfg.clinical.path is None:
        return []
    from gliorad.clinical import drop_missing, read_clinical

    path = Path(cfg.clinical.path)
    if not path.is_file():
        raise GlioradInputError(f"clinical.path: {path} does not exist")
    table = read_clinical(path, cfg.clinical)
    problems: list[str] = []
    notes: list[str] = []
    name = path.name

    def usable(fields: tuple[str, ...], what: str):
        excluded: list[dict[str, Any]] = []
        try:
            kept = drop_missing(table, fields, name, cfg.clinical.missing, excluded)
        except GlioradInputError as err:
            problems.extend(err.problems)
            return None
        if excluded:
            notes.append(f"{what}: {len(excluded)} patient(s) of {name} lack "
                         f"{' / '.join(fields)} and will be left out of it: "
                         f"{', '.join(r['patient_id'] for r in excluded[:10])}"
                         f"{' ...' if len(excluded) > 10 else ''}")
        return kept

    if cfg.grading is not None:
        graded = usable(("grade",), "grading")
        if graded is not None:
            n_hgg = int((graded["grade_group"] == "HGG").sum())
            n_lgg = int((graded["grade_group"] == "LGG").sum())
            if not len(graded):
                problems.append(
                    f"grading.enabled: {name} has no grade for any patient (column 'grade', or "
                    "map yours with clinical.columns.grade); set grading.enabled: false for a "
                    "cohort without grades")
            elif min(n_hgg, n_lgg) < 2:
                problems.append(
                    f"grading.enabled: {name} has {n_hgg} HGG and {n_lgg} LGG patient(s) with a "
                    "grade; grading needs at least 2 of each class. For an LGG-only (or "
                    "HGG-only) cohort set grading.enabled: false")
            elif cfg.grading_scheme == "split":
                from gliorad.grading.config import cv_problem, split_surely_fits

                if not split_surely_fits((n_hgg, n_lgg), cfg.grading.split_ratios):
                    import pandas as pd

                    from gliorad.grading.evaluate import split_positions  # scikit-learn

                    y = pd.Series((graded["grade_group"] == "HGG").astype(int).to_numpy())
                    try:
                        split_positions(y, cfg.grading)
                    except GlioradInputError as err:
                        cv = ("" if cv_problem(n_hgg, n_lgg, cfg.grading.cv_splits) else
                              ", or set grading.scheme: cv")
                        problems.extend(f"grading.split_ratios: {p}; more patients are needed{cv}"
                                        for p in err.problems)
            else:
                from gliorad.grading.config import cv_problem

                why = cv_problem(n_hgg, n_lgg, cfg.grading.cv_splits)
                if why:
                    problems.append(f"grading.cv_splits: {name}: {why}")
    if cfg.survival is not None:
        timed = usable(("os_time", "event"), "survival")
        if timed is not None:
            if not len(timed):
                problems.append(
                    f"survival.enabled: {name} has no survival time and event for any patient "
                    "(columns os_time, event, or map yours with clinical.columns); set "
                    "survival.enabled: false for a grading-only cohort")
            else:
                from gliorad.survival.coding import split_cohorts

                try:
                    split_cohorts(timed, cfg.survival.split, cfg.survival.seed)
                except GlioradInputError as err:
                    problems.extend(f"survival.split: {p}" for p in err.problems)
    if problems:
        raise GlioradInputError(problems)
    return notes
