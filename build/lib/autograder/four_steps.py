"""Checks for Chapter 1, NumPy: the four steps of the forward pass and the backward pass.

Every check runs the student's function on several shapes ((N, C), images,
odd sizes, a constant channel) in float64 and float32 and compares with
PyTorch in float64.
"""

import numpy as np

from . import cases, reference
from .compare import CheckFailure, assert_close, assert_dtype, describe_case
from .student import call, returned_tuple

DTYPES = (np.float64, np.float32)
EPS = 1e-5


def _each_case(seed, hidden, dtypes=DTYPES):
    """(case description, x) for every shape, seed and dtype of a check."""
    __tracebackhide__ = True
    for shape, case_seed in zip(cases.shapes(hidden), cases.case_seeds(seed, hidden)):
        for dtype in dtypes:
            if dtype == np.float32 and cases.batch_size(shape) < cases.MIN_FLOAT32_BATCH:
                continue
            x = cases.activations(shape, dtype, case_seed)
            yield {"shape": shape, "dtype": np.dtype(dtype).name, "seed": case_seed}, x


def _axes(x):
    __tracebackhide__ = True
    return cases.channel_axes(x.ndim)


def _expect_array(name, value, x, case):
    __tracebackhide__ = True
    if not isinstance(value, np.ndarray):
        raise CheckFailure(
            f"{name} must return a NumPy array, got {type(value).__name__}\n"
            f"  input: {describe_case(case)}\n"
            "  hint: this notebook is NumPy only; use np.mean, np.sum, np.sqrt on the array."
        )
    assert_dtype(name, value, x.dtype, case,
                 "a cast or a float32/float64 constant array changed the dtype; "
                 "keep the input's dtype (float64 in, float64 out)")


def _per_channel(reduce, x):
    __tracebackhide__ = True
    return reduce(x, axis=_axes(x))


def _statistics_mistakes(x, reduce):
    """Wrong reductions students make, for a per-channel statistic ``reduce``."""
    __tracebackhide__ = True
    mistakes = {
        "you reduced over axis 0 only; for images the statistics run over N, H and W, "
        "i.e. axis=(0, 2, 3) (every axis except the channel axis 1)": lambda: reduce(x, axis=0),
        "you computed per-sample statistics (over the features of each example, as layer norm does); "
        "batch norm computes one statistic per channel over the batch": lambda: reduce(x, axis=tuple(range(1, x.ndim))),
        "you reduced over every axis, channel included; batch norm keeps one value per channel": lambda: reduce(x, axis=None),
    }
    if x.dtype == np.float64:
        mistakes["you computed in float32 (a cast to np.float32 somewhere); keep float64 input in float64"] = (
            lambda: _per_channel(reduce, x.astype(np.float32)).astype(np.float64)
        )
    return mistakes


def check_batch_mean(batch_mean, seed=0, hidden=False):
    """batch_mean(x) is the per-channel mean over every axis but 1."""
    __tracebackhide__ = True
    for case, x in _each_case(seed, hidden):
        got = call("batch_mean(x)", batch_mean, x, case=case)
        _expect_array("batch_mean(x)", got, x, case)
        expected, _ = reference.batch_statistics(x)
        assert_close("batch_mean(x)", got, expected, dtype=x.dtype, case=case,
                     diagnoses=_statistics_mistakes(x, np.mean))


def check_batch_var(batch_var, seed=0, hidden=False):
    """batch_var(x) is the biased per-channel variance (divide by m = N*H*W)."""
    __tracebackhide__ = True
    for case, x in _each_case(seed, hidden):
        got = call("batch_var(x)", batch_var, x, case=case)
        _expect_array("batch_var(x)", got, x, case)
        _, expected = reference.batch_statistics(x)
        axes = _axes(x)
        mistakes = {
            "you divided by m - 1 (the unbiased variance, np.var(..., ddof=1)); batch norm normalizes "
            "with the biased variance, dividing by m = N*H*W": lambda: x.var(axis=axes, ddof=1),
            "you returned the standard deviation; batch_var must return the variance (no square root)":
                lambda: x.std(axis=axes),
            "you returned the mean of squares without subtracting the mean first": lambda: (x ** 2).mean(axis=axes),
        }
        mistakes.update(_statistics_mistakes(x, np.var))
        assert_close("batch_var(x)", got, expected, dtype=x.dtype, case=case, diagnoses=mistakes)


def _broadcast(vector, x):
    __tracebackhide__ = True
    return np.asarray(vector).reshape((1, -1) + (1,) * (x.ndim - 2))


