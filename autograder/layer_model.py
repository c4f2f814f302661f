"""A batch-norm layer's options, and a NumPy model of the layer that makes one classic mistake.

``LayerOptions`` holds the constructor arguments of torch's BatchNorm besides
``num_features``; the chapter 2 checks (NumPy and PyTorch) describe every layer
they build with it. :class:`MistakenLayer` is the computation behind the stateful
mistakes of :mod:`autograder.mistakes`: it replays the steps a check ran, and the
mistake whose replay reproduces the student's value is named.
"""

from dataclasses import dataclass, fields

import numpy as np

from .cases import batch_size, channel_axes, channel_shape
from .compare import max_relative_error

EPS = 1e-5


@dataclass(frozen=True, kw_only=True)
class LayerOptions:
    """The constructor arguments of one layer (besides num_features), torch's defaults by default."""

    eps: float = EPS
    momentum: object = 0.1
    affine: bool = True
    track_running_stats: bool = True

    def arguments(self):
        """The keyword arguments that differ from the defaults (so that the defaults are tested too)."""
        __tracebackhide__ = True
        return {f.name: getattr(self, f.name) for f in fields(LayerOptions) if getattr(self, f.name) != f.default}

    def describe(self, channels):
        __tracebackhide__ = True
        return f"BatchNorm({channels}" + "".join(f", {k}={v}" for k, v in self.arguments().items()) + ")"


# Each model is "key" or "key/variant" (several ways to make one mistake); the key is the catalogue's.
MODELS = (
    "momentum_reversed", "biased_running_var", "bessel_over_n", "running_replaced_by_batch", "running_var_from_mean",
    "running_var_plus_eps", "updated_in_eval/before_normalizing", "updated_in_eval/after_normalizing",
    "batch_statistics_in_eval", "mode_ignored", "running_statistics_in_training/after_update",
    "running_statistics_in_training/before_update", "momentum_none_ignored/as_default",
    "momentum_none_ignored/no_update", "cumulative_off_by_one", "count_not_incremented", "running_var_zeros",
    "eval_backward_through_batch_statistics", "unbiased_variance", "eps_ignored",
)


