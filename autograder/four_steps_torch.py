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
INPUT_NAMES = ("x", "gamma", "beta", "eps")
GRADIENT_NAMES = ("dx", "dgamma", "dbeta")
# The normwise error of a float64 result computed in float32 lies in this band;
# a correct float64 implementation reaches about 1e-15, a wrong formula 1e-4 or more.
FLOAT32_BAND = (1e-10, 1e-5)
# With a mean of 1e4, float32 cannot hold x - mean to better than about 5e-4 of a unit standard deviation: torch's
# own float32 batch norm misses the float64 reference of y by up to 7e-4 (10 seeds), while the one-pass variance
# E[x^2] - E[x]^2 cancels to nothing or below zero (an error of 1 or nan). Large-mean cases are judged to this.
LARGE_MEAN_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Subject:
    """What the checks grade: the names of the student's Function and function, and the dtypes they take."""

    function_class: str = "BatchNormFunction"
    function: str = "batch_norm"
    dtypes: tuple = DTYPES
    # (catalogue key, key): mistakes whose computation is the same but whose cause, in this subject's code, is
    # better named by the second key (a Triton kernel mixes channels by its offsets, not by a reshape).
    renamed_mistakes: tuple = ()
    # The catalogue key of the hint a wrong value gets when no known mistake reproduces it (None: no hint).
    value_hint: str = None

    def key(self, key):
        """This subject's name for the catalogue key ``key`` (which may carry a variant after a slash)."""
        stem, slash, variant = key.partition("/")
        return dict(self.renamed_mistakes).get(stem, stem) + slash + variant

    def mistakes(self, computed):
        """``computed`` ({key: thunk}, from :mod:`autograder.mistaken`) with this subject's names for the keys."""
        return {self.key(key): thunk for key, thunk in computed.items()}

    def hint(self, fallback=None):
        """What a wrong value's message suggests when no known mistake reproduces it."""
        if self.value_hint is None:
            return fallback
        sentence_ = sentence(self.value_hint, "torch")
        return f"{fallback}; {sentence_}" if fallback else sentence_

    @property
    def node_name(self):
        """The type of the autograd node that applying the student's Function creates."""
        return f"{self.function_class}Backward"


@dataclass(frozen=True)
class Inputs:
    """What a check runs the student's code on."""

    seed: int = 0
    shapes: tuple = cases.VISIBLE_SHAPES
    custom_eps: float = 1e-2  # a second eps that changes y visibly
    structure_shape: tuple = (6, 3)  # (N, C): the structure part does not depend on images working
    backward_custom_eps: bool = False  # whether every other backward case uses custom_eps
    gradcheck_cases: tuple = (((4, 3), EPS), ((3, 2, 2, 3), 1e-2))  # (shape, eps), small: gradcheck is O(n^2)
    large_means: tuple = ()  # ((shape, mean), ...): forward cases in the subject's last dtype with a large mean
    subject: Subject = Subject()


VISIBLE = Inputs()


def _each_case(device, inputs):
    """(case description, x, gamma, beta, dy) as NumPy arrays, for every shape and dtype, on ``device``."""
    __tracebackhide__ = True
    for case, *arrays in cases.batches(inputs, [numpy_dtype(dtype) for dtype in inputs.subject.dtypes]):
        yield (dict(case, device=str(device)), *arrays)


def _signature(subject, eps):
    """How messages write the call, e.g. ``batch_norm(x, gamma, beta, eps=0.01)``."""
    __tracebackhide__ = True
    return f"{subject.function}(x, gamma, beta" + (")" if eps == EPS else f", eps={eps})")


def _call(name, function, *args, case, **kwargs):
    """Call student code; explain torch's errors; fail if it modifies a tensor argument."""
    __tracebackhide__ = True
    return call(name, function, *args, case=case, advice=lambda error: error_hint(str(error)),
                argument_names=INPUT_NAMES, **kwargs)


def _apply(batch_norm, tensors, eps, case, subject):
    """y = batch_norm(x, gamma, beta[, eps]) for ``tensors`` (x, gamma, beta); y must be one tensor like x."""
    __tracebackhide__ = True
    kwargs = {} if eps == EPS else {"eps": eps}
    signature = _signature(subject, eps)
    y = _call(signature, batch_norm, *tensors, case=case, **kwargs)
    _expect_tensor(f"y returned by {signature}", y, case)
    expect_placement(f"y returned by {signature}", y, tensors[0], case)
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


