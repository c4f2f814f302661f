"""Checks for Chapter 2, PyTorch: a BatchNorm module with train/eval behaviour, and precise BN.

The student's ``BatchNorm`` runs side by side with ``torch.nn.BatchNorm{1,2,3}d``
(float64, same weights) through several training steps with varying batch
sizes, then in eval mode. After every step the checks compare the output,
``x.grad``, ``weight.grad``, ``bias.grad``, the running statistics and
``num_batches_tracked``. Every forward pass of the student's module runs under
the normalization watcher (:mod:`autograder.watch`: a function and a dispatch
mode), so that delegating to torch's own batch norm is caught without touching
the student's code.

Everything runs on ``device`` (the notebook's: CUDA when it is available, else
the CPU); the diagnoses are computed in float64 on the CPU.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import cases
from .cases import channel_shape
from .compare import CheckFailure, assert_close, describe_case
from .layer_model import LayerOptions
from .mistakes import sentence
from .student import graded, run
from .introspect import is_instance
from .tensors import TORCH_DTYPES, assign, cpu64, describe
from .watch import NormalizationWatcher

STATISTICS = ("running_mean", "running_var")
BUFFERS = STATISTICS + ("num_batches_tracked",)


# The scenarios of the train-then-eval protocol -------------------------------------------

@dataclass(frozen=True)
class Scenario(LayerOptions):
    """One run of the protocol: training steps on batches of ``train_shapes``, then eval on ``eval_shapes``."""
    train_shapes: tuple
    eval_shapes: tuple
    dtype: str = "float64"

    @property
    def channels(self):
        __tracebackhide__ = True
        return self.train_shapes[0][1]


IMAGES = ((6, 4, 5, 5), (3, 4, 5, 5), (9, 4, 3, 7))


@dataclass(frozen=True)
class Inputs:
    """What the checks run the student's module on."""

    seed: int = 0
    tracking: tuple = (
        Scenario(((8, 3), (5, 3), (13, 3)), ((6, 3), (1, 3))),
        Scenario(IMAGES, ((4, 4, 5, 5), (1, 4, 5, 5))),
        Scenario(IMAGES, ((4, 4, 5, 5), (1, 4, 5, 5)), dtype="float32"),
        Scenario(((7, 3, 5), (4, 3, 5), (10, 3, 2)), ((5, 3, 5), (1, 3, 5)), momentum=0.3),
        Scenario(((8, 2, 4, 4), (3, 2, 4, 4), (5, 2, 3, 3), (6, 2, 4, 4)), ((2, 2, 4, 4), (1, 2, 4, 4)),
                 momentum=None),
    )
    options: tuple = (
        Scenario(IMAGES, ((4, 4, 5, 5), (1, 4, 5, 5)), affine=False),
        Scenario(((8, 3), (5, 3)), ((6, 3),), track_running_stats=False),
        Scenario(IMAGES, ((4, 4, 5, 5),), track_running_stats=False, dtype="float32"),
    )
    # (channels, constructor arguments) of the construction checks
    layouts: tuple = ((3, {}), (4, {"affine": False}), (5, {"track_running_stats": False}),
                      (6, {"momentum": None, "eps": 1e-3}))
    one_value_shapes: tuple = ((1, 3), (1, 4, 1, 1))


VISIBLE = Inputs()


# Calling the student's module ------------------------------------------------------------

def run_student(name, action, case, hint):
    """Run student code; explain its exceptions with ``hint``."""
    __tracebackhide__ = True
    return run(name, action, case, f"hint: {hint}")


def _constructor_call(channels, arguments, dtype):
    __tracebackhide__ = True
    shown = "".join(f", {k}={v}" for k, v in arguments.items())
    placed = "" if dtype is None else f", device=device, dtype={dtype}"
    return f"BatchNorm({channels}{shown}{placed})"


def construct(BatchNorm, channels, arguments, dtype, device, case):
    """The student's module, built on ``device`` in ``dtype``; it must be their own, not torch's."""
    __tracebackhide__ = True
    name = _constructor_call(channels, arguments, dtype)
    placement = {} if device is None and dtype is None else {"device": device, "dtype": dtype}
    module = run_student(name, lambda: BatchNorm(channels, **arguments, **placement), case,
                  "the constructor is nn.BatchNorm2d's: (num_features, eps=1e-5, momentum=0.1, affine=True, "
                  "track_running_stats=True, device=None, dtype=None)")
    assert_own_batch_norm(module, name)
    return module, name


