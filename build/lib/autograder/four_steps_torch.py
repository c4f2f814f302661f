"""Checks for Chapter 1, PyTorch: batch norm as a ``torch.autograd.Function`` with an explicit backward.

Every check builds its tensors on ``device`` (the notebook's: CUDA when it is
available, else the CPU), runs the student's code on the shapes of ``cases``
in float64 and float32, and compares with ``torch.nn.functional.batch_norm``
and its autograd gradients, computed in float64 on the CPU. Nothing here puts
a student's tensor on a fixed device, so the same checks run unchanged on
CUDA, where a tensor created on the CPU shows up as a wrong ``.device`` or a
"same device" error.
"""

import inspect
import re

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError

from . import cases, reference
from .compare import CheckFailure, assert_close, describe_case, to_numpy
from .four_steps import backward_mistakes
from .student import run

DTYPES = (torch.float64, torch.float32)
EPS = 1e-5
# A second eps that changes y visibly; hidden tests use another one.
CUSTOM_EPS = {False: 1e-2, True: 0.1}
# The type of the autograd node that applying the student's Function creates.
NODE_NAME = "BatchNormFunctionBackward"
INPUT_NAMES = ("x", "gamma", "beta", "eps")
GRADIENT_NAMES = ("dx", "dgamma", "dbeta")

DTYPE_CAUSE = ("a tensor created without dtype=x.dtype (torch.tensor, torch.zeros, torch.ones and torch.empty "
               "default to float32) or a cast such as .float(); keep the input's dtype (float64 in, float64 out)")
FLOAT32_CAUSE = ("your float64 result agrees with the reference only to about float32 precision: you computed "
                 "in float32 (a .float() or a float32 tensor created without dtype=x.dtype); keep float64 input "
                 "in float64")
# The normwise error of a float64 result computed in float32 lies in this band;
# a correct float64 implementation reaches about 1e-15, a wrong formula 1e-4 or more.
FLOAT32_BAND = (1e-10, 1e-5)
DEVICE_CAUSE = ("a tensor created on the CPU while x is on another device: create tensors with "
                "device=x.device (and dtype=x.dtype), or use torch.zeros_like(x) / x.new_zeros(...)")


# Inputs ---------------------------------------------------------------------------------

def _numpy_dtype(dtype):
    __tracebackhide__ = True
    return np.float64 if dtype == torch.float64 else np.float32


def _each_case(device, seed, hidden, dtypes=DTYPES):
    """(case description, x, gamma, beta, dy) as NumPy arrays, for every shape, seed and dtype."""
    __tracebackhide__ = True
    for shape, case_seed in zip(cases.shapes(hidden), cases.case_seeds(seed, hidden)):
        for dtype in dtypes:
            if dtype == torch.float32 and cases.batch_size(shape) < cases.MIN_FLOAT32_BATCH:
                continue
            np_dtype = _numpy_dtype(dtype)
            x = cases.activations(shape, np_dtype, case_seed)
            gamma, beta = cases.affine_parameters(shape[1], np_dtype, case_seed)
            dy = cases.upstream_gradient(shape, np_dtype, case_seed)
            case = {"shape": shape, "dtype": np.dtype(np_dtype).name, "device": str(device), "seed": case_seed}
            yield case, x, gamma, beta, dy


def _signature(eps):
    """How messages write the call, e.g. ``batch_norm(x, gamma, beta, eps=0.01)``."""
    __tracebackhide__ = True
    return "batch_norm(x, gamma, beta" + (")" if eps == EPS else f", eps={eps})")


def _on(device, *arrays, requires_grad=False):
    """Tensors on ``device`` holding ``arrays`` (same dtype), optionally tracking gradients."""
    __tracebackhide__ = True
    return tuple(torch.tensor(a, device=device, requires_grad=requires_grad) for a in arrays)


# Calling student code -------------------------------------------------------------------

