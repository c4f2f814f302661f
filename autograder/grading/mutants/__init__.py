"""The planted-bug corpus: classic mistakes, each planted into a solution notebook, and correct variants.

A module per notebook (``autograder/grading/mutants/m<notebook stem>.py``)
defines ``MUTANTS``, a list of :class:`Mutant`. The test suite plants each one
into a correct submission and autogrades it with the real nbgrader: a planted
bug must lose points, in every test cell of ``loses`` at least, keep the points
of every cell of ``keeps``, and the feedback must name the mistake (a key of
:mod:`autograder.mistakes`, worded for the notebook's API, or a literal message);
a correct variant (``diagnosis=None``) must keep full marks.
"""

import importlib
from dataclasses import dataclass

from autograder.mistakes import CATALOGUE, sentence


@dataclass(frozen=True)
class Mutant:
    name: str
    diagnosis: object  # a catalogue key, a literal text the feedback must contain, or None for a correct variant
    replacements: tuple  # ((solution cell grade_id, old text, new text), ...)
    loses: tuple = ()  # test cells that must lose points
    keeps: tuple = ()  # test cells that must keep full points

    def expected_text(self, notebook_stem):
        """What the returned feedback must contain."""
        if self.diagnosis in CATALOGUE:
            return sentence(self.diagnosis, "numpy" if notebook_stem.endswith("_numpy") else "torch")
        return self.diagnosis


def plant(name, diagnosis, *replacements, loses=(), keeps=()):
    return Mutant(name, diagnosis, tuple(replacements), tuple(loses), tuple(keeps))


def variant(name, *replacements):
    """A correct submission written differently: it must keep full marks."""
    return Mutant(name, None, tuple(replacements))


def corpus(notebook_stem):
    """The mutants of one notebook, e.g. ``corpus("01_four_steps_numpy")``."""
    try:
        module = importlib.import_module(f"{__name__}.m{notebook_stem}")
    except ModuleNotFoundError:
        return []
    return list(module.MUTANTS)
