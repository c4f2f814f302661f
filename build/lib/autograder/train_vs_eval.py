"""Checks for Chapter 2, NumPy: a BatchNorm layer with train/eval modes and running statistics.

A check drives the student's layer and ``torch.nn.BatchNorm{1,2,3}d`` through
the same steps (training batches of varying size, eval batches including a
batch of one, back to training) and compares after every step the output, the
gradients and the running statistics. When a value is wrong, the steps so far
are replayed by a NumPy model of each classic mistake; the mistake that
reproduces the wrong value is named as the likely cause.

The layer's parameters and running statistics are float64, like a torch layer
built with ``dtype=torch.float64``. Float32 activations give float32 outputs
and input gradients (torch itself refuses float32 input to a float64 layer on
the CPU; the GPU's mixed-precision batch norm keeps float32 statistics for
half-precision input in the same way). Float32 results are compared with the
float64 reference at the float32 tolerance; whether the running statistics
stay float64 or become float32 is not checked.
"""

import contextlib
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from . import cases
from .compare import CheckFailure, assert_close, assert_dtype, describe_case, max_relative_error
from .student import call

EPS = 1e-5
DTYPES = (np.float64, np.float32)
ERROR_WORDING = "Expected more than 1 value per channel when training"

# A protocol is a sequence of (mode, shape) steps with one channel count.
# Training batches vary in size; eval steps include a batch of one, which
# must work in eval mode; training resumes after eval.
VISIBLE_PROTOCOLS = (
    (("train", (8, 3)), ("train", (13, 3)), ("train", (9, 3)), ("eval", (6, 3)), ("eval", (1, 3)),
     ("train", (10, 3)), ("eval", (5, 3))),
    (("train", (4, 4, 3, 3)), ("train", (2, 4, 5, 3)), ("train", (3, 4, 2, 2)), ("eval", (2, 4, 3, 5)),
     ("eval", (1, 4, 2, 3)), ("train", (5, 4, 3, 2)), ("eval", (1, 4, 1, 1))),
)
# Hidden tests add (N, C, L) and volumes, a single channel, tiny batches and many channels.
HIDDEN_PROTOCOLS = (
    (("train", (3, 5, 4)), ("train", (2, 5, 7)), ("train", (11, 5, 1)), ("eval", (4, 5, 3)),
     ("eval", (1, 5, 1)), ("train", (6, 5, 2)), ("eval", (2, 5, 9))),
    (("train", (2, 2, 2, 3, 2)), ("train", (3, 2, 1, 2, 2)), ("eval", (1, 2, 2, 2, 2)),
     ("train", (2, 2, 3, 1, 2)), ("eval", (2, 2, 1, 1, 1))),
    (("train", (2, 1)), ("train", (3, 1)), ("eval", (1, 1)), ("train", (31, 1)), ("eval", (4, 1))),
    (("train", (31, 17)), ("train", (9, 17)), ("eval", (2, 17)), ("train", (16, 17)), ("eval", (1, 17))),
)

STATE = ("running_mean", "running_var", "num_batches_tracked")
FORWARD = ("y",) + STATE
BACKWARD = ("y", "dx", "dgamma", "dbeta")
EVERYTHING = BACKWARD + STATE

LABELS = {
    "y": "y returned by layer.forward(x)",
    "dx": "dx returned by layer.backward(dy)",
    "dgamma": "layer.dgamma (set by backward)",
    "dbeta": "layer.dbeta (set by backward)",
    "running_mean": "layer.running_mean",
    "running_var": "layer.running_var",
    "num_batches_tracked": "layer.num_batches_tracked",
}


@dataclass(frozen=True)
class Config:
    """The constructor arguments of one layer (besides num_features)."""

    momentum: object = 0.1
    affine: bool = True
    track_running_stats: bool = True
    eps: float = EPS

    def arguments(self):
        """The keyword arguments that differ from the defaults (so that the defaults are tested too)."""
        __tracebackhide__ = True
        defaults = Config()
        return {name: getattr(self, name) for name in ("eps", "momentum", "affine", "track_running_stats")
                if getattr(self, name) != getattr(defaults, name)}

    def describe(self, channels):
        __tracebackhide__ = True
        arguments = "".join(f", {name}={value}" for name, value in self.arguments().items())
        return f"BatchNorm({channels}{arguments})"


