"""Checks for the exercises of "Batch Normalization, from scratch".

Test cells call the ``check_*`` functions of the chapter modules
(``autograder.four_steps``, ``autograder.four_steps_torch``, ...). A check
calls the student's code, compares what comes back with PyTorch, and raises
``AssertionError`` with a message that names the quantity, the worst element
and, where the pattern matches a classic mistake of the catalogue
(:mod:`autograder.mistakes`), the likely cause.

Rules every check keeps, in every chapter:

- One part, one verdict: a check grades exactly what the docstring of the
  test cell that calls it names, and nothing another test cell grades.
- Warnings never decide a score: student code runs with warnings and stderr
  captured (:func:`autograder.student.graded`); a failure message quotes them.
- Gradients are compared with PyTorch's gradient of the reference computation;
  ``torch.autograd.gradcheck`` is never the only judge.
- Only data crosses: checks call student code and read its attributes, and
  pass arrays, tensors and numbers.
- A check takes an optional ``inputs``: the visible ones by default; hidden
  tests pass the instructor's, which this package does not hold.
"""

__version__ = "0.1.0"

from .display import show_failures_briefly as _show_failures_briefly

_show_failures_briefly()
