"""Checks for Chapter 4, NumPy: layer, group, instance and RMS normalization, forward and backward.

Every check runs the student's function on the cases of :class:`Inputs` and
compares with ``torch.nn.functional`` (``layer_norm``, ``group_norm``,
``instance_norm``, ``rms_norm`` with an explicit eps) and its autograd
gradients, all in float64: float64 results to 1e-9, float32 to 1e-4. The
cases include images and sequences, non-trivial gamma and beta, a random
upstream gradient, a large eps, a large mean and a constant group.
"""

from dataclasses import dataclass

import numpy as np

from . import mistaken_variants, reference
from .compare import CheckFailure, assert_close, describe_case, max_relative_error
from .mistaken_variants import Variant
from .mistakes import sentence
from .student import call, expect_array, graded, returned_tuple, run
from .variant_cases import Case, each  # noqa: F401  (Case: for hidden inputs)


@dataclass(frozen=True)
class Spec:
    """How one variant is called: its function, defaults, parameters and what its backward returns."""

    kind: str
    function: str
    default_eps: float
    parameters: tuple
    gradients: tuple

    def arguments(self, case, x, gamma, beta):
        """(positional arguments, their names, keyword arguments, how a message writes the call)."""
        sized = () if self.kind == "instance" else (case.size,)
        given = {"gamma": gamma, "beta": beta}
        positional = (x,) + sized + tuple(given[p] for p in self.parameters)
        size_name = {"layer": "normalized_shape", "rms": "normalized_shape", "group": "num_groups"}.get(self.kind)
        shown = ["x"] + ([f"{size_name}={case.size!r}"] if size_name else []) + [
            p if given[p] is not None else f"{p}=None" for p in self.parameters]
        keywords = {} if case.eps is None else {"eps": case.eps}
        shown += [f"eps={case.eps}"] if case.eps is not None else []
        names = ("x",) + ((size_name,) if size_name else ()) + self.parameters
        return positional, names, keywords, f"{self.function}({', '.join(shown)})"

    def eps(self, case):
        return self.default_eps if case.eps is None else case.eps


SPECS = {
    "layer": Spec("layer", "layer_norm", 1e-5, ("gamma", "beta"), ("dx", "dgamma", "dbeta")),
    "group": Spec("group", "group_norm", 1e-5, ("gamma", "beta"), ("dx", "dgamma", "dbeta")),
    "instance": Spec("instance", "instance_norm", 1e-5, (), ("dx",)),
    "rms": Spec("rms", "rms_norm", 1e-6, ("gamma",), ("dx", "dgamma")),
}


@dataclass(frozen=True)
class Inputs:
    """The cases each variant's checks run on."""

    seed: int = 0
    layer: tuple = (
        Case((8, 5), 5),
        Case((6, 3, 4, 4), (3, 4, 4), constant=True),
        Case((4, 7, 12), 12, dtype="float32"),
        Case((5, 3, 2, 4), (2, 4), affine=False, eps=0.1),
        Case((6, 10), 10, mean=1e5),
    )
    group: tuple = (
        Case((4, 6, 3, 3), 3, constant=True),
        Case((5, 4, 7), 2, dtype="float32"),
        Case((3, 6, 2, 2), 6, eps=0.1),
        Case((3, 4, 2, 3), 1, mean=1e5),
        Case((2, 8, 5), 4),
    )
    instance: tuple = (
        Case((4, 3, 5, 5), constant=True),
        Case((3, 2, 9), dtype="float32"),
        Case((2, 3, 4, 4), eps=0.1),
        Case((3, 2, 3, 4), mean=1e5),
    )
    rms: tuple = (
        Case((8, 6), 6),
        Case((4, 5, 16), 16, dtype="float32"),
        Case((3, 2, 3, 3), (2, 3, 3), eps=0.1),
        Case((5, 4), 4, constant=True),
        Case((6, 5), 5, mean=1e5),
    )
    # Inputs with one value per channel, which instance norm must refuse with ValueError.
    one_value_shapes: tuple = ((2, 3, 1), (1, 2, 1, 1))


VISIBLE = Inputs()


def _expect_array(name, value, x, case):
    __tracebackhide__ = True
    expect_array(name, value, x.dtype, case,
                 hint="this notebook is NumPy only: compute with np.mean, np.var, np.sqrt on the array",
                 cause=f"a cast or a constant array of another dtype changed it; the input is {x.dtype}, so "
                       f"return {x.dtype}")


def _forward(spec, function, case, described, x, gamma, beta):
    """The student's (y, cache) for this case."""
    __tracebackhide__ = True
    positional, names, keywords, shown = spec.arguments(case, x, gamma, beta)
    result = call(shown, function, *positional, case=described, **keywords,
                  hint=_hint(spec.kind), argument_names=names)
    y, cache = returned_tuple(spec.function, result, 2, ("y", "cache"), described)
    return shown, y, cache