def _call(name, function, *args, case, **kwargs):
    """Call ``function(*args, **kwargs)``; fail clearly if it raises or modifies a tensor argument."""
    __tracebackhide__ = True
    originals = [a.detach().clone() if torch.is_tensor(a) else None for a in args]
    result = _run(name, lambda: function(*args, **kwargs), case)
    for position, (before, after) in enumerate(zip(originals, args)):
        if before is not None and not torch.equal(before, after.detach()):
            raise CheckFailure(
                f"argument {position + 1} ({INPUT_NAMES[position]}) of {name} was modified by your function.\n"
                f"  input: {describe_case(case)}\n"
                "  likely cause: an in-place operation on an input (x.sub_(mean), x.div_(std), x -= mean, "
                "x[...] = ...); work on new tensors instead, e.g. x_centered = x - mean."
            )
    return result


def _run(name, action, case):
    """Run student code; PyTorch's own error messages get a likely cause."""
    __tracebackhide__ = True
    return run(name, action, case, lambda error: _error_hint(str(error)))


def _error_hint(message):
    """A likely cause for an exception PyTorch raised, judged from its message."""
    __tracebackhide__ = True
    if "same device" in message or "expected device" in message:
        return f"likely cause: {DEVICE_CAUSE}"
    if "incorrect number of gradients" in message:
        return ("likely cause: backward must return one value per input of forward after ctx: "
                "(dx, dgamma, dbeta, None), None for eps")
    if "invalid gradient" in message:
        return "likely cause: a gradient returned by backward has the wrong shape; dgamma and dbeta have shape (C,)"
    if "dtype" in message or "scalar type" in message:
        return f"likely cause: {DTYPE_CAUSE}"
    if "saved_tensors" in message or "save_for_backward" in message:
        return ("hint: in forward call ctx.save_for_backward(t1, t2, ...) with tensors only, "
                "and read them in backward with t1, t2, ... = ctx.saved_tensors")
    return "hint: read the traceback above to find the failing line."


def _expect_output(name, y, x, case):
    """y is a single tensor with x's shape, dtype and device."""
    __tracebackhide__ = True
    if not torch.is_tensor(y):
        raise CheckFailure(
            f"{name} must return one tensor y, got {type(y).__name__}\n"
            f"  input: {describe_case(case)}\n"
            "  hint: unlike the NumPy bn_forward there is no cache to return; forward keeps what backward "
            "needs with ctx.save_for_backward(...)"
        )
    _expect_placement(name, y, x, case)


def _expect_placement(name, tensor, like, case):
    """``tensor`` has the dtype and the device of ``like``."""
    __tracebackhide__ = True
    if tensor.dtype != like.dtype:
        raise CheckFailure(f"{name}: expected dtype {like.dtype}, got {tensor.dtype}\n"
                           f"  input: {describe_case(case)}\n  likely cause: {DTYPE_CAUSE}")
    if tensor.device != like.device:
        raise CheckFailure(f"{name}: expected a tensor on {like.device} (the input's device), "
                           f"got one on {tensor.device}\n"
                           f"  input: {describe_case(case)}\n  likely cause: {DEVICE_CAUSE}")


def _expect_own_backward(y, case):
    """y was produced by BatchNormFunction.apply, so backward runs the student's explicit formula."""
    __tracebackhide__ = True
    node = type(y.grad_fn).__name__ if getattr(y, "grad_fn", None) is not None else None
    if node is None or NODE_NAME not in node:
        raise CheckFailure(
            f"the output of batch_norm was not produced by BatchNormFunction (y.grad_fn is {node}).\n"
            f"  input: {describe_case(case)}\n"
            "  likely cause: batch_norm does not go through BatchNormFunction.apply, so your explicit backward "
            "is never used (PyTorch would differentiate the operations themselves, or nothing at all); "
            "write return BatchNormFunction.apply(x, gamma, beta, eps)."
        )


