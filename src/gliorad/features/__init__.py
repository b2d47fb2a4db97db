"""Features for grading and survival: handcrafted radiomics and their agreement between masks.

* :mod:`gliorad.features.radiomics`: pyradiomics per patient, sequence and mask source (automatic,
  manual), in parallel over cases, with presets in ``features/params/*.yaml``;
* :mod:`gliorad.features.agreement`: per-feature ICC between automatic-mask and manual-mask
  features (and between two raters), summary, figure and reliable-feature filter.

Submodules are imported on demand (``from gliorad.features import radiomics``), so importing the
package stays cheap.
"""
