"""Checks for Chapter 3, NumPy: folding an eval-mode BN into the layer before it, and where BN goes in an MLP.

The folded weights are compared with ``torch.nn.utils.fusion`` (float64), for
layers with and without a bias, BN with and without affine parameters, running
statistics far from 0 and 1 (statistics at their initial values hide a wrong
folded bias), a custom eps, float64 and float32. ``mlp_forward`` is compared
with the same network built from ``torch.nn`` modules in eval mode.
"""

import copy
from dataclasses import dataclass

import numpy as np

from . import cases, mistaken, reference
from .compare import CheckFailure, assert_close, assert_unchanged, describe_case, dtypes_in_out
from .mistakes import sentence
from .student import call, expect_array, graded, returned_tuple

DTYPES = (np.float64, np.float32)
EPS = 1e-5
PLACEMENTS = ("bn_relu", "relu_bn", "none")
# Without a bias, or without gamma and beta (affine=False): each layer shape is folded in every variant.
VARIANTS = ({}, {"bias": False}, {"affine": False})


@dataclass(frozen=True)
class Inputs:
    """What a check runs the student's code on."""

    seed: int = 0
    linear_shapes: tuple = ((4, 4), (6, 3), (2, 7))  # (out, in); the square one lets a wrong axis compute
    conv_shapes: tuple = ((4, 4, 3, 3), (6, 2, 1, 1), (3, 5, 2, 3))  # (out, in / groups, kh, kw)
    custom_eps: float = 1e-3
    mlp_sizes: tuple = ((5, 7, 6, 3), (4, 3, 8, 2))  # feature sizes, the input's first
    batch_size: int = 9


VISIBLE = Inputs()


def _statistics(rng, channels):
    """Running statistics far from their initial 0 and 1."""
    return rng.uniform(-3.0, 3.0, channels), rng.uniform(0.2, 4.0, channels)


def _fold_cases(shapes, inputs):
    """(case, arguments, eps) for every shape, variant, dtype and eps."""
    __tracebackhide__ = True
    for number, shape in enumerate(shapes):
        for variant in VARIANTS:
            for dtype in DTYPES:
                for eps in (EPS, inputs.custom_eps):
                    seed = inputs.seed + 31 * number
                    rng = np.random.default_rng(seed)
                    channels = shape[0]
                    W = rng.standard_normal(shape).astype(dtype)
                    b = None if variant.get("bias") is False else rng.standard_normal(channels).astype(dtype)
                    gamma, beta = cases.affine_parameters(channels, dtype, seed)
                    if variant.get("affine") is False:
                        gamma = beta = None
                    running_mean, running_var = (s.astype(dtype) for s in _statistics(rng, channels))
                    case = {"W.shape": shape, "bias": b is not None, "affine": gamma is not None,
                            "dtype": np.dtype(dtype).name, "eps": eps, "seed": seed}
                    yield case, (W, b, gamma, beta, running_mean, running_var), eps


def _check_fold(fold, name, shapes, inputs):
    __tracebackhide__ = True
    for case, arguments, eps in _fold_cases(shapes, inputs):
        kwargs = {} if eps == EPS else {"eps": eps}
        signature = f"{name}(W, b, gamma, beta, running_mean, running_var" + ("" if eps == EPS else f", eps={eps}") + ")"
        result = call(signature, fold, *arguments, case=case, advice=_advice, **kwargs)
        got = dict(zip(("W2", "b2"), returned_tuple(name, result, 2, ("W2", "b2"), case)))
        expected = dict(zip(("W2", "b2"), reference.folded_weights(*arguments, eps=eps)))
        mistakes = mistaken.fold(*arguments, eps)
        dtype = arguments[0].dtype
        for quantity in ("W2", "b2"):
            label = f"{quantity} returned by {name}"
            expect_array(label, got[quantity], dtype, case,
                         hint=f"return NumPy arrays: W2 with W's shape, b2 of shape ({arguments[0].shape[0]},), "
                              "also when b is None",
                         cause=f"keep W's dtype ({dtypes_in_out(dtype, getattr(got[quantity], 'dtype', None))}); b, gamma or beta being None is no reason "
                               "to create float64 arrays for a float32 layer (use dtype=W.dtype)")
            assert_close(label, got[quantity], expected[quantity], dtype=dtype, case=case, mistakes=mistakes[quantity],
                         hint="W2 = W * scale (one scale per output unit, along axis 0) and "
                              "b2 = (b - running_mean) * scale + beta, with scale = gamma / sqrt(running_var + eps)")


def _advice(error):
    """Explains an exception: a failed broadcast is the wrong axis; a TypeError on None is a missing option."""
    __tracebackhide__ = True
    message = str(error)
    if "could not be broadcast" in message:
        return f"likely cause: {sentence('fold_input_axis_scaled')}"
    if "NoneType" in message:
        return ("hint: b is None for a layer without bias (use zeros), gamma and beta are None for a BN with "
                "affine=False (use ones and zeros)")
    return "hint: read the traceback above to find the failing line."


