"""Checks for Chapter 2, NumPy: a BatchNorm layer with train/eval modes and running statistics.

A check drives the student's layer and ``torch.nn.BatchNorm{1,2,3}d`` through
the same steps (training batches of varying size, eval batches including a
batch of one, back to training) and compares, after every step the check
grades, the output, the gradients and the running statistics. Eval-mode steps
are judged on their own: before each, torch's layer takes the student's
running statistics, so a wrong update costs the points of the training checks
only. When a value is wrong, the steps so far are replayed by a NumPy model of
each classic mistake (:mod:`autograder.layer_model`); the mistake that
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
from .compare import CheckFailure, assert_close, describe_case
from .layer_model import LayerOptions, Replay
from .mistakes import sentence
from .student import call, expect_array, graded

EPS = 1e-5
DTYPES = (np.float64, np.float32)
ERROR_WORDING = "Expected more than 1 value per channel when training"

STATE = ("running_mean", "running_var", "num_batches_tracked")
FORWARD = ("y",) + STATE
BACKWARD = ("y", "dx", "dgamma", "dbeta")

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
class Inputs:
    """What the checks run the student's layer on: protocols of (mode, shape) steps, and layer options."""

    seed: int = 0
    # Training batches vary in size; eval steps include a batch of one, which
    # must work in eval mode; training resumes after eval.
    protocols: tuple = (
        (("train", (8, 3)), ("train", (13, 3)), ("train", (9, 3)), ("eval", (6, 3)), ("eval", (1, 3)),
         ("train", (10, 3)), ("eval", (5, 3))),
        (("train", (4, 4, 3, 3)), ("train", (2, 4, 5, 3)), ("train", (3, 4, 2, 2)), ("eval", (2, 4, 3, 5)),
         ("eval", (1, 4, 2, 3)), ("train", (5, 4, 3, 2)), ("eval", (1, 4, 1, 1))),
    )
    init_channels: tuple = (3, 1)
    forward_options: tuple = (LayerOptions(),)
    momentum_options: tuple = (LayerOptions(momentum=0.3), LayerOptions(momentum=None))
    moving_average: tuple = (((6, 3), 0.1), ((2, 3, 3, 3), 0.3), ((4, 2), None))  # (shape, momentum)
    other_options: tuple = (LayerOptions(affine=False), LayerOptions(track_running_stats=False))
    one_value_shapes: tuple = ((1, 3), (1, 4, 1, 1))  # rejected in training mode
    one_value_in_eval_without_tracking: bool = False
    small_batches: tuple = (("train", (1, 3, 2, 1)), ("eval", (1, 3)))  # accepted
    backward_train_options: tuple = (LayerOptions(), LayerOptions(affine=False))
    backward_eval_options: tuple = (LayerOptions(),)


VISIBLE = Inputs()


class _TorchLayer:
    """torch.nn.BatchNorm{1,2,3}d in float64 with the same parameters: the ground truth."""

    CLASSES = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}

    def __init__(self, channels, ndim, config, gamma, beta):
        __tracebackhide__ = True
        self.channels = channels
        self.module = self.CLASSES[ndim](channels, **config.arguments(), dtype=torch.float64)
        if config.affine:
            with torch.no_grad():
                self.module.weight.copy_(torch.from_numpy(gamma))
                self.module.bias.copy_(torch.from_numpy(beta))

    def load(self, state):
        """Running statistics and count from the student's layer."""
        __tracebackhide__ = True
        with torch.no_grad():
            self.module.running_mean.copy_(torch.from_numpy(state["running_mean"]))
            self.module.running_var.copy_(torch.from_numpy(state["running_var"]))
            self.module.num_batches_tracked.fill_(state["num_batches_tracked"])

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
    expect_array(name, value, like.dtype, case,
                 hint="this notebook is NumPy only; forward returns y and backward returns dx.",
                 cause="the float64 parameters or running statistics promoted the result to float64 (or a cast "
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
                         mistakes=replay.mistakes(name, got[name]))


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
            + (f"  likely cause: {sentence(cause)}" if cause else
               "  hint: it counts training-mode forward passes, and only those")
        )


