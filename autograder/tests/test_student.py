"""Warnings never decide a score: checks capture what student code warns or writes to stderr, and quote it on failure."""

import os
import sys
import warnings

import numpy as np
import pytest

from autograder import four_steps
from autograder.compare import CheckFailure
from autograder.student import graded


def correct_but_noisy_batch_var(x):
    """The right variance, computed next to a value that warns and a write to both kinds of stderr."""
    axes = (0,) + tuple(range(2, x.ndim))
    np.log(x.var(axis=axes) * 0)  # RuntimeWarning: divide by zero
    warnings.warn("a torch-style UserWarning", UserWarning)
    print("debug output on stderr", file=sys.stderr)
    os.write(2, b"a C extension writes to file descriptor 2\n")
    return ((x - x.mean(axis=axes, keepdims=True)) ** 2).mean(axis=axes)


def batch_var_with_eps_subtracted(x):
    axes = (0,) + tuple(range(2, x.ndim))
    return np.sqrt(x.var(axis=axes) - 1e-5) ** 2  # nan, with a warning, on the constant channel


def test_a_correct_check_stays_silent_whatever_the_code_writes(capfd):
    four_steps.check_batch_var(correct_but_noisy_batch_var)
    captured = capfd.readouterr()
    assert captured.err == "", f"stderr escaped the check: {captured.err!r}"


def test_without_the_capture_the_same_code_writes_to_stderr(capfd):
    """The control: the code above does write to stderr, which nbgrader would score 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytest records warnings itself; the writes are what this shows
        correct_but_noisy_batch_var(np.ones((4, 2)))
    assert "debug output on stderr" in capfd.readouterr().err


def test_a_failure_quotes_the_warning_that_explains_it():
    with pytest.raises(CheckFailure) as failure:
        four_steps.check_batch_var(batch_var_with_eps_subtracted)
    message = str(failure.value)
    assert "your code warned: RuntimeWarning: invalid value encountered in sqrt" in message, message


def test_the_decorator_keeps_the_failure_and_its_cause():
    @graded
    def check(function):
        try:
            function()
        except ZeroDivisionError as error:
            raise CheckFailure("the student's code raised") from error

    with pytest.raises(CheckFailure) as failure:
        check(lambda: 1 / 0)
    assert isinstance(failure.value.__cause__, ZeroDivisionError)


def batch_mean_in_float64(x):
    """The right mean, returned in float64 whatever the input's dtype."""
    return x.astype(np.float64).mean(axis=(0,) + tuple(range(2, x.ndim)))


def batch_norm_in_float64(x, gamma, beta, eps=1e-5):
    """The right output, returned in float64 whatever the input's dtype."""
    import torch.nn.functional as F
    return F.batch_norm(x.double(), None, None, gamma.double(), beta.double(), training=True, eps=eps)


def test_a_dtype_message_says_what_came_and_what_was_expected():
    """float32 in, float64 out: the message names both, not "float64 in, float64 out"."""
    with pytest.raises(CheckFailure) as failure:
        four_steps.check_batch_mean(batch_mean_in_float64)
    message = str(failure.value)
    assert "float32 in, float64 out; expected float32" in message, message
    assert "float64 in, float64 out" not in message, message


def test_a_tensor_dtype_message_says_what_came_and_what_was_expected():
    import torch

    from autograder import four_steps_torch
    with pytest.raises(CheckFailure) as failure:
        four_steps_torch.check_forward(batch_norm_in_float64, torch.device("cpu"))
    message = str(failure.value)
    assert "float32 in, float64 out; expected float32" in message, message
