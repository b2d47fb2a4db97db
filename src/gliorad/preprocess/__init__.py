"""MRI preprocessing: raw MRI of one or many patients -> a cohort folder ready for the pipeline.

Per patient: N4 bias-field correction, co-registration of every sequence to the reference sequence
(T1-Gd by default), skull stripping (atlas-based by default, pluggable), resampling to 1 mm
isotropic, z-score inside the brain; outputs in BraTS 2018 naming with a QC record and picture.
See :mod:`gliorad.preprocess.pipeline` for the steps, :mod:`gliorad.preprocess.inputs` for how raw
files are found, :mod:`gliorad.preprocess.skullstrip` for the stripper registry and
:class:`PreprocessConfig` for the settings (``make_config("brats")`` for data that is already
skull-stripped and co-registered).
"""

from gliorad.preprocess.compare import dice, mask_dice_in_reference
from gliorad.preprocess.config import (
    DEFAULT_PATTERNS,
    PRESETS,
    PreprocessConfig,
    load_preprocess_config,
    make_config,
)
from gliorad.preprocess.inputs import RawPatient, find_raw_patients, match_files
from gliorad.preprocess.pipeline import (
    PatientResult,
    PreprocessResult,
    output_name,
    preprocess,
    run_patient,
    write_patient,
)
from gliorad.preprocess.skullstrip import (
    STRIPPERS,
    StripResult,
    atlas_strip,
    get_stripper,
    nonzero_strip,
    register_stripper,
)
from gliorad.preprocess.steps import (
    head_mask,
    intensity_stats,
    isotropic_grid,
    load_sequence,
    n4_correct,
    register,
    resample_to,
    zscore,
)

__all__ = [
    "DEFAULT_PATTERNS", "PRESETS", "STRIPPERS", "PatientResult", "PreprocessConfig",
    "PreprocessResult", "RawPatient", "StripResult", "atlas_strip", "dice", "find_raw_patients",
    "get_stripper", "head_mask", "intensity_stats", "isotropic_grid", "load_preprocess_config",
    "load_sequence", "make_config", "mask_dice_in_reference", "match_files", "n4_correct",
    "nonzero_strip", "output_name", "preprocess", "register", "register_stripper", "resample_to",
    "run_patient", "write_patient", "zscore",
]
