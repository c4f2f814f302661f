"""The release students get: generated from solutions/, in sync, and free of secrets."""

import time

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.grading import pipeline

from autograder.grading.pipeline import EXERCISES, SOLUTIONS

from .conftest import normalized, read_notebook, secret_lines, source_notebooks

NOTEBOOKS = source_notebooks()
IDS = [n[:-6] for _, n in NOTEBOOKS]


def test_exercises_match_a_fresh_generation():
    stale = pipeline.stale_exercises()
    assert not stale, f"regenerate with `python -m autograder.grading.pipeline release`; stale: {stale}"


def test_no_extra_exercises():
    expected = {(a, n) for a, n in NOTEBOOKS}
    present = {(p.parent.name, p.name) for p in EXERCISES.glob("*/*.ipynb")}
    assert present == expected


@pytest.mark.parametrize("assignment, notebook_name", NOTEBOOKS, ids=IDS)
def test_release_holds_no_solution_or_hidden_test(assignment, notebook_name):
    release_text = (EXERCISES / assignment / notebook_name).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in release_text
    shown = normalized("\n".join(cell.source for cell in read_notebook(EXERCISES / assignment / notebook_name).cells))
    leaked = [line for line in secret_lines(read_notebook(SOLUTIONS / assignment / notebook_name))
              if normalized(line) in shown]
    assert not leaked, f"solution or hidden-test lines in the release: {leaked[:5]}"


@pytest.mark.parametrize("assignment, notebook_name", NOTEBOOKS, ids=IDS)
def test_source_notebook_is_clean_and_complete(assignment, notebook_name):
    notebook = read_notebook(SOLUTIONS / assignment / notebook_name)
    nbformat.validate(notebook)
    ids = [cell.get("id") for cell in notebook.cells]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs a stable, unique id"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {cell.id} has outputs"
        grading = cell.metadata.get("nbgrader", {})
        if grading.get("grade") and cell.cell_type == "code":
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"test cell {cell.id} has no hidden tests"
            assert grading.get("points", 0) > 0
            assert cell.source.lstrip().startswith('"""'), f"test cell {cell.id} needs a one-line docstring"
        if grading.get("solution") and cell.cell_type == "code":
            assert pipeline.BEGIN_SOLUTION in cell.source, f"solution cell {cell.id} has no solution markers"


@pytest.mark.parametrize("assignment, notebook_name", NOTEBOOKS, ids=IDS)
def test_solution_notebook_executes_under_60_seconds(assignment, notebook_name, tmp_path):
    notebook = read_notebook(SOLUTIONS / assignment / notebook_name)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.perf_counter() - start
    print(f"{notebook_name}: executed in {elapsed:.1f} s")
    assert elapsed < 60, f"{notebook_name} took {elapsed:.1f} s"