# The classic mistakes, each with the sentence that names it. A NumPy model of
# the layer makes one of them (see _Model); several models may share a cause.
CAUSES = {
    "momentum_reversed":
        "the momentum convention is reversed: PyTorch's momentum weights the NEW batch, "
        "running = (1 - momentum) * running + momentum * batch (the paper's m = 0.9 weights the old value)",
    "biased_running_var":
        "running_var matches the biased variance; PyTorch stores the unbiased one (the batch variance "
        "times m / (m - 1)) although it normalizes with the biased one",
    "bessel_over_n":
        "the Bessel correction uses N instead of m = N*H*W values per channel: the unbiased variance is "
        "the biased one times m / (m - 1) with m = x.size // C",
    "update_in_eval":
        "the running statistics changed in eval mode; only training-mode forward passes update "
        "running_mean, running_var and num_batches_tracked",
    "update_in_eval_after_normalizing":
        "the running statistics changed in eval mode; only training-mode forward passes update "
        "running_mean, running_var and num_batches_tracked",
    "batch_stats_in_eval":
        "in eval mode you normalized with the batch statistics; with track_running_stats=True eval mode "
        "normalizes with running_mean and running_var",
    "mode_ignored":
        "in eval mode you normalized with the batch statistics and updated the running ones, as in training; "
        "forward must branch on self.training",
    "running_stats_in_training":
        "in training mode you normalized with the running statistics; training mode normalizes with the "
        "batch's own mean and biased variance, and only updates the running ones",
    "running_stats_in_training_before_update":
        "in training mode you normalized with the running statistics; training mode normalizes with the "
        "batch's own mean and biased variance, and only updates the running ones",
    "momentum_none_as_default":
        "momentum=None was not handled as a cumulative average: then the weight of the new batch is "
        "1 / num_batches_tracked (counting this batch), not a fixed momentum",
    "momentum_none_no_update":
        "momentum=None was not handled as a cumulative average: then the weight of the new batch is "
        "1 / num_batches_tracked (counting this batch), not a fixed momentum",
    "cumulative_off_by_one":
        "the cumulative average is off by one: with momentum=None the weight of the new batch is "
        "1 / num_batches_tracked after counting it (1 for the first batch, which replaces the initial values)",
    "count_not_incremented":
        "num_batches_tracked is never incremented: add 1 for every training-mode forward pass",
    "running_var_zeros":
        "running_var started at zeros (as in CS231n's starter code); PyTorch starts running_var at ones "
        "and running_mean at zeros",
    "eval_backward_through_batch_stats":
        "in eval mode the statistics are constants, so dx = dy * gamma / sqrt(running_var + eps); "
        "your backward still differentiates through the mean and variance as in training",
    "unbiased_normalize":
        "you normalized with the unbiased variance (dividing by m - 1); training mode normalizes with the "
        "biased variance (divide by m), and only running_var stores the unbiased one",
    "eps_ignored":
        "you ignored the layer's eps and used 1e-5 always; use self.eps",
}