# The protocol ---------------------------------------------------------------------------

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


def _run_protocol(BatchNorm, protocol, config, dtype, seed, quantities, graded_modes=("train", "eval")):
    """Drive the student's layer and torch's through ``protocol``; compare ``quantities`` after the graded steps.

    When eval steps are graded, torch's layer (and every model of a mistake)
    takes the student's running statistics before each of them, so that eval
    mode is judged on its own.
    """
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
    replay = Replay(channels, config, gamma, beta)
    for number, (mode, shape) in enumerate(protocol):
        step_seed = seed + 31 * (number + 1)
        x = cases.activations(shape, dtype, step_seed)
        dy = cases.upstream_gradient(shape, dtype, step_seed)
        case = dict(layer_case, step=f"{number + 1} of {len(protocol)}",
                    steps=_steps_text(protocol[:number + 1]))
        graded = mode in graded_modes
        if graded and mode == "eval" and config.track_running_stats:
            _judge_eval_on_its_own(student, reference, replay)
        replay.add_step(mode, x, dy)
        got = _student_step(student, mode, x, dy, "dx" in quantities, config.affine, case)
        expected = reference.step(mode, x, dy)
        if graded:
            _compare(got, expected, quantities, replay, dtype, case)


def _judge_eval_on_its_own(student, reference, replay):
    """Give torch's layer and the models the student's running statistics (when they have the right form)."""
    __tracebackhide__ = True
    state = {name: _copy(getattr(student, name, None)) for name in STATE}
    statistics_ok = all(isinstance(state[name], np.ndarray) and state[name].shape == (reference.channels,)
                        for name in ("running_mean", "running_var"))
    if not statistics_ok or not _is_count(state["num_batches_tracked"]):
        return
    state["num_batches_tracked"] = int(state["num_batches_tracked"])
    reference.load(state)
    replay.add_load(state)


def _run_all(BatchNorm, configs, inputs, quantities, modes=("train", "eval"), graded_modes=("train", "eval"),
             dtypes=DTYPES):
    __tracebackhide__ = True
    for dtype in dtypes:  # float64 first: its diagnoses are the sharpest
        for number, protocol in enumerate(inputs.protocols):
            for config in configs:
                steps = _usable(protocol, config, modes)
                if dtype == np.float32 and not _float32_ok(steps, config):
                    continue
                _run_protocol(BatchNorm, steps, config, dtype, inputs.seed + 97 * number, quantities, graded_modes)


# The checks the test cells call -----------------------------------------------------------