def check_normalize(normalize, seed=0, hidden=False):
    """normalize(x, mean, var, eps) = (x - mean) / sqrt(var + eps), per channel."""
    __tracebackhide__ = True
    for case, x in _each_case(seed, hidden):
        mean, var = (s.astype(x.dtype) for s in reference.batch_statistics(x))
        for eps in (EPS, 1e-2):
            this_case = dict(case, eps=eps)
            kwargs = {} if eps == EPS else {"eps": eps}
            name = "normalize(x, mean, var)" if eps == EPS else f"normalize(x, mean, var, eps={eps})"
            got = call(name, normalize, x, mean, var, case=this_case, **kwargs,
                       hint="mean and var have shape (C,); reshape them to (1, C, 1, 1) for images "
                            "(or (1, C) for 2-D input) before broadcasting")
            _expect_array(name, got, x, this_case)
            m, v = _broadcast(mean.astype(np.float64), x), _broadcast(var.astype(np.float64), x)
            x64 = x.astype(np.float64)
            expected = (x64 - m) / np.sqrt(v + eps)
            with np.errstate(divide="ignore", invalid="ignore"):
                mistakes = {
                    "eps is added outside the square root: use np.sqrt(var + eps), not np.sqrt(var) + eps":
                        lambda: (x64 - m) / (np.sqrt(v) + eps),
                    "no eps: a constant channel (variance 0) gives 0/0 = nan; divide by np.sqrt(var + eps)":
                        lambda: (x64 - m) / np.sqrt(v),
                    "you ignored the eps argument and used 1e-5 always; use the eps you are given":
                        lambda: (x64 - m) / np.sqrt(v + EPS),
                    "you divided by the variance instead of the standard deviation np.sqrt(var + eps)":
                        lambda: (x64 - m) / (v + eps),
                    "you did not subtract the mean before dividing": lambda: x64 / np.sqrt(v + eps),
                    "mean and var were broadcast along the last axis instead of the channel axis 1; "
                    "reshape them to (1, C, 1, 1) for images": lambda: (x64 - mean) / np.sqrt(var + eps),
                }
                assert_close(name, got, expected, dtype=x.dtype, case=this_case, diagnoses=mistakes)


def check_scale_shift(scale_shift, seed=0, hidden=False):
    """scale_shift(x_hat, gamma, beta) = gamma * x_hat + beta, per channel."""
    __tracebackhide__ = True
    for case, x in _each_case(seed, hidden):
        x_hat = x - x.mean(axis=_axes(x), keepdims=True)
        gamma, beta = cases.affine_parameters(x.shape[1], x.dtype, case["seed"])
        got = call("scale_shift(x_hat, gamma, beta)", scale_shift, x_hat, gamma, beta, case=case,
                   hint="gamma and beta have shape (C,); reshape them to (1, C, 1, 1) for images")
        _expect_array("scale_shift(x_hat, gamma, beta)", got, x, case)
        x64 = x_hat.astype(np.float64)
        g, b = _broadcast(gamma.astype(np.float64), x), _broadcast(beta.astype(np.float64), x)
        mistakes = {
            "gamma and beta are swapped: y = gamma * x_hat + beta": lambda: b * x64 + g,
            "beta is missing: y = gamma * x_hat + beta": lambda: g * x64,
            "gamma is missing: y = gamma * x_hat + beta": lambda: x64 + b,
            "gamma and beta were broadcast along the last axis instead of the channel axis 1; "
            "reshape them to (1, C, 1, 1)": lambda: x64 * gamma + beta,
        }
        assert_close("scale_shift(x_hat, gamma, beta)", got, g * x64 + b, dtype=x.dtype, case=case,
                     diagnoses=mistakes)