class _Model:
    """A NumPy batch norm layer, float64, that makes one classic mistake (or none)."""

    def __init__(self, channels, config, gamma, beta, mistake=None):
        __tracebackhide__ = True
        self.config, self.mistake = config, mistake
        self.gamma, self.beta = (gamma, beta) if config.affine else (None, None)
        self.running_mean = np.zeros(channels)
        self.running_var = np.zeros(channels) if mistake == "running_var_zeros" else np.ones(channels)
        self.count = 0

    def step(self, mode, x, dy):
        """Forward and backward of one step; returns every quantity a check compares."""
        __tracebackhide__ = True
        x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
        mistake, tracking = self.mistake, self.config.track_running_stats
        training = mode == "train" or mistake == "mode_ignored"
        axes, m = cases.channel_axes(x.ndim), cases.batch_size(x.shape)
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        before = (self.running_mean, self.running_var)
        if tracking and (training or mistake in ("update_in_eval", "update_in_eval_after_normalizing")):
            self._update(mean, var, x.shape[0], m)
        use_batch = training or not tracking or mistake == "batch_stats_in_eval"
        stats = (mean, x.var(axis=axes, ddof=1) if mistake == "unbiased_normalize" else var)
        if not use_batch or (training and mistake == "running_stats_in_training"):
            stats = (self.running_mean, self.running_var)
        if (training and mistake == "running_stats_in_training_before_update") or (
                not training and mistake == "update_in_eval_after_normalizing"):
            stats = before
        eps = EPS if mistake == "eps_ignored" else self.config.eps
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_std = _channel(1.0 / np.sqrt(stats[1] + eps), x)
            x_hat = (x - _channel(stats[0], x)) * inv_std
            gamma = np.ones(x.shape[1]) if self.gamma is None else self.gamma
            y = x_hat if self.gamma is None else _channel(gamma, x) * x_hat + _channel(self.beta, x)
            dx_hat = dy * _channel(gamma, x)
            if use_batch or mistake == "eval_backward_through_batch_stats":
                dx = inv_std / m * (m * dx_hat - dx_hat.sum(axis=axes, keepdims=True)
                                    - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True))
            else:
                dx = dx_hat * inv_std
        tracked = {"running_mean": self.running_mean, "running_var": self.running_var,
                   "num_batches_tracked": self.count} if tracking else dict.fromkeys(STATE)
        return dict(tracked, y=y, dx=dx, dgamma=(dy * x_hat).sum(axis=axes), dbeta=dy.sum(axis=axes))

    def _update(self, mean, var, n, m):
        __tracebackhide__ = True
        if self.mistake != "count_not_incremented":
            self.count += 1
        momentum = self.config.momentum
        if momentum is None:
            momentum = {"momentum_none_as_default": 0.1, "momentum_none_no_update": 0.0,
                        "cumulative_off_by_one": 1.0 / (self.count + 1)}.get(self.mistake)
            momentum = 1.0 / self.count if momentum is None else momentum
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = {"biased_running_var": 1.0, "bessel_over_n": np.float64(n) / (n - 1)}.get(
                self.mistake, np.float64(m) / (m - 1))
            unbiased = var * correction
        old, new = (momentum, 1 - momentum) if self.mistake == "momentum_reversed" else (1 - momentum, momentum)
        self.running_mean = old * self.running_mean + new * mean
        self.running_var = old * self.running_var + new * unbiased


def _channel(vector, x):
    __tracebackhide__ = True
    return np.asarray(vector).reshape((1, -1) + (1,) * (x.ndim - 2))


class _Replay:
    """The steps so far; on a failure, replayed by the model of each mistake to name the likely cause."""

    def __init__(self, channels, config, gamma, beta):
        __tracebackhide__ = True
        self.arguments = (channels, config, gamma, beta)
        self.history = []

    def outcome(self, mistake, quantity):
        __tracebackhide__ = True
        model = _Model(*self.arguments, mistake=mistake)
        for step in self.history:
            result = model.step(*step)
        return result[quantity]

    def diagnoses(self, quantity, got):
        """{cause: what it would compute}; of the models sharing a cause, the one closest to ``got``."""
        __tracebackhide__ = True
        by_cause = {}
        for mistake, cause in CAUSES.items():
            by_cause.setdefault(cause, []).append(mistake)
        return {cause: (lambda mistakes=mistakes: self._closest(quantity, mistakes, got))
                for cause, mistakes in by_cause.items()}

    def _closest(self, quantity, mistakes, got):
        __tracebackhide__ = True
        candidates = []
        for mistake in mistakes:
            try:
                candidate = np.asarray(self.outcome(mistake, quantity), np.float64)
            except Exception:  # a model that cannot run these steps explains nothing
                continue
            if candidate.shape == np.shape(got):
                candidates.append((max_relative_error(got, candidate), candidate))
        if not candidates:
            raise ValueError("no model of this mistake reproduces the shape")
        return min(candidates, key=lambda pair: pair[0])[1]

    def counted_by(self, got, expected):
        """The cause whose model counts ``got`` batches where ``expected`` is right, or None."""
        __tracebackhide__ = True
        for mistake, cause in CAUSES.items():
            try:
                if self.outcome(mistake, "num_batches_tracked") == got != expected:
                    return cause
            except Exception:
                continue
        return None


