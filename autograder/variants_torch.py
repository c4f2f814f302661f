"""Checks for Chapter 4, PyTorch: LayerNorm, GroupNorm and RMSNorm modules, and synchronized batch statistics.

The student's modules run side by side with ``torch.nn.LayerNorm``,
``torch.nn.GroupNorm`` and ``torch.nn.RMSNorm`` built with the same arguments
and given the same weights; outputs and the gradients of a random upstream
gradient (``x.grad``, ``weight.grad``, ``bias.grad``) must agree, float64 to
1e-9 and float32 to 1e-4, with every forward pass watched so that calling
torch's own normalization is caught. ``sync_batch_stats`` runs in two real
gloo processes (:mod:`autograder.processes`).

Everything but the synchronized statistics runs on ``device``, the notebook's.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import mistaken_variants, processes, reference, variant_cases
from .compare import CheckFailure, assert_close, describe_case, to_numpy
from .mistaken_variants import Variant
from .mistakes import sentence
from .student import graded, run
from .introspect import is_instance
from .tensors import TORCH_DTYPES, NormalizationWatcher, assign, cpu64, describe, expect_placement
from .variant_cases import Case

TORCH_MODULES = {"layer": nn.LayerNorm, "group": nn.GroupNorm, "rms": nn.RMSNorm}
CLASS_NAMES = {"layer": "LayerNorm", "group": "GroupNorm", "rms": "RMSNorm"}
SIGNATURES = {
    "layer": "(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None)",
    "group": "(num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True)",
    "rms": "(normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None)",
}
ATTRIBUTES = {"layer": ("normalized_shape", "eps", "elementwise_affine"),
              "group": ("num_groups", "num_channels", "eps", "affine"),
              "rms": ("normalized_shape", "eps", "elementwise_affine")}
TORCH_NORMALIZATIONS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm,
                        nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class Inputs:
    """What the checks run: (constructor arguments, input case) per module run, layouts, sync cases."""

    seed: int = 0
    layer: tuple = (
        ({"normalized_shape": 6}, Case((4, 5, 6), 6)),
        ({"normalized_shape": (3, 4, 4), "eps": 1e-3}, Case((5, 3, 4, 4), (3, 4, 4), constant=True)),
        ({"normalized_shape": 8, "elementwise_affine": False}, Case((6, 8), 8, affine=False, dtype="float32")),
        ({"normalized_shape": 5, "bias": False}, Case((7, 5), 5, mean=1e5)),
    )
    group: tuple = (
        ({"num_groups": 2, "num_channels": 6}, Case((4, 6, 3, 3), 2, constant=True)),
        ({"num_groups": 3, "num_channels": 6, "affine": False}, Case((3, 6, 5), 3, affine=False, dtype="float32")),
        ({"num_groups": 1, "num_channels": 4, "eps": 0.1}, Case((2, 4, 2, 2), 1)),
        ({"num_groups": 4, "num_channels": 4, "bias": False}, Case((3, 4, 3), 4, mean=1e5)),
    )
    rms: tuple = (
        ({"normalized_shape": 6}, Case((4, 6), 6)),
        ({"normalized_shape": (3, 4), "eps": 1e-2}, Case((5, 3, 4), (3, 4))),
        ({"normalized_shape": 8}, Case((4, 3, 8), 8, dtype="float32")),
        ({"normalized_shape": 5, "elementwise_affine": False}, Case((6, 5), 5, affine=False, constant=True)),
    )
    # Constructor arguments of the structure checks.
    layer_layouts: tuple = ({"normalized_shape": 4}, {"normalized_shape": (2, 3), "eps": 1e-3},
                            {"normalized_shape": 5, "elementwise_affine": False}, {"normalized_shape": 3, "bias": False})
    group_layouts: tuple = ({"num_groups": 2, "num_channels": 4}, {"num_groups": 3, "num_channels": 6, "affine": False},
                            {"num_groups": 1, "num_channels": 3, "bias": False, "eps": 1e-3})
    group_indivisible: tuple = ((4, 6), (3, 4))
    rms_layouts: tuple = ({"normalized_shape": 4}, {"normalized_shape": (2, 3), "eps": 1e-3},
                          {"normalized_shape": 5, "elementwise_affine": False})
    # (dtype, shape, scale of x) of RMSNorm's low-precision runs: values of 300 overflow x ** 2 in float16.
    low_precision: tuple = (("float16", (4, 64), 300.0), ("bfloat16", (6, 48), 3.0), ("float16", (3, 5, 16), 1.0))
    # (per-process shapes, dtype, per-process mean offsets) of the synchronized statistics.
    sync: tuple = (
        (((5, 3), (2, 3)), "float64", (0.0, 3.0)),
        (((4, 3, 2, 2), (1, 3, 2, 2)), "float32", (0.0, 0.0)),
        (((6, 2, 3), (6, 2, 3)), "float64", (1e6, 1e6 + 5.0)),
        (((3, 4), (9, 4)), "float64", (-2.0, 2.0)),
    )


VISIBLE = Inputs()


# Building the student's module ------------------------------------------------------------------

def _call_text(kind, arguments, placed):
    __tracebackhide__ = True
    shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return f"{CLASS_NAMES[kind]}({shown}{', device=device, dtype=' + placed if placed else ''})"


def construct(kind, Module, arguments, dtype, device, case):
    """The student's module built with ``arguments`` on ``device`` in ``dtype`` (both None: torch's defaults)."""
    __tracebackhide__ = True
    placement = {} if dtype is None else {"device": device, "dtype": dtype}
    name = _call_text(kind, arguments, None if dtype is None else str(dtype))
    module = run(name, lambda: Module(**arguments, **placement), case,
                 f"hint: the constructor is torch's: {CLASS_NAMES[kind]}{SIGNATURES[kind]}")
    if not is_instance(module, nn.Module):
        raise CheckFailure(f"{name} must be an nn.Module (class {CLASS_NAMES[kind]}(nn.Module)), got "
                           f"{type(module).__name__}")
    for inner_name, inner in module.named_modules():
        if is_instance(inner, *TORCH_NORMALIZATIONS):
            where = "is" if not inner_name else f"contains ({inner_name})"
            raise CheckFailure(f"{name} {where} torch's {type(inner).__name__}.\n"
                               f"  likely cause: {sentence('delegates_to_torch_normalization', 'torch')}")
    return module, name


def _forward(module, name, x, case):
    """``module(x)`` watched; fails when torch's own normalization ran or the output is not like x."""
    __tracebackhide__ = True
    with NormalizationWatcher() as watcher:
        y = run(f"the forward of {name}", lambda: module(x), case,
                "hint: build the output from x and the parameters with tensor operations")
    if watcher.calls:
        raise CheckFailure(f"the forward of {name} called torch's own normalization "
                           f"({', '.join(sorted(set(watcher.calls)))}).\n  input: {describe_case(case)}\n"
                           f"  likely cause: {sentence('delegates_to_torch_normalization', 'torch')}")
    if not torch.is_tensor(y) or y.shape != x.shape:
        raise CheckFailure(f"the forward of {name} must return a tensor of x's shape {tuple(x.shape)}; it returned "
                           f"{describe(y)}\n  input: {describe_case(case)}")
    expect_placement(f"the output of {name}", y, x, case)
    return y


