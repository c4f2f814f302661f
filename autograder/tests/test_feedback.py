"""Returned feedback shows verdicts and messages, never the hidden tests (autograder/grading/feedback.py).

One notebook is autograded with the real nbgrader (a correct submission, and
one with wrong and missing quiz answers and undefined functions, one that
blocks the hidden tests' import so that a hidden line fails), and every
feedback page is scanned for the lines of the source notebook's hidden-test
regions. The control generates the same feedback with nbgrader's stock
preprocessors and finds them: the scan can fail.
"""

import re

import pytest

from autograder.grading import pipeline
from autograder.grading.feedback import HideHiddenTests, strip_ansi

from .conftest import normalized, read_notebook, visible_text

pytestmark = pytest.mark.xdist_group("feedback")

ASSIGNMENT, NOTEBOOK = "01_four_steps", "01_four_steps_numpy.ipynb"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STOCK_PREPROCESSORS = '["nbgrader.preprocessors.GetGrades", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]'

# (solution cell, old, new): a wrong quiz answer (the hidden check fails), a
# missing one and a renamed function (a NameError on a visible line, which
# IPython quotes with the hidden lines after it), and a call of an undefined
# function inside the student's code (a NameError in the student's own frame).
WRONG = (
    ("quiz_answers", 'answer_q2 = "c"', 'answer_q2 = "d"'),
    ("quiz_answers", 'answer_q3 = "b"', ""),
    ("scale_shift", "def scale_shift(", "def scale_and_shift("),
    ("bn_forward", "batch_var(x)", "batch_variance(x)"),
)
STUDENT_LINE = "mean, var = batch_mean(x), batch_variance(x)"
# A student whose own check_choice fails where the hidden part passes the answer makes a hidden line fail (where
# test cells run in the kernel): IPython's traceback of that line quotes the hidden lines around it, the quiz
# answer among them, to exactly the student who should not see it.
BLOCKED = (("quiz_answers", 'answer_q3 = "b"',
            'answer_q3 = "b"\ndef check_choice(question, answer, **hidden):\n'
            '    if hidden:\n        raise RuntimeError("blocked")'),)


def squashed(text):
    """Text without any whitespace: highlighted code comes out of the HTML with spaces between tokens."""
    return "".join(text.split())


def hidden_test_lines(notebook):
    """Every line inside a hidden-test region that the notebook does not also show outside one."""
    hidden, public = set(), []
    for cell in notebook.cells:
        inside = False
        for line in cell.source.split("\n"):
            marker = line.strip()
            if marker == BEGIN_HIDDEN:
                inside = True
            elif marker == END_HIDDEN:
                inside = False
            elif inside and len(squashed(marker)) >= 10:
                hidden.add(marker)
            elif not inside:
                public.append(marker)
    public_text = squashed(normalized("\n".join(public)))
    return {line for line in hidden if squashed(normalized(line)) not in public_text}