class _TorchLayer:
    """torch.nn.BatchNorm{1,2,3}d in float64 with the same parameters: the ground truth."""

    CLASSES = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}

    def __init__(self, channels, ndim, config, gamma, beta):
        __tracebackhide__ = True
        self.module = self.CLASSES[ndim](channels, eps=config.eps, momentum=config.momentum, affine=config.affine,
                                         track_running_stats=config.track_running_stats, dtype=torch.float64)
        if config.affine:
            with torch.no_grad():
                self.module.weight.copy_(torch.from_numpy(gamma))
                self.module.bias.copy_(torch.from_numpy(beta))

    def step(self, mode, x, dy):
        __tracebackhide__ = True
        with _one_thread():
            return self._step(mode, x, dy)

    def _step(self, mode, x, dy):
        __tracebackhide__ = True
        module = self.module
        module.train(mode == "train")
        if module.affine:
            module.weight.grad = module.bias.grad = None
        x_t = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
        y = module(x_t)
        y.backward(torch.tensor(np.asarray(dy, np.float64)))
        count = module.num_batches_tracked
        return {
            "y": y.detach().numpy(), "dx": x_t.grad.numpy(),
            "dgamma": module.weight.grad.numpy() if module.affine else None,
            "dbeta": module.bias.grad.numpy() if module.affine else None,
            "running_mean": _copy(module.running_mean), "running_var": _copy(module.running_var),
            "num_batches_tracked": None if count is None else int(count),
        }


@contextlib.contextmanager
def _one_thread():
    """Run torch single-threaded: on these tiny tensors a busy CPU makes a thread pool
    a hundred times slower (100 ms instead of 0.1 ms per call)."""
    __tracebackhide__ = True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _copy(value):
    __tracebackhide__ = True
    if value is None:
        return None
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy().copy()
    return np.array(value, copy=True)


# Calling the student's layer -----------------------------------------------------------

def _new_layer(BatchNorm, channels, config, case):
    __tracebackhide__ = True
    return call(config.describe(channels), BatchNorm, channels, case=case, **config.arguments())


def _attribute(layer, name, case, hint):
    __tracebackhide__ = True
    if not hasattr(layer, name):
        raise CheckFailure(f"your layer has no attribute {name}.\n  input: {describe_case(case)}\n  hint: {hint}")
    return getattr(layer, name)


def _set_parameters(layer, gamma, beta, case):
    """Give the layer random gamma and beta, as an optimizer step would (the checks' only assignment)."""
    __tracebackhide__ = True
    for name in ("gamma", "beta"):
        _attribute(layer, name, case, "__init__ must set self.gamma = np.ones(C) and self.beta = np.zeros(C)")
    layer.gamma, layer.beta = gamma.copy(), beta.copy()


def _expect_array(name, value, like, case):
    __tracebackhide__ = True
    if not isinstance(value, np.ndarray):
        raise CheckFailure(
            f"{name} must be a NumPy array, got {type(value).__name__}\n"
            f"  input: {describe_case(case)}\n"
            "  hint: this notebook is NumPy only; forward returns y and backward returns dx."
        )
    assert_dtype(name, value, like.dtype, case,
                 "the float64 parameters or running statistics promoted the result to float64 (or a cast "
                 "changed it); return y.astype(x.dtype) and dx.astype(dy.dtype)")


def _switch_mode(layer, mode, case):
    __tracebackhide__ = True
    switch = _attribute(layer, mode, case, f"define the method {mode}()")
    returned = call(f"layer.{mode}()", switch, case=case)
    if returned is not layer:
        raise CheckFailure(
            f"layer.{mode}() must return the layer itself (return self), as torch's Module.{mode}() does, "
            f"so that one can write layer = BatchNorm(3).{mode}(); it returned {type(returned).__name__}\n"
            f"  input: {describe_case(case)}"
        )


def _student_step(layer, mode, x, dy, backward, affine, case):
    """Switch the layer to ``mode``, run forward (and backward); return what a check compares."""
    __tracebackhide__ = True
    _switch_mode(layer, mode, case)
    y = call("layer.forward(x)", layer.forward, x, case=case,
             hint="momentum=None means a cumulative average: the weight of the new batch is "
                  "1 / num_batches_tracked" if "momentum=None" in case.get("layer", "") else None)
    _expect_array(LABELS["y"], y, x, case)
    results = {"y": y}
    if backward:
        dx = call("layer.backward(dy)", layer.backward, dy, case=case)
        _expect_array(LABELS["dx"], dx, dy, case)
        results["dx"] = dx
        for name in ("dgamma", "dbeta"):
            value = _attribute(layer, name, case, "backward(dy) must set self.dgamma and self.dbeta") \
                if affine else None  # without gamma and beta there is nothing to check
            results[name] = _copy(value)
    for name in STATE:
        results[name] = _copy(_attribute(layer, name, case, "__init__ must set it (None when not tracking)"))
    return results