def _expect_own_backward(y, case, subject):
    """y was produced by the student's Function's apply, so backward runs the student's explicit formula."""
    __tracebackhide__ = True
    node = type(y.grad_fn).__name__ if getattr(y, "grad_fn", None) is not None else None
    if node is None or subject.node_name not in node:
        raise CheckFailure(
            f"the output of {subject.function} was not produced by {subject.function_class} "
            f"(y.grad_fn is {node}).\n"
            f"  input: {describe_case(case)}\n"
            f"  likely cause: {sentence(subject.key('function_bypassed'), 'torch')}"
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
    subject = inputs.subject
    name = subject.function_class
    found = facts(BatchNormFunction)
    if not (found["is_class"] and subclasses(found, "torch.autograd.function", "Function")):
        what = "a class that does not" if found["is_class"] else f"an object of type {found['type']}, which does not"
        raise CheckFailure(
            f"{name} must be a class that subclasses torch.autograd.Function; it is {what}\n"
            f"  hint: class {name}(torch.autograd.Function): ..."
        )
    for method in ("forward", "backward"):
        _expect_own_staticmethod(found, method, name)
    shape, seed, dtype = inputs.structure_shape, 40 + inputs.seed, numpy_dtype(subject.dtypes[0])
    case = {"shape": shape, "dtype": np.dtype(dtype).name, "device": str(device), "seed": seed}
    x = cases.activations(shape, dtype, seed)
    tensors = on(device, x, *cases.affine_parameters(shape[1], dtype, seed), requires_grad=True)
    signature = _signature(subject, EPS)
    try:
        y = batch_norm(*tensors)
    except Exception as error:  # the forward's own failure is the forward check's to grade
        if passed_through(error, BatchNormFunction.forward):
            return
        _call(signature, batch_norm, *tensors, case=case)  # explains the exception
        raise
    _expect_tensor(f"y returned by {signature}", y, case)
    _expect_own_backward(y, case, subject)


def _expect_own_staticmethod(found, method, name):
    """``method`` is a staticmethod defined by the student's class ``name`` (``found``: its facts), not torch's."""
    __tracebackhide__ = True
    for module, _name, members in found["mro"]:
        if module.startswith("torch."):
            break
        if method in members:
            if members[method] != "staticmethod":
                raise CheckFailure(f"{name}.{method} must be a @staticmethod "
                                   f"(its first argument is ctx, not self).")
            return
    raise CheckFailure(f"{name} does not define {method}; write @staticmethod def {method}(ctx, ...).")


@graded
def check_forward(batch_norm, device, inputs=VISIBLE):
    """batch_norm(x, gamma, beta[, eps]) equals torch's training-mode batch norm, on ``device``."""
    __tracebackhide__ = True
    subject = inputs.subject
    for case, x, gamma, beta, _dy in _each_case(device, inputs):
        for eps in (EPS, inputs.custom_eps):
            this_case = dict(case, eps=eps)
            # One call tracks gradients (as in training), one does not (as under torch.no_grad()).
            tensors = on(device, x, gamma, beta, requires_grad=eps != EPS)
            y = _apply(batch_norm, tensors, eps, this_case, subject)
            _assert_close(f"y returned by {_signature(subject, eps)}", y,
                          reference.batch_norm_training(x, gamma, beta, eps), dtype=x.dtype, case=this_case,
                          mistakes=subject.mistakes(mistaken.forward(x, gamma, beta, eps)), hint=subject.hint())
    for case, x, gamma, beta in _large_mean_cases(device, inputs):
        y = _apply(batch_norm, on(device, x, gamma, beta), EPS, case, subject)
        assert_close(f"y returned by {_signature(subject, EPS)}", y, reference.batch_norm_training(x, gamma, beta, EPS),
                     dtype=x.dtype, case=case, api="torch", tolerance=LARGE_MEAN_TOLERANCE,
                     hint=sentence("one_pass_variance", "torch"))


def _large_mean_cases(device, inputs):
    """(case description, x, gamma, beta) with every value shifted by a large mean, in the subject's last dtype."""
    __tracebackhide__ = True
    dtype = numpy_dtype(inputs.subject.dtypes[-1])
    for number, (shape, mean) in enumerate(inputs.large_means):
        seed = 900 + inputs.seed + number
        x = (cases.activations(shape, np.float64, seed, constant_channel=False) + mean).astype(dtype)
        case = {"shape": shape, "dtype": np.dtype(dtype).name, "device": str(device), "seed": seed,
                "mean of x": f"{mean:g}"}
        yield (case, x, *cases.affine_parameters(shape[1], dtype, seed))


def _gradients(batch_norm, x, gamma, beta, dy, eps, device, case, subject):
    """(x.grad, gamma.grad, beta.grad, inputs) after y.backward(dy), y = batch_norm(x, gamma, beta, eps)."""
    __tracebackhide__ = True
    tensors = on(device, x, gamma, beta, requires_grad=True)
    y = _apply(batch_norm, tensors, eps, case, subject)
    _expect_own_backward(y, case, subject)
    (upstream,) = on(device, dy)
    run_torch(f"y.backward(dy) (your {subject.function_class}.backward)", lambda: y.backward(upstream), case)
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
        grads, tensors = _gradients(batch_norm, x, gamma, beta, dy, eps, device, case, inputs.subject)
        expected = reference.batch_norm_gradients(x, gamma, beta, dy, eps)
        mistakes = {name: inputs.subject.mistakes(computed)
                    for name, computed in mistaken.backward(x, gamma, dy, eps).items()}
        for name, input_name, grad, tensor, want in zip(GRADIENT_NAMES, INPUT_NAMES, grads, tensors, expected):
            if name not in names:
                continue
            label = f"{name} ({input_name}.grad after y.backward(dy))"
            hint = inputs.subject.hint(None if name == "dx" else
                                       f"{name} has one value per channel, summed over every dim but 1")
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
            _expect_own_backward(_apply(batch_norm, tensors, eps, case, inputs.subject), case, inputs.subject)
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