def _hint(kind):
    __tracebackhide__ = True
    return {
        "layer": "the statistics run over the trailing len(normalized_shape) axes; keepdims=True keeps them "
                 "broadcastable, and gamma and beta (shape normalized_shape) broadcast as they are",
        "group": "reshape x to (N, G, C // G, ...), normalize over axes 2, 3, ..., reshape back to x's shape, "
                 "then apply gamma and beta per channel, reshaped to (1, C, 1, ...)",
        "instance": "the statistics run over axes 2, 3, ... (each sample and channel on its own)",
        "rms": "rms = np.sqrt(np.mean(x ** 2, axis=trailing axes, keepdims=True) + eps)",
    }[kind]


def _check_forward(kind, function, inputs):
    __tracebackhide__ = True
    spec = SPECS[kind]
    for case, described, x, gamma, beta, _dy in each(kind, getattr(inputs, kind), inputs.seed):
        shown, y, _cache = _forward(spec, function, case, described, x, gamma, beta)
        _expect_array(f"y returned by {shown}", y, x, described)
        variant, eps = Variant(kind, case.size), spec.eps(case)
        expected = reference.normalization(kind, x, case.size, gamma, beta, eps)
        assert_close(f"y returned by {shown}", y, expected, dtype=x.dtype, case=described,
                     mistakes=mistaken_variants.forward_mistakes(variant, x, gamma, beta, eps, spec.default_eps),
                     hint=_rounding_hint(kind, case, y, expected), tolerance=case.tolerance)


def _rounding_hint(kind, case, y, expected):
    """The likely cause of an error at the level of rounding, which no exact mistake reproduces."""
    __tracebackhide__ = True
    if case.mean and kind != "rms":
        return sentence("one_pass_variance")
    if case.dtype == "float64" and getattr(y, "shape", None) == expected.shape \
            and max_relative_error(y, expected) < FLOAT32_LEVEL:
        return sentence("computed_in_float32")
    return None


# A float64 result this close to the reference (and no closer than 1e-9) was rounded to float32 somewhere.
FLOAT32_LEVEL = 1e-4


def _check_backward(kind, forward_function, backward_function, inputs, names):
    __tracebackhide__ = True
    spec = SPECS[kind]
    backward_name = f"{spec.function}_backward(dy, cache)"
    for case, described, x, gamma, beta, dy in each(kind, getattr(inputs, kind), inputs.seed):
        _shown, y, cache = _forward(spec, forward_function, case, described, x, gamma, beta)
        result = call(backward_name, backward_function, dy, cache, case=described, argument_names=("dy", "cache"))
        if len(spec.gradients) == 1:
            got = {"dx": result}
        else:
            got = dict(zip(spec.gradients, returned_tuple(backward_name, result, len(spec.gradients),
                                                            spec.gradients, described)))
        eps = spec.eps(case)
        expected_y, expected = reference.normalization(kind, x, case.size, gamma, beta, eps, dy=dy)
        mistakes = mistaken_variants.gradient_mistakes(Variant(kind, case.size), x, gamma, dy, eps)
        hint = FORWARD_FIRST if _differs(y, expected_y, x.dtype, case.tolerance) else None
        for name in names:
            label = f"{name} returned by {backward_name}"
            if expected[name] is None:
                _expect_none(label, got[name], described)
                continue
            _expect_array(label, got[name], x, described)
            assert_close(label, got[name], expected[name], dtype=x.dtype, case=described, mistakes=mistakes[name],
                         hint=hint or _gradient_hint(kind, name), tolerance=case.tolerance)


FORWARD_FIRST = ("for this input your forward's y is wrong too, and the backward works from what it cached: fix the "
                 "forward first (its check names the mistake)")


def _differs(y, expected, dtype, tolerance):
    __tracebackhide__ = True
    try:
        assert_close("y", y, expected, dtype=dtype, case={}, tolerance=tolerance)
    except CheckFailure:
        return True
    return False


def _expect_none(label, value, described):
    __tracebackhide__ = True
    if value is not None:
        raise CheckFailure(f"{label} must be None (the forward had gamma=None and beta=None), got "
                           f"{type(value).__name__}\n  input: {describe_case(described)}\n"
                           f"  likely cause: {sentence('affine_none_gradients')}")


def _gradient_hint(kind, name):
    __tracebackhide__ = True
    if name != "dx":
        return sentence("variant_gradient_sums")
    if kind == "rms":
        return ("with r = sqrt(mean(x ** 2) + eps) and x_n = x / r over the normalized axes: "
                "dx = (gamma * dy - x_n * mean(gamma * dy * x_n)) / r")
    return ("the compact formula of Chapter 1 holds within each group of values that share statistics: "
            "dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / sqrt(var + eps), means over the group")


