"""Checks for Chapter 1, PyTorch: batch norm as a ``torch.autograd.Function`` with an explicit backward.

Every check builds its tensors on ``device`` (the notebook's: CUDA when it is
available, else the CPU), runs the student's code on the shapes of its
:class:`Inputs` in float64 and float32, and compares with
``torch.nn.functional.batch_norm`` and its autograd gradients, computed in
float64 on the CPU.
"""

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError

from . import cases, mistaken, reference
from .compare import CheckFailure, assert_close, describe_case, to_numpy
from .mistakes import sentence
from .introspect import facts, subclasses
from .student import call, graded, passed_through
from .tensors import error_hint, expect_placement, numpy_dtype, on, run_torch

DTYPES = (torch.float64, torch.float32)
EPS = 1e-5
# The type of the autograd node that applying the student's Function creates.
NODE_NAME = "BatchNormFunctionBackward"
INPUT_NAMES = ("x", "gamma", "beta", "eps")
GRADIENT_NAMES = ("dx", "dgamma", "dbeta")
# The normwise error of a float64 result computed in float32 lies in this band;
# a correct float64 implementation reaches about 1e-15, a wrong formula 1e-4 or more.
FLOAT32_BAND = (1e-10, 1e-5)


@dataclass(frozen=True)
class Inputs:
    """What a check runs the student's code on."""

    seed: int = 0
    shapes: tuple = cases.VISIBLE_SHAPES
    custom_eps: float = 1e-2  # a second eps that changes y visibly
    structure_shape: tuple = (6, 3)  # (N, C): the structure part does not depend on images working
    backward_custom_eps: bool = False  # whether every other backward case uses custom_eps
    gradcheck_cases: tuple = (((4, 3), EPS), ((3, 2, 2, 3), 1e-2))  # (shape, eps), small: gradcheck is O(n^2)


VISIBLE = Inputs()


def _each_case(device, inputs):
    """(case description, x, gamma, beta, dy) as NumPy arrays, for every shape and dtype, on ``device``."""
    __tracebackhide__ = True
    for case, *arrays in cases.batches(inputs, [numpy_dtype(dtype) for dtype in DTYPES]):
        yield (dict(case, device=str(device)), *arrays)


def _signature(eps):
    """How messages write the call, e.g. ``batch_norm(x, gamma, beta, eps=0.01)``."""
    __tracebackhide__ = True
    return "batch_norm(x, gamma, beta" + (")" if eps == EPS else f", eps={eps})")


def _call(name, function, *args, case, **kwargs):
    """Call student code; explain torch's errors; fail if it modifies a tensor argument."""
    __tracebackhide__ = True
    return call(name, function, *args, case=case, advice=lambda error: error_hint(str(error)),
                argument_names=INPUT_NAMES, **kwargs)


def _apply(batch_norm, inputs, eps, case):
    """y = batch_norm(x, gamma, beta[, eps]) for the tensors ``inputs``; y must be one tensor like x."""
    __tracebackhide__ = True
    kwargs = {} if eps == EPS else {"eps": eps}
    y = _call(_signature(eps), batch_norm, *inputs, case=case, **kwargs)
    _expect_tensor(f"y returned by {_signature(eps)}", y, case)
    expect_placement(f"y returned by {_signature(eps)}", y, inputs[0], case)
    return y


def _expect_tensor(name, y, case):
    __tracebackhide__ = True
    if not torch.is_tensor(y):
        raise CheckFailure(
            f"{name} must return one tensor y, got {type(y).__name__}\n"
            f"  input: {describe_case(case)}\n"
            "  hint: unlike the NumPy bn_forward there is no cache to return; forward keeps what backward "
            "needs with ctx.save_for_backward(...)"
        )


def _expect_own_backward(y, case):
    """y was produced by BatchNormFunction.apply, so backward runs the student's explicit formula."""
    __tracebackhide__ = True
    node = type(y.grad_fn).__name__ if getattr(y, "grad_fn", None) is not None else None
    if node is None or NODE_NAME not in node:
        raise CheckFailure(
            f"the output of batch_norm was not produced by BatchNormFunction (y.grad_fn is {node}).\n"
            f"  input: {describe_case(case)}\n"
            f"  likely cause: {sentence('function_bypassed', 'torch')}"
        )


def _assert_close(name, got, expected, *, dtype, case, mistakes, hint=None):
    """compare.assert_close, naming float32 computation when a float64 result has float32 precision."""
    __tracebackhide__ = True
    if not _has_float32_precision(got, expected, dtype):
        assert_close(name, got, expected, dtype=dtype, case=case, mistakes=mistakes, api="torch", hint=hint)
        return
    try:  # a named mistake explains better than the precision does
        assert_close(name, got, expected, dtype=dtype, case=case, mistakes=mistakes, api="torch")
    except CheckFailure as failure:
        if "likely cause:" in str(failure):
            raise
        raise CheckFailure(f"{str(failure).rstrip()}\n  likely cause: {sentence('computed_in_float32', 'torch')}") \
            from None