# Comparing --------------------------------------------------------------------------------

def _compare(got, expected, quantities, replay, dtype, case):
    __tracebackhide__ = True
    for name in quantities:
        if name in ("dgamma", "dbeta") and expected[name] is None:
            continue  # affine=False: there are no parameters to differentiate
        if name == "num_batches_tracked":
            _check_count(got[name], expected[name], replay, case)
        elif expected[name] is None or got[name] is None:
            _check_none(name, got[name], expected[name], case)
        else:
            assert_close(LABELS[name], got[name], expected[name], dtype=dtype, case=case,
                         diagnoses=replay.diagnoses(name, got[name]))


def _check_none(name, got, expected, case):
    __tracebackhide__ = True
    if expected is None and got is not None:
        raise CheckFailure(
            f"{LABELS[name]} must be None when track_running_stats=False (torch registers these buffers as "
            f"None and always normalizes with the batch statistics); got {type(got).__name__}\n"
            f"  input: {describe_case(case)}"
        )
    if got is None and expected is not None:
        raise CheckFailure(
            f"{LABELS[name]} is None; it must hold one value per channel"
            + (" (dgamma and dbeta are set by backward when affine=True)" if name in ("dgamma", "dbeta") else "")
            + f"\n  input: {describe_case(case)}"
        )


def _is_count(value):
    __tracebackhide__ = True
    value = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_count(got, expected, replay, case):
    __tracebackhide__ = True
    if expected is None or got is None:
        _check_none("num_batches_tracked", got, expected, case)
        return
    if not _is_count(got):
        raise CheckFailure(
            f"{LABELS['num_batches_tracked']} must be an int (it counts batches), got {got!r} "
            f"of type {type(got).__name__}\n  input: {describe_case(case)}"
        )
    if int(got) != expected:
        cause = replay.counted_by(int(got), expected)
        raise CheckFailure(
            f"{LABELS['num_batches_tracked']} is wrong: got {int(got)}, expected {expected}\n"
            f"  input: {describe_case(case)}\n"
            + (f"  likely cause: {cause}" if cause else
               "  hint: it counts training-mode forward passes, and only those")
        )


# The parity protocol ----------------------------------------------------------------------

def _steps_text(protocol):
    __tracebackhide__ = True
    return " -> ".join(f"{mode}({'x'.join(str(s) for s in shape)})" for mode, shape in protocol)


def _float32_ok(protocol, config):
    """Float32 batch statistics need enough values per channel (see cases.MIN_FLOAT32_BATCH)."""
    __tracebackhide__ = True
    return all(cases.batch_size(shape) >= cases.MIN_FLOAT32_BATCH for mode, shape in protocol
               if mode == "train" or not config.track_running_stats)


def _usable(protocol, config, modes):
    """The steps of ``protocol`` with a mode in ``modes`` that torch accepts for ``config``."""
    __tracebackhide__ = True
    batch_statistics_always = not config.track_running_stats
    return tuple((mode, shape) for mode, shape in protocol if mode in modes
                 and not (batch_statistics_always and cases.batch_size(shape) == 1))


