"""Concept-quiz checks: the release checks the form of an answer, hidden tests its content."""

from .compare import CheckFailure
from .student import graded


@graded
def check_choice(question, answer, options="abcd", correct=None):
    """``answer`` is one letter of ``options``; when ``correct`` is given, it must be that letter.

    Visible test cells call this without ``correct``, so the release never
    shows an answer; the hidden tests pass ``correct``.
    """
    choices = ", ".join(repr(o) for o in options)
    if not isinstance(answer, str) or answer.strip().lower() not in options:
        raise CheckFailure(
            f"Quiz question {question}: the answer must be one of {choices} (a string), got {answer!r}.\n"
            f"  Set the variable to your choice, for example answer_{question} = 'a', and run the cell."
        )
    if correct is not None and answer.strip().lower() != correct:
        raise CheckFailure(
            f"Quiz question {question}: {answer!r} is not the right answer; reread the section the question cites."
        )
