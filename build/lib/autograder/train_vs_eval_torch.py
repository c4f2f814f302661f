"""Checks for Chapter 2, PyTorch: a BatchNorm module with train/eval behaviour, and precise BN.

The student's ``BatchNorm`` runs side by side with ``torch.nn.BatchNorm{1,2,3}d``
(float64, same weights) through several training steps with varying batch
sizes, then in eval mode. After every step the checks compare the output,
``x.grad``, ``weight.grad``, ``bias.grad``, the running statistics and
``num_batches_tracked``. Every forward pass of the student's module runs under
a dispatch mode that records the aten operators it calls, so that delegating to
torch's own batch norm is caught without touching the student's code.

Everything runs on ``device`` (the notebook's: CUDA when it is available, else
the CPU); the diagnoses are computed in float64 on the CPU.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import cases
from .compare import CheckFailure, assert_close, describe_case
from .student import run

STATISTICS = ("running_mean", "running_var")
BUFFERS = STATISTICS + ("num_batches_tracked",)
DEFAULTS = {"eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True}
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}

DETACH_CAUSE = (
    "the running statistics were updated with tensors that carry gradients; update them inside "
    "`with torch.no_grad():` (or from mean.detach() and var.detach()), otherwise every step's graph stays "
    "alive through them (a memory leak, and a backward pass in eval mode fails)")
EVAL_UPDATE_CAUSE = (
    "the running statistics were updated in eval mode; update them only when self.training is True "
    "(eval mode only reads them)")
NOT_COUNTED_CAUSE = (
    "num_batches_tracked not counted: add 1 to it in every training-mode forward pass "
    "(momentum=None divides by it)")


# The scenarios of the train-then-eval protocol -------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """One run of the protocol: training steps on batches of ``train_shapes``, then eval on ``eval_shapes``."""
    train_shapes: tuple
    eval_shapes: tuple
    dtype: str = "float64"
    momentum: object = 0.1
    eps: float = 1e-5
    affine: bool = True
    track_running_stats: bool = True

    @property
    def channels(self):
        __tracebackhide__ = True
        return self.train_shapes[0][1]

    def arguments(self):
        """The constructor's keyword arguments that differ from the defaults."""
        __tracebackhide__ = True
        return {name: getattr(self, name) for name, default in DEFAULTS.items() if getattr(self, name) != default}


IMAGES = ((6, 4, 5, 5), (3, 4, 5, 5), (9, 4, 3, 7))
VISIBLE_TRACKING = (
    Scenario(((8, 3), (5, 3), (13, 3)), ((6, 3), (1, 3))),
    Scenario(IMAGES, ((4, 4, 5, 5), (1, 4, 5, 5))),
    Scenario(IMAGES, ((4, 4, 5, 5), (1, 4, 5, 5)), dtype="float32"),
    Scenario(((7, 3, 5), (4, 3, 5), (10, 3, 2)), ((5, 3, 5), (1, 3, 5)), momentum=0.3),
    Scenario(((8, 2, 4, 4), (3, 2, 4, 4), (5, 2, 3, 3), (6, 2, 4, 4)), ((2, 2, 4, 4), (1, 2, 4, 4)), momentum=None),
)
# Volumes, a training batch of one image, two values per channel, a single channel,
# momentum 1, other eps, and float32 with momentum=None.
HIDDEN_TRACKING = (
    Scenario(((5, 3, 2, 3, 4), (2, 3, 2, 3, 4), (4, 3, 3, 2, 2)), ((3, 3, 2, 3, 4), (1, 3, 2, 3, 4))),
    Scenario(((1, 5, 3, 7), (2, 5, 3, 7), (6, 5, 2, 2)), ((1, 5, 3, 7),), momentum=0.05, eps=1e-3),
    Scenario(((31, 17), (9, 17), (2, 17), (40, 17)), ((1, 17), (7, 17)), momentum=None),
    Scenario(((9, 1), (12, 1), (3, 1)), ((1, 1),), momentum=1.0),
    Scenario(((8, 3, 4, 4), (5, 3, 2, 6), (16, 3, 4, 4)), ((1, 3, 4, 4),), dtype="float32", momentum=None),
    Scenario(((16, 6), (10, 6), (12, 6)), ((3, 6),), dtype="float32", momentum=0.2),
)
VISIBLE_OPTIONS = (
    Scenario(IMAGES, ((4, 4, 5, 5), (1, 4, 5, 5)), affine=False),
    Scenario(((8, 3), (5, 3)), ((6, 3),), track_running_stats=False),
    Scenario(IMAGES, ((4, 4, 5, 5),), track_running_stats=False, dtype="float32"),
)
HIDDEN_OPTIONS = (
    Scenario(((5, 3, 2, 3, 4), (3, 3, 2, 3, 4)), ((2, 3, 2, 3, 4), (1, 3, 2, 3, 4)), affine=False, momentum=None),
    Scenario(((1, 5, 3, 7), (4, 5, 3, 7)), ((1, 5, 3, 7),), track_running_stats=False, eps=1e-3),
    Scenario(((16, 5), (10, 5)), ((8, 5),), affine=False, track_running_stats=False, dtype="float32"),
)