def assert_own_batch_norm(module, name):
    """Fail when the module is, or contains, one of torch's batch-norm layers."""
    __tracebackhide__ = True
    if not is_instance(module, nn.Module):
        raise CheckFailure(f"{name} must be an nn.Module (class BatchNorm(nn.Module)), got {type(module).__name__}")
    for inner_name, inner in module.named_modules():
        if is_instance(inner, nn.modules.batchnorm._BatchNorm):
            where = "your module is" if not inner_name else f"your module contains ({inner_name})"
            raise CheckFailure(
                f"{name}: {where} an instance of torch's {type(inner).__name__}.\n"
                f"  likely cause: {sentence('delegates_to_torch', 'torch')}; subclass nn.Module only."
            )


def student_forward(module, x, case, hint):
    """``module(x)`` under the batch-norm watcher; fails if torch's own batch norm ran."""
    __tracebackhide__ = True
    with NormalizationWatcher() as watcher:
        y = run_student("your BatchNorm's forward", lambda: module(x), case, hint)
    if watcher.named("batch_norm"):
        raise CheckFailure(
            f"your BatchNorm's forward called torch's own batch norm "
            f"({', '.join(sorted(set(watcher.named('batch_norm'))))}).\n"
            f"  input: {describe_case(case)}\n"
            f"  likely cause: {sentence('delegates_to_torch', 'torch')}"
        )
    if not torch.is_tensor(y) or y.shape != x.shape or y.dtype != x.dtype or y.device != x.device:
        described = (f"a tensor of shape {tuple(y.shape)}, dtype {y.dtype}, device {y.device}"
                     if torch.is_tensor(y) else type(y).__name__)
        raise CheckFailure(
            f"your BatchNorm's forward must return a tensor like x (shape {tuple(x.shape)}, dtype {x.dtype}, "
            f"device {x.device}); it returned {described}\n  input: {describe_case(case)}\n"
            "  hint: create tensors with dtype=x.dtype and device=x.device, or build them from x and the parameters"
        )
    return y


# Running the protocol ---------------------------------------------------------------------

def _reference_module(scenario, ndim, device):
    """torch's batch norm for inputs of ``ndim`` dimensions, in float64."""
    __tracebackhide__ = True
    kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[ndim]
    return kind(scenario.channels, **scenario.arguments(), device=device, dtype=torch.float64)


def set_affine(module, gamma, beta, name):
    """Give the module's weight and bias the values ``gamma`` and ``beta``."""
    __tracebackhide__ = True
    for attribute, values in (("weight", gamma), ("bias", beta)):
        tensor = getattr(module, attribute, None)
        if not torch.is_tensor(tensor) or tuple(tensor.shape) != values.shape:  # nn.Parameter: graded elsewhere
            raise CheckFailure(
                f"{name}.{attribute} must be an nn.Parameter of shape {values.shape}; got "
                + describe(tensor) + "\n"
                "  hint: self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))"
            )
        assign(module, attribute, values)


def _node_name(tensor):
    __tracebackhide__ = True
    return type(tensor.grad_fn).__name__ if tensor.grad_fn is not None else None


def _gradient(name, tensor, case):
    """``tensor.grad`` after backward, which must exist."""
    __tracebackhide__ = True
    if tensor.grad is None:
        raise CheckFailure(
            f"{name} is None after y.backward(dy): your output does not depend on it through autograd.\n"
            f"  input: {describe_case(case)}\n"
            "  hint: compute the output from x, self.weight and self.bias themselves (not .data, .detach() "
            "or NumPy copies), so that autograd can differentiate it."
        )
    return tensor.grad


def _student_step(module, x, dy, case, hint, affine):
    """Forward and backward through the student's module: (output and gradients by name)."""
    __tracebackhide__ = True
    module.zero_grad()
    x_t = x.clone().requires_grad_(True)
    y = student_forward(module, x_t, case, hint)
    run_student("y.backward(dy) through your BatchNorm's output", lambda: y.backward(dy), case,
         "the graph of your output must lead to x (and weight, bias) only; if it mentions a second backward, "
         "the running statistics are attached to an earlier step's graph (update them under torch.no_grad())")
    results = {"output": y.detach(), "x.grad": _gradient("x.grad", x_t, case)}
    if affine:
        results["weight.grad"] = _gradient("weight.grad", module.weight, case)
        results["bias.grad"] = _gradient("bias.grad", module.bias, case)
    return results