def _assert_close(name, got, expected, *, dtype, case, diagnoses, hint=None):
    """compare.assert_close, naming float32 computation when a float64 result has float32 precision."""
    __tracebackhide__ = True
    if not _has_float32_precision(got, expected, dtype):
        assert_close(name, got, expected, dtype=dtype, case=case, diagnoses=diagnoses, hint=hint)
        return
    try:
        assert_close(name, got, expected, dtype=dtype, case=case, diagnoses=diagnoses)
    except CheckFailure as failure:
        if "likely cause:" in str(failure):
            raise
        raise CheckFailure(f"{str(failure).rstrip()}\n  likely cause: {FLOAT32_CAUSE}") from None


def _has_float32_precision(got, expected, dtype):
    __tracebackhide__ = True
    if np.dtype(dtype) != np.float64:
        return False
    got, expected = to_numpy(got).astype(np.float64), to_numpy(expected).astype(np.float64)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        return False
    scale = max(np.max(np.abs(expected)), 1e-30) if expected.size else 1.0
    return FLOAT32_BAND[0] < np.max(np.abs(got - expected)) / scale <= FLOAT32_BAND[1]


# Known mistakes, computed in float64 with NumPy -------------------------------------------

def _channel(vector, x):
    __tracebackhide__ = True
    return np.asarray(vector, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def _forward_mistakes(x, gamma, beta, eps):
    """What the classic forward-pass mistakes would compute for y."""
    __tracebackhide__ = True
    x64, g, b = x.astype(np.float64), _channel(gamma, x), _channel(beta, x)
    dims = cases.channel_axes(x.ndim)

    def bn(dims=dims, ddof=0, root=lambda v: np.sqrt(v + eps), gamma=g, beta=b):
        mean, var = x64.mean(axis=dims, keepdims=True), x64.var(axis=dims, ddof=ddof, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return gamma * (x64 - mean) / root(var) + beta

    return {
        "you normalized with torch.var's default, the unbiased variance (dividing by m - 1); training-mode "
        "batch norm uses the biased variance: x.var(dim=..., unbiased=False) or correction=0": lambda: bn(ddof=1),
        "eps is added outside the square root: use torch.sqrt(var + eps) or torch.rsqrt(var + eps)":
            lambda: bn(root=lambda v: np.sqrt(v) + eps),
        "no eps: a constant channel (variance 0) gives 0/0 = nan; divide by torch.sqrt(var + eps)":
            lambda: bn(root=np.sqrt),
        "you ignored the eps argument and used 1e-5 always; use the eps passed to forward":
            lambda: bn(root=lambda v: np.sqrt(v + EPS)),
        "gamma and beta are swapped: y = gamma * x_hat + beta": lambda: bn(gamma=b, beta=g),
        "the statistics are over dim 0 only; for images reduce over N, H and W, dim=(0, 2, 3) "
        "(every dim except the channel dim 1)": lambda: bn(dims=0),
        "you computed per-sample statistics (over the features of each example, as layer norm does) "
        "instead of per-channel statistics over the batch": lambda: bn(dims=tuple(range(1, x.ndim))),
    }


# Checks ---------------------------------------------------------------------------------

def check_structure(BatchNormFunction, batch_norm, device, seed=0, hidden=False):
    """BatchNormFunction subclasses torch.autograd.Function, and batch_norm's output uses its backward."""
    __tracebackhide__ = True
    if not (inspect.isclass(BatchNormFunction) and issubclass(BatchNormFunction, torch.autograd.Function)):
        raise CheckFailure(
            f"BatchNormFunction must be a class that subclasses torch.autograd.Function, got {BatchNormFunction!r}\n"
            "  hint: class BatchNormFunction(torch.autograd.Function): ..."
        )
    for method in ("forward", "backward"):
        _expect_own_staticmethod(BatchNormFunction, method)
    shape = (5, 3, 2, 2) if hidden else (6, 3)
    case = {"shape": shape, "dtype": "float64", "device": str(device), "seed": 40 + seed}
    x = cases.activations(shape, np.float64, 40 + seed)
    gamma, beta = cases.affine_parameters(shape[1], np.float64, 40 + seed)
    inputs = _on(device, x, gamma, beta, requires_grad=True)
    y = _call("batch_norm(x, gamma, beta)", batch_norm, *inputs, case=case)
    _expect_output("y returned by batch_norm(x, gamma, beta)", y, inputs[0], case)
    _expect_own_backward(y, case)


def _expect_own_staticmethod(function_class, method):
    """``method`` is a staticmethod defined by the student's class, not inherited from torch."""
    __tracebackhide__ = True
    for klass in function_class.__mro__:
        if klass.__module__.startswith("torch."):
            break
        if method in vars(klass):
            if not isinstance(vars(klass)[method], staticmethod):
                raise CheckFailure(f"BatchNormFunction.{method} must be a @staticmethod "
                                   f"(its first argument is ctx, not self).")
            return
    raise CheckFailure(f"BatchNormFunction does not define {method}; write @staticmethod def {method}(ctx, ...).")


def check_forward(batch_norm, device, seed=0, hidden=False):
    """batch_norm(x, gamma, beta[, eps]) equals torch's training-mode batch norm, on ``device``."""
    __tracebackhide__ = True
    custom_eps = CUSTOM_EPS[hidden]
    for case, x, gamma, beta, _dy in _each_case(device, seed, hidden):
        for eps in (EPS, custom_eps):
            this_case = dict(case, eps=eps)
            kwargs = {} if eps == EPS else {"eps": eps}
            name = f"y returned by {_signature(eps)}"
            # One call tracks gradients (as in training), one does not (as under torch.no_grad()).
            tracks = eps != EPS
            inputs = _on(device, x, gamma, beta, requires_grad=tracks)
            y = _call(_signature(eps), batch_norm, *inputs, case=this_case, **kwargs)
            _expect_output(name, y, inputs[0], this_case)
            if tracks and not y.requires_grad:
                raise CheckFailure(
                    f"{name} does not require grad although x, gamma and beta do.\n"
                    f"  input: {describe_case(this_case)}\n"
                    "  likely cause: batch_norm detaches y or runs under torch.no_grad(); "
                    "return BatchNormFunction.apply(x, gamma, beta, eps) as it is."
                )
            expected = reference.batch_norm_training(x, gamma, beta, eps)
            _assert_close(name, y, expected, dtype=x.dtype, case=this_case,
                         diagnoses=_forward_mistakes(x, gamma, beta, eps))


def _backward_eps(case_number, hidden):
    """eps for one backward case: hidden tests alternate with a custom eps, which backward must use too."""
    __tracebackhide__ = True
    return CUSTOM_EPS[True] if hidden and case_number % 2 else EPS


def _gradients(batch_norm, x, gamma, beta, dy, eps, device, case):
    """(x.grad, gamma.grad, beta.grad, inputs) after y.backward(dy), y = batch_norm(x, gamma, beta, eps)."""
    __tracebackhide__ = True
    inputs = _on(device, x, gamma, beta, requires_grad=True)
    kwargs = {} if eps == EPS else {"eps": eps}
    y = _call(_signature(eps), batch_norm, *inputs, case=case, **kwargs)
    _expect_output(f"y returned by {_signature(eps)}", y, inputs[0], case)
    _expect_own_backward(y, case)
    (upstream,) = _on(device, dy)
    _run("y.backward(dy) (your BatchNormFunction.backward)", lambda: y.backward(upstream), case)
    return tuple(t.grad for t in inputs), inputs


def _expect_gradient(name, grad, like, case):
    """A gradient was computed, with the dtype and device of the tensor it belongs to."""
    __tracebackhide__ = True
    if grad is None:
        raise CheckFailure(
            f"{name} is None.\n  input: {describe_case(case)}\n"
            "  likely cause: gradients of gamma and beta are missing: backward returned None for them; "
            "return (dx, dgamma, dbeta, None), with None only for eps"
        )
    _expect_placement(name, grad, like, case)


def check_backward(batch_norm, device, part="dx", seed=0, hidden=False):
    """x.grad, gamma.grad and beta.grad after y.backward(dy) equal torch autograd's, on ``device``.

    ``part`` is ``"dx"`` or ``"dgamma_dbeta"``, so that each earns its own points.
    """
    __tracebackhide__ = True
    for number, (case, x, gamma, beta, dy) in enumerate(_each_case(device, seed, hidden)):
        eps = _backward_eps(number, hidden)
        case = dict(case, eps=eps)
        grads, inputs = _gradients(batch_norm, x, gamma, beta, dy, eps, device, case)
        expected = reference.batch_norm_gradients(x, gamma, beta, dy, eps)
        mistakes = backward_mistakes(x, gamma, dy, eps, axis_word="dim")
        for name, input_name, grad, tensor, want in zip(GRADIENT_NAMES, INPUT_NAMES, grads, inputs, expected):
            if (name == "dx") != (part == "dx"):
                continue
            label = f"{name} ({input_name}.grad after y.backward(dy))"
            hint = None if name == "dx" else f"{name} has one value per channel, summed over every dim but 1"
            _expect_gradient(label, grad, tensor, case)
            _assert_close(label, grad, want, dtype=x.dtype, case=case, diagnoses=mistakes[name], hint=hint)


GRADCHECK_CASES = {
    False: [((4, 3), EPS), ((3, 2, 2, 3), 1e-2)],
    True: [((5, 2), 1e-3), ((2, 3, 2, 2), EPS)],
}


def check_gradcheck(batch_norm, device, seed=0, hidden=False):
    """torch.autograd.gradcheck passes in float64, on the CPU and on ``device``."""
    __tracebackhide__ = True
    devices = [torch.device("cpu")]  # gradcheck is cheapest on the CPU; the device's own run follows
    if torch.device(device).type != "cpu":
        devices.append(torch.device(device))
    for where in devices:
        for number, (shape, eps) in enumerate(GRADCHECK_CASES[hidden]):
            case_seed = 600 + seed + number + (1000 if hidden else 0)
            case = {"shape": shape, "dtype": "float64", "device": str(where), "seed": case_seed,
                    "eps": eps, "method": "torch.autograd.gradcheck"}
            x = cases.activations(shape, np.float64, case_seed, constant_channel=False)
            inputs = _on(where, x, *cases.affine_parameters(shape[1], np.float64, case_seed), requires_grad=True)
            kwargs = {} if eps == EPS else {"eps": eps}
            y = _call(_signature(eps), batch_norm, *inputs, case=case, **kwargs)
            _expect_output(f"y returned by {_signature(eps)}", y, inputs[0], case)
            _expect_own_backward(y, case)
            _gradcheck(lambda *t: batch_norm(*t, **kwargs), inputs, eps, case)


def _gradcheck(function, inputs, eps, case):
    """Run gradcheck; name the input whose analytical and numerical gradients disagree."""
    __tracebackhide__ = True
    name = "torch.autograd.gradcheck(batch_norm, (x, gamma, beta))" + ("" if eps == EPS else f" with eps={eps}")
    try:
        _run(name, lambda: torch.autograd.gradcheck(function, inputs), case)
    except CheckFailure as failure:
        if not isinstance(failure.__cause__, GradcheckError):
            raise
        message = str(failure.__cause__)
        match = re.search(r"with respect to input (\d+)", message)
        which = INPUT_NAMES[int(match.group(1))] if match else "an input"
        raise CheckFailure(
            f"{name} failed: the gradient your backward returns for {which} disagrees with finite "
            "differences of your forward.\n"
            f"  gradcheck says: {message.strip().splitlines()[0]}\n"
            f"  input: {describe_case(case)}\n"
            "  hint: differentiate y = gamma * x_hat + beta through x_hat, the variance and the mean; "
            "see the compact formula in the chapter. The checks of dx, dgamma and dbeta say more."
        ) from None
