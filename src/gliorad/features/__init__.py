"""Features for grading and survival.

* :mod:`gliorad.features.config`: the settings of the feature stages (light: no torch);
* :mod:`gliorad.features.radiomics`: pyradiomics per case (:func:`~gliorad.features.radiomics.radiomics_case`)
  and per cohort, presets in ``features/params/*.yaml``; tables in :mod:`.radiomics_tables`;
* :mod:`gliorad.features.agreement`: per-feature ICC between automatic-mask and manual-mask
  features (and between two raters), summary, figure and reliable-feature filter;
* :mod:`gliorad.features.deep`: the one feature-network runner and the per-case
  :func:`~gliorad.features.deep.deep_case`, with the 3D (:mod:`.deep3d`) and 2D dual-task
  (:mod:`.deep2d`) networks; training mechanics in :mod:`.deep_train`.

Submodules are imported on demand (``from gliorad.features import radiomics``), so importing the
package stays cheap (``gliorad config check`` must not load torch or SimpleITK).
"""

__all__ = ["agreement", "config", "deep", "deep2d", "deep3d", "deep_train", "radiomics",
           "radiomics_tables"]