class MistakenLayer:
    """A NumPy batch norm layer, float64, that makes one classic mistake (or none)."""

    def __init__(self, channels, options, gamma, beta, mistake=None):
        __tracebackhide__ = True
        self.options, self.mistake = options, mistake
        self.gamma, self.beta = (gamma, beta) if options.affine else (None, None)
        self.running_mean = np.zeros(channels)
        self.running_var = np.zeros(channels) if mistake == "running_var_zeros" else np.ones(channels)
        self.count = 0

    def load(self, state):
        """Take running statistics read from the student's layer (checks of eval mode start from them)."""
        __tracebackhide__ = True
        self.running_mean, self.running_var = state["running_mean"], state["running_var"]
        self.count = state["num_batches_tracked"]

    def step(self, mode, x, dy):
        """Forward and backward of one step; returns every quantity a check compares."""
        __tracebackhide__ = True
        x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
        mistake, tracking = self.mistake, self.options.track_running_stats
        training = mode == "train" or mistake == "mode_ignored"
        axes, m = channel_axes(x.ndim), batch_size(x.shape)
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        before = (self.running_mean, self.running_var)
        if tracking and (training or (mistake or "").startswith("updated_in_eval")):
            self._update(mean, var, x.shape[0], m)
        use_batch = training or not tracking or mistake == "batch_statistics_in_eval"
        stats = (mean, x.var(axis=axes, ddof=1) if mistake == "unbiased_variance" else var)
        if not use_batch or (training and mistake == "running_statistics_in_training/after_update"):
            stats = (self.running_mean, self.running_var)
        if (training and mistake == "running_statistics_in_training/before_update") or (
                not training and mistake == "updated_in_eval/after_normalizing"):
            stats = before
        eps = EPS if mistake == "eps_ignored" else self.options.eps
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_std = channel_shape(1.0 / np.sqrt(stats[1] + eps), x)
            x_hat = (x - channel_shape(stats[0], x)) * inv_std
            gamma = np.ones(x.shape[1]) if self.gamma is None else self.gamma
            y = x_hat if self.gamma is None else channel_shape(gamma, x) * x_hat + channel_shape(self.beta, x)
            upstream = dy * channel_shape(gamma, x)
            if use_batch or mistake == "eval_backward_through_batch_statistics":
                dx = inv_std * (upstream - upstream.mean(axis=axes, keepdims=True)
                                - x_hat * (upstream * x_hat).mean(axis=axes, keepdims=True))
            else:
                dx = upstream * inv_std
        state = ("running_mean", "running_var", "num_batches_tracked")
        tracked = dict(zip(state, (self.running_mean, self.running_var, self.count))) if tracking else \
            dict.fromkeys(state)
        return dict(tracked, y=y, dx=dx, dgamma=(dy * x_hat).sum(axis=axes), dbeta=dy.sum(axis=axes))

    def _update(self, mean, var, n, m):
        __tracebackhide__ = True
        mistake = self.mistake or ""
        if mistake != "count_not_incremented":
            self.count += 1
        momentum = self.options.momentum
        if momentum is None:
            momentum = {"momentum_none_ignored/as_default": 0.1, "momentum_none_ignored/no_update": 0.0,
                        "cumulative_off_by_one": 1.0 / (self.count + 1)}.get(mistake, 1.0 / self.count)
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = {"biased_running_var": 1.0, "bessel_over_n": np.float64(n) / (n - 1)}.get(
                mistake, np.float64(m) / (m - 1))
            new_var = {"running_var_from_mean": mean, "running_var_plus_eps": var * correction + self.options.eps}.get(
                mistake, var * correction)
        old, new = (momentum, 1 - momentum) if mistake == "momentum_reversed" else (1 - momentum, momentum)
        if mistake == "running_replaced_by_batch":
            old, new = 0.0, 1.0
        self.running_mean = old * self.running_mean + new * mean
        self.running_var = old * self.running_var + new * new_var


class Replay:
    """The steps so far; on a failure, replayed by the model of each mistake to name the likely cause."""

    def __init__(self, channels, options, gamma, beta):
        __tracebackhide__ = True
        self.arguments = (channels, options, gamma, beta)
        self.history = []

    def add_step(self, mode, x, dy):
        self.history.append(("step", (mode, x, dy)))

    def add_load(self, state):
        """The check gave the reference the student's running statistics; the models take them too."""
        self.history.append(("load", state))

    def outcome(self, mistake, quantity):
        __tracebackhide__ = True
        model = MistakenLayer(*self.arguments, mistake=mistake)
        result = None
        for kind, payload in self.history:
            if kind == "load":
                model.load(payload)
            else:
                result = model.step(*payload)
        return result[quantity]

    def mistakes(self, quantity, got):
        """{key: what it would compute}; of the models of one key, the one closest to ``got``."""
        __tracebackhide__ = True
        by_key = {}
        for model in MODELS:
            by_key.setdefault(model.split("/")[0], []).append(model)
        return {key: (lambda models=models: self._closest(quantity, models, got)) for key, models in by_key.items()}

    def _closest(self, quantity, models, got):
        __tracebackhide__ = True
        candidates = []
        for model in models:
            try:
                candidate = np.asarray(self.outcome(model, quantity), np.float64)
            except Exception:  # a model that cannot run these steps explains nothing
                continue
            if candidate.shape == np.shape(got):
                candidates.append((max_relative_error(got, candidate), candidate))
        if not candidates:
            raise ValueError("no model of this mistake reproduces the shape")
        return min(candidates, key=lambda pair: pair[0])[1]

    def counted_by(self, got, expected):
        """The key of the mistake whose model counts ``got`` batches where ``expected`` is right, or None."""
        __tracebackhide__ = True
        for model in MODELS:
            try:
                if self.outcome(model, "num_batches_tracked") == got != expected:
                    return model.split("/")[0]
            except Exception:
                continue
        return None