def _seed(seed, hidden):
    __tracebackhide__ = True
    return 1000 + seed if hidden else seed


# Calling the student's module ------------------------------------------------------------

class BatchNormWatcher(TorchDispatchMode):
    """Records the aten operators that run while it is active whose name contains "batch_norm"."""

    def __init__(self):
        __tracebackhide__ = True
        super().__init__()
        self.batch_norm_calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        __tracebackhide__ = True
        if "batch_norm" in str(func):
            self.batch_norm_calls.append(str(func))
        return func(*args, **(kwargs or {}))


def _run(name, action, case, hint):
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
    module = _run(name, lambda: BatchNorm(channels, **arguments, **placement), case,
                  "the constructor is nn.BatchNorm2d's: (num_features, eps=1e-5, momentum=0.1, affine=True, "
                  "track_running_stats=True, device=None, dtype=None)")
    assert_own_batch_norm(module, name)
    return module, name


def assert_own_batch_norm(module, name):
    """Fail when the module is, or contains, one of torch's batch-norm layers."""
    __tracebackhide__ = True
    if not isinstance(module, nn.Module):
        raise CheckFailure(f"{name} must be an nn.Module (class BatchNorm(nn.Module)), got {type(module).__name__}")
    for inner_name, inner in module.named_modules():
        if isinstance(inner, nn.modules.batchnorm._BatchNorm):
            where = "your module is" if not inner_name else f"your module contains ({inner_name})"
            raise CheckFailure(
                f"{name}: {where} an instance of torch's {type(inner).__name__}.\n"
                "  likely cause: delegating to torch's own batch norm; this exercise is to write it yourself "
                "with tensor operations (mean, subtraction, sqrt, ...), subclassing nn.Module only."
            )