def leaks(page, secrets):
    """The hidden-test lines, markers and quiz answers that a feedback page shows."""
    text = squashed(visible_text(page))
    found = sorted(line for line in secrets if squashed(normalized(line)) in text)
    found += [marker for marker in ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS") if marker in page]
    found += ["correct="] if "correct=" in text else []
    return found


def graded_course(tmp_path_factory, options=()):
    """The course directory, the autograded results and the hidden-test lines of the notebook."""
    solution = read_notebook(pipeline.SOLUTIONS / ASSIGNMENT / NOTEBOOK)
    release = read_notebook(pipeline.EXERCISES / ASSIGNMENT / NOTEBOOK)
    submissions = {"correct": {NOTEBOOK: pipeline.filled_in(release, solution)},
                   "wrong": {NOTEBOOK: pipeline.filled_in(release, solution, WRONG)},
                   "blocked": {NOTEBOOK: pipeline.filled_in(release, solution, BLOCKED)}}
    workdir = tmp_path_factory.mktemp("feedback")
    results = pipeline.autograde(ASSIGNMENT, submissions, workdir, options)
    secrets = hidden_test_lines(solution)
    # The scan is only as good as its list: the quiz answers must be on it.
    assert any('correct="b"' in line for line in secrets), sorted(secrets)
    return workdir, results, secrets


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Graded as the course grades this notebook: test cells in the grader's trusted process."""
    return graded_course(tmp_path_factory)


@pytest.fixture(scope="module")
def in_kernel_course(tmp_path_factory):
    """Graded with the test cells in the student's kernel (a course that sets ``trusted_notebooks = []``): IPython's
    tracebacks there quote the test cell's lines, hidden ones included."""
    return graded_course(tmp_path_factory, ["--SandboxedExecute.trusted_notebooks=[]"])


@pytest.mark.parametrize("student", ["correct", "wrong", "blocked"])
def test_feedback_never_shows_hidden_tests(course, student):
    _, results, secrets = course
    pages = results[student]["feedback"]
    assert set(pages) == {NOTEBOOK[:-len(".ipynb")]}, "nbgrader wrote no feedback for the notebook"
    for name, page in pages.items():
        assert not leaks(page, secrets), f"{student}'s feedback {name}.html shows hidden tests: {leaks(page, secrets)}"


def test_feedback_keeps_verdicts_and_messages(course):
    _, results, _ = course
    for student, result in results.items():
        text = visible_text(next(iter(result["feedback"].values())))
        assert f"(Score: {result['score']} / {result['max_score']})" in text, f"{student}: no total score"
        assert text.count("Score:") > len(result["cells"]), f"{student}: not every test cell shows its score"
    text = squashed(visible_text(results["wrong"]["feedback"][NOTEBOOK[:-len(".ipynb")]]))
    assert results["wrong"]["score"] < results["correct"]["score"]
    for message in ("Quiz question q2: 'd' is not the right answer",  # written by the hidden check
                    "NameError: name 'answer_q3' is not defined",
                    "NameError: name 'scale_shift' is not defined",
                    "NameError: name 'batch_variance' is not defined"):
        assert squashed(message) in text, f"the feedback lost the message {message!r}"
    # The student's own frame stays in the traceback: their line shows in
    # their cell and in the tracebacks of the cells that called it.
    assert text.count(squashed(STUDENT_LINE)) >= 2


def test_tracebacks_lose_hidden_lines_only(in_kernel_course):
    """The preprocessor on the autograded notebooks: hidden lines go; error, message and student frames stay."""
    workdir, results, secrets = in_kernel_course
    for student, result in results.items():
        for name, page in result["feedback"].items():
            assert not leaks(page, secrets), f"{student}'s feedback {name}.html shows hidden tests"

    def notebook(student):
        return read_notebook(workdir / "autograded" / student / ASSIGNMENT / NOTEBOOK)

    def traceback(notebook, grade_id):
        cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert errors, f"{grade_id} has no error output"
        return strip_ansi("\n".join(errors[0].traceback))

    def quoted(text):
        return [line for line in secrets if line in text] + [m for m in ("HIDDEN TESTS", "correct=") if m in text]

    wrong, blocked = notebook("wrong"), notebook("blocked")
    # The faults this preprocessor exists for: IPython quotes the lines around
    # the failing one, the hidden ones too, and around a failing hidden line
    # the quiz answer.
    assert quoted(traceback(wrong, "test_quiz_q3")) and quoted(traceback(wrong, "test_scale_shift"))
    assert 'check_choice("q1", answer_q1, correct="b")' in traceback(blocked, "test_quiz_q1")

    for student_notebook in (wrong, blocked):
        HideHiddenTests().preprocess(student_notebook, {})
        for cell in student_notebook.cells:
            text = cell.source + "".join(strip_ansi("\n".join(o.get("traceback", []))) for o in cell.get("outputs", []))
            assert not quoted(text), text

    notice = HideHiddenTests().notice.strip()
    after = traceback(wrong, "test_quiz_q3")
    assert 'check_choice("q3", answer_q3)' in after, "the failing (visible) line was removed"
    assert "NameError: name 'answer_q3' is not defined" in after and notice in after, after
    after = traceback(blocked, "test_quiz_q1")
    assert "RuntimeError: blocked" in after and notice in after, after
    after = traceback(wrong, "test_bn_forward")
    assert STUDENT_LINE in after, "the student's own frame was removed"
    assert "NameError: name 'batch_variance' is not defined" in after
    assert re.search(r"CheckFailure: .*batch_variance", after), after


def test_stock_feedback_would_show_hidden_tests(course):
    """Control: nbgrader's own feedback preprocessors on the same gradebook leak what the scan looks for."""
    workdir, _, secrets = course
    pipeline.nbgrader(["generate_feedback", ASSIGNMENT, "--force", "--CourseDirectory.feedback_directory=stock",
                       f"--GenerateFeedback.preprocessors={STOCK_PREPROCESSORS}"], workdir)
    for student in ("correct", "wrong", "blocked"):
        page = (workdir / "stock" / student / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")).read_text()
        found = leaks(page, secrets)
        assert "BEGIN HIDDEN TESTS" in found and "correct=" in found, found
        assert any('correct="b"' in line for line in found), found
