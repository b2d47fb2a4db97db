"""Synthetic two-centre glioma cohort with known ground truth (for the demo, tests and benchmarks).

Brains are built on the MNI152 2009 template and its grey/white-matter maps shipped inside nilearn's
wheel (no download). The generative model, whose parameters go to ``truth.json``:

1. **Patient parameters** (:func:`sample_patients`, cheap, no images):

   * malignancy ``m``, peritumoural infiltration ``u`` and T2-FLAIR mismatch ``w``, each
     ``N(0, 1)``; ``P(HGG) = sigmoid(grade_slope*m + infiltration_slope*u + mismatch_slope*w +
     logit(hgg_fraction))`` is the patient's true grade probability; grade
     ``~ Bernoulli(P(HGG))``. ``m`` shows *inside* the
     tumour (size, irregularity, oedema, enhancing rim, necrosis, texture); ``u`` shows only
     *around* it: a band of T2/FLAIR-hyperintense, T1-hypointense signal along the white matter
     beyond the delineated oedema, as wide as ``infiltration_mm`` (grows with ``u``), which is not
     part of the tumour labels (it stands in for non-enhancing infiltration that manual
     delineation leaves out). Features computed inside the tumour mask therefore see ``m`` but
     hardly ``u``; a network looking at a tumour-centred patch can see both. ``w`` shows only on
     FLAIR: the non-enhancing core is FLAIR-suppressed while staying T2-bright (the T2-FLAIR
     mismatch sign of lower-grade astrocytomas), by ``flair_mismatch`` (large when ``w`` is low;
     the surrounding oedema by half as much, so the lesion keeps a brighter FLAIR rim).
     So radiomics of the FLAIR tumour sees ``(m, w)``, the paper's 3D CNN (T1, T1-Gd, T2 patches)
     sees ``(m, u)``, and only their combination can reach all three: the two sources are
     complementary by construction, as the paper's fusion assumes. Everything the images show
     about grade is a function of ``(m, u, w)``, so ``P(HGG)`` is the Bayes-optimal grade score
     (its AUC is the best achievable); ``truth.json`` also gives the AUC of each latent alone and
     of what each source can see.
   * survival phenotype ``z ~ N(0, 1)``: shows in the images as tumour volume and texture
     heterogeneity.
   * clinical variables: age, sex, WHO grade (LGG: II/III), histology, centre; location and
     laterality follow from where the tumour grows; contrast enhancement from whether it enhances.
   * overall survival from a Cox model with a Weibull baseline hazard. LGG:
     ``log HR = b_age*(age-45) + b_O*[oligodendroglioma] + b_OA*[oligoastrocytoma] +
     b_III*[grade III] + b_enh*[enhancement] + b_z*z``; HGG has its own baseline and
     ``b_age_hgg*(age-60) + b_z_hgg*z``. Censoring: administrative (uniform follow-up) and
     exponential loss to follow-up.

2. **Images** (:func:`render_patient`): per-patient anatomy jitter (small random affine of the
   tissue maps); a tumour with BraTS compartments (oedema 2, necrotic/non-enhancing core 1,
   enhancing 4) whose size, irregularity, oedema extent, enhancing rim and necrosis grow with ``m``
   and whose texture heterogeneity grows with ``m`` and ``z``; T1, T1-Gd, T2 and FLAIR from tissue
   contrasts; then centre-specific scanner effects (intensity scale, multiplicative bias field,
   Rician noise, and thicker slices at centre B). Images are skull-stripped like BraTS data.

3. **Feature tables** (:func:`synthetic_feature_table`, no images): seeded radiomics and deep
   feature columns whose first columns carry the survival phenotype ``z``, for the survival
   analysis's tests and benchmarks.

Deterministic for a given seed: patient ``i`` draws from ``SeedSequence(seed).spawn``'s ``i``-th
child, whatever the number of workers; the clinical table does not depend on the voxel spacing.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml
from scipy import ndimage

from gliorad.cohort import NAMING_SCHEMES, STANDARD_SEQUENCES
from gliorad.errors import GlioradInputError
from gliorad.io import atomic_dir, nibabel_to_image, write_image, write_json, write_text
from gliorad.synthetic_config import CentreEffects, SynthConfig  # noqa: F401  (light home)

# Relative signal per compartment (white matter on T1 = 0.85). Columns: csf, gm, wm, oedema,
# non-enhancing core, necrosis, enhancing tumour.
# non-enhancing core, necrosis, enhancing tumour, peritumoural infiltration (unlabelled).
COMPARTMENTS = ("csf", "gm", "wm", "oedema", "core", "necrosis", "enhancing", "infiltration")
CONTRASTS: dict[str, tuple[float, ...]] = {
    "t1": (0.30, 0.62, 0.85, 0.58, 0.48, 0.30, 0.56, 0.64),
    "t1ce": (0.30, 0.64, 0.85, 0.60, 0.50, 0.30, 1.35, 0.66),
    "t2": (1.00, 0.56, 0.40, 0.82, 0.88, 1.05, 0.66, 0.78),
    "flair": (0.18, 0.62, 0.50, 1.05, 0.96, 0.50, 0.82, 0.98),
}


# ---------------------------------------------------------------------------------------- atlas
@dataclass(frozen=True)
class Atlas:
    """Tissue probability maps (z, y, x) on the output grid, and that grid as a reference image."""

    reference: sitk.Image
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray


@functools.lru_cache(maxsize=4)
def load_atlas(spacing: float) -> Atlas:
    """MNI152 tissue maps from nilearn's wheel, resampled to an isotropic ``spacing`` grid."""
    from nilearn import datasets

    gm = nibabel_to_image(datasets.load_mni152_gm_template(resolution=1))
    wm = nibabel_to_image(datasets.load_mni152_wm_template(resolution=1))
    mask = nibabel_to_image(datasets.load_mni152_brain_mask(resolution=1))
    size = [math.ceil(n * s / spacing) for n, s in zip(gm.GetSize(), gm.GetSpacing())]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((spacing,) * 3)
    ref.SetOrigin(gm.GetOrigin())
    ref.SetDirection(gm.GetDirection())

    def on_grid(img: sitk.Image) -> np.ndarray:
        out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out)

    g, w, m = on_grid(gm), on_grid(wm), on_grid(mask) > 0.5
    g, w = np.where(m, g, 0), np.where(m, w, 0)
    c = np.clip(m - g - w, 0, 1).astype(np.float32)
    return Atlas(ref, g, w, c, m)