def student_forward(module, x, case, hint):
    """``module(x)`` under the batch-norm watcher; fails if torch's own batch norm ran."""
    __tracebackhide__ = True
    with BatchNormWatcher() as watcher:
        y = _run("your BatchNorm's forward", lambda: module(x), case, hint)
    if watcher.batch_norm_calls:
        raise CheckFailure(
            f"your BatchNorm's forward called torch's own batch norm "
            f"({', '.join(sorted(set(watcher.batch_norm_calls)))}).\n"
            f"  input: {describe_case(case)}\n"
            "  likely cause: delegating to torch's own batch norm (F.batch_norm, torch.batch_norm or "
            "nn.BatchNorm*d); compute the statistics and the normalization yourself with tensor operations."
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
        if not isinstance(tensor, nn.Parameter) or tuple(tensor.shape) != values.shape:
            raise CheckFailure(
                f"{name}.{attribute} must be an nn.Parameter of shape {values.shape}; got "
                + _describe_tensor(tensor) + "\n"
                "  hint: self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))"
            )
        with torch.no_grad():
            tensor.copy_(torch.as_tensor(values))


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
    _run("y.backward(dy) through your BatchNorm's output", lambda: y.backward(dy), case,
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


def _statistics(module):
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


def run_protocol(BatchNorm, scenario, device, seed, parts):
    """Train the student's module and torch's side by side, then evaluate; compare the ``parts`` named.

    ``parts`` is a subset of {"training", "running_stats", "eval"}.
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
        before = _statistics(reference)
        got = _student_step(student, x, dy, case, _training_hint(scenario), scenario.affine)
        expected = _reference_step(reference, x, dy, scenario.affine)
        if "training" in parts:
            mistakes = _training_mistakes(x, dy, scenario, gamma, beta, before, _statistics(reference))
            _compare_results(got, expected, scenario, case, mistakes, "training mode")
        if scenario.track_running_stats:
            assert_detached(student, case)
            if "running_stats" in parts:
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
        return ("with track_running_stats=False there are no running statistics (running_mean is None): "
                "normalize with the batch statistics and update nothing")
    return "read the traceback above to find the failing line"


def _compare_results(got, expected, scenario, case, mistakes, mode):
    """Compare output and gradients, in that order, naming the first that differs."""
    __tracebackhide__ = True
    dtype = np.dtype(scenario.dtype)
    for quantity, value in got.items():
        label = f"your BatchNorm's {quantity} ({mode})"
        assert_close(label, value, expected[quantity], dtype=dtype, case=case, diagnoses=mistakes.get(quantity, {}))


def assert_detached(module, case):
    """After a training step the running statistics are plain buffers outside the autograd graph."""
    __tracebackhide__ = True
    for statistic in STATISTICS:
        problem = registration_problem(module, statistic)
        if problem:
            raise CheckFailure(f"{statistic}: {problem}\n  input: {describe_case(case)}")
        value = getattr(module, statistic)
        if value.requires_grad or value.grad_fn is not None:
            raise CheckFailure(
                f"{statistic} is attached to the autograd graph after a training step "
                f"(requires_grad={value.requires_grad}, grad_fn={_node_name(value)}).\n"
                f"  input: {describe_case(case)}\n  likely cause: {DETACH_CAUSE}"
            )


def registration_problem(module, name):
    """Why the buffer ``name`` is not registered as torch registers it, or None."""
    __tracebackhide__ = True
    if name in dict(module.named_parameters(recurse=False)) or isinstance(getattr(module, name, None), nn.Parameter):
        return (f"{name} is registered as a parameter (nn.Parameter): parameters are what the optimizer trains "
                f"and what module.parameters() lists; statistics are state. "
                f"Use self.register_buffer('{name}', tensor) instead.")
    if name not in dict(module.named_buffers(recurse=False)):
        return (f"{name} is not a registered buffer, so it is missing from state_dict and .to() / .double() "
                f"do not move it; use self.register_buffer('{name}', tensor).")
    if name not in module.state_dict():
        return (f"{name} is missing from state_dict (registered with persistent=False?); "
                f"use self.register_buffer('{name}', tensor), which is persistent by default.")
    return None


def _compare_statistics(student, reference, before, x, scenario, case):
    """Running statistics and num_batches_tracked after a training step equal torch's."""
    __tracebackhide__ = True
    dtype = np.dtype(scenario.dtype)
    after = _statistics(reference)
    mistakes = _statistics_mistakes(before, x, scenario, after["num_batches_tracked"])
    for statistic in STATISTICS:
        assert_close(f"{statistic} of your BatchNorm after a training step", getattr(student, statistic),
                     after[statistic], dtype=dtype, case=case, diagnoses=mistakes[statistic],
                     hint="the update is running = (1 - momentum) * running + momentum * batch statistic")
    count = _statistics(student)["num_batches_tracked"]
    if count != after["num_batches_tracked"]:
        cause = NOT_COUNTED_CAUSE if count == before["num_batches_tracked"] else \
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
        before = _statistics(student)
        got = _student_step(student, x, dy, case, hint, scenario.affine)
        if before is not None:
            _assert_unchanged_in_eval(student, before, scenario, case)
        expected = _reference_step(reference, x, dy, scenario.affine)
        _compare_results(got, expected, scenario, case, _eval_mistakes(x, scenario, gamma, beta, before), "eval mode")


def _eval_hint(scenario):
    __tracebackhide__ = True
    if not scenario.track_running_stats:
        return ("with track_running_stats=False there are no running statistics (running_mean is None): "
                "normalize with the batch statistics in eval mode too")
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
    after = _statistics(student)
    for statistic in STATISTICS:
        assert_close(f"{statistic} of your BatchNorm after an eval-mode forward pass", after[statistic],
                     before[statistic], dtype=np.dtype(scenario.dtype), case=case,
                     diagnoses={EVAL_UPDATE_CAUSE: lambda: after[statistic]})
    if after["num_batches_tracked"] != before["num_batches_tracked"]:
        raise CheckFailure(
            f"num_batches_tracked changed from {before['num_batches_tracked']} to {after['num_batches_tracked']} "
            f"during an eval-mode forward pass\n  input: {describe_case(case)}\n  likely cause: {EVAL_UPDATE_CAUSE}"
        )


# Diagnoses: what the classic mistakes would compute, in float64 on the CPU ----------------

def _cpu64(tensor):
    __tracebackhide__ = True
    return tensor.detach().to("cpu", torch.float64)


def _channel(vector, ndim):
    __tracebackhide__ = True
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


def _dims(ndim):
    __tracebackhide__ = True
    return [0] + list(range(2, ndim))


def _normalized(x, mean, var, eps, root=None):
    """(x - mean) / root(var) per channel; root defaults to sqrt(var + eps)."""
    __tracebackhide__ = True
    root = root or (lambda v: torch.sqrt(v + eps))
    return (x - _channel(mean, x.dim())) / root(_channel(var, x.dim()))


def _scale_shift(scenario, gamma, beta):
    """The weight and bias as float64 CPU tensors (ones and zeros when not affine)."""
    __tracebackhide__ = True
    if not scenario.affine:
        return torch.ones(scenario.channels, dtype=torch.float64), torch.zeros(scenario.channels, dtype=torch.float64)
    return torch.as_tensor(gamma), torch.as_tensor(beta)


def _batch_moments(x):
    """Per-channel mean, biased variance and unbiased variance of x (float64), and m."""
    __tracebackhide__ = True
    dims = _dims(x.dim())
    m = x.numel() // x.shape[1]
    mean = x.mean(dim=dims)
    biased = ((x - _channel(mean, x.dim())) ** 2).mean(dim=dims)
    return mean, biased, biased * m / max(m - 1, 1), m


def _training_mistakes(x, dy, scenario, gamma, beta, before, after):
    """Wrong outputs and gradients of the classic training-mode mistakes, by quantity."""
    __tracebackhide__ = True
    x64, dy64, eps = _cpu64(x), _cpu64(dy), scenario.eps
    g, b = _scale_shift(scenario, gamma, beta)
    mean, biased, unbiased, _m = _batch_moments(x64)

    def output(x_hat):
        __tracebackhide__ = True
        return x_hat * _channel(g, x64.dim()) + _channel(b, x64.dim())

    outputs = {
        "you normalized with the unbiased variance (dividing by m - 1); training mode normalizes with the "
        "biased variance (divide by m); only running_var stores the unbiased one":
            lambda: output(_normalized(x64, mean, unbiased, eps)),
        "eps is added outside the square root: use torch.sqrt(var + eps)":
            lambda: output(_normalized(x64, mean, biased, eps, root=lambda v: torch.sqrt(v) + eps)),
        "you ignored the eps argument and used 1e-5 always":
            lambda: output(_normalized(x64, mean, biased, 1e-5)),
        "the statistics are over dimension 0 only; for images reduce over N, H and W (every dimension but 1)":
            lambda: output(_over_dim0(x64, eps)),
        "weight and bias are swapped: y = weight * x_hat + bias":
            lambda: _normalized(x64, mean, biased, eps) * _channel(b, x64.dim()) + _channel(g, x64.dim()),
    }
    if before is not None:
        in_training = ("you normalized with the running statistics in training mode; training mode normalizes "
                       "with the batch's own mean and biased variance (and only updates the running statistics)")
        outputs[in_training + " [before this batch's update]"] = (
            lambda: output(_normalized(x64, before["running_mean"], before["running_var"], eps)))
        outputs[in_training + " [after this batch's update]"] = (
            lambda: output(_normalized(x64, after["running_mean"], after["running_var"], eps)))
    if x.dtype == torch.float64:
        outputs["you computed in float32 (a cast somewhere); keep float64 input in float64"] = (
            lambda: output(_normalized(x64.float(), mean.float(), biased.float(), eps).double()))
    constant_statistics = (
        "x.grad treats the batch mean and variance as constants (they were detached or computed under "
        "torch.no_grad()); in training mode gradients must flow through the batch statistics, only the "
        "running-statistics update is detached")
    return {
        "output": outputs,
        "x.grad": {constant_statistics:
                   lambda: dy64 * _channel(g, x64.dim()) / torch.sqrt(_channel(biased, x64.dim()) + eps)},
    }


def _over_dim0(x, eps):
    __tracebackhide__ = True
    mean, var = x.mean(dim=0, keepdim=True), x.var(dim=0, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _eval_mistakes(x, scenario, gamma, beta, statistics):
    """Wrong eval-mode outputs: batch statistics instead of the running ones, eps misplaced."""
    __tracebackhide__ = True
    x64, eps = _cpu64(x), scenario.eps
    g, b = _scale_shift(scenario, gamma, beta)
    mean, biased, _unbiased, _m = _batch_moments(x64)

    def output(x_hat):
        __tracebackhide__ = True
        return x_hat * _channel(g, x64.dim()) + _channel(b, x64.dim())

    if statistics is None:
        return {}
    running_mean, running_var = statistics["running_mean"], statistics["running_var"]
    return {"output": {
        "you normalized with the batch statistics in eval mode; eval mode normalizes with running_mean and "
        "running_var (so that one sample's output does not depend on the rest of its batch)":
            lambda: output(_normalized(x64, mean, biased, eps)),
        "eps is added outside the square root: use torch.sqrt(running_var + eps)":
            lambda: output(_normalized(x64, running_mean, running_var, eps, root=lambda v: torch.sqrt(v) + eps)),
    }}


def _statistics_mistakes(before, x, scenario, count):
    """Wrong running statistics after one step from ``before``, by statistic."""
    __tracebackhide__ = True
    mean, biased, unbiased, m = _batch_moments(_cpu64(x))
    n = x.shape[0]
    factor = 1.0 / count if scenario.momentum is None else scenario.momentum

    def blend(old, new, weight=factor):
        __tracebackhide__ = True
        return (1 - weight) * old + weight * new

    previous_mean, previous_var = before["running_mean"], before["running_var"]
    reversed_cause = ("the momentum convention is reversed: PyTorch's momentum weights the NEW batch, "
                      "running = (1 - momentum) * running + momentum * batch (the paper's 0.9 weights the old value)")
    not_updated = "the running statistics were not updated in training mode"
    mistakes = {
        "running_mean": {
            reversed_cause: lambda: blend(previous_mean, mean, 1 - factor),
            not_updated: lambda: previous_mean,
        },
        "running_var": {
            reversed_cause: lambda: blend(previous_var, unbiased, 1 - factor),
            "running_var was updated with the biased variance; PyTorch stores the UNBIASED variance "
            "var * m / (m - 1) in running_var (it normalizes with the biased one)": lambda: blend(previous_var, biased),
            not_updated: lambda: previous_var,
        },
    }
    if m != n and n > 1:
        batch_size_cause = ("the unbiased correction used N (the batch size) instead of m = N*H*W, the number "
                            "of values per channel: var * m / (m - 1)")
        mistakes["running_var"][batch_size_cause] = lambda: blend(previous_var, biased * n / (n - 1))
    if scenario.momentum is None:
        ignored = ("momentum=None was ignored (treated as 0.1); momentum=None means a cumulative average: "
                   "the new batch gets weight 1 / num_batches_tracked")
        mistakes["running_mean"][ignored] = lambda: blend(previous_mean, mean, 0.1)
        mistakes["running_var"][ignored] = lambda: blend(previous_var, unbiased, 0.1)
    return mistakes


# Checks: parameters, buffers and state_dict -----------------------------------------------

def _layouts(hidden):
    """(channels, constructor arguments) of the construction checks."""
    __tracebackhide__ = True
    if hidden:
        return [(1, {}), (17, {"affine": False, "track_running_stats": False}), (2, {"momentum": 0.3}),
                (5, {"momentum": None, "affine": False})]
    return [(3, {}), (4, {"affine": False}), (5, {"track_running_stats": False}), (6, {"momentum": None, "eps": 1e-3})]


def check_parameters_and_buffers(BatchNorm, device, seed=0, hidden=False):
    """BatchNorm's parameters, buffers and state_dict are torch's, and load in both directions."""
    __tracebackhide__ = True
    for channels, arguments in _layouts(hidden):
        for dtype_name, dtype in TORCH_DTYPES.items():
            case = {"constructor": _constructor_call(channels, arguments, dtype), "device": str(device)}
            student, name = construct(BatchNorm, channels, arguments, dtype, device, case)
            reference = nn.BatchNorm2d(channels, **arguments, device=device, dtype=dtype)
            _compare_attributes(student, reference, name)
            _compare_registration(student, reference, name)
            _compare_state(student, reference, name, case, exact=True)
            _load_both_ways(student, reference, name, case, seed,
                            lambda: nn.BatchNorm2d(channels, **arguments, device=device, dtype=dtype))
    _check_conversions(BatchNorm, device, case={"device": str(device)})
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
                f"{name}.state_dict()['{key}'] is " + _describe_tensor(value)
                + f", expected {_describe_tensor(expected_value)}\n  input: {describe_case(case)}\n"
                + "  hint: create every tensor with device=device and dtype=dtype (num_batches_tracked is "
                  "torch.tensor(0, dtype=torch.long, device=device))"
            )
        if exact and not torch.equal(value, expected_value):
            raise CheckFailure(
                f"{name}.state_dict()['{key}'] starts as {value.tolist()}, expected {expected_value.tolist()}\n"
                "  hint: weight starts at ones, bias at zeros, running_mean at zeros, running_var at ones, "
                "num_batches_tracked at 0"
            )


def _describe_tensor(value):
    __tracebackhide__ = True
    if not torch.is_tensor(value):
        return type(value).__name__
    return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype}, device {value.device}"


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
    _run(f"{name}.load_state_dict(torch's state_dict, strict=True)",
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
        _run(f"{name}{label}", lambda: convert(student), case, "read the traceback above")
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

def check_training(BatchNorm, device, seed=0, hidden=False):
    """Training mode: output, x.grad, weight.grad and bias.grad equal torch's at every step."""
    __tracebackhide__ = True
    for number, scenario in enumerate(HIDDEN_TRACKING if hidden else VISIBLE_TRACKING):
        run_protocol(BatchNorm, scenario, device, _seed(seed, hidden) + 100 * number, {"training"})


def check_running_stats(BatchNorm, device, seed=0, hidden=False):
    """Training mode: running_mean, running_var and num_batches_tracked equal torch's at every step."""
    __tracebackhide__ = True
    for number, scenario in enumerate(HIDDEN_TRACKING if hidden else VISIBLE_TRACKING):
        run_protocol(BatchNorm, scenario, device, _seed(seed, hidden) + 100 * number, {"running_stats"})


def check_eval(BatchNorm, device, seed=0, hidden=False):
    """Eval mode after training: torch's output and gradients with the running statistics, which stay unchanged."""
    __tracebackhide__ = True
    scenarios = HIDDEN_TRACKING if hidden else VISIBLE_TRACKING
    for number, scenario in enumerate(scenarios):
        run_protocol(BatchNorm, scenario, device, _seed(seed, hidden) + 100 * number, {"eval"})
    _check_outputs_after_loading(BatchNorm, scenarios[0], device, _seed(seed, hidden))


def check_options(BatchNorm, device, seed=0, hidden=False):
    """affine=False, track_running_stats=False, and the ValueError for one value per channel in training."""
    __tracebackhide__ = True
    for number, scenario in enumerate(HIDDEN_OPTIONS if hidden else VISIBLE_OPTIONS):
        run_protocol(BatchNorm, scenario, device, _seed(seed, hidden) + 100 * number,
                     {"training", "running_stats", "eval"})
    shapes = ((1, 7), (1, 3, 1, 1), (1, 2, 1)) if hidden else ((1, 3), (1, 4, 1, 1))
    for shape in shapes:
        _check_one_value_per_channel(BatchNorm, shape, device, _seed(seed, hidden))


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


# Checks: precise BN -----------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """A model for recompute_bn_stats: its kind, whether it holds the student's layer, its mode, the batches."""
    kind: str
    with_student_layer: bool
    training: bool
    batch_sizes: tuple
    as_generator: bool = False


VISIBLE_PLANS = (
    Plan("mlp", False, False, (16, 7, 12, 5)),
    Plan("mlp", True, True, (9, 14, 6)),
)
HIDDEN_PLANS = (
    Plan("conv", True, False, (4, 2, 5), as_generator=True),
    Plan("mlp", True, False, (3, 11, 8, 20, 2)),
)


def _layers(kind, bn_factory, untracked):
    """The layers of a small model; the last batch norm comes from ``bn_factory``."""
    __tracebackhide__ = True
    if kind == "mlp":
        layers = [nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5), bn_factory(5, 0.3)]
    else:
        layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.2), nn.ReLU(),
                  nn.Conv2d(4, 3, 3), bn_factory(3, 0.05)]
    if untracked:  # a layer without running statistics, which must be left alone
        layers.insert(2, nn.BatchNorm1d(8, track_running_stats=False) if kind == "mlp"
                      else nn.BatchNorm2d(4, track_running_stats=False))
    return layers