# Structure ----------------------------------------------------------------------------------------

def _check_structure(kind, Module, layouts, device):
    __tracebackhide__ = True
    for arguments in layouts:
        case = {"arguments": arguments}
        for dtype in (None, torch.float64):
            module, name = construct(kind, Module, arguments, dtype, device, case)
            expected = TORCH_MODULES[kind](**arguments, **({} if dtype is None else {"device": device, "dtype": dtype}))
            _compare_attributes(kind, module, expected, name)
            _compare_parameters(module, expected, name)
        _check_state_dicts(module, expected, name)


def _compare_attributes(kind, module, expected, name):
    __tracebackhide__ = True
    for attribute in ATTRIBUTES[kind]:
        want = getattr(expected, attribute)
        got = getattr(module, attribute, "missing")
        if got != want or type(got) is not type(want) and not isinstance(want, float):
            raise CheckFailure(f"{name}.{attribute}: expected {want!r} (as torch's module stores it), got {got!r}\n"
                               + ("  hint: store normalized_shape as a tuple: an int n becomes (n,)"
                                  if attribute == "normalized_shape" else
                                  f"  hint: keep the constructor's {attribute} as an attribute"))


def _compare_parameters(module, expected, name):
    __tracebackhide__ = True
    got = dict(module.named_parameters())
    want = dict(expected.named_parameters())
    if sorted(got) != sorted(want):
        raise CheckFailure(f"{name}: expected the parameters {sorted(want) or 'none'}, got {sorted(got) or 'none'}\n"
                           "  hint: weight (ones) and bias (zeros) as nn.Parameter; without them (elementwise_affine="
                           "False, affine=False, bias=False) call self.register_parameter(name, None)")
    for key, parameter in want.items():
        mine = got[key]
        if mine.shape != parameter.shape or mine.dtype != parameter.dtype or mine.device != parameter.device:
            raise CheckFailure(f"{name}.{key}: expected shape {tuple(parameter.shape)}, dtype {parameter.dtype}, "
                               f"device {parameter.device}; got {describe(mine)}\n"
                               "  hint: create parameters with the device and dtype arguments")
        if not torch.equal(mine.detach(), parameter.detach()):
            raise CheckFailure(f"{name}.{key} must start at {'ones' if key == 'weight' else 'zeros'}, as torch's does")
    for key in ("weight", "bias"):
        if key not in want and getattr(module, key, None) is not None:
            raise CheckFailure(f"{name}.{key} must be None (torch's module has none), got {describe(getattr(module, key))}")