@graded
def check_init(BatchNorm, inputs=VISIBLE):
    """A new layer holds torch's initial values; train() and eval() switch the mode and return the layer."""
    __tracebackhide__ = True
    for channels in inputs.init_channels:
        for config in (LayerOptions(), LayerOptions(affine=False), LayerOptions(track_running_stats=False),
                       LayerOptions(eps=1e-3, momentum=None)):
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
        mistakes = {"running_var_zeros": lambda: np.zeros(channels)} if name == "running_var" else None
        assert_close(f"layer.{name} of a new layer", got, value, dtype=np.float64, case=case, mistakes=mistakes,
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


@graded
def check_forward_training(BatchNorm, inputs=VISIBLE):
    """Training mode: y, running_mean, running_var and num_batches_tracked after every batch equal torch's."""
    __tracebackhide__ = True
    _run_all(BatchNorm, inputs.forward_options, inputs, FORWARD, modes=("train",))


@graded
def check_forward_eval(BatchNorm, inputs=VISIBLE):
    """Eval mode, between training steps (a batch of one included): y equals torch's and the state is unchanged.

    Before each eval step torch's layer takes the student's running statistics,
    so the update rule is not graded here (the training check grades it).
    """
    __tracebackhide__ = True
    _run_all(BatchNorm, inputs.forward_options, inputs, FORWARD, graded_modes=("eval",))


@graded
def check_momentum(BatchNorm, inputs=VISIBLE):
    """Training mode with other momenta and momentum=None (a cumulative average): y and the running statistics."""
    __tracebackhide__ = True
    _run_all(BatchNorm, inputs.momentum_options, inputs, FORWARD, modes=("train",))


@graded
def check_moving_average(BatchNorm, inputs=VISIBLE):
    """The same batch k times gives the closed form of the moving average, with Bessel's correction.

    running_mean = (1 - (1 - momentum)^k) * mu and
    running_var = (1 - momentum)^k * 1 + (1 - (1 - momentum)^k) * var * m / (m - 1);
    with momentum=None (a cumulative average) they are mu and the unbiased variance from k = 1 on.
    """
    __tracebackhide__ = True
    for shape, momentum in inputs.moving_average:
        config, channels = LayerOptions(momentum=momentum), shape[1]
        x = cases.activations(shape, np.float64, inputs.seed)
        axes, m = cases.channel_axes(len(shape)), cases.batch_size(shape)
        mu, unbiased = x.mean(axis=axes), x.var(axis=axes) * m / (m - 1)
        layer_case = {"layer": config.describe(channels), "input": f"the same batch x of shape {shape}, k times"}
        layer = _new_layer(BatchNorm, channels, config, layer_case)
        replay = Replay(channels, config, np.ones(channels), np.zeros(channels))
        for k in range(1, 9):
            case = dict(layer_case, k=k)
            replay.add_step("train", x, np.zeros_like(x))
            _switch_mode(layer, "train", case)
            call("layer.forward(x)", layer.forward, x, case=case)
            old_weight = 0.0 if momentum is None else (1 - momentum) ** k
            expected = {"running_mean": (1 - old_weight) * mu, "running_var": old_weight + (1 - old_weight) * unbiased}
            for name, value in expected.items():
                got = _attribute(layer, name, case, "__init__ must set it")
                if got is None:
                    _check_none(name, got, value, case)
                assert_close(LABELS[name], _copy(got), value, dtype=np.float64, case=case,
                             mistakes=replay.mistakes(name, _copy(got)))


@graded
def check_options(BatchNorm, inputs=VISIBLE):
    """affine=False (no gamma, beta) and track_running_stats=False (batch statistics in both modes, no state).

    With running statistics, their update is the training check's to grade: here only y is compared.
    """
    __tracebackhide__ = True
    for config in inputs.other_options:
        _run_all(BatchNorm, (config,), inputs, ("y",) if config.track_running_stats else FORWARD)


@graded
def check_one_value_per_channel(BatchNorm, inputs=VISIBLE):
    """Training mode rejects one value per channel with torch's ValueError; other small batches work."""
    __tracebackhide__ = True
    for shape in inputs.one_value_shapes:
        _expect_value_error(BatchNorm, shape, LayerOptions(), "train")
    if inputs.one_value_in_eval_without_tracking:  # without running statistics, eval uses the batch's too
        _expect_value_error(BatchNorm, (1, 3), LayerOptions(track_running_stats=False), "eval")
    for mode, shape in inputs.small_batches:  # only y: the running statistics earn their points elsewhere
        _run_protocol(BatchNorm, ((mode, shape),), LayerOptions(), np.float64, 11 + inputs.seed, ("y",))


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


@graded
def check_backward_training(BatchNorm, inputs=VISIBLE):
    """backward(dy) in training mode: y, dx, dgamma and dbeta equal torch autograd's after every batch."""
    __tracebackhide__ = True
    _run_all(BatchNorm, inputs.backward_train_options, inputs, BACKWARD, modes=("train",))


@graded
def check_backward_eval(BatchNorm, inputs=VISIBLE):
    """backward(dy) in eval mode, between training steps: dx, dgamma and dbeta equal torch autograd's.

    Eval steps are judged on their own, from the student's running statistics.
    """
    __tracebackhide__ = True
    _run_all(BatchNorm, inputs.backward_eval_options, inputs, BACKWARD, graded_modes=("eval",))
