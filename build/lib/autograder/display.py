"""How a failed check looks in a notebook: the message, not our internals.

A failing check raises ``CheckFailure``. IPython would print the whole
traceback through the check library; students need the message, plus the
traceback of their own code when it was their code that raised. The error
still reaches Jupyter as an error, so nbgrader marks the cell as failed.
"""

import os

_LIBRARY = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _show(shell, exception_type, exception, traceback, tb_offset=None):
    """IPython's custom-exception hook: a short report for CheckFailure, the usual one otherwise.

    IPython ignores what the hook returns, so it shows the report itself,
    the way it shows any error (in a kernel: an error output).
    """
    lines = _report(shell, exception_type, exception, traceback, tb_offset)
    shell._showtraceback(exception_type, exception, lines)
    return lines


def _report(shell, exception_type, exception, traceback, tb_offset):
    if exception_type.__name__ != "CheckFailure":
        return shell.InteractiveTB.structured_traceback(exception_type, exception, traceback, tb_offset=tb_offset)
    lines = []
    cause = exception.__cause__
    if cause is not None and type(cause).__name__ != "CheckFailure":
        lines += shell.InteractiveTB.structured_traceback(type(cause), cause, _student_frames(cause.__traceback__))
        lines.append("\nThe exception above was raised by your code while the test ran it.\n")
    lines.append(f"CheckFailure: {exception}")
    return lines


def _student_frames(traceback):
    """The traceback from the first frame outside the check library on."""
    while traceback is not None and traceback.tb_frame.f_code.co_filename.startswith(_LIBRARY):
        traceback = traceback.tb_next
    return traceback


def show_failures_briefly():
    """Install the short report in the running IPython kernel, if there is one."""
    try:
        shell = get_ipython()  # noqa: F821 (defined inside IPython only)
    except NameError:
        return
    shell.set_custom_exc((AssertionError,), _show)