def _reference_step(module, x, dy, affine):
    __tracebackhide__ = True
    module.zero_grad()
    x_t = x.detach().to(torch.float64).requires_grad_(True)
    y = module(x_t)
    y.backward(dy.to(torch.float64))
    results = {"output": y.detach(), "x.grad": x_t.grad}
    if affine:
        results["weight.grad"], results["bias.grad"] = module.weight.grad, module.bias.grad
    return results


def statistics_of(module):
    """Copies of a module's running statistics (float64, CPU) and its count."""
    __tracebackhide__ = True
    if getattr(module, "running_mean", None) is None:
        return None
    count = getattr(module, "num_batches_tracked", None)
    return {"running_mean": module.running_mean.detach().double().cpu().clone(),
            "running_var": module.running_var.detach().double().cpu().clone(),
            "num_batches_tracked": int(count) if torch.is_tensor(count) else count}


def _case(name, scenario, shape, seed, step):
    __tracebackhide__ = True
    return {"module": name, "shape": shape, "dtype": scenario.dtype, "seed": seed, "step": step}


def _batch(shape, scenario, seed, device):
    """x and dy for one step, as tensors on ``device`` in the scenario's dtype."""
    __tracebackhide__ = True
    dtype = np.dtype(scenario.dtype)
    x = torch.tensor(cases.activations(shape, dtype, seed), device=device)
    dy = torch.tensor(cases.upstream_gradient(shape, dtype, seed), device=device)
    return x, dy


def _run_protocol(BatchNorm, scenario, device, seed, parts):
    """Train the student's module and torch's side by side, then evaluate; compare the ``parts`` named.

    ``parts`` is a subset of {"training", "running_stats", "registration", "eval"}.
    """
    __tracebackhide__ = True
    dtype = TORCH_DTYPES[scenario.dtype]
    ndim = len(scenario.train_shapes[0])
    student, name = construct(BatchNorm, scenario.channels, scenario.arguments(), dtype, device,
                              {"dtype": scenario.dtype})
    reference = _reference_module(scenario, ndim, device)
    gamma, beta = cases.affine_parameters(scenario.channels, np.float64, seed)
    if scenario.affine:
        set_affine(student, gamma, beta, name)
        set_affine(reference, gamma, beta, "torch's BatchNorm")
    student.train()
    reference.train()
    steps = len(scenario.train_shapes)
    for step, shape in enumerate(scenario.train_shapes):
        step_seed = seed + 7 * step
        case = _case(name, scenario, shape, step_seed, f"training step {step + 1} of {steps}")
        x, dy = _batch(shape, scenario, step_seed, device)
        before = statistics_of(reference)
        got = _student_step(student, x, dy, case, _training_hint(scenario), scenario.affine)
        expected = _reference_step(reference, x, dy, scenario.affine)
        if "training" in parts:
            mistakes = _training_mistakes(x, dy, scenario, gamma, beta, before, statistics_of(reference))
            _compare_results(got, expected, scenario, case, mistakes, "training mode")
        if scenario.track_running_stats and "running_stats" in parts:
            assert_detached(student, case, registration="registration" in parts)
            _compare_statistics(student, reference, before, x, scenario, case)
    if "eval" in parts:
        _evaluate(student, reference, name, scenario, device, seed, gamma, beta)


def _training_hint(scenario):
    __tracebackhide__ = True
    if scenario.momentum is None:
        return ("momentum=None means a cumulative average: the weight of the new batch is "
                "1 / num_batches_tracked (count the batch first)")
    if not scenario.affine:
        return "with affine=False, weight and bias are None: return x_hat without scale and shift"
    if not scenario.track_running_stats:
        return sentence("running_statistics_without_tracking", "torch")
    return "read the traceback above to find the failing line"


def _compare_results(got, expected, scenario, case, mistakes, mode):
    """Compare output and gradients, in that order, naming the first that differs."""
    __tracebackhide__ = True
    dtype = np.dtype(scenario.dtype)
    for quantity, value in got.items():
        label = f"your BatchNorm's {quantity} ({mode})"
        assert_close(label, value, expected[quantity], dtype=dtype, case=case, mistakes=mistakes.get(quantity, {}),
                     api="torch")


def assert_detached(module, case, registration):
    """After a training step the running statistics are outside the autograd graph (and, if asked, buffers)."""
    __tracebackhide__ = True
    for statistic in STATISTICS:
        problem = registration_problem(module, statistic) if registration else None
        if problem:
            raise CheckFailure(f"{statistic}: {problem}\n  input: {describe_case(case)}")
        value = getattr(module, statistic)
        if value.requires_grad or value.grad_fn is not None:
            raise CheckFailure(
                f"{statistic} is attached to the autograd graph after a training step "
                f"(requires_grad={value.requires_grad}, grad_fn={_node_name(value)}).\n"
                f"  input: {describe_case(case)}\n  likely cause: {sentence('statistics_attached_to_graph', 'torch')}"
            )


