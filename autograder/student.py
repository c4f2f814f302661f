"""Calling student code: exceptions become explanations, arguments are guarded."""

import copy

from .compare import CheckFailure, assert_unchanged, describe_case


def call(name, function, *args, case, hint=None, **kwargs):
    """Call ``function(*args, **kwargs)``; fail clearly if it raises or mutates an argument.

    ``name`` is how the message refers to the call, e.g. ``"batch_var(x)"``.
    """
    __tracebackhide__ = True
    originals = [copy.deepcopy(a) for a in args]
    try:
        result = function(*args, **kwargs)
    except NotImplementedError as error:
        raise CheckFailure(
            f"{name} raised NotImplementedError: it is not implemented yet.\n"
            "  Replace `raise NotImplementedError()` with your code, run that cell, then this one."
        ) from error
    except CheckFailure:
        raise
    except Exception as error:
        raise CheckFailure(
            f"{name} raised {type(error).__name__}: {error}\n"
            f"  input: {describe_case(case)}\n"
            + (f"  hint: {hint}" if hint else "  hint: read the traceback above to find the failing line.")
        ) from error
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
