"""Checks for Chapter 1, NumPy: the four steps of the forward pass and the backward pass.

Every check runs the student's function on several shapes ((N, C), images,
odd sizes, a constant channel in float64) in float64 and float32 and compares
with PyTorch in float64. A check takes the student's functions and, optionally,
the :class:`Inputs` to use: the visible ones by default; the hidden tests pass
the instructor's.
"""

from dataclasses import dataclass

import numpy as np

from . import cases, mistaken, reference
from .cases import channel_shape
from .compare import CheckFailure, assert_close, describe_case, dtypes_in_out
from .mistakes import sentence
from .student import call, expect_array, graded, returned_tuple

DTYPES = (np.float64, np.float32)
EPS = 1e-5
# Central differences of a float64 batch norm agree with the exact gradient to about 1e-9.
NUMERIC_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Inputs:
    """What a check runs the student's code on."""

    seed: int = 0
    shapes: tuple = cases.VISIBLE_SHAPES
    custom_eps: float = 1e-2  # a second eps that changes y visibly
    numeric_shapes: tuple = ((5, 3), (3, 2, 2, 3))  # small, for central differences


VISIBLE = Inputs()


def _expect_array(name, value, x, case):
    __tracebackhide__ = True
    expect_array(name, value, x.dtype, case,
                 hint="this notebook is NumPy only; use np.mean, np.sum, np.sqrt on the array.",
                 cause="a cast or a float32/float64 constant array changed the dtype; keep the input's dtype "
                       f"({dtypes_in_out(x.dtype, getattr(value, 'dtype', None))})")


def _advice(hint=None):
    """Explains an exception: a failed broadcast is the classic per-channel reshape mistake."""
    __tracebackhide__ = True

    def explain(error):
        __tracebackhide__ = True
        if "could not be broadcast" in str(error):
            return f"likely cause: {sentence('broadcast_along_last_axis')}"
        return f"hint: {hint or 'read the traceback above to find the failing line.'}"

    return explain


def _eps_variants(inputs, case):
    """(case, keyword arguments, how messages write eps) for the default eps and the inputs' custom one."""
    __tracebackhide__ = True
    yield dict(case, eps=EPS), {}, ""
    yield dict(case, eps=inputs.custom_eps), {"eps": inputs.custom_eps}, f", eps={inputs.custom_eps}"


@graded
def check_batch_mean(batch_mean, inputs=VISIBLE):
    """batch_mean(x) is the per-channel mean over every axis but 1."""
    __tracebackhide__ = True
    for case, x, *_ in cases.batches(inputs, DTYPES):
        got = call("batch_mean(x)", batch_mean, x, case=case)
        _expect_array("batch_mean(x)", got, x, case)
        expected, _ = reference.batch_statistics(x)
        assert_close("batch_mean(x)", got, expected, dtype=x.dtype, case=case,
                     mistakes=mistaken.statistics(x, np.mean))


@graded
def check_batch_var(batch_var, inputs=VISIBLE):
    """batch_var(x) is the biased per-channel variance (divide by m = N*H*W)."""
    __tracebackhide__ = True
    for case, x, *_ in cases.batches(inputs, DTYPES):
        got = call("batch_var(x)", batch_var, x, case=case)
        _expect_array("batch_var(x)", got, x, case)
        _, expected = reference.batch_statistics(x)
        assert_close("batch_var(x)", got, expected, dtype=x.dtype, case=case, mistakes=mistaken.variance(x))


@graded
def check_normalize(normalize, inputs=VISIBLE):
    """normalize(x, mean, var, eps) = (x - mean) / sqrt(var + eps), per channel."""
    __tracebackhide__ = True
    for case, x, *_ in cases.batches(inputs, DTYPES):
        mean, var = (s.astype(x.dtype) for s in reference.batch_statistics(x))
        for this_case, kwargs, shown in _eps_variants(inputs, case):
            eps = this_case["eps"]
            name = f"normalize(x, mean, var{shown})"
            got = call(name, normalize, x, mean, var, case=this_case, **kwargs,
                       advice=_advice("mean and var have shape (C,); reshape them to (1, C, 1, 1) for images "
                                      "(or (1, C) for 2-D input) before broadcasting"))
            _expect_array(name, got, x, this_case)
            x64, m, v = x.astype(np.float64), mean.astype(np.float64), var.astype(np.float64)
            expected = (x64 - channel_shape(m, x)) / np.sqrt(channel_shape(v, x) + eps)
            assert_close(name, got, expected, dtype=x.dtype, case=this_case,
                         mistakes=mistaken.normalize(x, m, v, eps))


@graded
def check_scale_shift(scale_shift, inputs=VISIBLE):
    """scale_shift(x_hat, gamma, beta) = gamma * x_hat + beta, per channel."""
    __tracebackhide__ = True
    for case, x, gamma, beta, _dy in cases.batches(inputs, DTYPES):
        x_hat = x - x.mean(axis=cases.channel_axes(x.ndim), keepdims=True)
        got = call("scale_shift(x_hat, gamma, beta)", scale_shift, x_hat, gamma, beta, case=case,
                   advice=_advice("gamma and beta have shape (C,); reshape them to (1, C, 1, 1) for images"))
        _expect_array("scale_shift(x_hat, gamma, beta)", got, x, case)
        x64, g, b = (a.astype(np.float64) for a in (x_hat, gamma, beta))
        expected = channel_shape(g, x64) * x64 + channel_shape(b, x64)
        assert_close("scale_shift(x_hat, gamma, beta)", got, expected, dtype=x.dtype, case=case,
                     mistakes=mistaken.scale_shift(x64, g, b))