@graded
def check_fold_linear(fold_bn_into_linear, inputs=VISIBLE):
    """fold_bn_into_linear returns torch.nn.utils.fusion's (W2, b2) for a Linear followed by an eval-mode BN."""
    __tracebackhide__ = True
    _check_fold(fold_bn_into_linear, "fold_bn_into_linear", inputs.linear_shapes, inputs)


@graded
def check_fold_conv(fold_bn_into_conv, inputs=VISIBLE):
    """fold_bn_into_conv returns torch.nn.utils.fusion's (W2, b2) for a Conv2d (any groups) followed by a BN."""
    __tracebackhide__ = True
    _check_fold(fold_bn_into_conv, "fold_bn_into_conv", inputs.conv_shapes, inputs)


# The MLP --------------------------------------------------------------------------------------

def _mlp_layers(sizes, seed, eps):
    """(W, b, bn) per Linear layer; the last one has no BN."""
    rng = np.random.default_rng(seed)
    layers = []
    for number, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)
        b = rng.uniform(-0.5, 0.5, fan_out)
        bn = None
        if number < len(sizes) - 2:
            gamma, beta = cases.affine_parameters(fan_out, np.float64, seed + number)
            running_mean, running_var = _statistics(rng, fan_out)
            bn = {"gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var, "eps": eps}
        layers.append((W, b, bn))
    return layers


def _mistaken_mlp(x, layers, placement, mistake):
    """The eval-mode MLP as a classic mistake computes it."""
    order = {"placement_reversed": {"bn_relu": "relu_bn", "relu_bn": "bn_relu", "none": "none"},
             "bn_skipped": {"bn_relu": "none", "relu_bn": "none", "none": "none"},
             "bn_without_placement": {"bn_relu": "bn_relu", "relu_bn": "relu_bn", "none": "bn_relu"}}
    placement = order.get(mistake, {}).get(placement, placement)
    for number, (W, b, bn) in enumerate(layers):
        x = x @ W.T + b
        last = number == len(layers) - 1
        if last:
            return np.maximum(x, 0) if mistake == "output_layer_activated" else x
        steps = {"bn_relu": ("bn", "relu"), "relu_bn": ("relu", "bn"), "none": ("relu",)}[placement]
        for step in steps:
            x = np.maximum(x, 0) if step == "relu" else _batch_norm(x, bn, mistake)
    return x


def _batch_norm(x, bn, mistake):
    if mistake == "batch_statistics_in_eval":
        mean, var = x.mean(axis=0), x.var(axis=0)
    else:
        mean, var = bn["running_mean"], bn["running_var"]
    eps = EPS if mistake == "eps_ignored" else bn["eps"]
    return bn["gamma"] * (x - mean) / np.sqrt(var + eps) + bn["beta"]


MLP_MISTAKES = ("placement_reversed", "bn_skipped", "bn_without_placement", "output_layer_activated",
                "batch_statistics_in_eval", "eps_ignored")


@graded
def check_mlp_forward(mlp_forward, inputs=VISIBLE):
    """mlp_forward(x, layers, placement) equals the eval-mode torch.nn network for every placement."""
    __tracebackhide__ = True
    for number, sizes in enumerate(inputs.mlp_sizes):
        for placement in PLACEMENTS:
            for eps in (EPS, inputs.custom_eps):
                seed = inputs.seed + 17 * number
                layers = _mlp_layers(sizes, seed, eps)
                x = 1.5 + 2.0 * np.random.default_rng(seed + 1).standard_normal((inputs.batch_size, sizes[0]))
                case = {"sizes": sizes, "placement": placement, "eps": eps, "batch": inputs.batch_size,
                        "seed": seed}
                before = copy.deepcopy(layers)
                got = call(f'mlp_forward(x, layers, "{placement}")', mlp_forward, x, layers, placement, case=case,
                           hint="layers is a list of (W, b, bn); W has shape (out, in) as in nn.Linear, so a layer "
                                "computes x @ W.T + b; bn is None for the last layer")
                _assert_layers_unchanged(before, layers, case)
                expect_array(f"the output of mlp_forward (placement {placement!r})", got, x.dtype, case,
                             hint="return the network's output as a NumPy array of shape (N, out)",
                             cause="keep the input's dtype")
                mistakes = {key: (lambda key=key: _mistaken_mlp(x, layers, placement, key)) for key in MLP_MISTAKES}
                assert_close(f"the output of mlp_forward (placement {placement!r})", got,
                             reference.mlp_eval(x, layers, placement), dtype=np.float64, case=case, mistakes=mistakes,
                             hint="in eval mode BN uses running_mean and running_var; the last layer is a plain "
                                  "Linear layer")


def _assert_layers_unchanged(before, after, case):
    __tracebackhide__ = True
    for number, (old, new) in enumerate(zip(before, after)):
        for part, old_value, new_value in zip(("W", "b", "bn"), old, new):
            if isinstance(old_value, dict):
                for key in old_value:
                    if key != "eps":
                        assert_unchanged(f"layers[{number}] bn[{key!r}]", old_value[key], new_value[key], case)
            elif old_value is not None:
                assert_unchanged(f"layers[{number}] {part}", old_value, new_value, case)
    if len(before) != len(after):
        raise CheckFailure(f"mlp_forward changed the length of layers\n  input: {describe_case(case)}")