def run_protocol(BatchNorm, protocol, config, dtype, seed, quantities):
    """Drive the student's layer and torch's through ``protocol``; compare ``quantities`` after every step."""
    __tracebackhide__ = True
    channels, ndim = protocol[0][1][1], len(protocol[0][1])
    gamma, beta = cases.affine_parameters(channels, np.float64, seed)
    if not config.affine:
        gamma, beta = np.ones(channels), np.zeros(channels)
    layer_case = {"layer": config.describe(channels), "dtype": np.dtype(dtype).name, "seed": seed}
    student = _new_layer(BatchNorm, channels, config, layer_case)
    if config.affine:
        _set_parameters(student, gamma, beta, layer_case)
    reference = _TorchLayer(channels, ndim, config, gamma, beta)
    replay = _Replay(channels, config, gamma, beta)
    for number, (mode, shape) in enumerate(protocol):
        step_seed = seed + 31 * (number + 1)
        x = cases.activations(shape, dtype, step_seed)
        dy = cases.upstream_gradient(shape, dtype, step_seed)
        replay.history.append((mode, x, dy))
        case = dict(layer_case, step=f"{number + 1} of {len(protocol)}",
                    steps=_steps_text(protocol[:number + 1]))
        got = _student_step(student, mode, x, dy, "dx" in quantities, config.affine, case)
        expected = reference.step(mode, x, dy)
        _compare(got, expected, quantities, replay, dtype, case)


def _run_all(BatchNorm, configs, seed, hidden, quantities, modes=("train", "eval"), dtypes=DTYPES):
    __tracebackhide__ = True
    protocols = HIDDEN_PROTOCOLS if hidden else VISIBLE_PROTOCOLS
    for dtype in dtypes:  # float64 first: its diagnoses are the sharpest
        for number, protocol in enumerate(protocols):
            for config in configs:
                steps = _usable(protocol, config, modes)
                if dtype == np.float32 and not _float32_ok(steps, config):
                    continue
                case_seed = (1000 if hidden else 0) + seed + 97 * number
                run_protocol(BatchNorm, steps, config, dtype, case_seed, quantities)


# The checks the test cells call -----------------------------------------------------------

def check_init(BatchNorm, hidden=False):
    """A new layer holds torch's initial values; train() and eval() switch the mode and return the layer."""
    __tracebackhide__ = True
    for channels in ((5, 17) if hidden else (3, 1)):
        for config in (Config(), Config(affine=False), Config(track_running_stats=False),
                       Config(eps=1e-3, momentum=None)):
            case = {"layer": config.describe(channels)}
            layer = _new_layer(BatchNorm, channels, config, case)
            _check_initial_values(layer, channels, config, case)
            _check_modes(layer, case)


def _check_initial_values(layer, channels, config, case):
    __tracebackhide__ = True
    ones, zeros = np.ones(channels), np.zeros(channels)
    expected = {
        "gamma": ones if config.affine else None, "beta": zeros if config.affine else None,
        "running_mean": zeros if config.track_running_stats else None,
        "running_var": ones if config.track_running_stats else None,
    }
    for name, value in expected.items():
        got = _attribute(layer, name, case, "__init__ must set it (None when the option is off)")
        if value is None:
            if got is not None:
                option = "affine" if name in ("gamma", "beta") else "track_running_stats"
                raise CheckFailure(f"layer.{name} must be None when {option}=False, as in torch; "
                                   f"got {type(got).__name__}\n  input: {describe_case(case)}")
            continue
        if not isinstance(got, np.ndarray) or got.dtype != np.float64 or got.shape != (channels,):
            raise CheckFailure(
                f"layer.{name} must be a float64 NumPy array of shape ({channels},), got "
                f"{type(got).__name__}" + (f" {got.dtype} {got.shape}" if isinstance(got, np.ndarray) else "")
                + f"\n  input: {describe_case(case)}\n  hint: np.ones(num_features) and np.zeros(num_features) "
                "are float64 arrays of shape (num_features,)"
            )
        cause = CAUSES["running_var_zeros"] if name == "running_var" and not got.any() else None
        assert_close(f"layer.{name} of a new layer", got, value, dtype=np.float64, case=case,
                     diagnoses={cause: lambda: got} if cause else None,
                     hint="torch starts gamma and running_var at ones, beta and running_mean at zeros")
    count = _attribute(layer, "num_batches_tracked", case, "__init__ must set it (None when not tracking)")
    if not config.track_running_stats:
        if count is not None:
            raise CheckFailure("layer.num_batches_tracked must be None when track_running_stats=False\n"
                               f"  input: {describe_case(case)}")
    elif not _is_count(count) or int(count) != 0:
        raise CheckFailure(f"layer.num_batches_tracked of a new layer must be the int 0, got {count!r}\n"
                           f"  input: {describe_case(case)}")