def _is_batch_norm(module, BatchNorm):
    __tracebackhide__ = True
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, BatchNorm))


def _twin_models(plan, BatchNorm, device, seed, untracked):
    """(model for the student's function, reference model with torch's layers only), equal weights."""
    __tracebackhide__ = True
    def student_bn(channels, momentum):
        __tracebackhide__ = True
        module, _ = construct(BatchNorm, channels, {"momentum": momentum}, torch.float64, device, {"model": plan.kind})
        return module

    def torch_bn(channels, momentum):
        __tracebackhide__ = True
        return (nn.BatchNorm1d if plan.kind == "mlp" else nn.BatchNorm2d)(channels, momentum=momentum)

    torch.manual_seed(seed)
    reference = nn.Sequential(*_layers(plan.kind, torch_bn, untracked)).to(device, torch.float64)
    model = nn.Sequential(*_layers(plan.kind, student_bn if plan.with_student_layer else torch_bn, untracked))
    model = model.to(device, torch.float64)
    rng = np.random.default_rng(seed)
    for ours, theirs in zip(reference, model):
        if _is_batch_norm(ours, BatchNorm) and ours.affine:
            gamma, beta = cases.affine_parameters(ours.num_features, np.float64, int(rng.integers(1000)))
            set_affine(ours, gamma, beta, "torch's BatchNorm")
            set_affine(theirs, gamma, beta, "your BatchNorm")
        elif not _is_batch_norm(theirs, BatchNorm):
            theirs.load_state_dict(ours.state_dict())
        if _is_batch_norm(theirs, BatchNorm) and theirs.track_running_stats:
            _make_stale(theirs, rng)
    return model, reference