@functools.lru_cache(maxsize=1)
def _tumour_sites() -> np.ndarray:
    """Candidate tumour centres (LPS mm): deep white matter at least 18 mm inside the brain."""
    atlas = load_atlas(4.0)
    depth = ndimage.distance_transform_edt(atlas.mask) * 4.0
    zyx = np.argwhere((atlas.wm > 0.6) & (depth >= 18.0))
    ref = atlas.reference
    pts = [ref.TransformContinuousIndexToPhysicalPoint([float(i) for i in p[::-1]]) for p in zyx]
    return np.asarray(pts)


def location_of(point_lps: tuple[float, float, float]) -> tuple[str, str]:
    """Approximate lobe and hemisphere of an MNI point (LPS mm); documented heuristic boxes."""
    x_ras, y_ras, z = -point_lps[0], -point_lps[1], point_lps[2]
    side = "right" if x_ras > 0 else "left"
    ax = abs(x_ras)
    if ax < 22 and -30 < y_ras < 8 and -6 < z < 22:
        lobe = "deep"
    elif 28 < ax < 42 and -25 < y_ras < 15 and -8 < z < 20:
        lobe = "insula"
    elif z < 4 and -75 < y_ras < 22 and ax > 30:
        lobe = "temporal"
    elif y_ras > 0:
        lobe = "frontal"
    elif y_ras < -65:
        lobe = "occipital"
    else:
        lobe = "parietal"
    return lobe, side


