"""Concept-quiz checks: the release checks the form of an answer, hidden tests its content."""

from .compare import CheckFailure
from .student import graded


class Recorded:
    """What a visible quiz cell shows once an answer has the right form: taken, not judged."""

    def __init__(self, question, answer):
        self.question, self.answer = question, answer

    def __repr__(self):
        return (f"Quiz question {self.question}: your answer {self.answer!r} is recorded. It is graded when your "
                f"notebook is graded; this cell does not say whether it is right.")


@graded
def check_choice(question, answer, options="abcd", correct=None):
    """``answer`` is one letter of ``options``; when ``correct`` is given, it must be that letter.

    Visible test cells call this without ``correct``, so the release never
    shows an answer; the hidden tests pass ``correct``. Without ``correct``, a
    well-formed answer returns a :class:`Recorded`, which the notebook shows as
    the cell's result: the student sees that the answer was taken, and not
    whether it is right.
    """
    choices = ", ".join(repr(o) for o in options)
    if not isinstance(answer, str) or answer.strip().lower() not in options:
        raise CheckFailure(
            f"Quiz question {question}: the answer must be one of {choices} (a string), got {answer!r}.\n"
            f"  Set the variable to your choice, for example answer_{question} = 'a', and run the cell."
        )
    if correct is None:
        return Recorded(question, answer.strip().lower())
    if answer.strip().lower() != correct:
        raise CheckFailure(f"Quiz question {question}: {answer!r} is not the right answer.")
    return None
