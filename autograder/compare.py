"""Comparing a student's result with a reference, and explaining a mismatch.

The error measure is CS231n's element-wise relative error
``|a - b| / max(floor, |a| + |b|)``. The floor is ``1e-8`` raised to a small
fraction of the reference's largest magnitude, so that an element which is
zero up to rounding (a centred constant channel, a gradient that cancels)
is judged against the scale of its array rather than against itself.
"""

import numpy as np

from .mistakes import sentence

# Float64 results must agree element by element to 1e-9 (a correct
# implementation reaches about 2e-12). Float32 results are compared with a
# float64 reference, normwise (relative to the array's largest magnitude):
# sums like dgamma carry float32 rounding of up to 2e-5 in a correct
# implementation, so the tolerance is 1e-4.
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}
FLOOR_FRACTION = {np.dtype(np.float64): 1e-3, np.dtype(np.float32): 1.0}

# How close a wrong answer must be to a known mistake to be named as its cause.
DIAGNOSIS_TOLERANCE = 1e-4


class CheckFailure(AssertionError):
    """A check failed; the message is written for the student."""


def to_numpy(value):
    """A NumPy array holding ``value`` (a tensor on any device, an array, a number)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def relative_errors(got, expected, dtype=np.float64):
    """Element-wise CS231n relative error of ``got`` against ``expected``."""
    got = to_numpy(got).astype(np.float64)
    expected = to_numpy(expected).astype(np.float64)
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    floor = max(1e-8, FLOOR_FRACTION[np.dtype(dtype)] * scale)
    with np.errstate(invalid="ignore", over="ignore"):
        errors = np.abs(got - expected) / np.maximum(floor, np.abs(got) + np.abs(expected))
    # NaN or inf where a finite value was expected is the worst possible error;
    # the same non-finite value on both sides is agreement (used by diagnoses).
    same_nonfinite = (np.isnan(got) & np.isnan(expected)) | (np.isinf(got) & (got == expected))
    errors = np.where(np.isfinite(errors), errors, np.inf)
    return np.where(same_nonfinite, 0.0, errors)


def max_relative_error(got, expected, dtype=np.float64):
    errors = relative_errors(got, expected, dtype)
    return float(errors.max()) if errors.size else 0.0


def describe_case(case):
    """A short description of the input a check used, for messages."""
    return ", ".join(f"{k}={v}" for k, v in case.items())


def first_matching_mistake(got, mistakes, expected=None):
    """The key of the mistake whose wrong answer best reproduces ``got``, or None.

    ``mistakes`` maps a key of the catalogue (:mod:`autograder.mistakes`) to a
    callable that computes what that mistake would return. A mistake is named
    only when its answer is close to ``got`` and a hundred times closer than
    the correct ``expected`` is (a mistake that changes nothing for this input
    explains nothing).
    """
    got = to_numpy(got)
    distance_to_expected = np.inf if expected is None else _distance(got, expected)
    best_key, best_distance = None, np.inf
    for key, wrong_answer in mistakes.items():
        try:
            candidate = to_numpy(wrong_answer())
        except Exception:  # a candidate that cannot be formed explains nothing
            continue
        distance = _distance(got, candidate)
        if distance < min(DIAGNOSIS_TOLERANCE, 0.01 * distance_to_expected, best_distance):
            best_key, best_distance = key, distance
    return best_key


def _distance(got, other):
    other = to_numpy(other)
    if other.shape != got.shape:
        return np.inf
    return max_relative_error(got, other)


def assert_close(name, got, expected, *, dtype, case, mistakes=None, api="numpy", hint=None, tolerance=None):
    """Fail with a student-facing message unless ``got`` matches ``expected``.

    ``name`` names the quantity (for example ``"dx returned by bn_backward"``),
    ``case`` describes the input, ``mistakes`` maps catalogue keys to what those
    mistakes would compute (the cause is worded for ``api``, "numpy" or
    "torch"), and ``hint`` is a fallback suggestion. ``tolerance`` replaces the
    dtype's where an input is known to limit every implementation's accuracy.
    """
    got_array = to_numpy(got)
    expected_array = to_numpy(expected)
    where = describe_case(case)
    if got_array.shape != expected_array.shape:
        raise CheckFailure(
            f"{name}: expected shape {expected_array.shape}, got shape {got_array.shape}\n"
            f"  input: {where}\n"
            + _cause_line(first_matching_mistake(got_array, mistakes or {}, None), hint, api)
        )
    errors = relative_errors(got_array, expected_array, dtype)
    tolerance = tolerance or TOLERANCE[np.dtype(dtype)]
    if errors.size == 0 or errors.max() <= tolerance:
        return
    worst = np.unravel_index(int(np.argmax(errors)), errors.shape)
    cause = first_matching_mistake(got_array, mistakes or {}, expected_array)
    __tracebackhide__ = True  # IPython shows the student's cell, not this frame
    raise CheckFailure(
        f"{name} is wrong.\n"
        f"  input: {where}\n"
        f"  worst element at index {tuple(int(i) for i in worst)}: "
        f"got {_number(got_array[worst])}, expected {_number(expected_array[worst])}\n"
        f"  relative error {errors[worst]:.3g} (tolerance {tolerance:g}); "
        f"{int((errors > tolerance).sum())} of {errors.size} elements are off\n"
        + _cause_line(cause, hint, api)
    )


def _number(value):
    return f"{float(value):.10g}"


def _cause_line(key, hint, api):
    if key:
        return f"  likely cause: {sentence(key, api)}"
    if hint:
        return f"  hint: {hint}"
    return ""


def dtype_name(dtype):
    """``float32`` for np.float32, np.dtype('float32') and torch.float32 alike."""
    return str(getattr(dtype, "name", dtype)).replace("torch.", "")


def dtypes_in_out(expected, got):
    """What came and what was expected, for a dtype mismatch: 'float32 in, float64 out; expected float32'."""
    return f"{dtype_name(expected)} in, {dtype_name(got)} out; expected {dtype_name(expected)}"


def assert_dtype(name, got, expected_dtype, case, cause):
    __tracebackhide__ = True
    got_dtype = to_numpy(got).dtype if not hasattr(got, "dtype") else got.dtype
    if str(got_dtype) != str(expected_dtype):
        raise CheckFailure(
            f"{name}: expected dtype {expected_dtype}, got {got_dtype}\n"
            f"  input: {describe_case(case)}\n  likely cause: {cause}"
        )


def assert_unchanged(name, before, after, case):
    """The student's function must not modify the arrays (or tensors) it was given."""
    __tracebackhide__ = True
    before, after = to_numpy(before), to_numpy(after)
    if before.shape != after.shape or not np.array_equal(before, after, equal_nan=True):
        raise CheckFailure(
            f"{name} was modified by your function.\n"
            f"  input: {describe_case(case)}\n"
            f"  likely cause: {sentence('input_modified_in_place')}"
        )