def registration_problem(module, name):
    """Why the buffer ``name`` is not registered as torch registers it, or None."""
    __tracebackhide__ = True
    if name in dict(module.named_parameters(recurse=False)) or isinstance(getattr(module, name, None), nn.Parameter):
        return f"{name} is an nn.Parameter.\n  likely cause: {sentence('buffers_as_parameters', 'torch')}"
    if name not in dict(module.named_buffers(recurse=False)):
        return f"{name} is not a registered buffer.\n  likely cause: {sentence('buffers_not_registered', 'torch')}"
    if name not in module.state_dict():
        return (f"{name} is missing from state_dict (registered with persistent=False?); "
                f"use self.register_buffer('{name}', tensor), which is persistent by default.")
    return None


def _compare_statistics(student, reference, before, x, scenario, case):
    """Running statistics and num_batches_tracked after a training step equal torch's."""
    __tracebackhide__ = True
    dtype = np.dtype(scenario.dtype)
    after = statistics_of(reference)
    mistakes = _statistics_mistakes(before, x, scenario, after["num_batches_tracked"])
    for statistic in STATISTICS:
        assert_close(f"{statistic} of your BatchNorm after a training step", getattr(student, statistic),
                     after[statistic], dtype=dtype, case=case, mistakes=mistakes[statistic], api="torch",
                     hint="the update is running = (1 - momentum) * running + momentum * batch statistic")
    count = statistics_of(student)["num_batches_tracked"]
    if count != after["num_batches_tracked"]:
        cause = sentence("count_not_incremented") if count == before["num_batches_tracked"] else \
            "num_batches_tracked counts the training-mode forward passes: +1 per batch"
        raise CheckFailure(
            f"num_batches_tracked of your BatchNorm after a training step is {count}, "
            f"expected {after['num_batches_tracked']}\n  input: {describe_case(case)}\n  likely cause: {cause}"
        )


def _evaluate(student, reference, name, scenario, device, seed, gamma, beta):
    """Eval mode: the output uses the running statistics (or the batch's when not tracking) and changes nothing."""
    __tracebackhide__ = True
    _load_statistics(reference, student, name)
    student.eval()
    reference.eval()
    hint = _eval_hint(scenario)
    for number, shape in enumerate(scenario.eval_shapes):
        eval_seed = seed + 500 + 7 * number
        case = _case(name, scenario, shape, eval_seed, "eval mode after training")
        x, dy = _batch(shape, scenario, eval_seed, device)
        before = statistics_of(student)
        got = _student_step(student, x, dy, case, hint, scenario.affine)
        if before is not None:
            _assert_unchanged_in_eval(student, before, scenario, case)
        expected = _reference_step(reference, x, dy, scenario.affine)
        _compare_results(got, expected, scenario, case, _eval_mistakes(x, scenario, gamma, beta, before), "eval mode")


def _eval_hint(scenario):
    __tracebackhide__ = True
    if not scenario.track_running_stats:
        return sentence("running_statistics_without_tracking", "torch")
    return ("in eval mode normalize with running_mean and running_var; a batch of one sample is fine there "
            "(the ValueError is for training mode only)")


def _load_statistics(reference, student, name):
    """Give torch's module the student's running statistics, so that eval is judged on its own."""
    __tracebackhide__ = True
    if reference.running_mean is None:
        return
    for statistic in BUFFERS:
        value = getattr(student, statistic, None)
        if not torch.is_tensor(value) or value.shape != getattr(reference, statistic).shape:
            raise CheckFailure(f"{name}.{statistic} must be a tensor of shape "
                               f"{tuple(getattr(reference, statistic).shape)}; got {type(value).__name__}")
        with torch.no_grad():
            getattr(reference, statistic).copy_(value.detach())


def _assert_unchanged_in_eval(student, before, scenario, case):
    __tracebackhide__ = True
    after = statistics_of(student)
    for statistic in STATISTICS:
        assert_close(f"{statistic} of your BatchNorm after an eval-mode forward pass", after[statistic],
                     before[statistic], dtype=np.dtype(scenario.dtype), case=case,
                     mistakes={"updated_in_eval": lambda: after[statistic]}, api="torch")
    if after["num_batches_tracked"] != before["num_batches_tracked"]:
        raise CheckFailure(
            f"num_batches_tracked changed from {before['num_batches_tracked']} to {after['num_batches_tracked']} "
            f"during an eval-mode forward pass\n  input: {describe_case(case)}\n  likely cause: {sentence('updated_in_eval', 'torch')}"
        )


