"""The layout of ``gliorad.survival`` (issue 17): light settings, no import circle, no private
name imported across modules, every public name reachable from the package and the old
``gliorad.survival.analysis`` path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SURVIVAL = Path(__file__).resolve().parents[1] / "src" / "gliorad" / "survival"
HEAVY = ("numpy", "pandas", "scipy", "sklearn", "matplotlib", "lifelines", "sksurv", "torch",
         "SimpleITK")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``gliorad`` import in ``path``, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gliorad"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("gliorad")]
    return out


def test_settings_import_no_heavy_library():
    """``gliorad.survival.config`` (what a run config's check needs) loads none of the
    analysis's libraries, although the package's ``__init__`` runs first."""
    code = ("import sys, gliorad.survival.config as c; c.SurvivalConfig.preset('paper'); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_no_import_circle_and_no_private_imports():
    graph: dict[str, set[str]] = {}
    private = []
    for path in sorted(SURVIVAL.glob("*.py")):
        if path.name == "__init__.py":
            continue
        name = path.stem
        graph[name] = set()
        for module, names in _imports(path):
            if module.startswith("gliorad.survival."):
                graph[name].add(module.removeprefix("gliorad.survival."))
            private += [f"{path.name}: {module}.{n}" for n in names
                        if n.startswith("_") and n != "__version__"]
    assert graph["bundle"] >= {"config", "coding", "models"}  # the scan sees imports
    assert not private
    # depth-first search for a back edge
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail(f"import circle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_bundle_and_its_imports_never_import_the_writer():
    """save_bundle is called by the writer (artifacts); nothing the bundle imports imports the
    writer or the bundle back (the old analysis <-> bundle circle)."""
    for name in ("config", "coding", "models", "bundle"):
        modules = {m for m, _ in _imports(SURVIVAL / f"{name}.py")}
        assert not modules & {"gliorad.survival.artifacts", "gliorad.survival.analysis"}, name
        if name != "bundle":
            assert "gliorad.survival.bundle" not in modules, name


def test_public_names_resolve():
    import gliorad.survival as pkg

    for name in pkg.__all__:
        assert getattr(pkg, name) is not None, name
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match=r"has no attribute 'nope'"):
        pkg.nope  # noqa: B018
    import importlib.util

    assert importlib.util.find_spec("gliorad.survival.analysis") is None  # no facade module


def test_file_names_have_one_owner(tmp_path):
    """The writer's names come from AnalysisFiles / CVFiles (the report reads them there)."""
    from gliorad.survival.artifacts import AnalysisFiles, CVFiles, cohort_slug

    files = AnalysisFiles(tmp_path)
    assert files.km("TCGA A/1") == tmp_path / "km_TCGA_A_1.png"
    assert cohort_slug("TCGA A/1") == "TCGA_A_1"
    assert files.calibration_figure("clinical", "A", 1095.0).name == "calibration_clinical_A_1095d.png"
    assert files.paper_table("integrated", long=True).name == "table3_integrated_long.csv"
    assert files.predictions("B").name == "predictions_B.csv"
    assert files.metrics.name == "metrics.json" and files.bundle.name == "bundle"
    cv = CVFiles(str(tmp_path))
    assert (cv.folder, cv.folds.name, cv.out_of_fold.name, cv.km.name) == (
        tmp_path, "cv_folds.csv", "cv_out_of_fold.csv", "km_cv.png")