def _make_stale(layer, rng):
    """Statistics from 'earlier training': far from this data, with a non-zero count."""
    __tracebackhide__ = True
    with torch.no_grad():
        layer.running_mean.copy_(torch.as_tensor(rng.uniform(-3, 3, layer.num_features)))
        layer.running_var.copy_(torch.as_tensor(rng.uniform(0.2, 4, layer.num_features)))
        layer.num_batches_tracked.fill_(int(rng.integers(5, 50)))


def _plan_batches(plan, device, seed):
    __tracebackhide__ = True
    rng = np.random.default_rng(seed + 77)
    shape = (6,) if plan.kind == "mlp" else (3, 6, 6)
    return [torch.tensor(1.5 + 2.0 * rng.standard_normal((n,) + shape), device=device) for n in plan.batch_sizes]


def _expected_statistics(reference, batches):
    """Per layer, the cumulative averages over ``batches`` of its inputs' batch mean and unbiased variance."""
    __tracebackhide__ = True
    inputs = {index: [] for index, layer in enumerate(reference) if getattr(layer, "track_running_stats", False)}
    hooks = [reference[index].register_forward_pre_hook(lambda _m, args, index=index: inputs[index].append(args[0]))
             for index in inputs]
    reference.train()
    with torch.no_grad():
        for batch in batches:
            reference(batch)
    for hook in hooks:
        hook.remove()
    expected = {}
    for index, seen in inputs.items():
        moments = [_batch_moments(_cpu64(x)) for x in seen]
        expected[index] = {"running_mean": torch.stack([m[0] for m in moments]).mean(0),
                           "running_var": torch.stack([m[2] for m in moments]).mean(0),
                           "num_batches_tracked": len(seen), "moments": moments}
    return expected


