"""Quiz cells: the visible cell says that an answer is recorded, never whether it is right; the hidden one judges it."""

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.compare import CheckFailure
from autograder.grading.pipeline import EXERCISES
from autograder.quiz import check_choice

from .conftest import read_notebook


def quiz_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code" and "check_choice(" in cell.source]


RELEASED = sorted(path for path in EXERCISES.glob("*/*.ipynb") if quiz_cells(read_notebook(path)))


def test_a_right_and_a_wrong_answer_look_the_same_in_the_visible_cell():
    right, wrong = repr(check_choice("q1", "b")), repr(check_choice("q1", "c"))
    assert "recorded" in right and "graded" in right, right
    assert right.replace("'b'", "'c'") == wrong, "the visible cell's words depend on the answer's correctness"


def test_the_hidden_check_judges_without_promising_a_citation():
    assert check_choice("q1", "b", correct="b") is None
    with pytest.raises(CheckFailure) as failure:
        check_choice("q1", "c", correct="b")
    message = str(failure.value)
    assert "'c' is not the right answer" in message
    assert "cite" not in message, f"no quiz question cites a section: {message}"


def test_a_malformed_answer_still_fails_the_visible_cell():
    with pytest.raises(CheckFailure, match="must be one of"):
        check_choice("q1", "e")


def test_every_released_quiz_cell_says_the_answer_is_recorded(tmp_path):
    """Run every released quiz test cell after an answer, as a student would (one kernel for all notebooks)."""
    assert RELEASED, "no released notebook has quiz cells"
    cells, shown_by = [], []
    for path in RELEASED:
        release = read_notebook(path)
        setup = next(cell for cell in release.cells
                     if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup")
        assert IMPORT in setup.source, f"{path.name}: the setup cell no longer imports check_choice"
        quiz = quiz_cells(release)
        cells.append(nbformat.v4.new_code_cell("\n".join(f"answer_q{k} = 'a'" for k in range(1, len(quiz) + 1))))
        for cell in quiz:
            cells.append(nbformat.v4.new_code_cell(cell.source))
            shown_by.append((path.name, cells[-1]))
        instructions = "\n".join(cell.source for cell in release.cells if cell.cell_type == "markdown")
        assert "shows that your answer is recorded" in instructions, f"{path.name} does not say what a quiz cell shows"
        assert "A test cell prints nothing" not in instructions, f"{path.name}: quiz cells do show something"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(IMPORT), *cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for name, cell in shown_by:
        shown = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                        for output in cell.outputs)
        assert "is recorded" in shown and "does not say whether it is right" in shown, \
            f"{name}: the quiz cell\n{cell.source}\nshowed {shown!r}"


IMPORT = "from autograder.quiz import check_choice"
