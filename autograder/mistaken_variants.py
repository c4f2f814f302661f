"""Layer, group, instance and RMS normalization as one computation, and what their classic mistakes compute.

Each variant standardizes groups of values that share one mean and variance
(RMSNorm: one root mean square). A :class:`Variant` says which values those
are, as a view of ``x`` and the axes of the view that a statistic reduces over:

- layer norm and RMSNorm: the trailing ``normalized_shape`` axes of ``x``;
- group norm: ``x`` viewed as ``(N, G, C // G, ...)``, reduced over axes 2, 3, ...;
- instance norm: the spatial axes 2, 3, ... of ``x``.

Like :mod:`autograder.mistaken`, every ``*_mistakes`` function returns
``{catalogue key: thunk}``, each thunk computing in float64 NumPy what an
implementation with that mistake returns. Shared by the NumPy and the PyTorch
checks of Chapter 4.
"""

from dataclasses import dataclass

import numpy as np

from .cases import channel_axes, channel_shape

KINDS = ("layer", "group", "instance", "rms")


@dataclass(frozen=True)
class Variant:
    """Which normalization: ``kind`` in KINDS; ``size`` is normalized_shape (layer, rms) or num_groups (group)."""

    kind: str
    size: object = None

    @property
    def normalized_shape(self):
        return (self.size,) if isinstance(self.size, int) else tuple(self.size)

    def view(self, x):
        """(``x`` reshaped so that each statistic reduces over ``axes`` of it, ``axes``)."""
        if self.kind in ("layer", "rms"):
            count = len(self.normalized_shape)
            return x, tuple(range(x.ndim - count, x.ndim))
        if self.kind == "group":
            groups = self.size
            shaped = x.reshape((x.shape[0], groups, x.shape[1] // groups) + x.shape[2:])
            return shaped, tuple(range(2, shaped.ndim))
        return x, tuple(range(2, x.ndim))

    def affine(self, parameter, x):
        """gamma or beta broadcast to ``x``: per element of normalized_shape, or per channel for group norm."""
        if self.kind == "group":
            return channel_shape(parameter, x)
        return parameter

    def parameter_axes(self, x):
        """The axes of ``x`` that dgamma and dbeta sum over."""
        if self.kind == "group":
            return channel_axes(x.ndim)
        return tuple(range(x.ndim - len(self.normalized_shape)))

    def first_group(self, x):
        """The index (into ``self.view(x)[0]``) of the first group of values sharing statistics."""
        viewed, axes = self.view(x)
        return (0,) * (viewed.ndim - len(axes))


def _float64(*arrays):
    return tuple(None if a is None else np.asarray(a, dtype=np.float64) for a in arrays)


def _divided(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def standardized(viewed, axes, eps, ddof=0, root=None, centre=True):
    """(v - mean) / root(var + eps) over ``axes`` of ``viewed`` (RMSNorm: ``centre=False``, mean of squares)."""
    root = root or (lambda v: np.sqrt(v + eps))
    if centre:
        centred = viewed - viewed.mean(axis=axes, keepdims=True)
        spread = (centred ** 2).sum(axis=axes, keepdims=True) / (_count(viewed, axes) - ddof)
    else:
        centred, spread = viewed, (viewed ** 2).mean(axis=axes, keepdims=True)
    with np.errstate(invalid="ignore"):
        return _divided(centred, root(spread))


def _count(viewed, axes):
    return int(np.prod([viewed.shape[a] for a in axes]))


def x_hat(variant, x, eps):
    """The standardized x (float64, x's shape) of ``variant``."""
    viewed, axes = variant.view(np.asarray(x, dtype=np.float64))
    return standardized(viewed, axes, eps, centre=variant.kind != "rms").reshape(np.shape(x))


def forward(variant, x, gamma, beta, eps):
    """y of ``variant`` in float64 (gamma and beta may be None)."""
    x, gamma, beta = _float64(x, gamma, beta)
    return _scaled(variant, x_hat(variant, x, eps), x, gamma, beta)


def _scaled(variant, normalized, x, gamma, beta):
    y = normalized
    if gamma is not None:
        y = y * variant.affine(gamma, x)
    if beta is not None:
        y = y + variant.affine(beta, x)
    return y


def _over_axes(x, axes, eps, **options):
    return standardized(x, axes, eps, **options)


def forward_mistakes(variant, x, gamma, beta, eps, default_eps):
    """Wrong y's of ``variant`` for this input: wrong groups, wrong variance or eps, wrong affine, float32."""
    x64, g, b = _float64(x, gamma, beta)
    viewed, axes = variant.view(x64)

    def variant_with(**options):
        return _scaled(variant, standardized(viewed, axes, eps, **options).reshape(x64.shape), x64, g, b)

    def grouped_as(normalized):
        return lambda: _scaled(variant, normalized(), x64, g, b)

    centre = variant.kind != "rms"
    mistakes = {
        "eps_outside_root" if centre else "rms_eps_outside_root":
            lambda: variant_with(root=lambda v: np.sqrt(v) + eps, centre=centre),
        "variant_no_eps" if centre else "rms_no_eps": lambda: variant_with(root=np.sqrt, centre=centre),
    }
    if centre:
        mistakes.update({
            "variant_unbiased_variance": lambda: variant_with(ddof=1),
            "divided_by_variance": lambda: variant_with(root=lambda v: v + eps),
            "mean_not_subtracted": lambda: _scaled(variant, _divided(
                viewed, np.sqrt(viewed.var(axis=axes, keepdims=True) + eps)).reshape(x64.shape), x64, g, b),
        })
    if eps != default_eps:
        mistakes["variant_eps_ignored"] = lambda: forward(variant, x64, g, b, default_eps)
    if np.asarray(x).dtype == np.float64:
        mistakes["computed_in_float32"] = lambda: _forward_in_float32(variant, x, gamma, beta, eps)
    mistakes.update({key: grouped_as(normalized) for key, normalized in _wrong_groups(variant, x64, eps).items()})
    if g is not None:
        mistakes["gamma_missing"] = lambda: _scaled(variant, x_hat(variant, x64, eps), x64, None, b)
        if b is not None:
            mistakes["beta_missing"] = lambda: _scaled(variant, x_hat(variant, x64, eps), x64, g, None)
            mistakes["gamma_beta_swapped"] = lambda: _scaled(variant, x_hat(variant, x64, eps), x64, b, g)
    if variant.kind == "group" and g is not None:
        mistakes["gn_per_group_affine"] = lambda: _per_group_affine(variant, x64, g, b, eps)
        mistakes["gn_per_group_affine/gamma_only"] = lambda: _per_group_affine(variant, x64, g, b, eps, beta_too=False)
    if variant.kind == "rms":
        mistakes["rms_mean_subtracted"] = lambda: _scaled(variant, _over_axes(x64, axes, eps), x64, g, None)
        mistakes["rms_sum_not_mean"] = lambda: _scaled(variant, _divided(
            x64, np.sqrt((x64 ** 2).sum(axis=axes, keepdims=True) + eps)), x64, g, None)
    return mistakes


def _forward_in_float32(variant, x, gamma, beta, eps):
    """y computed with every array in float32 (a cast of the input), returned in float64."""
    x32, g32, b32 = (None if a is None else np.asarray(a, np.float32) for a in (x, gamma, beta))
    viewed, axes = variant.view(x32)
    normalized = standardized(viewed, axes, np.float32(eps), centre=variant.kind != "rms").reshape(x32.shape)
    return _scaled(variant, normalized, x32, g32, b32).astype(np.float64)


def _wrong_groups(variant, x, eps):
    """{key: thunk of x_hat} for the classic wrong choices of the values that share statistics."""
    batch, every = (0,), tuple(range(x.ndim))
    spatial = tuple(range(2, x.ndim))
    if variant.kind == "layer":
        wrong = {"ln_over_batch": lambda: _over_axes(x, batch, eps),
                 "ln_over_everything": lambda: _over_axes(x, every, eps)}
        if len(variant.normalized_shape) > 1:
            wrong["ln_last_axis_only"] = lambda: _over_axes(x, (x.ndim - 1,), eps)
        return wrong
    if variant.kind == "group":
        groups = variant.size
        interleaved = x.reshape((x.shape[0], x.shape[1] // groups, groups) + x.shape[2:])
        grouped = x.reshape((x.shape[0], groups, -1))
        return {
            "gn_groups_interleaved": lambda: _over_axes(
                interleaved, (1,) + tuple(range(3, interleaved.ndim)), eps).reshape(x.shape),
            "gn_per_channel": lambda: _over_axes(x, spatial, eps),
            "gn_over_batch": lambda: _over_axes(grouped, (0, 2), eps).reshape(x.shape),
        }
    if variant.kind == "instance":
        return {"in_over_batch": lambda: _over_axes(x, (0,) + spatial, eps),
                "in_over_channels": lambda: _over_axes(x, tuple(range(1, x.ndim)), eps)}
    return {}


def _per_group_affine(variant, x, gamma, beta, eps, beta_too=True):
    """gamma (and beta) indexed by group (gamma[g] for every channel of group g), a per-group affine."""
    per_channel = np.arange(x.shape[1]) // (x.shape[1] // variant.size)
    shifted = beta if beta is None or not beta_too else beta[per_channel]
    return _scaled(variant, x_hat(variant, x, eps), x, gamma[per_channel], shifted)


# The backward pass ----------------------------------------------------------------------------

def dx_of(variant, x, gamma, dy, eps, form="correct"):
    """dx of ``variant``; ``form`` names a mistake in the formula ("without_mean_term", ...)."""
    dx_hat = dy if gamma is None or form == "without_gamma" else dy * np.broadcast_to(variant.affine(gamma, x),
                                                                                       x.shape)
    viewed, axes = variant.view(x)
    dxh = dx_hat.reshape(viewed.shape)

    def mean(a):
        return a.mean(axis=axes, keepdims=True)

    if variant.kind == "rms":
        root = np.sqrt(mean(viewed ** 2) + eps)
        scaled = viewed / root
        terms = {"correct": dxh - scaled * mean(dxh * scaled), "without_gamma": dxh - scaled * mean(dxh * scaled),
                 "constant_statistics": dxh, "with_mean_term": dxh - mean(dxh) - scaled * mean(dxh * scaled)}
        return (terms[form] / root).reshape(x.shape)
    std = np.sqrt(viewed.var(axis=axes, keepdims=True) + eps)
    normalized = (viewed - mean(viewed)) / std
    terms = {"correct": dxh - mean(dxh) - normalized * mean(dxh * normalized),
             "without_gamma": dxh - mean(dxh) - normalized * mean(dxh * normalized),
             "without_mean_term": dxh - normalized * mean(dxh * normalized),
             "without_variance_term": dxh - mean(dxh),
             "constant_statistics": dxh}
    return (terms[form] / std).reshape(x.shape)


def gradient_mistakes(variant, x, gamma, dy, eps):
    """{"dx": {key: thunk}, "dgamma": {...}, "dbeta": {...}}: the classic wrong gradients of ``variant``."""
    x64, g, dy64 = _float64(x, gamma, dy)

    def dx(form):
        return lambda: dx_of(variant, x64, g, dy64, eps, form)

    if variant.kind == "rms":
        dx_mistakes = {"rms_dx_constant_rms": dx("constant_statistics"), "rms_dx_with_mean_term": dx("with_mean_term")}
    else:
        dx_mistakes = {"dx_without_mean_term": dx("without_mean_term"),
                       "dx_without_variance_term": dx("without_variance_term"),
                       "variant_dx_constant_statistics": dx("constant_statistics")}
    if g is not None:
        dx_mistakes["dx_without_gamma"] = dx("without_gamma")
    if g is None:
        return {"dx": dx_mistakes, "dgamma": {}, "dbeta": {}}
    sums = variant.parameter_axes(x64)
    normalized = x_hat(variant, x64, eps)
    dgamma = lambda: (dy64 * normalized).sum(axis=sums)  # noqa: E731
    dbeta = lambda: dy64.sum(axis=sums)  # noqa: E731
    return {
        "dx": dx_mistakes,
        "dgamma": {"dgamma_without_x_hat": dbeta, "dgamma_with_x": lambda: (dy64 * x64).sum(axis=sums),
                   "dgamma_averaged": lambda: (dy64 * normalized).mean(axis=sums), "dgamma_dbeta_swapped": dbeta},
        "dbeta": {"dbeta_averaged": lambda: dy64.mean(axis=sums), "dgamma_dbeta_swapped": dgamma},
    }


# Statistics synchronized across processes ---------------------------------------------------------

def sync_mistakes(shards, rank):
    """{"mean": {key: thunk}, "var": {...}}: what rank ``rank`` returns with each classic mistake of merging
    per-process statistics, for the per-process batches ``shards`` (arrays (N_i, C, ...))."""
    shards = [np.asarray(s, dtype=np.float64) for s in shards]
    axes = channel_axes(shards[0].ndim)
    means = [s.mean(axis=axes) for s in shards]
    variances = [s.var(axis=axes) for s in shards]
    counts = np.array([s.size // s.shape[1] for s in shards], dtype=np.float64)
    together = np.concatenate(shards)
    return {
        "mean": {"sync_local_only": lambda: means[rank],
                 "sync_means_without_counts": lambda: np.mean(means, axis=0),
                 "sync_summed_not_averaged": lambda: np.sum(means, axis=0)},
        "var": {"sync_local_only": lambda: variances[rank],
                "sync_variance_averaged": lambda: np.mean(variances, axis=0),
                "sync_variance_averaged/weighted": lambda: np.average(variances, axis=0, weights=counts),
                "unbiased_variance": lambda: together.var(axis=axes, ddof=1)},
    }