@graded
def check_bn_forward(bn_forward, inputs=VISIBLE):
    """bn_forward(x, gamma, beta, eps) returns (y, cache) with y equal to torch's batch norm."""
    __tracebackhide__ = True
    for case, x, gamma, beta, _dy in cases.batches(inputs, DTYPES):
        for this_case, kwargs, shown in _eps_variants(inputs, case):
            eps = this_case["eps"]
            name = "y returned by bn_forward(x, gamma, beta" + shown + ")"
            result = call("bn_forward", bn_forward, x, gamma, beta, case=this_case, advice=_advice(), **kwargs)
            y, _cache = returned_tuple("bn_forward", result, 2, ("y", "cache"), this_case)
            _expect_array(name, y, x, this_case)
            expected = reference.batch_norm_training(x, gamma, beta, eps)
            assert_close(name, y, expected, dtype=x.dtype, case=this_case,
                         mistakes=mistaken.forward(x, gamma, beta, eps))


def _backward_results(bn_forward, bn_backward, x, gamma, beta, dy, case):
    __tracebackhide__ = True
    result = call("bn_forward", bn_forward, x, gamma, beta, case=case, advice=_advice())
    _y, cache = returned_tuple("bn_forward", result, 2, ("y", "cache"), case)
    grads = call("bn_backward(dy, cache)", bn_backward, dy, cache, case=case)
    return returned_tuple("bn_backward", grads, 3, ("dx", "dgamma", "dbeta"), case)


GRADIENT_HINTS = {"dx": None,
                  "dgamma": "dgamma has one value per channel, summed over every axis but 1",
                  "dbeta": "dbeta has one value per channel, summed over every axis but 1"}


@graded
def check_dgamma_dbeta(bn_forward, bn_backward, inputs=VISIBLE):
    """dgamma and dbeta returned by bn_backward equal torch autograd's (dx is graded on its own)."""
    __tracebackhide__ = True
    _check_gradients(bn_forward, bn_backward, inputs, ("dgamma", "dbeta"))


@graded
def check_dx(bn_forward, bn_backward, inputs=VISIBLE):
    """dx returned by bn_backward equals torch autograd's and a central-difference gradient of torch's forward."""
    __tracebackhide__ = True
    _check_gradients(bn_forward, bn_backward, inputs, ("dx",))
    _check_dx_numerically(bn_forward, bn_backward, inputs)


def _check_gradients(bn_forward, bn_backward, inputs, names):
    __tracebackhide__ = True
    for case, x, gamma, beta, dy in cases.batches(inputs, DTYPES):
        got = dict(zip(("dx", "dgamma", "dbeta"), _backward_results(bn_forward, bn_backward, x, gamma, beta, dy, case)))
        expected = dict(zip(("dx", "dgamma", "dbeta"), reference.batch_norm_gradients(x, gamma, beta, dy)))
        mistakes = mistaken.backward(x, gamma, dy, EPS)
        for name in names:
            label = f"{name} returned by bn_backward"
            _expect_array(label, got[name], x, case)
            assert_close(label, got[name], expected[name], dtype=x.dtype, case=case, mistakes=mistakes[name],
                         hint=GRADIENT_HINTS[name])


def numeric_gradient(f, x, step=1e-5):
    """Central differences of the scalar function f at x, one element at a time."""
    __tracebackhide__ = True
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + step
        plus = f(x)
        x[index] = saved - step
        minus = f(x)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * step)
    return grad


def _check_dx_numerically(bn_forward, bn_backward, inputs):
    """dx agrees with a central-difference gradient of sum(y * dy), y from torch's batch norm."""
    __tracebackhide__ = True
    for number, shape in enumerate(inputs.numeric_shapes):
        case_seed = 500 + inputs.seed + number
        case = {"shape": shape, "dtype": "float64", "seed": case_seed, "method": "central differences"}
        x = cases.activations(shape, np.float64, case_seed, constant_channel=False)
        gamma, beta = cases.affine_parameters(shape[1], np.float64, case_seed)
        dy = cases.upstream_gradient(shape, np.float64, case_seed)
        dx, _dgamma, _dbeta = _backward_results(bn_forward, bn_backward, x, gamma, beta, dy, case)
        numeric = numeric_gradient(lambda v: float(np.sum(reference.batch_norm_training(v, gamma, beta) * dy)),
                                   x.copy())
        error = _numeric_error(dx, numeric)
        if error > NUMERIC_TOLERANCE:
            raise CheckFailure(
                "dx returned by bn_backward disagrees with a central-difference numeric gradient.\n"
                f"  input: {describe_case(case)}\n"
                f"  max relative error {error:.3g} (tolerance {NUMERIC_TOLERANCE:g})\n"
                "  hint: differentiate y = gamma * x_hat + beta through x_hat, var and mean; "
                "see the compact formula in the chapter."
            )


def _numeric_error(got, numeric):
    __tracebackhide__ = True
    got = np.asarray(got, dtype=np.float64)
    if got.shape != numeric.shape:
        return np.inf
    return float(np.max(np.abs(got - numeric) / np.maximum(1e-8, np.abs(got) + np.abs(numeric))))