def check_recompute_bn_stats(recompute_bn_stats, BatchNorm, device, seed=0, hidden=False):
    """recompute_bn_stats re-estimates every BN layer's statistics as a cumulative average, and restores the rest."""
    __tracebackhide__ = True
    for number, plan in enumerate(HIDDEN_PLANS if hidden else VISIBLE_PLANS):
        plan_seed = _seed(seed, hidden) + 31 * number
        model, reference = _twin_models(plan, BatchNorm, device, plan_seed, untracked=hidden)
        model.train(plan.training)
        batches = _plan_batches(plan, device, plan_seed)
        case = {"model": plan.kind + (" with your BatchNorm as its last layer" if plan.with_student_layer else ""),
                "batch sizes": plan.batch_sizes, "model mode": "train" if plan.training else "eval",
                "seed": plan_seed}
        before = _model_state(model, BatchNorm)
        argument = iter(list(batches)) if plan.as_generator else list(batches)
        result = _run("recompute_bn_stats(model, batches)", lambda: recompute_bn_stats(model, argument), case,
                      "batches is an iterable of input tensors: loop over it once, calling model(batch)")
        if result is not model:
            raise CheckFailure(f"recompute_bn_stats must return the model it was given; it returned "
                               f"{type(result).__name__}\n  input: {describe_case(case)}")
        expected = _expected_statistics(reference, batches)
        _compare_recomputed(model, before, expected, BatchNorm, case)
        _assert_restored(model, before, BatchNorm, case)