# -------------------------------------------------------------------------------------- sampling
def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def patient_rngs(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _latent_draws(seed: int, n: int, child: int) -> np.ndarray:
    return np.array([np.random.default_rng(s.spawn(child + 1)[child]).normal()
                     for s in np.random.SeedSequence(seed).spawn(n)])


def infiltration_draws(seed: int, n: int) -> np.ndarray:
    """Infiltration ``u`` of each patient, from its own stream (a child of the patient's seed), so
    that the patient's other draws are those of a generator without ``u``: with
    ``infiltration_slope=0``, ``mismatch_slope=0`` and ``grade_slope=2.5`` the clinical table,
    grades and survival are those of gliorad before ``u`` existed (what the stored R reference
    tables were made from)."""
    return _latent_draws(seed, n, 0)


def mismatch_draws(seed: int, n: int) -> np.ndarray:
    """T2-FLAIR mismatch latent ``w`` of each patient, from a second child stream of the patient's
    seed (independent of ``u`` and of the patient's other draws)."""
    return _latent_draws(seed, n, 1)


def _weibull_time(rng: np.random.Generator, shape: float, median: float, lp: float) -> float:
    """Draw T with S(t) = exp(-(t/scale)^shape * exp(lp)), scale set by the baseline median."""
    scale = median / math.log(2.0) ** (1.0 / shape)
    return float(scale * (-math.log(rng.uniform()) / math.exp(lp)) ** (1.0 / shape))


def sample_patients(cfg: SynthConfig) -> pd.DataFrame:
    """Patient-level parameters, clinical variables and survival: one row per patient, no images."""
    sites = _tumour_sites()
    beta = _logit(cfg.hgg_fraction)
    rows = []
    u_all = infiltration_draws(cfg.seed, cfg.n_patients)
    w_all = mismatch_draws(cfg.seed, cfg.n_patients)
    for i, rng in enumerate(patient_rngs(cfg.seed, cfg.n_patients)):
        centre = "B" if rng.uniform() < cfg.centre_b_fraction else "A"
        m, z = float(rng.normal()), float(rng.normal())
        u, w = float(u_all[i]), float(w_all[i])
        p_hgg = float(_sigmoid(cfg.grade_slope * m + cfg.infiltration_slope * u
                               + cfg.mismatch_slope * w + beta))
        hgg = bool(rng.uniform() < p_hgg)
        s = float(_sigmoid(1.8 * m))  # appearance strength from malignancy
        age = float(np.clip(rng.normal(60.0, 12.0) if hgg else rng.normal(44.0, 13.0), 18, 89))
        grade = "IV" if hgg else ("III" if rng.uniform() < _sigmoid(1.5 * m + 0.3) else "II")
        histology = "GBM" if hgg else str(rng.choice(
            ["astrocytoma", "oligodendroglioma", "oligoastrocytoma"], p=[0.45, 0.40, 0.15]))
        enhancing = bool(rng.uniform() < _sigmoid(3.0 * m + 1.0))
        site = sites[rng.integers(len(sites))]
        lobe, side = location_of(tuple(site))
        row = {
            "patient_id": f"SYN{centre}_{i + 1:04d}", "centre": centre,
            "malignancy_m": m, "infiltration_u": u, "mismatch_w": w, "phenotype_z": z, "grade_probability": p_hgg,
            "grade_group": "HGG" if hgg else "LGG", "grade": grade, "histology": histology,
            "age": round(age, 1), "sex": "M" if rng.uniform() < 0.57 else "F",
            "enhancement": "yes" if enhancing else "no", "location": lobe, "laterality": side,
            "site_x": site[0], "site_y": site[1], "site_z": site[2],
            # tumour appearance
            "core_radius_mm": float(np.clip(13.0 * math.exp(0.22 * m + 0.15 * z + 0.12 * rng.normal()), 6, 32)),
            "irregularity": 0.08 + 0.22 * s,
            "oedema_factor": 1.2 + 0.45 * s + 0.08 * abs(rng.normal()),
            "rim_mm": float(rng.uniform(2.5, 5.0)),
            "rim_coverage": (0.45 + 0.55 * s) if enhancing else 0.0,
            "necrosis_fraction": float(0.7 * _sigmoid(3.0 * (m - 0.3))) if enhancing else 0.0,
            "heterogeneity": float(max(0.02, 0.05 + 0.08 * s + 0.03 * z)),
            "infiltration_mm": float(cfg.infiltration_max_mm * _sigmoid(2.0 * u - 0.5)),
            # fraction by which FLAIR suppresses the non-enhancing core (T2 unchanged)
            "flair_mismatch": float(cfg.mismatch_max * _sigmoid(-2.0 * w)),
            # anatomy jitter
            "rot_deg": rng.uniform(-4, 4, 3).tolist(), "scale": rng.uniform(0.94, 1.06, 3).tolist(),
            "shift_mm": rng.uniform(-3, 3, 3).tolist(),
            "sequence_scale": (1 + cfg.centres[centre].scale_jitter * rng.uniform(-1, 1, 4)).tolist(),
            "image_seed": int(rng.integers(2**31 - 1)),
        }
        row.update(_survival(rng, row, cfg))
        rows.append(row)
    return pd.DataFrame(rows).set_index("patient_id")


def synthetic_feature_table(
    patients: pd.DataFrame,
    n_features: int = 1300,
    n_informative: int = 6,
    sequences: Sequence[str] = ("t1", "t1ce", "t2"),
    n_deep: int = 512,
    strength: Mapping[str, float] | None = None,
    noise: float = 0.6,
    seed: int = 0,
) -> pd.DataFrame:
    """Seeded feature table for demos, tests and benchmarks until real feature tables exist.

    ``n_deep`` deep columns ``cnn2d_000...`` and ``n_features - n_deep`` radiomics columns
    split (as evenly as possible) over ``sequences`` (``<seq>_original_firstorder_f000...``). In each block
    ``n_informative`` columns are ``a * phenotype_z + noise * N(0, 1)`` with ``a`` the block's
    strength (default: t1ce 1.0, deep 0.8, t1 0.4, t2 0.2, so T1-Gd carries the most prognostic
    information, as in the paper); the rest is noise (with a centre shift at centre B, a scanner
    effect). ``patients`` is :func:`gliorad.synthetic.sample_patients` output (``phenotype_z``).
    """
    if "phenotype_z" not in patients.columns:
        raise GlioradInputError("patients need the latent 'phenotype_z' column (gliorad.synthetic)")
    strength = dict(strength or {"t1ce": 1.0, "cnn2d": 0.8, "t1": 0.4, "t2": 0.2})
    rng = np.random.default_rng(seed)
    n = len(patients)
    z = patients["phenotype_z"].to_numpy(float)
    shift = (patients["centre"].to_numpy() == "B").astype(float) if "centre" in patients else np.zeros(n)
    n_rad = max(n_features - n_deep, 0)
    per_seq, extra = divmod(n_rad, max(len(sequences), 1))
    blocks: list[tuple[str, list[str]]] = []
    for i, s in enumerate(sequences):
        count = per_seq + (1 if i < extra else 0)
        blocks.append((s, [f"{s}_original_firstorder_f{j:03d}" for j in range(count)]))
    blocks.append(("cnn2d", [f"cnn2d_{j:03d}" for j in range(n_deep)]))
    cols = {}
    for key, names in blocks:
        a = float(strength.get(key, 0.0))
        X = rng.normal(size=(n, len(names))) + 0.3 * shift[:, None] * rng.normal(size=len(names))
        m = min(n_informative, len(names))
        X[:, :m] = a * z[:, None] + noise * rng.normal(size=(n, m))
        cols.update({nm: X[:, j] for j, nm in enumerate(names)})
    return pd.DataFrame(cols, index=patients.index)


def _survival(rng: np.random.Generator, row: dict, cfg: SynthConfig) -> dict:
    if row["grade_group"] == "LGG":
        b = cfg.lgg_cox
        lp = (b["age_per_year"] * (row["age"] - 45.0)
              + b["oligodendroglioma"] * (row["histology"] == "oligodendroglioma")
              + b["oligoastrocytoma"] * (row["histology"] == "oligoastrocytoma")
              + b["grade_III"] * (row["grade"] == "III")
              + b["enhancement"] * (row["enhancement"] == "yes")
              + b["phenotype_z"] * row["phenotype_z"])
        base = cfg.lgg_baseline
    else:
        b = cfg.hgg_cox
        lp = b["age_per_year"] * (row["age"] - 60.0) + b["phenotype_z"] * row["phenotype_z"]
        base = cfg.hgg_baseline
    t_true = _weibull_time(rng, base["shape"], base["median_days"], lp)
    admin = rng.uniform(*cfg.followup_years) * 365.25
    loss = rng.exponential(1.0 / cfg.loss_rate_per_year) * 365.25 if cfg.loss_rate_per_year > 0 else np.inf
    c = min(admin, loss)
    return {"latent_risk": float(lp), "true_time_days": t_true, "censor_time_days": float(c),
            "os_time": float(round(max(min(t_true, c), 1.0))), "event": int(t_true <= c)}


# ------------------------------------------------------------------------------------- rendering
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    return n / max(float(n.std()), 1e-6)


def _anatomy(atlas: Atlas, row: pd.Series) -> tuple[dict[str, np.ndarray], sitk.Transform]:
    """Tissue maps under the patient's random affine (rotation, scaling, shift about the centre)."""
    ref = atlas.reference
    centre = ref.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in ref.GetSize()])
    tx = sitk.AffineTransform(3)
    tx.SetCenter(centre)
    rx, ry, rz = np.deg2rad(row["rot_deg"])
    rot = sitk.Euler3DTransform(centre, float(rx), float(ry), float(rz)).GetMatrix()
    mat = np.asarray(rot).reshape(3, 3) @ np.diag(row["scale"])
    tx.SetMatrix(tuple(mat.ravel()))
    tx.SetTranslation(tuple(float(v) for v in row["shift_mm"]))
    maps = {}
    for name in ("gm", "wm", "csf", "mask"):
        img = sitk.GetImageFromArray(getattr(atlas, name).astype(np.float32))
        img.CopyInformation(ref)
        out = sitk.Resample(img, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        maps[name] = sitk.GetArrayFromImage(out)
    maps["mask"] = maps["mask"] > 0.5
    for name in ("gm", "wm", "csf"):
        maps[name] *= maps["mask"]
    return maps, tx


def _tumour(
    rng: np.random.Generator, row: pd.Series, ref: sitk.Image, tx: sitk.Transform,
    mask: np.ndarray, wm: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[slice, ...]]:
    """Label map (0/1/2/4) and soft compartment weights inside the tumour's bounding box."""
    sp = ref.GetSpacing()[0]
    site = tx.GetInverse().TransformPoint(tuple(float(row[k]) for k in ("site_x", "site_y", "site_z")))
    c_idx = np.asarray(ref.TransformPhysicalPointToContinuousIndex(site))[::-1]  # z, y, x
    r_core = row["core_radius_mm"] / sp
    r_inf = row.get("infiltration_mm", 0.0) / sp
    reach = r_core * row["oedema_factor"] * (1 + 2 * row["irregularity"]) + 1.5 * r_inf + 3
    lo = np.maximum(np.floor(c_idx - reach).astype(int), 0)
    hi = np.minimum(np.ceil(c_idx + reach).astype(int) + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    shape = tuple(hi - lo)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"))
    r = np.sqrt(((grid - c_idx[:, None, None, None]) ** 2).sum(0)) / r_core
    corr = max(1.5, 0.5 * r_core)  # noise correlation length ~ half the radius (voxels)
    r_core_eff = r / (1 + row["irregularity"] * _smooth_noise(rng, shape, corr))
    r_oed = r / (1 + 1.2 * row["irregularity"] * _smooth_noise(rng, shape, corr))
    # oedema spreads along white matter
    r_oed = r_oed / (0.8 + 0.2 * np.clip(wm[box], 0, 1) / max(float(wm[box].max()), 1e-6))
    in_brain = mask[box]
    core = (r_core_eff <= 1.0) & in_brain
    oedema = (r_oed <= row["oedema_factor"]) & in_brain & ~core
    rim_width = row["rim_mm"] / row["core_radius_mm"]
    coverage = _smooth_noise(rng, shape, corr) > _norm_ppf(1 - row["rim_coverage"])
    enh = core & (r_core_eff > 1.0 - rim_width) & coverage if row["rim_coverage"] > 0 else np.zeros_like(core)
    necrosis = core & (r_core_eff <= row["necrosis_fraction"])
    labels = np.zeros(shape, np.uint8)
    labels[oedema] = 2
    labels[core] = 1
    labels[enh] = 4
    weights = {
        "oedema": oedema, "core": core & ~enh & ~necrosis, "necrosis": necrosis & ~enh, "enhancing": enh,
    }
    soft = {k: ndimage.gaussian_filter(v.astype(np.float32), 0.6) for k, v in weights.items()}
    if r_inf > 0:
        # unlabelled infiltration: fades over r_inf voxels beyond the oedema, along white matter,
        # with an irregular (finger-like) front
        outside = in_brain & (labels == 0)
        dist = ndimage.distance_transform_edt(labels == 0)
        front = r_inf * np.clip(1 + 0.5 * _smooth_noise(rng, shape, corr), 0.2, None)
        wm_frac = np.clip(wm[box] / max(float(wm[box].max()), 1e-6), 0, 1)
        soft["infiltration"] = (np.sqrt(np.clip(1 - dist / front, 0, 1)) * wm_frac * outside).astype(np.float32)
    return labels, soft, box


def _norm_ppf(p: float) -> float:
    """Standard normal quantile (for the enhancing-rim coverage threshold)."""
    from scipy.stats import norm

    return float(norm.ppf(min(max(p, 1e-6), 1 - 1e-6)))


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    """Smooth multiplicative field exp(quadratic polynomial) with the given amplitude."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    c = rng.normal(0, 1, 9)
    poly = c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * y * z + c[5] * x * z \
        + c[6] * x * x + c[7] * y * y + c[8] * z * z
    poly = poly / max(float(np.abs(poly).max()), 1e-6)
    return np.exp(amplitude * poly).astype(np.float32)


def render_patient(row: pd.Series, cfg: SynthConfig) -> tuple[dict[str, sitk.Image], dict]:
    """Images (t1, t1ce, t2, flair, seg) of one patient, and per-image facts for truth.json."""
    atlas = load_atlas(cfg.spacing)
    rng = np.random.default_rng(int(row["image_seed"]))
    maps, tx = _anatomy(atlas, row)
    labels_box, soft, box = _tumour(rng, row, atlas.reference, tx, maps["mask"], maps["wm"])
    seg = np.zeros(maps["mask"].shape, np.uint8)
    seg[box] = labels_box
    centre = cfg.centres[row["centre"]]
    texture = 1.0 + row["heterogeneity"] * _smooth_noise(rng, labels_box.shape, 0.8)
    tumour_w = sum(soft.values())
    bias = _bias_field(rng, seg.shape, centre.bias_amplitude)
    images: dict[str, sitk.Image] = {}
    for j, seq in enumerate(STANDARD_SEQUENCES):
        con = dict(zip(COMPARTMENTS, CONTRASTS[seq]))
        if seq == "flair":  # mismatch: the non-enhancing lesion is FLAIR-dark, its rim less so
            con["core"] *= 1.0 - row.get("flair_mismatch", 0.0)
            con["oedema"] *= 1.0 - 0.5 * row.get("flair_mismatch", 0.0)
        img = con["csf"] * maps["csf"] + con["gm"] * maps["gm"] + con["wm"] * maps["wm"]
        sub = img[box]
        tum = sum(con[k] * w for k, w in soft.items()) * texture
        img[box] = sub * (1 - np.clip(tumour_w, 0, 1)) + tum * maps["mask"][box]
        if centre.slice_thickness_mm and centre.slice_thickness_mm > cfg.spacing:
            img = ndimage.uniform_filter1d(img, round(centre.slice_thickness_mm / cfg.spacing), axis=0)
        img = img * bias
        sd = centre.noise_sd
        img = np.sqrt((img + rng.normal(0, sd, img.shape)) ** 2 + rng.normal(0, sd, img.shape) ** 2)
        img = np.where(maps["mask"], img, 0.0)
        scale = centre.intensity_scale * row["sequence_scale"][j]
        out = sitk.GetImageFromArray(np.clip(np.round(img * scale), 0, 32767).astype(np.int16))
        out.CopyInformation(atlas.reference)
        images[seq] = out
    seg_img = sitk.GetImageFromArray(seg)
    seg_img.CopyInformation(atlas.reference)
    images["seg"] = seg_img
    vox_ml = cfg.spacing**3 / 1000.0
    facts = {f"volume_ml_label{k}": float((seg == k).sum() * vox_ml) for k in (1, 2, 4)}
    n_tumour = int((seg > 0).sum())
    facts["enhancing_fraction"] = float((seg == 4).sum() / max(n_tumour, 1))
    return images, facts


# ------------------------------------------------------------------------------------ the cohort
@dataclass(frozen=True)
class SynthResult:
    root: Path
    n_patients: int
    n_hgg: int
    n_lgg: int


CLINICAL_COLUMNS = ["patient_id", "age", "sex", "grade", "histology", "location", "laterality",
                    "enhancement", "centre", "os_time", "event"]


def _render_and_write(args: tuple[str, dict, dict, str]) -> tuple[str, dict]:
    pid, row, cfg_dict, out = args
    cfg = SynthConfig.model_validate(cfg_dict)
    images, facts = render_patient(pd.Series(row), cfg)
    scheme = NAMING_SCHEMES["brats2018"]
    for key, img in images.items():
        write_image(img, Path(out) / pid / scheme.filename(pid, key))
    return pid, facts


def _oracle_metrics(table: pd.DataFrame, cfg: SynthConfig) -> dict[str, float | None]:
    """Best achievable AUC / C-index (None where the cohort has no comparable pair)."""
    from lifelines.utils import concordance_index
    from sklearn.metrics import roc_auc_score

    out: dict[str, float | None] = {}
    y = (table["grade_group"] == "HGG").to_numpy()
    both = 0 < y.sum() < len(y)
    out["grade_auc_of_true_probability"] = (
        float(roc_auc_score(y, table["grade_probability"])) if both else None)
    # what a score seeing one latent, or one source's latents, can reach at best: features of the
    # FLAIR tumour see (m, w); a CNN on T1/T1-Gd/T2 patches sees (m, u)
    for key, col in (("malignancy", "malignancy_m"), ("infiltration", "infiltration_u"),
                     ("mismatch", "mismatch_w")):
        out[f"grade_auc_of_{key}_only"] = float(roc_auc_score(y, table[col])) if both else None
    slopes = {"malignancy_m": cfg.grade_slope, "infiltration_u": cfg.infiltration_slope,
              "mismatch_w": cfg.mismatch_slope}
    for key, cols in (("flair_tumour", ("malignancy_m", "mismatch_w")),
                      ("t1_t1ce_t2_patch", ("malignancy_m", "infiltration_u"))):
        score = sum(slopes[c] * table[c] for c in cols)
        out[f"grade_auc_of_{key}_cues"] = float(roc_auc_score(y, score)) if both else None
    lgg = table[table["grade_group"] == "LGG"]
    try:
        out["lgg_cindex_of_true_risk"] = float(
            concordance_index(lgg["os_time"], -lgg["latent_risk"], lgg["event"]))
    except ZeroDivisionError:  # lifelines: no comparable pair (too few LGG patients or events)
        out["lgg_cindex_of_true_risk"] = None
    return out


def generate_cohort(
    out_dir: str | Path, cfg: SynthConfig | None = None, n_jobs: int = 2, overwrite: bool = False
) -> SynthResult:
    """Write a synthetic cohort: one folder per patient (BraTS 2018 naming), ``clinical.csv``,
    ``truth.json`` and ``cohort.yaml``. The folder appears only when complete (built under a
    temporary name, then renamed); an existing folder is replaced only with ``overwrite``."""
    cfg = cfg or SynthConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: exists and is not a folder; give a folder for the cohort")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise GlioradInputError(f"{out}: folder exists and is not empty; pass overwrite to replace it")
    with atomic_dir(out) as tmp:
        table = sample_patients(cfg)
        jobs = [(pid, row.to_dict(), cfg.model_dump(), str(tmp)) for pid, row in table.iterrows()]
        if n_jobs > 1:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                facts = dict(pool.map(_render_and_write, jobs))
        else:
            facts = dict(map(_render_and_write, jobs))
        table = table.join(pd.DataFrame.from_dict(facts, orient="index"))
        _write_tables(tmp, table, cfg)
    n_hgg = int((table["grade_group"] == "HGG").sum())
    return SynthResult(out, len(table), n_hgg, len(table) - n_hgg)


def _write_tables(folder: Path, table: pd.DataFrame, cfg: SynthConfig) -> None:
    clinical = table.reset_index()[CLINICAL_COLUMNS]
    write_text(clinical.to_csv(index=False), folder / "clinical.csv")
    per_patient = json.loads(table.to_json(orient="index"))
    truth = {
        "generator": "gliorad.synthetic", "config": cfg.model_dump(), "contrasts": CONTRASTS,
        "time_unit": "days", "oracle": _oracle_metrics(table, cfg),
        "notes": {
            "grade_probability": "P(HGG | m, u, w) = sigmoid(grade_slope*m + infiltration_slope*u "
                                 "+ mismatch_slope*w + logit(hgg_fraction)); m shows inside the "
                                 "tumour labels, u only as unlabelled infiltration around them "
                                 "(infiltration_mm), w only on FLAIR as suppression of the "
                                 "non-enhancing core (flair_mismatch)",
            "latent_risk": "log hazard ratio of the generating Cox model (LGG and HGG models differ)",
        },
        "patients": per_patient,
    }
    write_json(truth, folder / "truth.json")
    cohort_yaml = {
        "cohort": {"root": ".", "naming": "brats2018", "sequences": list(STANDARD_SEQUENCES)},
        "clinical": {"path": "clinical.csv", "time_unit": "days"},
    }
    write_text(yaml.safe_dump(cohort_yaml, sort_keys=False), folder / "cohort.yaml")