def _check_state_dicts(module, expected, name):
    __tracebackhide__ = True
    mine, theirs = module.state_dict(), expected.state_dict()
    if sorted(mine) != sorted(theirs):
        raise CheckFailure(f"{name}.state_dict() has the keys {sorted(mine)}; torch's has {sorted(theirs)}")
    with torch.no_grad():
        for value in theirs.values():
            value.copy_(torch.linspace(0.5, 1.5, value.numel(), dtype=value.dtype).reshape(value.shape))
    run(f"{name}.load_state_dict(torch's state_dict)", lambda: module.load_state_dict(theirs), {},
        "hint: the state_dict keys and shapes must be torch's")
    run(f"torch's load_state_dict({name}.state_dict())", lambda: expected.load_state_dict(module.state_dict()), {},
        "hint: the state_dict keys and shapes must be torch's")
    for key, value in module.state_dict().items():
        if not torch.equal(value, theirs[key]):
            raise CheckFailure(f"{name}.load_state_dict did not load {key}; keep parameters as registered "
                               "nn.Parameter attributes so that load_state_dict can fill them")


@graded
def check_layer_norm_structure(LayerNorm, device, inputs=VISIBLE):
    """LayerNorm has torch's attributes, parameters (elementwise_affine, bias), device and dtype, and state_dict."""
    __tracebackhide__ = True
    _check_structure("layer", LayerNorm, inputs.layer_layouts, device)


@graded
def check_group_norm_structure(GroupNorm, device, inputs=VISIBLE):
    """GroupNorm has torch's attributes, parameters (affine, bias) and state_dict, and rejects indivisible groups."""
    __tracebackhide__ = True
    _check_structure("group", GroupNorm, inputs.group_layouts, device)
    for groups, channels in inputs.group_indivisible:
        name = f"GroupNorm({groups}, {channels})"
        case = {"num_groups": groups, "num_channels": channels}
        try:
            run(name, lambda: GroupNorm(groups, channels), case)
        except CheckFailure as failure:
            if isinstance(failure.__cause__, ValueError):
                continue
            raise CheckFailure(f"{name} must raise ValueError (num_channels must be divisible by num_groups); "
                               f"{str(failure).splitlines()[0]}") from None
        raise CheckFailure(f"{name} returned a module; it must raise ValueError, as torch does: "
                           "num_channels must be divisible by num_groups")


@graded
def check_rms_norm_structure(RMSNorm, device, inputs=VISIBLE):
    """RMSNorm has torch's attributes (eps=None kept as None), parameters, device and dtype, and state_dict."""
    __tracebackhide__ = True
    _check_structure("rms", RMSNorm, inputs.rms_layouts, device)


# Outputs and gradients ----------------------------------------------------------------------------

def _eps(kind, arguments, dtype):
    """The eps torch's module uses for this input dtype."""
    __tracebackhide__ = True
    default = {"layer": 1e-5, "group": 1e-5, "rms": None}[kind]
    eps = arguments.get("eps", default)
    if eps is None:
        computation = torch.float64 if dtype == torch.float64 else torch.float32
        eps = torch.finfo(computation).eps
    return eps