def _forward_mistakes(x, gamma, beta, eps):
    """What the classic forward-pass mistakes would compute, all in float64."""
    __tracebackhide__ = True
    x64 = x.astype(np.float64)
    g, b = _broadcast(gamma.astype(np.float64), x), _broadcast(beta.astype(np.float64), x)
    axes = _axes(x)

    def bn(mean, var, root=lambda v: np.sqrt(v + eps), gamma=g, beta=b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return gamma * (x64 - mean) / root(var) + beta

    def stats(axis, ddof=0):
        return x64.mean(axis=axis, keepdims=True), x64.var(axis=axis, ddof=ddof, keepdims=True)

    per_sample_axes = tuple(range(1, x.ndim))
    return {
        "you normalized with the unbiased variance (ddof=1, dividing by m - 1); training-mode batch norm "
        "uses the biased variance (divide by m)": lambda: bn(*stats(axes, ddof=1)),
        "eps is added outside the square root: use np.sqrt(var + eps)":
            lambda: bn(*stats(axes), root=lambda v: np.sqrt(v) + eps),
        "no eps: a constant channel (variance 0) gives 0/0 = nan; divide by np.sqrt(var + eps)":
            lambda: bn(*stats(axes), root=np.sqrt),
        "you ignored the eps argument and used 1e-5 always": lambda: bn(*stats(axes), root=lambda v: np.sqrt(v + EPS)),
        "gamma and beta are swapped: y = gamma * x_hat + beta": lambda: bn(*stats(axes), gamma=b, beta=g),
        "the statistics are over axis 0 only; for images reduce over N, H and W (axis=(0, 2, 3))":
            lambda: bn(*stats(0)),
        "you computed per-sample statistics (over the features of each example, as layer norm does) "
        "instead of per-channel statistics over the batch": lambda: bn(*stats(per_sample_axes)),
        "you computed in float32 (a cast somewhere); keep float64 input in float64":
            lambda: _forward_in_float32(x, gamma, beta, eps),
    }


def _forward_in_float32(x, gamma, beta, eps):
    __tracebackhide__ = True
    x32 = x.astype(np.float32)
    axes = _axes(x)
    x_hat = (x32 - x32.mean(axis=axes, keepdims=True)) / np.sqrt(x32.var(axis=axes, keepdims=True) + np.float32(eps))
    return (_broadcast(gamma, x) * x_hat + _broadcast(beta, x)).astype(np.float64)


def check_bn_forward(bn_forward, seed=0, hidden=False):
    """bn_forward(x, gamma, beta, eps) returns (y, cache) with y equal to torch's batch norm."""
    __tracebackhide__ = True
    for case, x in _each_case(seed, hidden):
        gamma, beta = cases.affine_parameters(x.shape[1], x.dtype, case["seed"])
        for eps in (EPS, 1e-2):
            this_case = dict(case, eps=eps)
            kwargs = {} if eps == EPS else {"eps": eps}
            name = "y returned by bn_forward(x, gamma, beta)" + ("" if eps == EPS else f" with eps={eps}")
            result = call("bn_forward", bn_forward, x, gamma, beta, case=this_case, **kwargs)
            y, _cache = returned_tuple("bn_forward", result, 2, ("y", "cache"), this_case)
            _expect_array(name, y, x, this_case)
            expected = reference.batch_norm_training(x, gamma, beta, eps)
            assert_close(name, y, expected, dtype=x.dtype, case=this_case,
                         diagnoses=_forward_mistakes(x, gamma, beta, eps))


def _backward_results(bn_forward, bn_backward, x, gamma, beta, dy, case):
    __tracebackhide__ = True
    result = call("bn_forward", bn_forward, x, gamma, beta, case=case)
    _y, cache = returned_tuple("bn_forward", result, 2, ("y", "cache"), case)
    grads = call("bn_backward(dy, cache)", bn_backward, dy, cache, case=case)
    dx, dgamma, dbeta = returned_tuple("bn_backward", grads, 3, ("dx", "dgamma", "dbeta"), case)
    return dx, dgamma, dbeta


def backward_mistakes(x, gamma, dy, eps=EPS, axis_word="axis"):
    """What the classic backward-pass mistakes would compute, in float64.

    Shared by the NumPy and the PyTorch checks; ``axis_word`` is "axis" for
    NumPy and "dim" for PyTorch, so that the advice speaks the student's API.
    """
    __tracebackhide__ = True
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    axes = _axes(x)
    m = x.size // x.shape[1]
    g = _broadcast(gamma.astype(np.float64), x)
    mean = x64.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(x64.var(axis=axes, keepdims=True) + eps)
    x_hat = (x64 - mean) * inv_std
    dx_hat = dy64 * g

    def total(a, axis=axes):
        return a.sum(axis=axis, keepdims=True)

    return {
        "dx": {
            "dx lacks the mean term -sum(dx_hat): the gradient through mu is missing":
                lambda: inv_std / m * (m * dx_hat - x_hat * total(dx_hat * x_hat)),
            "dx lacks the variance term -x_hat * sum(dx_hat * x_hat): the gradient through sigma^2 is missing":
                lambda: inv_std / m * (m * dx_hat - total(dx_hat)),
            "dx treats the batch statistics as constants (dx = gamma * dy / sqrt(var + eps)); "
            "the mean and the variance depend on every x, which adds two terms": lambda: dx_hat * inv_std,
            "gamma is missing from dx: dx_hat = dy * gamma":
                lambda: inv_std / m * (m * dy64 - total(dy64) - x_hat * total(dy64 * x_hat)),
            f"the sums in dx run over {axis_word} 0 only; for images sum over N, H and W "
            f"({axis_word}=(0, 2, 3)) and use m = N*H*W":
                lambda: _dx_summed_over_axis0(x64, g, dy64, eps),
        },
        "dgamma": {
            "dgamma is sum(dy); it must be sum(dy * x_hat) (dgamma without x_hat)": lambda: total(dy64).ravel(),
            "dgamma uses x instead of x_hat: dgamma = sum(dy * x_hat)": lambda: total(dy64 * x64).ravel(),
            "dgamma is a mean over the batch; it must be a sum": lambda: total(dy64 * x_hat).ravel() / m,
            "dgamma and dbeta are swapped": lambda: total(dy64).ravel(),
        },
        "dbeta": {
            "dbeta is averaged over the batch; it must be the sum of dy": lambda: total(dy64).ravel() / m,
            "dgamma and dbeta are swapped": lambda: total(dy64 * x_hat).ravel(),
        },
    }


def _dx_summed_over_axis0(x, g, dy, eps):
    __tracebackhide__ = True
    m = x.shape[0]
    mean, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    dx_hat = dy * g
    return inv_std / m * (m * dx_hat - dx_hat.sum(0, keepdims=True) - x_hat * (dx_hat * x_hat).sum(0, keepdims=True))


def check_bn_backward(bn_forward, bn_backward, part="dx", seed=0, hidden=False):
    """bn_backward(dy, cache) returns (dx, dgamma, dbeta) equal to torch autograd's.

    ``part`` is ``"dx"`` or ``"dgamma_dbeta"``, so that each earns its own points.
    """
    __tracebackhide__ = True
    for case, x in _each_case(seed, hidden):
        gamma, beta = cases.affine_parameters(x.shape[1], x.dtype, case["seed"])
        dy = cases.upstream_gradient(x.shape, x.dtype, case["seed"])
        dx, dgamma, dbeta = _backward_results(bn_forward, bn_backward, x, gamma, beta, dy, case)
        expected_dx, expected_dgamma, expected_dbeta = reference.batch_norm_gradients(x, gamma, beta, dy)
        mistakes = backward_mistakes(x, gamma, dy)
        if part == "dx":
            _expect_array("dx returned by bn_backward", dx, x, case)
            assert_close("dx returned by bn_backward", dx, expected_dx, dtype=x.dtype, case=case,
                         diagnoses=mistakes["dx"])
        else:
            for name, got, expected in (("dgamma", dgamma, expected_dgamma), ("dbeta", dbeta, expected_dbeta)):
                _expect_array(f"{name} returned by bn_backward", got, x, case)
                assert_close(f"{name} returned by bn_backward", got, expected, dtype=x.dtype, case=case,
                             diagnoses=mistakes[name],
                             hint=f"{name} has one value per channel, summed over every axis but 1")
    if part == "dx":
        check_bn_backward_numerically(bn_forward, bn_backward, seed=seed, hidden=hidden)


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


def check_bn_backward_numerically(bn_forward, bn_backward, seed=0, hidden=False):
    """dx, dgamma and dbeta agree with a central-difference gradient of sum(y * dy)."""
    __tracebackhide__ = True
    shapes = [(5, 3), (3, 2, 2, 3)] if not hidden else [(4, 2, 3), (6, 4)]
    for number, shape in enumerate(shapes):
        case_seed = 500 + seed + number + (1000 if hidden else 0)
        case = {"shape": shape, "dtype": "float64", "seed": case_seed, "method": "central differences"}
        x = cases.activations(shape, np.float64, case_seed, constant_channel=False)
        gamma, beta = cases.affine_parameters(shape[1], np.float64, case_seed)
        dy = cases.upstream_gradient(shape, np.float64, case_seed)
        dx, dgamma, dbeta = _backward_results(bn_forward, bn_backward, x, gamma, beta, dy, case)

        def loss(x_=x, gamma_=gamma, beta_=beta):
            return float(np.sum(reference.batch_norm_training(x_, gamma_, beta_) * dy))

        numeric = {
            "dx": numeric_gradient(lambda v: loss(x_=v), x.copy()),
            "dgamma": numeric_gradient(lambda v: loss(gamma_=v), gamma.copy()),
            "dbeta": numeric_gradient(lambda v: loss(beta_=v), beta.copy()),
        }
        for name, got in (("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)):
            error = _numeric_error(got, numeric[name])
            if error > 1e-6:
                raise CheckFailure(
                    f"{name} returned by bn_backward disagrees with a central-difference numeric gradient.\n"
                    f"  input: {describe_case(case)}\n"
                    f"  max relative error {error:.3g} (tolerance 1e-06)\n"
                    "  hint: differentiate y = gamma * x_hat + beta through x_hat, var and mean; "
                    "see the compact formula in the chapter."
                )


def _numeric_error(got, numeric):
    __tracebackhide__ = True
    got = np.asarray(got, dtype=np.float64)
    if got.shape != numeric.shape:
        return np.inf
    return float(np.max(np.abs(got - numeric) / np.maximum(1e-8, np.abs(got) + np.abs(numeric))))