def _model_state(model, BatchNorm):
    """What recompute_bn_stats must leave as it found it, and the stale statistics (for diagnoses)."""
    __tracebackhide__ = True
    return {"training": [m.training for m in model.modules()],
            "momentum": {i: layer.momentum for i, layer in enumerate(model) if _is_batch_norm(layer, BatchNorm)},
            "parameters": {n: p.detach().clone() for n, p in model.named_parameters()},
            "statistics": {i: _statistics(layer) for i, layer in enumerate(model)
                           if _is_batch_norm(layer, BatchNorm) and layer.track_running_stats}}


def _layer_name(layer, index, BatchNorm):
    __tracebackhide__ = True
    own = not isinstance(layer, nn.modules.batchnorm._BatchNorm)
    return f"layer {index} ({'your BatchNorm' if own else type(layer).__name__})"


def _compare_recomputed(model, before, expected, BatchNorm, case):
    __tracebackhide__ = True
    for index, values in expected.items():
        layer = model[index]
        label = _layer_name(layer, index, BatchNorm)
        own = not isinstance(layer, nn.modules.batchnorm._BatchNorm)
        for statistic in STATISTICS:
            problem = registration_problem(layer, statistic) if own else None
            if problem:
                raise CheckFailure(f"{label}: {problem}\n  input: {describe_case(case)}")
        mistakes = _recompute_mistakes(before["statistics"][index], values["moments"], before["momentum"][index], own)
        hint = ("torch's layers of this model were re-estimated correctly, yours was not: make your BatchNorm pass "
                "the running-statistics tests above (momentum=None included)") if own else \
            ("precise BN: reset the statistics, set momentum=None (a cumulative average), model.train(), "
             "one forward pass per batch under torch.no_grad()")
        for statistic in STATISTICS:
            assert_close(f"{statistic} of {label} after recompute_bn_stats", getattr(layer, statistic),
                         values[statistic], dtype=np.float64, case=case, diagnoses=mistakes[statistic], hint=hint)
        count = _statistics(layer)["num_batches_tracked"]
        if count != values["num_batches_tracked"]:
            raise CheckFailure(
                f"num_batches_tracked of {label} after recompute_bn_stats is {count}, expected "
                f"{values['num_batches_tracked']} (one per batch)\n  input: {describe_case(case)}\n"
                "  likely cause: the statistics were not reset first: reset_running_stats() (or zero "
                "num_batches_tracked) so that momentum=None averages these batches only"
            )


