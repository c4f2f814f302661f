"""The planted-bug corpus: classic mistakes, each planted into a solution notebook.

A module per notebook (``autograder/grading/mutants/<notebook stem>.py``) defines
``MUTANTS``, a list of :class:`Mutant`. The test suite plants each one into
a correct submission, autogrades it with the real nbgrader, and requires that
it loses points and that the feedback names the mistake.
"""

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    diagnosis: str  # text the returned feedback must contain
    replacements: tuple  # ((solution cell grade_id, old text, new text), ...)


def plant(name, diagnosis, *replacements):
    return Mutant(name, diagnosis, tuple(replacements))


def corpus(notebook_stem):
    """The mutants of one notebook, e.g. ``corpus("01_four_steps_numpy")``."""
    try:
        module = importlib.import_module(f"{__name__}.m{notebook_stem}")
    except ModuleNotFoundError:
        return []
    return list(module.MUTANTS)