def _size(kind, arguments):
    __tracebackhide__ = True
    return arguments["num_groups"] if kind == "group" else arguments["normalized_shape"]


def _set_parameters(module, name, values, case):
    __tracebackhide__ = True
    for key, value in values.items():
        parameter = getattr(module, key, None)
        if value is None:
            continue
        if not isinstance(parameter, torch.Tensor) or parameter.shape != value.shape:
            raise CheckFailure(f"{name}.{key} must be a parameter of shape {tuple(value.shape)}, got "
                               f"{describe(parameter)}\n  input: {describe_case(case)}\n"
                               "  hint: the structure check of this module says more")
        assign(module, key, value)


def _check_outputs(kind, Module, runs, device, seed):
    __tracebackhide__ = True
    for number, (arguments, case) in enumerate(runs):
        case_seed = seed + 7 * number
        dtype = TORCH_DTYPES[case.dtype]
        described = {"module": _call_text(kind, arguments, case.dtype)} | case.describe(kind, case_seed)
        module, name = construct(kind, Module, arguments, dtype, device, described)
        expected_module = TORCH_MODULES[kind](**arguments, device=device, dtype=dtype)
        gamma, beta = variant_cases.parameters(kind, case, case_seed)
        if arguments.get("bias", True) is False:
            beta = None
        values = {k: None if v is None else torch.tensor(v, device=device) for k, v in (("weight", gamma),
                                                                                         ("bias", beta))}
        _set_parameters(module, name, values, described)
        _set_parameters(expected_module, "torch's module", values, described)
        x_array = variant_cases.activations(kind, case, case_seed)
        dy = torch.tensor(variant_cases.upstream_gradient(case, case_seed), device=device)
        x = torch.tensor(x_array, device=device, requires_grad=True)
        x_expected = torch.tensor(x_array, device=device, requires_grad=True)
        y = _forward(module, name, x, described)
        y_expected = expected_module(x_expected)
        eps, variant = _eps(kind, arguments, dtype), Variant(kind, _size(kind, arguments))
        mistakes = mistaken_variants.forward_mistakes(variant, x_array, gamma, beta, eps, eps)
        if kind == "rms" and arguments.get("eps") is None:
            mistakes.update(_eps_none_mistakes(variant, x_array, gamma, eps))
        assert_close(f"the output of {name}", cpu64(y), cpu64(y_expected), dtype=x_array.dtype, case=described,
                     mistakes=mistakes, api="torch", tolerance=case.tolerance)
        if case.mean:
            continue  # with a large mean, autograd through correct operations differs from torch's fused backward
            # by up to 3e-9: the output alone is judged there
        run(f"backward through {name}", lambda: (y * dy).sum().backward(), described,
            "hint: compute with differentiable tensor operations only")
        (y_expected * dy).sum().backward()
        gradient_mistakes = mistaken_variants.gradient_mistakes(variant, x_array, gamma, to_numpy(dy), eps)
        _compare_gradient(f"x.grad after backward through {name}", x.grad, x_expected.grad, x_array.dtype,
                          described, gradient_mistakes["dx"])
        for key, label in (("weight", "dgamma"), ("bias", "dbeta")):
            if values[key] is not None:
                _compare_gradient(f"{name}.{key}.grad", getattr(module, key).grad,
                                  getattr(expected_module, key).grad, x_array.dtype, described,
                                  gradient_mistakes[label] if beta is not None else {})


def _eps_none_mistakes(variant, x, gamma, eps):
    """What RMSNorm(eps=None) computes with the classic wrong readings of None."""
    __tracebackhide__ = True
    readings = {"rms_eps_none/layer_norm_default": 1e-5, "rms_eps_none/rms_norm_default": 1e-6,
                "rms_eps_none/float32_always": torch.finfo(torch.float32).eps}
    return {key: (lambda wrong=wrong: mistaken_variants.forward(variant, x, gamma, None, wrong))
            for key, wrong in readings.items() if wrong != eps}


