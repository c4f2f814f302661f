"""Submissions nbgrader cannot take as they are: graded cells put back as released, unreadable notebooks flagged.

One run of the real ``nbgrader autograde`` on Chapter 1's NumPy notebook, with correct submissions damaged the ways
a notebook gets damaged (or tampered with), then an honest student. Stock nbgrader drops the student for most of
these, and ends the whole run at the nbformat 3 notebook.
"""

import copy
import hashlib
import json

import nbformat
import pytest

from autograder.grading import intake, pipeline
from autograder.tests.test_sandbox import ASSIGNMENT, NOTEBOOK, correct_submission, run_autograde, scores

FULL_MARKS = 17.0
pytestmark = pytest.mark.xdist_group("intake")  # one worker grades the class, once


def cell_of(notebook, grade_id):
    return next(c for c in notebook.cells if pipeline.grade_id(c) == grade_id)


def damaged(good, release):
    """{student: notebook text}: every way of damaging a correct notebook that these tests grade."""
    raw = nbformat.writes(good)
    texts = {"truncated": raw[: len(raw) // 2], "not_a_notebook": "my homework, as plain text"}
    version_3 = json.loads(raw)
    version_3.update(nbformat=3, nbformat_minor=0)
    texts["nbformat_3"] = json.dumps(version_3)

    def edited(change, base=good):
        notebook = copy.deepcopy(base)
        change(notebook)
        return json.dumps(notebook)

    def duplicate(grade_id):
        def change(notebook):
            cell = cell_of(notebook, grade_id)
            notebook.cells.insert(notebook.cells.index(cell), copy.deepcopy(cell))  # same grade id, same cell id
        return change

    def to_markdown(notebook):
        cell = cell_of(notebook, "test_normalize")
        cell.cell_type = "markdown"
        del cell["outputs"], cell["execution_count"]

    def renamed(notebook):
        cell_of(notebook, "test_bn_backward_dx").metadata.nbgrader["grade_id"] = "test_renamed"

    def points(notebook):
        cell_of(notebook, "test_bn_backward_dx").metadata.nbgrader["points"] = 100

    def edited_test(notebook):
        cell_of(notebook, "test_batch_mean").source = "pass"

    def fake_checks(notebook):  # the setup cell deleted, a lenient `checks` defined, nothing solved
        notebook.cells.remove(cell_of(notebook, "setup"))
        notebook.cells.insert(1, nbformat.v4.new_code_cell(
            "import types\nchecks = types.SimpleNamespace(__getattr__=None)\n"
            "for name in ['batch_mean', 'batch_var', 'normalize', 'scale_shift', 'bn_forward', 'dgamma_dbeta', "
            "'dx']:\n    setattr(checks, 'check_' + name, lambda *args, **kwargs: None)\n"
            "check_choice = lambda *args, **kwargs: None\n"
            "answer_q1 = answer_q2 = answer_q3 = 'a'  # wrong: only a lenient check_choice passes them"))

    texts.update(
        duplicated_test=edited(duplicate("test_batch_mean")),
        duplicated_answer=edited(duplicate("batch_mean")),
        deleted_test=edited(lambda nb: nb.cells.remove(cell_of(nb, "test_batch_var"))),
        test_to_markdown=edited(to_markdown),
        metadata_stripped=edited(lambda nb: setattr(cell_of(nb, "test_scale_shift"), "metadata", {})),
        grade_id_renamed=edited(renamed),
        points_100=edited(points),
        test_edited=edited(edited_test),
        setup_deleted_fake_checks=edited(fake_checks, base=release),
    )
    return texts


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = pipeline.new_course(ASSIGNMENT, tmp_path_factory.mktemp("intake") / "course")
    good = correct_submission(course)
    release = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    texts = damaged(good, release)
    texts["zz_honest"] = nbformat.writes(good)
    for student, text in texts.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / NOTEBOOK).write_text(text)
    before = {s: hashlib.sha256(t.encode()).hexdigest() for s, t in texts.items()}
    code, output, seconds = run_autograde(course)
    return course, list(texts), before, code, output


def test_the_run_goes_on_and_grades_everyone(graded):
    course, students, before, code, output = graded
    assert code == 0, output[-3000:]
    results = scores(course, students)
    assert all(results[s]["max_score"] == FULL_MARKS for s in students), results
    assert results["zz_honest"]["score"] == FULL_MARKS
    after = {s: hashlib.sha256((course / "submitted" / s / ASSIGNMENT / NOTEBOOK).read_bytes()).hexdigest()
             for s in students}
    assert after == before  # the submitted files are never changed


@pytest.mark.parametrize("student", ["truncated", "not_a_notebook", "nbformat_3"])
def test_an_unreadable_notebook_scores_zero_and_says_why(graded, student):
    course, students, _, _, output = graded
    assert scores(course, [student])[student]["score"] == 0
    graded_notebook = nbformat.read(course / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert graded_notebook.cells[0].source.startswith(f"**{intake.FLAG}**"), graded_notebook.cells[0].source
    assert f"{intake.FLAG} {course}/submitted/{student}/" in output


@pytest.mark.parametrize("student", ["duplicated_test", "duplicated_answer", "deleted_test", "test_to_markdown",
                                     "metadata_stripped", "grade_id_renamed", "points_100", "test_edited"])
def test_graded_cells_come_back_as_released(graded, student):
    course, *_ = graded
    result = scores(course, [student])[student]
    assert result["score"] == result["max_score"] == FULL_MARKS, result["cells"]


def test_deleting_the_setup_cell_does_not_bring_in_a_lenient_checks(graded):
    # The quiz parts prove the mechanism: their hidden call is check_choice(..., correct=...), whose name only the
    # gradebook's setup cell, run on the trusted side, binds to the grader's library (with those setup cells
    # planted out, the lenient check_choice passes the wrong answers: 3 points). The other parts would score 0
    # anyway: their hidden inputs are not data, so they cannot be passed to a lenient check in the kernel.
    course, *_ = graded
    assert scores(course, ["setup_deleted_fake_checks"])["setup_deleted_fake_checks"]["score"] == 0