RESET = {"running_mean": 0.0, "running_var": 1.0}


def _recompute_mistakes(stale, moments, momentum, own):
    """Statistics that the classic precise-BN mistakes leave, by statistic.

    Layers are compared in order and torch's come first, so a mistake seen only
    in the student's layer (``own``) lies in how their module is found or behaves.
    """
    __tracebackhide__ = True
    exponential = 0.1 if momentum is None else momentum
    if own:
        skipped = ("recompute_bn_stats skipped your BatchNorm layer; look for it as well as torch's layers: "
                   "isinstance(m, (nn.modules.batchnorm._BatchNorm, BatchNorm))")
        not_updated = ("your BatchNorm layer was reset, but its forward did not update the statistics during the "
                       "passes (torch's layers were updated): check your BatchNorm's training mode against the "
                       "running-statistics tests above")
        averaged = ("your BatchNorm layer averaged exponentially where torch's layers averaged cumulatively: "
                    "your forward must treat momentum=None as the weight 1 / num_batches_tracked")
        averaged_from_reset = averaged + " "
    else:
        skipped = ("the statistics did not change: the forward passes must run in training mode (model.train()), "
                   "or batch norm does not update them")
        not_updated = ("the statistics were reset but never re-estimated: the forward passes must run in training "
                       "mode (model.train()); eval-mode batch norm does not update its statistics")
        averaged = ("an exponential moving average with the layer's momentum, not a cumulative average: set "
                    "layer.momentum = None during the passes (and reset the statistics first)")
        averaged_from_reset = ("an exponential moving average from reset statistics: set layer.momentum = None "
                               "during the passes, so that every batch gets the same weight")
    mistakes = {}
    for statistic, position in (("running_mean", 0), ("running_var", 2)):
        values = [m[position] for m in moments]
        old = stale[statistic]
        reset = torch.full_like(old, RESET[statistic])
        mistakes[statistic] = {
            skipped: lambda old=old: old,
            not_updated: lambda reset=reset: reset,
            averaged: lambda old=old, values=values: _exponential(old, values, exponential),
            averaged_from_reset: lambda reset=reset, values=values: _exponential(reset, values, exponential),
            "the statistics were not reset first: num_batches_tracked kept counting, so momentum=None blended "
            "these batches into the old average; reset_running_stats() before the passes":
                lambda old=old, values=values: _cumulative(old, values, stale["num_batches_tracked"]),
            "only the last batch counts: average over all batches (momentum=None), do not replace":
                lambda values=values: values[-1],
        }
    return mistakes


def _exponential(start, values, momentum):
    __tracebackhide__ = True
    running = start.clone()
    for value in values:
        running = (1 - momentum) * running + momentum * value
    return running


def _cumulative(start, values, count):
    __tracebackhide__ = True
    running = start.clone()
    for value in values:
        count += 1
        running = running + (value - running) / count
    return running


def _assert_restored(model, before, BatchNorm, case):
    """Momentum, training flags and parameters are what they were before recompute_bn_stats."""
    __tracebackhide__ = True
    for index, momentum in before["momentum"].items():
        if model[index].momentum != momentum:
            raise CheckFailure(
                f"the momentum of {_layer_name(model[index], index, BatchNorm)} is {model[index].momentum!r} after "
                f"recompute_bn_stats, it was {momentum!r}\n  input: {describe_case(case)}\n"
                "  likely cause: momentum not restored: precise BN sets momentum=None only during the passes; "
                "save each layer's momentum first and put it back afterwards"
            )
    modes = [m.training for m in model.modules()]
    if modes != before["training"]:
        was = "train" if before["training"][0] else "eval"
        raise CheckFailure(
            f"the model is not in its original mode after recompute_bn_stats (it was in {was} mode)\n"
            f"  input: {describe_case(case)}\n"
            "  likely cause: training mode not restored: remember model.training before calling model.train(), "
            "and restore it afterwards (model.train(was_training))"
        )
    for parameter_name, parameter in model.named_parameters():
        if not torch.equal(parameter.detach(), before["parameters"][parameter_name]):
            raise CheckFailure(
                f"parameter {parameter_name} changed during recompute_bn_stats\n  input: {describe_case(case)}\n"
                "  hint: precise BN only re-estimates the running statistics; run the forward passes under "
                "torch.no_grad() and take no optimizer step"
            )
