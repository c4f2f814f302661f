"""Grading end to end with the real nbgrader CLI: solutions, releases and planted bugs.

For each solution notebook one nbgrader course is made in a temporary
directory; the committed release, a correct submission and every planted bug
of the notebook's corpus are autograded together, and feedback is generated.
"""

import functools
import tempfile

import pytest

from autograder.grading import pipeline
from autograder.grading.mutants import corpus

from autograder.grading.pipeline import EXERCISES, SOLUTIONS

from .conftest import normalized, read_notebook, source_notebooks, visible_text

# The minimum corpus size per notebook.
MINIMUM_CORPUS = {"01_four_steps_numpy": 12, "01_four_steps_torch": 6,
                  "02_train_vs_eval_numpy": 10, "02_train_vs_eval_torch": 10,
                  "03_placement_numpy": 10, "03_placement_torch": 10,
                  "04_variants_numpy": 10, "04_variants_torch": 10}

NOTEBOOKS = source_notebooks()


@functools.lru_cache(maxsize=None)
def graded(assignment, notebook_name):
    """Autograde solution, release and planted bugs of one notebook (once per test process)."""
    solution = read_notebook(SOLUTIONS / assignment / notebook_name)
    release = read_notebook(EXERCISES / assignment / notebook_name)
    submissions = {
        "correct": {notebook_name: pipeline.filled_in(release, solution)},
        "untouched": {notebook_name: release},
    }
    for mutant in corpus(notebook_name[:-len(".ipynb")]):
        submissions[f"bug_{mutant.name}"] = {notebook_name: pipeline.filled_in(release, solution, mutant.replacements)}
    workdir = tempfile.mkdtemp(prefix=f"grade_{notebook_name[:-6]}_")
    return pipeline.autograde(assignment, submissions, workdir)


def _grouped(assignment, notebook_name, *rest):
    return pytest.param(assignment, notebook_name, *rest, marks=pytest.mark.xdist_group(notebook_name),
                        id="-".join([notebook_name[:-6], *map(str, rest)]))


@pytest.mark.parametrize("assignment, notebook_name", [_grouped(a, n) for a, n in NOTEBOOKS])
def test_correct_submission_scores_full_marks(assignment, notebook_name):
    result = graded(assignment, notebook_name)["correct"]
    lost = {cell: score for cell, score in result["cells"].items() if score[0] != score[1]}
    assert result["max_score"] > 0
    assert result["score"] == result["max_score"], f"cells that lost points: {lost}"


@pytest.mark.parametrize("assignment, notebook_name", [_grouped(a, n) for a, n in NOTEBOOKS])
def test_untouched_release_scores_zero(assignment, notebook_name):
    result = graded(assignment, notebook_name)["untouched"]
    assert result["score"] == 0, f"points for an empty notebook: {result['cells']}"
    assert result["feedback"], "nbgrader produced no feedback for the untouched release"


@pytest.mark.parametrize("assignment, notebook_name", [_grouped(a, n) for a, n in NOTEBOOKS])
def test_corpus_is_large_enough(assignment, notebook_name):
    stem = notebook_name[:-len(".ipynb")]
    assert len(corpus(stem)) >= MINIMUM_CORPUS.get(stem, 6)


MUTANT_CASES = [_grouped(a, n, m.name) for a, n in NOTEBOOKS for m in corpus(n[:-len(".ipynb")])]


@pytest.mark.parametrize("assignment, notebook_name, mutant_name", MUTANT_CASES)
def test_planted_bug_loses_points_with_its_diagnosis(assignment, notebook_name, mutant_name):
    """A planted bug loses points (in the cells it must), keeps the others it must; a correct variant scores full."""
    stem = notebook_name[:-len(".ipynb")]
    mutant = next(m for m in corpus(stem) if m.name == mutant_name)
    results = graded(assignment, notebook_name)
    result = results[f"bug_{mutant_name}"]
    cells = {cell.split("/", 1)[1]: score for cell, score in result["cells"].items()}
    if mutant.diagnosis is None:
        lost = {cell: score for cell, score in cells.items() if score[0] != score[1]}
        assert not lost, f"the correct variant {mutant_name} lost points: {lost}"
        return
    assert result["score"] < results["correct"]["score"], f"the bug {mutant_name} kept full marks"
    for cell in mutant.loses:
        assert cells[cell][0] < cells[cell][1], f"the bug {mutant_name} kept the points of {cell}"
    for cell in mutant.keeps:
        assert cells[cell][0] == cells[cell][1], f"the bug {mutant_name} lost the points of {cell}, which it must keep"
    feedback = " ".join(visible_text(page) for page in result["feedback"].values())
    assert normalized(mutant.expected_text(stem)) in feedback, (
        f"the feedback for {mutant_name} does not name the mistake ({mutant.expected_text(stem)!r})")
