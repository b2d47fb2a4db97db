"""gliorad: automated glioma grading and LGG survival prediction from brain MRI (Xu et al. 2022).

The command line is :mod:`gliorad.cli`; the module map is docs/architecture.md.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
