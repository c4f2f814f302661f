"""Calling student code: exceptions become explanations, arguments are guarded."""

import copy

from .compare import CheckFailure, assert_unchanged, describe_case


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
    """The name of the innermost function the exception passed through, e.g. ``backward``."""
    __tracebackhide__ = True
    frame, name = error.__traceback__, "your code"
    while frame is not None:
        name = frame.tb_frame.f_code.co_name
        frame = frame.tb_next
    return name


def call(name, function, *args, case, hint=None, **kwargs):
    """Call ``function(*args, **kwargs)``; fail clearly if it raises or mutates an argument.

    ``name`` is how the message refers to the call, e.g. ``"batch_var(x)"``.
    """
    __tracebackhide__ = True
    originals = [copy.deepcopy(a) for a in args]
    result = run(name, lambda: function(*args, **kwargs), case, hint and f"hint: {hint}")
    for position, (before, after) in enumerate(zip(originals, args)):
        if hasattr(before, "shape"):
            assert_unchanged(f"argument {position + 1} of {name}", before, after, case)
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