# Diagnoses: what the classic mistakes would compute, in float64 on the CPU ----------------

def _normalized(x, mean, var, eps, root=None):
    """(x - mean) / root(var) per channel; root defaults to sqrt(var + eps)."""
    __tracebackhide__ = True
    root = root or (lambda v: torch.sqrt(v + eps))
    return (x - channel_shape(mean, x)) / root(channel_shape(var, x))


def _scale_shift(scenario, gamma, beta):
    """The weight and bias as float64 CPU tensors (ones and zeros when not affine)."""
    __tracebackhide__ = True
    if not scenario.affine:
        return torch.ones(scenario.channels, dtype=torch.float64), torch.zeros(scenario.channels, dtype=torch.float64)
    return torch.as_tensor(gamma), torch.as_tensor(beta)


def batch_moments(x):
    """Per-channel mean, biased variance and unbiased variance of x (float64), and m."""
    __tracebackhide__ = True
    dims = list(cases.channel_axes(x.dim()))
    m = x.numel() // x.shape[1]
    mean = x.mean(dim=dims)
    biased = ((x - channel_shape(mean, x)) ** 2).mean(dim=dims)
    return mean, biased, biased * m / max(m - 1, 1), m


def _training_mistakes(x, dy, scenario, gamma, beta, before, after):
    """Wrong outputs and gradients of the classic training-mode mistakes, by quantity."""
    __tracebackhide__ = True
    x64, dy64, eps = cpu64(x), cpu64(dy), scenario.eps
    g, b = _scale_shift(scenario, gamma, beta)
    mean, biased, unbiased, _m = batch_moments(x64)

    def output(x_hat):
        __tracebackhide__ = True
        return x_hat * channel_shape(g, x64) + channel_shape(b, x64)

    outputs = {
        "unbiased_variance": lambda: output(_normalized(x64, mean, unbiased, eps)),
        "eps_outside_root": lambda: output(_normalized(x64, mean, biased, eps, root=lambda v: torch.sqrt(v) + eps)),
        "eps_ignored": lambda: output(_normalized(x64, mean, biased, 1e-5)),
        "statistics_over_axis_0": lambda: output(_over_dim0(x64, eps)),
        "gamma_beta_swapped":
            lambda: _normalized(x64, mean, biased, eps) * channel_shape(b, x64) + channel_shape(g, x64),
    }
    if before is not None:
        outputs["running_statistics_in_training/before_update"] = (
            lambda: output(_normalized(x64, before["running_mean"], before["running_var"], eps)))
        outputs["running_statistics_in_training/after_update"] = (
            lambda: output(_normalized(x64, after["running_mean"], after["running_var"], eps)))
    if x.dtype == torch.float64:
        outputs["computed_in_float32"] = (
            lambda: output(_normalized(x64.float(), mean.float(), biased.float(), eps).double()))
    return {
        "output": outputs,
        "x.grad": {"batch_statistics_detached":
                   lambda: dy64 * channel_shape(g, x64) / torch.sqrt(channel_shape(biased, x64) + eps)},
    }


