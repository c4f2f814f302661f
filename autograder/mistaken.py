"""What the stateless classic mistakes compute, keyed as in :mod:`autograder.mistakes`.

Every function returns ``{key: thunk}``: calling a thunk computes, in float64
NumPy, what an implementation with that mistake would return for the given
input. ``compare.assert_close`` names the mistake whose answer reproduces the
student's. Shared by the NumPy and the PyTorch checks.
"""

import numpy as np

from .cases import channel_axes, channel_shape

DEFAULT_EPS = 1e-5


def _float64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def channels_last_groups(x):
    """x as (-1, C) by a plain reshape, the mistake that mixes channels (for images)."""
    return np.asarray(x).reshape(-1, x.shape[1])


def statistics(x, reduce):
    """Wrong reductions for a per-channel statistic ``reduce`` (np.mean or np.var)."""
    (x64,) = _float64(x)
    mistakes = {
        "statistics_over_axis_0": lambda: reduce(x64, axis=0),
        "per_sample_statistics": lambda: reduce(x64, axis=tuple(range(1, x.ndim))),
        "statistics_over_everything": lambda: reduce(x64, axis=None),
        "channels_mixed_by_reshape": lambda: reduce(channels_last_groups(x64), axis=0),
    }
    if np.asarray(x).dtype == np.float64:
        mistakes["computed_in_float32"] = lambda: reduce(np.asarray(x, np.float32), axis=channel_axes(x.ndim)) \
            .astype(np.float64)
    return mistakes


def variance(x):
    """Wrong per-channel variances."""
    (x64,) = _float64(x)
    axes = channel_axes(x.ndim)
    mistakes = {
        "unbiased_variance": lambda: x64.var(axis=axes, ddof=1),
        "standard_deviation_returned": lambda: x64.std(axis=axes),
        "mean_not_subtracted_in_variance": lambda: (x64 ** 2).mean(axis=axes),
    }
    mistakes.update(statistics(x, np.var))
    return mistakes