def _has_float32_precision(got, expected, dtype):
    __tracebackhide__ = True
    if np.dtype(dtype) != np.float64:
        return False
    got, expected = to_numpy(got).astype(np.float64), to_numpy(expected).astype(np.float64)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        return False
    scale = max(np.max(np.abs(expected)), 1e-30) if expected.size else 1.0
    return FLOAT32_BAND[0] < np.max(np.abs(got - expected)) / scale <= FLOAT32_BAND[1]


# Checks ---------------------------------------------------------------------------------

@graded
def check_structure(BatchNormFunction, batch_norm, device, inputs=VISIBLE):
    """BatchNormFunction subclasses torch.autograd.Function, and batch_norm's output uses its backward.

    Only the structure is graded: the output's values, dtype and shape belong
    to the forward check, and a forward that raises still shows the structure
    when the exception passed through BatchNormFunction.forward.
    """
    __tracebackhide__ = True
    found = facts(BatchNormFunction)
    if not (found["is_class"] and subclasses(found, "torch.autograd.function", "Function")):
        what = "a class that does not" if found["is_class"] else f"an object of type {found['type']}, which does not"
        raise CheckFailure(
            f"BatchNormFunction must be a class that subclasses torch.autograd.Function; it is {what}\n"
            "  hint: class BatchNormFunction(torch.autograd.Function): ..."
        )
    for method in ("forward", "backward"):
        _expect_own_staticmethod(found, method)
    shape, seed = inputs.structure_shape, 40 + inputs.seed
    case = {"shape": shape, "dtype": "float64", "device": str(device), "seed": seed}
    x = cases.activations(shape, np.float64, seed)
    tensors = on(device, x, *cases.affine_parameters(shape[1], np.float64, seed), requires_grad=True)
    try:
        y = batch_norm(*tensors)
    except Exception as error:  # the forward's own failure is the forward check's to grade
        if passed_through(error, BatchNormFunction.forward):
            return
        _call("batch_norm(x, gamma, beta)", batch_norm, *tensors, case=case)  # explains the exception
        raise
    _expect_tensor("y returned by batch_norm(x, gamma, beta)", y, case)
    _expect_own_backward(y, case)


def _expect_own_staticmethod(found, method):
    """``method`` is a staticmethod defined by the student's class (``found``: its facts), not inherited from torch."""
    __tracebackhide__ = True
    for module, _name, members in found["mro"]:
        if module.startswith("torch."):
            break
        if method in members:
            if members[method] != "staticmethod":
                raise CheckFailure(f"BatchNormFunction.{method} must be a @staticmethod "
                                   f"(its first argument is ctx, not self).")
            return
    raise CheckFailure(f"BatchNormFunction does not define {method}; write @staticmethod def {method}(ctx, ...).")


@graded
def check_forward(batch_norm, device, inputs=VISIBLE):
    """batch_norm(x, gamma, beta[, eps]) equals torch's training-mode batch norm, on ``device``."""
    __tracebackhide__ = True
    for case, x, gamma, beta, _dy in _each_case(device, inputs):
        for eps in (EPS, inputs.custom_eps):
            this_case = dict(case, eps=eps)
            # One call tracks gradients (as in training), one does not (as under torch.no_grad()).
            tensors = on(device, x, gamma, beta, requires_grad=eps != EPS)
            y = _apply(batch_norm, tensors, eps, this_case)
            _assert_close(f"y returned by {_signature(eps)}", y, reference.batch_norm_training(x, gamma, beta, eps),
                          dtype=x.dtype, case=this_case, mistakes=mistaken.forward(x, gamma, beta, eps))


def _gradients(batch_norm, x, gamma, beta, dy, eps, device, case):
    """(x.grad, gamma.grad, beta.grad, inputs) after y.backward(dy), y = batch_norm(x, gamma, beta, eps)."""
    __tracebackhide__ = True
    tensors = on(device, x, gamma, beta, requires_grad=True)
    y = _apply(batch_norm, tensors, eps, case)
    _expect_own_backward(y, case)
    (upstream,) = on(device, dy)
    run_torch("y.backward(dy) (your BatchNormFunction.backward)", lambda: y.backward(upstream), case)
    return tuple(t.grad for t in tensors), tensors


def _expect_gradient(name, grad, like, case):
    """A gradient was computed, with the dtype and device of the tensor it belongs to."""
    __tracebackhide__ = True
    if grad is None:
        raise CheckFailure(f"{name} is None.\n  input: {describe_case(case)}\n"
                           f"  likely cause: {sentence('gamma_beta_gradients_missing', 'torch')}")
    expect_placement(name, grad, like, case)