def _over_dim0(x, eps):
    __tracebackhide__ = True
    mean, var = x.mean(dim=0, keepdim=True), x.var(dim=0, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _eval_mistakes(x, scenario, gamma, beta, statistics):
    """Wrong eval-mode outputs: batch statistics instead of the running ones, eps misplaced."""
    __tracebackhide__ = True
    x64, eps = cpu64(x), scenario.eps
    g, b = _scale_shift(scenario, gamma, beta)
    mean, biased, _unbiased, _m = batch_moments(x64)

    def output(x_hat):
        __tracebackhide__ = True
        return x_hat * channel_shape(g, x64) + channel_shape(b, x64)

    if statistics is None:
        return {}
    running_mean, running_var = statistics["running_mean"], statistics["running_var"]
    return {"output": {
        "batch_statistics_in_eval": lambda: output(_normalized(x64, mean, biased, eps)),
        "eps_outside_root":
            lambda: output(_normalized(x64, running_mean, running_var, eps, root=lambda v: torch.sqrt(v) + eps)),
    }}


def _statistics_mistakes(before, x, scenario, count):
    """Wrong running statistics after one step from ``before``, by statistic."""
    __tracebackhide__ = True
    mean, biased, unbiased, m = batch_moments(cpu64(x))
    n = x.shape[0]
    factor = 1.0 / count if scenario.momentum is None else scenario.momentum

    def blend(old, new, weight=factor):
        __tracebackhide__ = True
        return (1 - weight) * old + weight * new

    previous_mean, previous_var = before["running_mean"], before["running_var"]
    mistakes = {
        "running_mean": {
            "momentum_reversed": lambda: blend(previous_mean, mean, 1 - factor),
            "not_updated_in_training": lambda: previous_mean,
            "running_replaced_by_batch": lambda: mean,
        },
        "running_var": {
            "momentum_reversed": lambda: blend(previous_var, unbiased, 1 - factor),
            "biased_running_var": lambda: blend(previous_var, biased),
            "not_updated_in_training": lambda: previous_var,
            "running_replaced_by_batch": lambda: unbiased,
            "running_var_from_mean": lambda: blend(previous_var, mean),
            "running_var_plus_eps": lambda: blend(previous_var, unbiased + scenario.eps),
        },
    }
    if m != n and n > 1:
        mistakes["running_var"]["bessel_over_n"] = lambda: blend(previous_var, biased * n / (n - 1))
    if scenario.momentum is None:
        mistakes["running_mean"]["momentum_none_ignored"] = lambda: blend(previous_mean, mean, 0.1)
        mistakes["running_var"]["momentum_none_ignored"] = lambda: blend(previous_var, unbiased, 0.1)
    return mistakes


# Checks: parameters, buffers and state_dict -----------------------------------------------

@graded
def check_parameters_and_buffers(BatchNorm, device, inputs=VISIBLE):
    """BatchNorm's parameters, buffers and state_dict are torch's, and load in both directions (same eval outputs)."""
    __tracebackhide__ = True
    for channels, arguments in inputs.layouts:
        for dtype_name, dtype in TORCH_DTYPES.items():
            case = {"constructor": _constructor_call(channels, arguments, dtype), "device": str(device)}
            student, name = construct(BatchNorm, channels, arguments, dtype, device, case)
            reference = nn.BatchNorm2d(channels, **arguments, device=device, dtype=dtype)
            _compare_attributes(student, reference, name)
            _compare_registration(student, reference, name)
            _compare_state(student, reference, name, case, exact=True)
            _load_both_ways(student, reference, name, case, inputs.seed,
                            lambda: nn.BatchNorm2d(channels, **arguments, device=device, dtype=dtype))
    _check_conversions(BatchNorm, device, case={"device": str(device)})
    _check_outputs_after_loading(BatchNorm, inputs.tracking[0], device, inputs.seed)
    default, name = construct(BatchNorm, 3, {}, None, None, {"constructor": "BatchNorm(3)"})
    _compare_attributes(default, nn.BatchNorm2d(3), "BatchNorm(3)")
    _compare_state(default, nn.BatchNorm2d(3), "BatchNorm(3)", {"constructor": "BatchNorm(3)"}, exact=True)


def _compare_attributes(student, reference, name):
    __tracebackhide__ = True
    for attribute in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
        got, expected = getattr(student, attribute, "missing"), getattr(reference, attribute)
        if got != expected:
            raise CheckFailure(
                f"{name}.{attribute} is {got!r}, expected {expected!r}\n"
                "  hint: keep the constructor's arguments as attributes with torch's names (self.eps = eps, "
                "self.momentum = momentum, ...): recompute_bn_stats and other code read and change them"
            )


def _compare_registration(student, reference, name):
    """Parameters are weight and bias (or none); the statistics are buffers."""
    __tracebackhide__ = True
    for buffer in BUFFERS:
        if getattr(reference, buffer) is not None:
            problem = registration_problem(student, buffer)
            if problem:
                raise CheckFailure(f"{name}: {problem}")
    got = sorted(n for n, _ in student.named_parameters())
    expected = sorted(n for n, _ in reference.named_parameters())
    if got != expected:
        raise CheckFailure(
            f"{name}.named_parameters() holds {got}, expected {expected}\n"
            "  hint: weight and bias are nn.Parameter when affine=True; when affine=False register them as None "
            "(self.register_parameter('weight', None)); the statistics are buffers, not parameters"
        )
    for attribute in ("weight", "bias") + BUFFERS:
        if getattr(reference, attribute) is None and getattr(student, attribute, "missing") is not None:
            raise CheckFailure(
                f"{name}.{attribute} must be None, as in torch's BatchNorm (affine={reference.affine}, "
                f"track_running_stats={reference.track_running_stats})\n"
                f"  hint: self.register_{'parameter' if attribute in ('weight', 'bias') else 'buffer'}"
                f"('{attribute}', None)"
            )


def _compare_state(student, reference, name, case, exact):
    """Same state_dict keys, shapes, dtypes and devices as torch's, and (``exact``) the same values."""
    __tracebackhide__ = True
    got, expected = student.state_dict(), reference.state_dict()
    if sorted(got) != sorted(expected):
        missing = ", ".join(sorted(set(expected) - set(got))) or "none"
        extra = ", ".join(sorted(set(got) - set(expected))) or "none"
        raise CheckFailure(
            f"{name}.state_dict() has keys {sorted(got)}, expected {sorted(expected)} "
            f"(missing: {missing}; unexpected: {extra})\n  input: {describe_case(case)}\n"
            "  likely cause: a statistic kept as a plain attribute is missing from state_dict: register it with "
            "self.register_buffer(name, tensor); parameters and buffers that do not exist are registered as None"
        )
    for key, expected_value in expected.items():
        value = got[key]
        if not torch.is_tensor(value) or value.shape != expected_value.shape or value.dtype != expected_value.dtype \
                or value.device != expected_value.device:
            raise CheckFailure(
                f"{name}.state_dict()['{key}'] is " + describe(value)
                + f", expected {describe(expected_value)}\n  input: {describe_case(case)}\n"
                + "  hint: create every tensor with device=device and dtype=dtype (num_batches_tracked is "
                  "torch.tensor(0, dtype=torch.long, device=device))"
            )
        if exact and not torch.equal(value, expected_value):
            raise CheckFailure(
                f"{name}.state_dict()['{key}'] starts as {value.tolist()}, expected {expected_value.tolist()}\n"
                "  hint: weight starts at ones, bias at zeros, running_mean at zeros, running_var at ones, "
                "num_batches_tracked at 0"
            )


def _random_state(reference, seed):
    """torch's state_dict with random values in every entry."""
    __tracebackhide__ = True
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in reference.state_dict().items():
        if key == "num_batches_tracked":
            state[key] = torch.tensor(7, dtype=torch.long, device=value.device)
        else:
            fresh = torch.rand(value.shape, generator=generator, dtype=torch.float64) + 0.5
            state[key] = fresh.to(value.device, value.dtype)
    return state


def _load_both_ways(student, reference, name, case, seed, fresh_reference):
    """torch's state_dict loads into the student's module and the student's into torch's (strict)."""
    __tracebackhide__ = True
    reference.load_state_dict(_random_state(reference, seed), strict=True)
    load_into_student(student, reference, name, case)
    _compare_state(student, reference, name + " after loading torch's state_dict", case, exact=True)
    fresh = fresh_reference()
    load_into_torch(fresh, student, name)
    _compare_state(fresh, reference, "torch's BatchNorm after loading your state_dict", case, exact=True)


def load_into_student(student, reference, name, case):
    __tracebackhide__ = True
    run_student(f"{name}.load_state_dict(torch's state_dict, strict=True)",
         lambda: student.load_state_dict(reference.state_dict(), strict=True), case,
         "the state_dict must have exactly torch's keys: weight, bias, running_mean, running_var, "
         "num_batches_tracked (those that are not None)")


def load_into_torch(reference, student, name):
    __tracebackhide__ = True
    try:
        reference.load_state_dict(student.state_dict(), strict=True)
    except Exception as error:
        raise CheckFailure(
            f"torch's BatchNorm could not load {name}.state_dict() (strict=True): {error}\n"
            "  hint: register the statistics with self.register_buffer so that state_dict holds them"
        ) from error


def _check_conversions(BatchNorm, device, case):
    """.double() and .to(dtype) convert the floating-point buffers too; num_batches_tracked stays long."""
    __tracebackhide__ = True
    student, name = construct(BatchNorm, 4, {}, torch.float32, device, case)
    reference = nn.BatchNorm2d(4, device=device, dtype=torch.float32)
    for label, convert in ((".double()", lambda m: m.double()), (".to(torch.float32)", lambda m: m.to(torch.float32)),
                           (".to(device)", lambda m: m.to(device))):
        run_student(f"{name}{label}", lambda: convert(student), case, "read the traceback above")
        convert(reference)
        _compare_state(student, reference, f"{name} after {label}", case, exact=True)
        for buffer in BUFFERS:
            value = getattr(student, buffer)
            if value.dtype != getattr(reference, buffer).dtype:
                raise CheckFailure(
                    f"{name}.{buffer} has dtype {value.dtype} after {label}, "
                    f"expected {getattr(reference, buffer).dtype}\n  likely cause: "
                    + (registration_problem(student, buffer) or "the attribute is not the registered buffer")
                )


# Checks: the protocol, part by part -------------------------------------------------------

@graded
def check_training(BatchNorm, device, inputs=VISIBLE):
    """Training mode: output, x.grad, weight.grad and bias.grad equal torch's at every step."""
    __tracebackhide__ = True
    for number, scenario in enumerate(inputs.tracking):
        _run_protocol(BatchNorm, scenario, device, inputs.seed + 100 * number, {"training"})


@graded
def check_running_stats(BatchNorm, device, inputs=VISIBLE):
    """Training mode: running_mean, running_var (registered buffers, outside the graph) and num_batches_tracked."""
    __tracebackhide__ = True
    for number, scenario in enumerate(inputs.tracking):
        _run_protocol(BatchNorm, scenario, device, inputs.seed + 100 * number, {"running_stats", "registration"})


@graded
def check_eval(BatchNorm, device, inputs=VISIBLE):
    """Eval mode after training: torch's output and gradients with the running statistics, which stay unchanged."""
    __tracebackhide__ = True
    for number, scenario in enumerate(inputs.tracking):
        _run_protocol(BatchNorm, scenario, device, inputs.seed + 100 * number, {"eval"})


@graded
def check_options(BatchNorm, device, inputs=VISIBLE):
    """affine=False, track_running_stats=False, and the ValueError for one value per channel in training."""
    __tracebackhide__ = True
    for number, scenario in enumerate(inputs.options):
        _run_protocol(BatchNorm, scenario, device, inputs.seed + 100 * number, {"training", "eval"})
    for shape in inputs.one_value_shapes:
        _check_one_value_per_channel(BatchNorm, shape, device, inputs.seed)


def _check_one_value_per_channel(BatchNorm, shape, device, seed):
    """Training mode rejects a batch with one value per channel, as torch does."""
    __tracebackhide__ = True
    case = {"shape": shape, "mode": "training", "seed": seed}
    module, name = construct(BatchNorm, shape[1], {}, torch.float64, device, case)
    module.train()
    x = torch.tensor(cases.activations(shape, np.float64, seed), device=device)
    try:
        module(x)
    except ValueError:
        return
    except Exception as error:
        raise CheckFailure(
            f"{name} in training mode raised {type(error).__name__} for an input with one value per channel; "
            f"torch raises ValueError\n  input: {describe_case(case)}\n"
            "  hint: raise ValueError(f'Expected more than 1 value per channel when training, "
            "got input size {x.shape}')"
        ) from error
    raise CheckFailure(
        f"{name} in training mode accepted an input with one value per channel (shape {shape}); torch raises "
        "ValueError('Expected more than 1 value per channel when training, ...'): one value has no spread, "
        "and its unbiased variance divides by m - 1 = 0\n"
        f"  input: {describe_case(case)}\n"
        "  hint: when m = N*H*W is 1, raise ValueError(f'Expected more than 1 value per channel when training, "
        "got input size {x.shape}')"
    )


def _check_outputs_after_loading(BatchNorm, scenario, device, seed):
    """Eval outputs match after loading torch's state_dict into the student's module, and vice versa."""
    __tracebackhide__ = True
    ndim = len(scenario.train_shapes[0])
    trained = _reference_module(scenario, ndim, device)
    trained.load_state_dict(_random_state(trained, seed), strict=True)
    student, name = construct(BatchNorm, scenario.channels, scenario.arguments(), torch.float64, device,
                              {"dtype": "float64"})
    case = {"module": name, "state": "loaded from torch's BatchNorm", "seed": seed}
    load_into_student(student, trained, name, case)
    x, _ = _batch(scenario.eval_shapes[0], scenario, seed + 900, device)
    student.eval()
    trained.eval()
    assert_close("your BatchNorm's output (eval mode, state loaded from torch's)",
                 student_forward(student, x, case, _eval_hint(scenario)), trained(x), dtype=np.float64, case=case)
    student.train()
    student_forward(student, x, case, _training_hint(scenario))  # the student's own statistics now
    student.eval()
    loaded = _reference_module(scenario, ndim, device)
    load_into_torch(loaded, student, name)
    loaded.eval()
    case = dict(case, state="torch's BatchNorm loaded from yours")
    assert_close("torch's output after loading your state_dict (eval mode)", loaded(x),
                 student_forward(student, x, case, _eval_hint(scenario)), dtype=np.float64, case=case)