def _compare_gradient(name, got, expected, dtype, case, mistakes):
    __tracebackhide__ = True
    if got is None:
        raise CheckFailure(f"{name} is None: no gradient reached it\n  input: {describe_case(case)}\n"
                           "  likely cause: a .detach(), .data, .numpy() or torch.no_grad() in the forward cuts the "
                           "graph; compute with differentiable tensor operations")
    assert_close(name, cpu64(got), cpu64(expected), dtype=dtype, case=case, mistakes=mistakes, api="torch")


@graded
def check_layer_norm_module(LayerNorm, device, inputs=VISIBLE):
    """LayerNorm's output, x.grad, weight.grad and bias.grad equal nn.LayerNorm's, without calling torch's layer norm."""
    __tracebackhide__ = True
    _check_outputs("layer", LayerNorm, inputs.layer, device, inputs.seed)


@graded
def check_group_norm_module(GroupNorm, device, inputs=VISIBLE):
    """GroupNorm's output, x.grad, weight.grad and bias.grad equal nn.GroupNorm's, without calling torch's group norm."""
    __tracebackhide__ = True
    _check_outputs("group", GroupNorm, inputs.group, device, inputs.seed)


@graded
def check_rms_norm_module(RMSNorm, device, inputs=VISIBLE):
    """RMSNorm's output, x.grad and weight.grad equal nn.RMSNorm's (eps=None included), without calling torch's."""
    __tracebackhide__ = True
    _check_outputs("rms", RMSNorm, inputs.rms, device, inputs.seed)


# RMSNorm in float16 and bfloat16 ------------------------------------------------------------------

# At most this fraction of the outputs may differ from torch's, by one unit in the last place: the rounding of a
# float32 computation written differently. Casting back before the weight changes far more of them.
LOW_PRECISION_DIFFERING = 0.02


@graded
def check_rms_norm_low_precision(RMSNorm, device, inputs=VISIBLE):
    """RMSNorm on float16 and bfloat16 input computes in float32 and rounds once, at the end, as nn.RMSNorm does."""
    __tracebackhide__ = True
    for number, (dtype_name, shape, scale) in enumerate(inputs.low_precision):
        dtype, seed = getattr(torch, dtype_name), inputs.seed + 11 * number
        arguments = {"normalized_shape": shape[-1]}
        described = {"module": _call_text("rms", arguments, dtype_name), "shape": shape, "dtype": dtype_name,
                     "scale of x": scale, "seed": seed}
        module, name = construct("rms", RMSNorm, arguments, dtype, device, described)
        expected_module = nn.RMSNorm(**arguments, device=device, dtype=dtype)
        generator = torch.Generator().manual_seed(seed)
        weight = (0.5 + torch.rand(shape[-1], generator=generator, dtype=torch.float64)).to(device, dtype)
        _set_parameters(module, name, {"weight": weight}, described)
        _set_parameters(expected_module, "torch's module", {"weight": weight}, described)
        x = (scale * torch.randn(shape, generator=generator, dtype=torch.float64)).to(device, dtype)
        with torch.no_grad():
            y = _forward(module, name, x, described)
            y_expected = expected_module(x)
        _compare_low_precision(name, y, y_expected, x, weight, described)


def _compare_low_precision(name, y, expected, x, weight, case):
    __tracebackhide__ = True
    got, want = cpu64(y), cpu64(expected)
    differing = (got != want) & ~(got.isnan() & want.isnan())
    if differing.float().mean().item() <= LOW_PRECISION_DIFFERING:
        return
    candidates = {
        "rms_low_precision_computed": lambda: _rms_in(x, weight, x.dtype, cast_before_weight=False),
        "rms_low_precision_cast_before_weight": lambda: _rms_in(x, weight, torch.float32, cast_before_weight=True),
    }
    matching = [key for key, thunk in candidates.items() if _same_mostly(got, cpu64(thunk()))]
    index = tuple(int(i) for i in differing.nonzero()[0])
    raise CheckFailure(
        f"the output of {name} differs from torch's in {int(differing.sum())} of {differing.numel()} elements\n"
        f"  input: {describe_case(case)}\n"
        f"  first at index {index}: got {got[index].item():.6g}, expected {want[index].item():.6g}\n"
        + (f"  likely cause: {sentence(matching[0], 'torch')}" if matching else
           "  hint: " + sentence("rms_low_precision_cast_before_weight", "torch")))