def _check_modes(layer, case):
    __tracebackhide__ = True
    if not _is_flag(_attribute(layer, "training", case, "__init__ must set self.training = True"), True):
        raise CheckFailure(f"a new layer must be in training mode: layer.training must be True, got "
                           f"{layer.training!r}\n  input: {describe_case(case)}")
    for mode, switch, flag in (("eval", lambda: layer.eval(), False), ("train", lambda: layer.train(), True),
                               ("train(False)", lambda: layer.train(False), False),
                               ("train(mode=True)", lambda: layer.train(mode=True), True)):
        returned = call(f"layer.{mode}", switch, case=case)
        if returned is not layer:
            raise CheckFailure(
                f"layer.{mode} must return the layer itself (return self), as torch's Module.train and "
                f"Module.eval do; it returned {type(returned).__name__}\n  input: {describe_case(case)}"
            )
        if not _is_flag(layer.training, flag):
            raise CheckFailure(f"after layer.{mode}, layer.training must be {flag}, got {layer.training!r}\n"
                               f"  input: {describe_case(case)}")


def _is_flag(value, flag):
    __tracebackhide__ = True
    return isinstance(value, (bool, np.bool_)) and bool(value) == flag


def check_forward_training(BatchNorm, seed=0, hidden=False):
    """Training mode: y, running_mean, running_var and num_batches_tracked after every batch equal torch's."""
    __tracebackhide__ = True
    configs = (Config(), Config(eps=1e-3)) if hidden else (Config(),)
    _run_all(BatchNorm, configs, seed, hidden, FORWARD, modes=("train",))


def check_forward_eval(BatchNorm, seed=0, hidden=False):
    """Training, then eval (including a batch of one), then training again: every step equals torch's."""
    __tracebackhide__ = True
    configs = (Config(), Config(eps=1e-3)) if hidden else (Config(),)
    _run_all(BatchNorm, configs, seed, hidden, FORWARD)


def check_momentum(BatchNorm, seed=0, hidden=False):
    """Other momenta and momentum=None (a cumulative average) through the whole protocol."""
    __tracebackhide__ = True
    configs = (Config(momentum=0.05), Config(momentum=None), Config(momentum=0.5, eps=1e-3)) if hidden else (
        Config(momentum=0.3), Config(momentum=None))
    _run_all(BatchNorm, configs, seed, hidden, FORWARD)


def check_moving_average(BatchNorm, seed=0, hidden=False):
    """The same batch k times gives the closed form of the moving average, with Bessel's correction.

    running_mean = (1 - (1 - momentum)^k) * mu and
    running_var = (1 - momentum)^k * 1 + (1 - (1 - momentum)^k) * var * m / (m - 1);
    with momentum=None (a cumulative average) they are mu and the unbiased variance from k = 1 on.
    """
    __tracebackhide__ = True
    settings = (((5, 4, 2, 2), 0.05), ((3, 2), 0.5), ((2, 3, 2, 2, 2), None)) if hidden else (
        ((6, 3), 0.1), ((2, 3, 3, 3), 0.3), ((4, 2), None))
    for shape, momentum in settings:
        config, channels = Config(momentum=momentum), shape[1]
        x = cases.activations(shape, np.float64, (1000 if hidden else 0) + seed)
        axes, m = cases.channel_axes(len(shape)), cases.batch_size(shape)
        mu, unbiased = x.mean(axis=axes), x.var(axis=axes) * m / (m - 1)
        layer_case = {"layer": config.describe(channels), "input": f"the same batch x of shape {shape}, k times"}
        layer = _new_layer(BatchNorm, channels, config, layer_case)
        replay = _Replay(channels, config, np.ones(channels), np.zeros(channels))
        for k in range(1, 9):
            case = dict(layer_case, k=k)
            replay.history.append(("train", x, np.zeros_like(x)))
            _switch_mode(layer, "train", case)
            call("layer.forward(x)", layer.forward, x, case=case)
            old_weight = 0.0 if momentum is None else (1 - momentum) ** k
            expected = {"running_mean": (1 - old_weight) * mu, "running_var": old_weight + (1 - old_weight) * unbiased}
            for name, value in expected.items():
                got = _attribute(layer, name, case, "__init__ must set it")
                if got is None:
                    _check_none(name, got, value, case)
                assert_close(LABELS[name], _copy(got), value, dtype=np.float64, case=case,
                             diagnoses=replay.diagnoses(name, _copy(got)))


