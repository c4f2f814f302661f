"""Calling student code: exceptions become explanations, arguments are guarded, warnings are kept quiet.

The rules every check of this library follows, chapters 3 and 4 included:

- **One part, one verdict.** A public ``check_*`` function grades exactly what
  the docstring of the test cell that calls it names, and nothing that another
  test cell grades. It compares only those quantities; whatever else it needs
  (constructing a layer, running a forward pass to reach a backward) it uses
  without judging, as far as it can run.
- **Warnings never decide a score.** nbgrader gives 0 to a test cell with any
  stderr output, so every public check is wrapped by :func:`graded`, which
  records Python warnings and swallows stderr (Python's and the process's) while
  the check runs; when the check fails, the message quotes the warnings, which
  often explain the failure (a ``nan`` from ``sqrt`` of a negative number).
- **Only data crosses.** Checks call student code and read its attributes;
  they pass arrays, tensors and numbers, never objects of the check library.
"""

import contextlib
import functools
import io
import os
import sys
import tempfile
import warnings

import numpy as np

from .compare import CheckFailure, assert_dtype, assert_unchanged, describe_case
from .introspect import facts

# At most this many distinct warnings are quoted in a failure message.
QUOTED_WARNINGS = 3


def graded(check):
    """Decorate a public check: warnings and stderr are captured, and quoted when the check fails."""

    @functools.wraps(check)
    def run_check(*args, **kwargs):
        __tracebackhide__ = True
        with _captured_output() as captured:
            try:
                return check(*args, **kwargs)
            except CheckFailure as error:
                failure = error
        quoted = _quote(captured)  # after the capture has ended, so that everything it caught is there
        if quoted:
            failure.args = (f"{str(failure).rstrip()}\n{quoted}",)
        raise failure

    return run_check


@contextlib.contextmanager
def _captured_output():
    """Record warnings and collect everything written to stderr, at the Python and the file-descriptor level."""
    captured = {"warnings": [], "stderr": io.StringIO()}
    with warnings.catch_warnings(record=True) as recorded, contextlib.redirect_stderr(captured["stderr"]), \
            _file_descriptor_2_captured(captured):
        warnings.simplefilter("always")
        try:
            yield captured
        finally:
            captured["warnings"] = list(recorded)


@contextlib.contextmanager
def _file_descriptor_2_captured(captured):
    """Point file descriptor 2 at a temporary file (C extensions write there directly)."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (an embedded interpreter): nothing to capture
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            sys.__stderr__ and sys.__stderr__.flush()
        except (OSError, ValueError):
            pass
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured["stderr"].write(sink.read().decode(errors="replace"))


def _quote(captured):
    """Lines that quote what the student's code warned or wrote to stderr while the check ran."""
    seen = []
    for warning in captured["warnings"]:
        text = f"{warning.category.__name__}: {warning.message} ({os.path.basename(warning.filename)}, " \
               f"line {warning.lineno})"
        if text not in seen:
            seen.append(text)
    lines = [f"  while the check ran, your code warned: {text}" for text in seen[:QUOTED_WARNINGS]]
    if len(seen) > QUOTED_WARNINGS:
        lines.append(f"  ... and {len(seen) - QUOTED_WARNINGS} other warnings")
    written = captured["stderr"].getvalue().strip()
    if written:
        lines.append("  while the check ran, your code wrote to stderr: " + written.splitlines()[-1][:300])
    return "\n".join(lines)


def run(name, action, case, advice=None):
    """Run ``action()``, which runs student code; turn its exceptions into explanations.

    ``advice`` is the line to add when the student's code raises: a string
    (``"hint: ..."`` or ``"likely cause: ..."``) or a function of the exception
    that returns one.
    """
    __tracebackhide__ = True
    try:
        return action()
    except NotImplementedError as error:
        raise CheckFailure(
            f"{name} raised NotImplementedError in {raised_in(error)}: it is not implemented yet.\n"
            "  Replace `raise NotImplementedError()` with your code, run that cell, then this one."
        ) from error
    except CheckFailure:
        raise
    except Exception as error:
        line = advice(error) if callable(advice) else advice
        raise CheckFailure(
            f"{name} raised {type(error).__name__}: {error}\n"
            f"  input: {describe_case(case)}\n"
            f"  {line or 'hint: read the traceback above to find the failing line.'}"
        ) from error


def raised_in(error):
    """The name of the innermost function the exception passed through, e.g. ``backward``.

    An exception raised in the student's kernel and seen by the grader names it in ``student_where``.
    """
    __tracebackhide__ = True
    if getattr(error, "student_where", None):
        return error.student_where
    frame, name = error.__traceback__, "your code"
    while frame is not None:
        name = frame.tb_frame.f_code.co_name
        frame = frame.tb_next
    return name


def passed_through(error, function):
    """Whether the exception's traceback has a frame of ``function``'s code (here, or in the student's kernel)."""
    __tracebackhide__ = True
    code = facts(function)["code"]
    frames = getattr(error, "student_frames", None)
    if frames is None:
        frames, frame = [], error.__traceback__
        while frame is not None:
            frames.append((frame.tb_frame.f_code.co_filename, frame.tb_frame.f_code.co_qualname))
            frame = frame.tb_next
    return code is not None and tuple(code) in {tuple(f) for f in frames}


def _snapshot(argument):
    """A copy of an array or tensor argument, to detect in-place changes; None for anything else."""
    __tracebackhide__ = True
    if hasattr(argument, "detach"):
        return argument.detach().clone()
    if isinstance(argument, np.ndarray):
        return argument.copy()
    return None


def call(name, function, *args, case, hint=None, advice=None, argument_names=None, **kwargs):
    """Call ``function(*args, **kwargs)``; fail clearly if it raises or modifies an array or tensor argument.

    ``name`` is how the message refers to the call, e.g. ``"batch_var(x)"``;
    ``hint`` or ``advice`` (see :func:`run`) explain an exception.
    """
    __tracebackhide__ = True
    originals = [_snapshot(a) for a in args]
    result = run(name, lambda: function(*args, **kwargs), case, advice or (hint and f"hint: {hint}"))
    for position, (before, after) in enumerate(zip(originals, args)):
        if before is not None:
            label = argument_names[position] if argument_names else None
            described = f"argument {position + 1}" + (f" ({label})" if label else "")
            assert_unchanged(f"{described} of {name}", before, after, case)
    return result


def returned_tuple(name, result, length, names, case):
    """Unpack a returned tuple, failing clearly when it has the wrong form."""
    __tracebackhide__ = True
    if not isinstance(result, (tuple, list)) or len(result) != length:
        raise CheckFailure(
            f"{name} must return a tuple of {length} values ({', '.join(names)}); "
            f"got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
            + f"\n  input: {describe_case(case)}"
        )
    return tuple(result)


def expect_array(name, value, dtype, case, hint, cause):
    """``value`` is a NumPy array of ``dtype``; ``hint`` explains a non-array, ``cause`` a wrong dtype."""
    __tracebackhide__ = True
    if not isinstance(value, np.ndarray):
        raise CheckFailure(
            f"{name} must be a NumPy array, got {type(value).__name__}\n"
            f"  input: {describe_case(case)}\n"
            f"  hint: {hint}"
        )
    assert_dtype(name, value, dtype, case, cause)