def _divided(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def normalize(x, mean, var, eps):
    """Wrong x_hat for given per-channel mean and var."""
    x64, mean, var = _float64(x, mean, var)
    m, v = channel_shape(mean, x64), channel_shape(var, x64)
    return {
        "eps_outside_root": lambda: _divided(x64 - m, np.sqrt(v) + eps),
        "eps_subtracted": lambda: _divided(x64 - m, _sqrt(v - eps)),
        "no_eps": lambda: _divided(x64 - m, np.sqrt(v)),
        "eps_ignored": lambda: (x64 - m) / np.sqrt(v + DEFAULT_EPS),
        "divided_by_variance": lambda: (x64 - m) / (v + eps),
        "mean_not_subtracted": lambda: x64 / np.sqrt(v + eps),
        "broadcast_along_last_axis": lambda: (x64 - mean) / np.sqrt(var + eps),
    }


def _sqrt(values):
    with np.errstate(invalid="ignore"):
        return np.sqrt(values)


def scale_shift(x_hat, gamma, beta):
    """Wrong y for a given x_hat."""
    x64, gamma, beta = _float64(x_hat, gamma, beta)
    g, b = channel_shape(gamma, x64), channel_shape(beta, x64)
    return {
        "gamma_beta_swapped": lambda: b * x64 + g,
        "beta_missing": lambda: g * x64,
        "gamma_missing": lambda: x64 + b,
        "broadcast_along_last_axis": lambda: x64 * gamma + beta,
    }


def forward(x, gamma, beta, eps):
    """Wrong y of training-mode batch norm, from the classic forward-pass mistakes."""
    x64, gamma, beta = _float64(x, gamma, beta)
    g, b = channel_shape(gamma, x64), channel_shape(beta, x64)
    axes = channel_axes(x.ndim)

    def bn(axis=axes, ddof=0, root=lambda v: np.sqrt(v + eps), scale=g, shift=b):
        mean, var = x64.mean(axis=axis, keepdims=True), x64.var(axis=axis, ddof=ddof, keepdims=True)
        return scale * _divided(x64 - mean, root(var)) + shift

    mistakes = {
        "unbiased_variance": lambda: bn(ddof=1),
        "eps_outside_root": lambda: bn(root=lambda v: np.sqrt(v) + eps),
        "eps_subtracted": lambda: bn(root=lambda v: _sqrt(v - eps)),
        "no_eps": lambda: bn(root=np.sqrt),
        "eps_ignored": lambda: bn(root=lambda v: np.sqrt(v + DEFAULT_EPS)),
        "gamma_beta_swapped": lambda: bn(scale=b, shift=g),
        "statistics_over_axis_0": lambda: bn(axis=0),
        "per_sample_statistics": lambda: bn(axis=tuple(range(1, x.ndim))),
        "channels_mixed_by_reshape/flat": lambda: _forward_with_mixed_channels(x64, gamma, beta, eps),
        "channels_mixed_by_reshape/scaled_per_channel":
            lambda: g * _forward_with_mixed_channels(x64, np.ones_like(gamma), np.zeros_like(beta), eps) + b,
    }
    if np.asarray(x).dtype == np.float64:
        mistakes["computed_in_float32"] = lambda: _forward_in_float32(x, gamma, beta, eps)
    return mistakes


def _forward_with_mixed_channels(x, gamma, beta, eps):
    """Batch norm of x.reshape(-1, C), reshaped back: right for (N, C), wrong for images."""
    flat = channels_last_groups(x)
    y = (flat - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + eps) * gamma + beta
    return y.reshape(x.shape)


def _forward_in_float32(x, gamma, beta, eps):
    x32 = np.asarray(x, np.float32)
    axes = channel_axes(x.ndim)
    x_hat = (x32 - x32.mean(axis=axes, keepdims=True)) / np.sqrt(x32.var(axis=axes, keepdims=True) + np.float32(eps))
    return (channel_shape(gamma, x32) * x_hat + channel_shape(beta, x32)).astype(np.float64)


def backward(x, gamma, dy, eps):
    """Wrong (dx, dgamma, dbeta) of training-mode batch norm, by quantity."""
    x64, gamma, dy64 = _float64(x, gamma, dy)
    axes = channel_axes(x.ndim)
    m = x64.size // x64.shape[1]
    g = channel_shape(gamma, x64)
    inv_std = 1.0 / np.sqrt(x64.var(axis=axes, keepdims=True) + eps)
    x_hat = (x64 - x64.mean(axis=axes, keepdims=True)) * inv_std
    dx_hat = dy64 * g

    def total(a):
        return a.sum(axis=axes, keepdims=True)

    def dx_formula(dxh, count=m):
        return inv_std / count * (count * dxh - total(dxh) - x_hat * total(dxh * x_hat))

    dx = {
        "dx_without_mean_term": lambda: inv_std / m * (m * dx_hat - x_hat * total(dx_hat * x_hat)),
        "dx_without_variance_term": lambda: inv_std / m * (m * dx_hat - total(dx_hat)),
        "dx_with_constant_statistics": lambda: dx_hat * inv_std,
        "dx_is_dy_over_std": lambda: dy64 * inv_std,
        "dx_without_gamma": lambda: dx_formula(dy64),
        "dx_sums_over_axis_0": lambda: _dx_over_axis_0(x64, g, dy64, eps),
        "channels_mixed_by_reshape/flat": lambda: _dx_with_mixed_channels(x64, gamma, dy64, eps),
        "channels_mixed_by_reshape/scaled_per_channel":
            lambda: _dx_with_mixed_channels(x64, np.ones_like(gamma), dy64 * g, eps),
    }
    if x64.ndim > 2:
        n = x64.shape[0]
        dx["dx_with_m_equal_to_n"] = lambda: inv_std / n * (n * dx_hat - total(dx_hat) - x_hat * total(dx_hat * x_hat))
    dgamma = {
        "dgamma_without_x_hat": lambda: total(dy64).ravel(),
        "dgamma_with_x": lambda: total(dy64 * x64).ravel(),
        "dgamma_averaged": lambda: total(dy64 * x_hat).ravel() / m,
        "dgamma_dbeta_swapped": lambda: total(dy64).ravel(),
    }
    dbeta = {
        "dbeta_averaged": lambda: total(dy64).ravel() / m,
        "dgamma_dbeta_swapped": lambda: total(dy64 * x_hat).ravel(),
    }
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _dx_over_axis_0(x, g, dy, eps):
    scale = (x.var(axis=0, keepdims=True) + eps) ** -0.5
    normalized = (x - x.mean(axis=0, keepdims=True)) * scale
    upstream = dy * g
    return scale * (upstream - upstream.mean(0, keepdims=True) - normalized * (upstream * normalized).mean(0, keepdims=True))


def _dx_with_mixed_channels(x, gamma, dy, eps):
    """The exact dx of batch norm computed on x.reshape(-1, C)."""
    flat, upstream = channels_last_groups(x), channels_last_groups(dy) * gamma
    scale = (flat.var(axis=0) + eps) ** -0.5
    normalized = (flat - flat.mean(axis=0)) * scale
    dx = scale * (upstream - upstream.mean(0) - normalized * (upstream * normalized).mean(0))
    return dx.reshape(x.shape)


def fold(W, b, gamma, beta, running_mean, running_var, eps):
    """Wrong (W2, b2) of BN folded into the layer before it, by quantity; W has its output axis first."""
    W, running_mean, running_var = _float64(W, running_mean, running_var)
    out = W.shape[0]
    b = np.zeros(out) if b is None else np.asarray(b, np.float64)
    g = np.ones(out) if gamma is None else np.asarray(gamma, np.float64)
    beta = np.zeros(out) if beta is None else np.asarray(beta, np.float64)

    def rows(scale):
        return W * scale.reshape((-1,) + (1,) * (W.ndim - 1))

    scale = g / np.sqrt(running_var + eps)
    scales = {
        "eps_outside_root": g / (np.sqrt(running_var) + eps),
        "eps_ignored": g / np.sqrt(running_var + DEFAULT_EPS),
        "divided_by_variance": g / (running_var + eps),
        "fold_scale_inverted": g * np.sqrt(running_var + eps),
    }
    weights = {key: (lambda s=s: rows(s)) for key, s in scales.items()}
    weights["fold_input_axis_scaled"] = lambda: W * scale.reshape((1, -1) + (1,) * (W.ndim - 2))
    weights["gamma_beta_swapped"] = lambda: rows(beta / np.sqrt(running_var + eps))
    biases = {key: (lambda s=s: (b - running_mean) * s + beta) for key, s in scales.items()}
    biases.update({
        "fold_mean_term_missing": lambda: b * scale + beta,
        "fold_bias_dropped": lambda: beta - running_mean * scale,
        "gamma_beta_swapped": lambda: (b - running_mean) * beta / np.sqrt(running_var + eps) + g,
    })
    return {"W2": weights, "b2": biases}