def _rms_in(x, weight, computation, cast_before_weight):
    __tracebackhide__ = True
    upcast = x.to(computation)
    normalized = upcast * torch.rsqrt(upcast.pow(2).mean(-1, keepdim=True) + torch.finfo(torch.float32).eps)
    if cast_before_weight:
        return normalized.to(x.dtype) * weight
    return (normalized * weight.to(computation)).to(x.dtype)


def _same_mostly(got, candidate):
    __tracebackhide__ = True
    differing = (got != candidate) & ~(got.isnan() & candidate.isnan())
    return differing.float().mean().item() <= LOW_PRECISION_DIFFERING


# Synchronized batch statistics --------------------------------------------------------------------

@graded
def check_sync_batch_stats(sync_batch_stats, inputs=VISIBLE):
    """sync_batch_stats returns, on each of two gloo processes, the mean and biased variance of the whole batch."""
    __tracebackhide__ = True
    cases, shards = [], []
    for number, (shapes, dtype, offsets) in enumerate(inputs.sync):
        seed = inputs.seed + 13 * number
        described = {"shapes per process": shapes, "dtype": dtype, "means": offsets, "seed": seed}
        cases.append(described)
        shards.append([_shard(shape, dtype, offset, seed + rank) for rank, (shape, offset)
                       in enumerate(zip(shapes, offsets))])
    try:
        results = processes.run_in_group(sync_batch_stats, shards)
    except processes.GroupFailure as failure:
        raise CheckFailure(f"sync_batch_stats could not be run in two processes: {failure}") from None
    # An exception on any rank (a collective that timed out, above all) explains more than the other rank's numbers.
    judged = sorted(((outcome[0] != "raised", number, rank, outcome) for rank, outcomes in enumerate(results)
                     for number, outcome in enumerate(outcomes)), key=lambda item: item[:2])
    for _returned, number, rank, outcome in judged:
        described = cases[number] if number < len(cases) else {"processes": len(results)}
        _judge_sync(rank, described, shards[min(number, len(shards) - 1)], outcome)


def _shard(shape, dtype, offset, seed):
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 2.0, size=(1, shape[1]) + (1,) * (len(shape) - 2))
    return (offset + rng.uniform(-2.0, 2.0, size=scales.shape) + scales * rng.standard_normal(shape)).astype(dtype)


def _judge_sync(rank, case, shards, outcome):
    __tracebackhide__ = True
    where = f"on rank {rank}"
    case = dict(case, rank=rank)
    if outcome[0] == "raised" and outcome[1].startswith("NotImplementedError"):
        raise CheckFailure("sync_batch_stats raised NotImplementedError: it is not implemented yet.\n"
                           "  Replace `raise NotImplementedError()` with your code, run that cell, then this one.")
    if outcome[0] == "raised":
        raise CheckFailure(f"sync_batch_stats(x) raised {outcome[1]} {where} ({outcome[2]})\n"
                           f"  input: {describe_case(case)}\n"
                           "  hint: use torch.distributed collectives (dist.all_gather or dist.all_reduce) on tensors "
                           "of x's dtype; every rank must make the same calls")
    values = outcome[1]
    if len(values) != 2:
        raise CheckFailure(f"sync_batch_stats(x) must return (mean, var); it returned a {outcome[2]} of "
                           f"{len(values)} values {where}\n  input: {describe_case(case)}")
    dtype = str(shards[rank].dtype)
    expected = reference.batch_statistics(np.concatenate(shards))
    mistakes = mistaken_variants.sync_mistakes(shards, rank)
    for label, (got_dtype, _device, array), want in zip(("mean", "var"), values, expected):
        name = f"{label} returned by sync_batch_stats(x) {where}"
        if array is None or got_dtype != dtype:
            raise CheckFailure(f"{name}: expected a tensor of dtype {dtype} (x's), got {got_dtype}\n"
                               f"  input: {describe_case(case)}\n  hint: keep x's dtype; counts too can be tensors "
                               "of x.dtype")
        large_mean = max(abs(float(np.mean(s))) for s in shards) > 1e4
        assert_close(name, array, want, dtype=shards[rank].dtype, case=case, mistakes=mistakes[label], api="torch",
                     hint=sentence("one_pass_variance", "torch") if large_mean else None)