# Layer norm -------------------------------------------------------------------------------------

@graded
def check_layer_norm(layer_norm, inputs=VISIBLE):
    """layer_norm(x, normalized_shape, gamma, beta, eps) returns (y, cache) with y equal to F.layer_norm."""
    __tracebackhide__ = True
    _check_forward("layer", layer_norm, inputs)


@graded
def check_layer_norm_dx(layer_norm, layer_norm_backward, inputs=VISIBLE):
    """dx returned by layer_norm_backward equals torch autograd's."""
    __tracebackhide__ = True
    _check_backward("layer", layer_norm, layer_norm_backward, inputs, ("dx",))


@graded
def check_layer_norm_dgamma_dbeta(layer_norm, layer_norm_backward, inputs=VISIBLE):
    """dgamma and dbeta returned by layer_norm_backward equal torch autograd's (None without gamma and beta)."""
    __tracebackhide__ = True
    _check_backward("layer", layer_norm, layer_norm_backward, inputs, ("dgamma", "dbeta"))


# Group norm -------------------------------------------------------------------------------------

@graded
def check_group_norm(group_norm, inputs=VISIBLE):
    """group_norm(x, num_groups, gamma, beta, eps) returns (y, cache) with y equal to F.group_norm."""
    __tracebackhide__ = True
    _check_forward("group", group_norm, inputs)


@graded
def check_group_norm_dx(group_norm, group_norm_backward, inputs=VISIBLE):
    """dx returned by group_norm_backward equals torch autograd's."""
    __tracebackhide__ = True
    _check_backward("group", group_norm, group_norm_backward, inputs, ("dx",))


@graded
def check_group_norm_dgamma_dbeta(group_norm, group_norm_backward, inputs=VISIBLE):
    """dgamma and dbeta (per channel) returned by group_norm_backward equal torch autograd's."""
    __tracebackhide__ = True
    _check_backward("group", group_norm, group_norm_backward, inputs, ("dgamma", "dbeta"))


# Instance norm ----------------------------------------------------------------------------------

@graded
def check_instance_norm(instance_norm, inputs=VISIBLE):
    """instance_norm(x, eps) returns (y, cache) with y equal to F.instance_norm."""
    __tracebackhide__ = True
    _check_forward("instance", instance_norm, inputs)


@graded
def check_instance_norm_one_value(instance_norm, inputs=VISIBLE):
    """instance_norm raises ValueError for an input with one spatial value per channel, as torch does."""
    __tracebackhide__ = True
    for shape in inputs.one_value_shapes:
        described = {"shape": shape, "dtype": "float64"}
        x = np.linspace(-1.0, 2.0, int(np.prod(shape))).reshape(shape)
        advice = f"likely cause: {sentence('instance_one_value')}; raise ValueError, not another exception"
        if not run("instance_norm(x)", lambda: _raises_value_error(instance_norm, x), described, advice):
            raise CheckFailure(f"instance_norm(x) returned without raising ValueError\n"
                               f"  input: {describe_case(described)}\n"
                               f"  likely cause: {sentence('instance_one_value')}")


def _raises_value_error(function, x):
    __tracebackhide__ = True
    try:
        function(x)
    except ValueError:
        return True
    return False


@graded
def check_instance_norm_dx(instance_norm, instance_norm_backward, inputs=VISIBLE):
    """dx returned by instance_norm_backward equals torch autograd's."""
    __tracebackhide__ = True
    _check_backward("instance", instance_norm, instance_norm_backward, inputs, ("dx",))


# RMSNorm ----------------------------------------------------------------------------------------

@graded
def check_rms_norm(rms_norm, inputs=VISIBLE):
    """rms_norm(x, normalized_shape, gamma, eps) returns (y, cache) with y equal to F.rms_norm with the same eps."""
    __tracebackhide__ = True
    _check_forward("rms", rms_norm, inputs)


@graded
def check_rms_norm_dx(rms_norm, rms_norm_backward, inputs=VISIBLE):
    """dx returned by rms_norm_backward equals torch autograd's."""
    __tracebackhide__ = True
    _check_backward("rms", rms_norm, rms_norm_backward, inputs, ("dx",))


@graded
def check_rms_norm_dgamma(rms_norm, rms_norm_backward, inputs=VISIBLE):
    """dgamma returned by rms_norm_backward equals torch autograd's."""
    __tracebackhide__ = True
    _check_backward("rms", rms_norm, rms_norm_backward, inputs, ("dgamma",))
