"""Checks for the exercises of "Batch Normalization, from scratch".

Test cells call the ``check_*`` functions of the chapter modules
(``autograder.four_steps``, ``autograder.four_steps_torch``, ...). A check
calls the student's code, compares what comes back with PyTorch, and raises
``AssertionError`` with a message that names the quantity, the worst element
and, where the pattern matches a classic mistake, the likely cause.
"""

__version__ = "0.1.0"

from .display import show_failures_briefly as _show_failures_briefly

_show_failures_briefly()
