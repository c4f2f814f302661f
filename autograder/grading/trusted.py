"""Test cells run in the grader's process, on the student's objects reached through handles.

The student's kernel runs the notebook's other cells as usual. A test cell is
not run there: its source (which nbgrader restores from the gradebook, so it is
the instructor's) runs here, with the check library of this process. A name the
test cell does not define is looked up, in order, among the notebook's locked
setup cells (run here too: ``checks``, ``np``), Python's builtins, and the
student's namespace in the kernel, whose values cross as data or handles
(:mod:`autograder.grading.remote`). So patching ``numpy``, the check library,
the import system or IPython in the kernel changes nothing here: the verdict,
the outputs of the test cell, is computed by code the student cannot reach.
"""

import builtins
import contextlib
import io
import re
import sys

from IPython.core.inputtransformer2 import TransformerManager

from .remote import CallTimedOut, ProtocolError



class StudentNames(dict):
    """A test cell's globals: the setup cells' names, then builtins, then the student's (fetched once per cell)."""

    def __init__(self, setup, remote):
        super().__init__(setup)
        self._remote = remote

    def __missing__(self, name):
        if hasattr(builtins, name) or name.startswith("__"):
            raise KeyError(name)
        try:
            value = self._remote.global_value(name)
        except NameError:
            raise KeyError(name) from None
        self[name] = value
        return value


class TrustedNotebook:
    """One notebook's trusted side: the setup cells' namespace and the verdict of each test cell."""

    def __init__(self, remote):
        self.remote = remote
        self.setup = {"__name__": "__trusted_test__", "__builtins__": builtins}
        self._transform = TransformerManager().transform_cell

    def run_setup(self, source):
        """Run a locked setup cell (imports, constants) here; its failure is the kernel's to report."""
        try:
            # What the setup cell prints ("running on cpu") is the kernel's output, recorded there.
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(self._transform(source), "<setup cell>", "exec"), self.setup)
        except Exception:  # noqa: BLE001 the kernel runs the same cell and records its error
            pass
        if "torch" in sys.modules:
            # The checks' tensors are small, and this process and the kernel take turns: with several threads,
            # the waiting OpenMP threads of one process slow the other down by an order of magnitude.
            sys.modules["torch"].set_num_threads(1)

    def verdict(self, source):
        """The outputs of a test cell run here: none when it passes, one error output when it fails."""
        names = StudentNames(self.setup, self.remote)
        try:
            exec(compile(self._transform(source), "<test cell>", "exec"), names)
        except CallTimedOut as error:
            return [error_output("CellTimeoutError", f"your code did not return within the time the grader allows "
                                 f"for one call ({self.remote.timeout} s), or the kernel stopped answering: an "
                                 f"infinite loop, or a very slow computation. {error}".strip())]
        except ProtocolError as error:
            return [error_output("GraderProtocolError", f"the grader could not read what your kernel sent: {error}")]
        except Exception as error:  # noqa: BLE001 a check's verdict, or the student's exception
            return [error_output(type(error).__name__, str(error), student_traceback(error))]
        return []


def student_traceback(error):
    """The lines of the student's code that an exception (or the exception it came from) passed through."""
    for cause in (error, error.__cause__, error.__context__):
        text = getattr(cause, "student_traceback", "")
        if text:
            return ["Traceback in your code (most recent call last):\n" + text]
    return []


def error_output(ename, evalue, traceback_lines=()):
    """An error output; seeds are never shown (the hidden inputs' seed is the course's secret)."""
    from nbformat.notebooknode import NotebookNode
    evalue = without_seeds(evalue)
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[*map(without_seeds, traceback_lines), f"{ename}: {evalue}"])


def without_seeds(text):
    return SEEDS.sub(r"\1(hidden)", text)


SEEDS = re.compile(r"(\bseed['\"]?\s*[=:]\s*)\d+")