def _check_gradients(batch_norm, device, inputs, names):
    __tracebackhide__ = True
    for number, (case, x, gamma, beta, dy) in enumerate(_each_case(device, inputs)):
        eps = inputs.custom_eps if inputs.backward_custom_eps and number % 2 else EPS
        case = dict(case, eps=eps)
        grads, tensors = _gradients(batch_norm, x, gamma, beta, dy, eps, device, case)
        expected = reference.batch_norm_gradients(x, gamma, beta, dy, eps)
        mistakes = mistaken.backward(x, gamma, dy, eps)
        for name, input_name, grad, tensor, want in zip(GRADIENT_NAMES, INPUT_NAMES, grads, tensors, expected):
            if name not in names:
                continue
            label = f"{name} ({input_name}.grad after y.backward(dy))"
            hint = None if name == "dx" else f"{name} has one value per channel, summed over every dim but 1"
            _expect_gradient(label, grad, tensor, case)
            _assert_close(label, grad, want, dtype=x.dtype, case=case, mistakes=mistakes[name], hint=hint)


@graded
def check_dgamma_dbeta(batch_norm, device, inputs=VISIBLE):
    """gamma.grad and beta.grad from your BatchNormFunction.backward equal torch autograd's, on ``device``."""
    __tracebackhide__ = True
    _check_gradients(batch_norm, device, inputs, ("dgamma", "dbeta"))


@graded
def check_dx(batch_norm, device, inputs=VISIBLE):
    """x.grad from your BatchNormFunction.backward equals torch autograd's, on ``device``."""
    __tracebackhide__ = True
    _check_gradients(batch_norm, device, inputs, ("dx",))


@graded
def check_gradcheck(batch_norm, device, inputs=VISIBLE):
    """gradcheck in float64, on the CPU and on ``device``: your backward against finite differences of torch's forward.

    ``torch.autograd.gradcheck`` compares a Function's backward with finite
    differences of the same Function's forward, so a forward and a backward
    that share a mistake pass it. Here the finite differences are taken of
    torch's batch norm: the function handed to gradcheck has torch's values and
    the student's backward (``reference + student - student.detach()``).
    """
    __tracebackhide__ = True
    devices = [torch.device("cpu")]  # gradcheck is cheapest on the CPU; the device's own run follows
    if torch.device(device).type != "cpu":
        devices.append(torch.device(device))
    for where in devices:
        for number, (shape, eps) in enumerate(inputs.gradcheck_cases):
            case_seed = 600 + inputs.seed + number
            case = {"shape": shape, "dtype": "float64", "device": str(where), "seed": case_seed,
                    "eps": eps, "method": "torch.autograd.gradcheck"}
            x = cases.activations(shape, np.float64, case_seed, constant_channel=False)
            tensors = on(where, x, *cases.affine_parameters(shape[1], np.float64, case_seed), requires_grad=True)
            _expect_own_backward(_apply(batch_norm, tensors, eps, case), case)
            _gradcheck(batch_norm, tensors, eps, case)


def _against_reference(batch_norm, eps):
    """A function with torch's batch norm as its values and the student's backward as its gradient."""
    __tracebackhide__ = True
    kwargs = {} if eps == EPS else {"eps": eps}

    def function(x, gamma, beta):
        __tracebackhide__ = True
        ours = torch.nn.functional.batch_norm(x.detach(), None, None, gamma.detach(), beta.detach(),
                                              training=True, eps=eps)
        theirs = batch_norm(x, gamma, beta, **kwargs)
        return ours + (theirs - theirs.detach())

    return function


def _gradcheck(batch_norm, tensors, eps, case):
    """Run gradcheck against torch's forward; name the input whose gradient is wrong."""
    __tracebackhide__ = True
    name = "torch.autograd.gradcheck(batch_norm, (x, gamma, beta))" + ("" if eps == EPS else f" with eps={eps}")
    try:
        run_torch(name, lambda: torch.autograd.gradcheck(_against_reference(batch_norm, eps), tensors), case)
    except CheckFailure as failure:
        if not isinstance(failure.__cause__, GradcheckError):
            raise
        message = str(failure.__cause__)
        match = re.search(r"with respect to input (\d+)", message)
        which = INPUT_NAMES[int(match.group(1))] if match else "an input"
        own = _consistent_with_own_forward(batch_norm, tensors, eps)
        raise CheckFailure(
            f"{name} failed: the gradient your backward returns for {which} disagrees with finite differences "
            "of torch's batch norm.\n"
            f"  gradcheck says: {message.strip().splitlines()[0]}\n"
            f"  input: {describe_case(case)}\n"
            + (f"  likely cause: {sentence('backward_matches_a_wrong_forward', 'torch')}" if own else
               "  hint: differentiate y = gamma * x_hat + beta through x_hat, the variance and the mean; "
               "see the compact formula in the chapter. The checks of dx, dgamma and dbeta say more.")
        ) from None


def _consistent_with_own_forward(batch_norm, tensors, eps):
    """Whether plain gradcheck (the student's backward against the student's forward) passes."""
    __tracebackhide__ = True
    kwargs = {} if eps == EPS else {"eps": eps}
    try:
        return torch.autograd.gradcheck(lambda *t: batch_norm(*t, **kwargs), tensors, raise_exception=False)
    except Exception:
        return False