def check_options(BatchNorm, seed=0, hidden=False):
    """affine=False (no gamma, beta) and track_running_stats=False (batch statistics in both modes)."""
    __tracebackhide__ = True
    configs = (Config(affine=False), Config(track_running_stats=False))
    if hidden:
        configs += (Config(affine=False, track_running_stats=False, momentum=None),
                    Config(track_running_stats=False, eps=1e-3))
    _run_all(BatchNorm, configs, seed, hidden, FORWARD)


def check_one_value_per_channel(BatchNorm, hidden=False):
    """Training mode rejects one value per channel with torch's ValueError; other small batches work."""
    __tracebackhide__ = True
    failing = ((1, 2, 1), (1, 5, 1, 1, 1), (1, 1)) if hidden else ((1, 3), (1, 4, 1, 1))
    for shape in failing:
        _expect_value_error(BatchNorm, shape, Config(), "train")
    if hidden:  # without running statistics, eval mode uses the batch statistics too
        _expect_value_error(BatchNorm, (1, 3), Config(track_running_stats=False), "eval")
    working = (("train", (1, 3, 2, 1)), ("eval", (1, 3))) if not hidden else (
        ("train", (2, 1)), ("eval", (1, 4, 1, 1)), ("train", (1, 2, 1, 2, 1)))
    for mode, shape in working:  # only y: the running statistics earn their points elsewhere
        run_protocol(BatchNorm, ((mode, shape),), Config(), np.float64, 11, ("y",))


def _expect_value_error(BatchNorm, shape, config, mode):
    __tracebackhide__ = True
    case = {"layer": config.describe(shape[1]), "mode": mode, "x.shape": shape}
    layer = _new_layer(BatchNorm, shape[1], config, case)
    _switch_mode(layer, mode, case)
    x = cases.activations(shape, np.float64, 5)
    try:
        layer.forward(x)
    except NotImplementedError as error:
        raise CheckFailure("layer.forward raised NotImplementedError: it is not implemented yet.") from error
    except ValueError as error:
        if ERROR_WORDING not in str(error):
            raise CheckFailure(
                f"layer.forward(x) raised ValueError({str(error)!r}); use torch's wording: "
                f"ValueError(f\"{ERROR_WORDING}, got input size {{x.shape}}\")\n  input: {describe_case(case)}"
            ) from error
        return
    except Exception as error:
        raise CheckFailure(
            f"layer.forward(x) raised {type(error).__name__}: {error}; it must raise ValueError "
            f"(\"{ERROR_WORDING}, ...\")\n  input: {describe_case(case)}"
        ) from error
    raise CheckFailure(
        f"layer.forward(x) returned without an error, but with one value per channel (m = N*H*W = 1) the batch "
        "statistics are meaningless: x - mean is 0, the biased variance is 0 and the unbiased one 0/0. "
        f"Raise ValueError(f\"{ERROR_WORDING}, got input size {{x.shape}}\") whenever batch statistics are "
        f"used (training mode, or track_running_stats=False)\n  input: {describe_case(case)}"
    )


def check_backward(BatchNorm, part="train", seed=0, hidden=False):
    """backward(dy): dx, dgamma and dbeta equal torch autograd's, in training (``part="train"``) or eval mode."""
    __tracebackhide__ = True
    if part == "train":
        _run_all(BatchNorm, (Config(), Config(affine=False)), seed, hidden, BACKWARD, modes=("train",))
    else:
        configs = (Config(), Config(momentum=None, eps=1e-3)) if hidden else (Config(),)
        _run_all(BatchNorm, configs, seed, hidden, BACKWARD)


def check_parity(BatchNorm, seed=0, hidden=False):
    """The whole protocol for every option: y, dx, dgamma, dbeta and the running statistics after every step."""
    __tracebackhide__ = True
    configs = (Config(), Config(momentum=0.3), Config(momentum=None), Config(affine=False),
               Config(track_running_stats=False))
    if hidden:
        configs += (Config(momentum=0.7, eps=1e-2), Config(momentum=None, affine=False),
                    Config(track_running_stats=False, affine=False, eps=1e-3))
    _run_all(BatchNorm, configs, seed, hidden, EVERYTHING)
