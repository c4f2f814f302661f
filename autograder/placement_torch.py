"""Checks for Chapter 3, PyTorch: fusing BN into Conv2d and Linear modules, folding a whole model, and BN blocks.

``fuse_conv_bn`` and ``fuse_linear_bn`` are compared with ``torch.nn.utils.fusion``
(weights, biases, the convolution's hyperparameters, and outputs), for modules
with and without bias, BN with and without affine parameters, running
statistics far from 0 and 1, strides, padding, dilation and groups, float64
and float32; the modules given must come back unmodified. Everything runs on
``device``.
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_weights

from . import cases, mistaken
from .compare import CheckFailure, assert_close, describe_case, dtypes_in_out
from .mistakes import sentence
from .student import graded, run
from .introspect import is_instance, same_class
from .tensors import DTYPE_CAUSE, cpu64, describe, error_hint, run_torch, twin_beside

DTYPES = (torch.float64, torch.float32)
CONV_HYPERPARAMETERS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")


@dataclass(frozen=True)
class Inputs:
    """What a check runs the student's code on."""

    seed: int = 0
    convs: tuple = (  # Conv2d keyword arguments; depthwise and grouped ones included
        dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=(2, 3), stride=2, bias=False),
        dict(in_channels=6, out_channels=6, kernel_size=3, padding=2, dilation=2, groups=6),
        dict(in_channels=4, out_channels=6, kernel_size=1, groups=2, bias=False),
    )
    linears: tuple = (dict(in_features=5, out_features=3), dict(in_features=2, out_features=7, bias=False))
    image_size: tuple = (7, 9)
    batch_size: int = 3
    eps: float = 1e-3


VISIBLE = Inputs()


def _fill(module, generator):
    """Random parameters and running statistics far from their initial values, in place (our own modules)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=generator, dtype=torch.float64) * 2 - 1)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            channels = module.num_features
            module.running_mean.copy_(torch.rand(channels, generator=generator, dtype=torch.float64) * 6 - 3)
            module.running_var.copy_(torch.rand(channels, generator=generator, dtype=torch.float64) * 3.8 + 0.2)
    return module


def _pairs(inputs, device):
    """(case, layer, bn, x) for every layer of the inputs, BN with and without affine, float64 and float32."""
    __tracebackhide__ = True
    layers = [("Conv2d", kwargs) for kwargs in inputs.convs] + [("Linear", kwargs) for kwargs in inputs.linears]
    for number, (kind, kwargs) in enumerate(layers):
        for affine in (True, False):
            for dtype in DTYPES:
                generator = torch.Generator().manual_seed(inputs.seed + 13 * number + affine)
                layer = getattr(nn, kind)(**kwargs, dtype=torch.float64)
                channels = kwargs.get("out_channels", kwargs.get("out_features"))
                bn_class = nn.BatchNorm2d if kind == "Conv2d" else nn.BatchNorm1d
                bn = bn_class(channels, eps=inputs.eps, affine=affine, dtype=torch.float64)
                _fill(layer, generator)
                _fill(bn, generator)
                layer, bn = layer.to(device, dtype).eval(), bn.to(device, dtype).eval()
                shape = (inputs.batch_size, kwargs["in_channels"], *inputs.image_size) if kind == "Conv2d" else (
                    inputs.batch_size, kwargs["in_features"])
                x = torch.tensor(cases.activations(shape, np.float64, inputs.seed + number, constant_channel=False),
                                 dtype=dtype, device=device)
                case = {"layer": f"{kind}({', '.join(f'{k}={v}' for k, v in kwargs.items())})", "bn affine": affine,
                        "dtype": str(dtype).replace("torch.", ""), "device": str(device)}
                yield case, layer, bn, x


def _reference(layer, bn):
    """The fused module by torch.nn.utils.fusion (fuse_linear_bn_eval needs gamma and beta: ones and zeros)."""
    if isinstance(layer, nn.Conv2d):
        return fuse_conv_bn_eval(copy.deepcopy(layer), copy.deepcopy(bn))
    fused = copy.deepcopy(layer)
    ones, zeros = torch.ones_like(bn.running_mean), torch.zeros_like(bn.running_mean)
    fused.weight, fused.bias = fuse_linear_bn_weights(layer.weight, layer.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, ones if bn.weight is None else bn.weight,
                                                      zeros if bn.bias is None else bn.bias)
    return fused


def _state(*modules):
    """Copies of what the student must leave unchanged: state_dicts and training flags."""
    return [({k: v.detach().clone() for k, v in m.state_dict().items()}, [s.training for s in m.modules()])
            for m in modules]


def _assert_unmodified(before, modules, names, case):
    __tracebackhide__ = True
    for (state, modes), module, name in zip(before, modules, names):
        now = module.state_dict()
        changed = [k for k, v in state.items() if k not in now or not torch.equal(now[k], v)]
        if changed or [s.training for s in module.modules()] != modes:
            raise CheckFailure(f"the {name} you were given changed ({', '.join(changed) or 'its mode'}).\n"
                               f"  input: {describe_case(case)}\n  likely cause: {sentence('modules_modified', 'torch')}")


def _check_fused(fuse, name, kind, inputs, device):
    __tracebackhide__ = True
    for case, layer, bn, x in _pairs(inputs, device):
        if type(layer).__name__ != kind:
            continue
        given = twin_beside(fuse, layer), twin_beside(fuse, bn)
        before = _state(*given)
        fused = run(f"{name}(layer, bn)", lambda: fuse(*given), case, _fuse_advice(layer))
        _assert_unmodified(before, given, (kind, "BatchNorm"), case)
        if not same_class(fused, type(layer)):
            raise CheckFailure(f"{name} must return an nn.{kind}, got {type(fused).__name__}\n"
                               f"  input: {describe_case(case)}")
        expected = _reference(layer, bn)
        _compare_module(fused, expected, name, case, mistaken.fold(*_fold_arguments(layer, bn), bn.eps))
        with torch.no_grad():
            got_y = run_torch(f"the module {name} returned, applied to x", lambda: fused(x), case)
            assert_close(f"the output of the module {name} returned", got_y, bn(layer(x)), dtype=_np(x.dtype),
                         case=case, api="torch")


def _fuse_advice(layer):
    """Explains an exception of a fuser: a size mismatch is the scale along the wrong axis, or lost groups."""
    __tracebackhide__ = True

    def explain(error):
        __tracebackhide__ = True
        if "must match the size of tensor" in str(error) or "size mismatch" in str(error):
            key = "fuse_hyperparameters_lost" if getattr(layer, "groups", 1) > 1 else "fold_input_axis_scaled"
            return f"likely cause: {sentence(key, 'torch')}"
        return error_hint(str(error), "bn.weight and bn.bias are None when affine=False (use ones and zeros)")

    return explain


def _np(dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def _fold_arguments(layer, bn):
    """The NumPy float64 arguments of the Chapter 3 NumPy fold, from the modules."""
    def array(tensor):
        return None if tensor is None else cpu64(tensor).numpy()
    return (array(layer.weight), array(layer.bias), array(bn.weight), array(bn.bias), array(bn.running_mean),
            array(bn.running_var))


def _compare_module(fused, expected, name, case, mistakes):
    __tracebackhide__ = True
    if isinstance(expected, nn.Conv2d):
        lost = [h for h in CONV_HYPERPARAMETERS if getattr(fused, h) != getattr(expected, h)]
        if lost:
            raise CheckFailure(
                f"the convolution {name} returned has {', '.join(f'{h}={getattr(fused, h)}' for h in lost)}, "
                f"expected {', '.join(f'{h}={getattr(expected, h)}' for h in lost)}\n  input: {describe_case(case)}\n"
                f"  likely cause: {sentence('fuse_hyperparameters_lost', 'torch')}")
    for attribute in ("weight", "bias"):
        got, want = getattr(fused, attribute), getattr(expected, attribute)
        if not torch.is_tensor(got) or got.shape != want.shape or got.dtype != want.dtype or got.device != want.device:
            dtype_only = torch.is_tensor(got) and got.shape == want.shape and got.device == want.device
            raise CheckFailure(
                f"{attribute} of the module {name} returned is {describe(got)}, expected {describe(want)}\n"
                f"  input: {describe_case(case)}\n"
                + (f"  likely cause: {DTYPE_CAUSE} ({dtypes_in_out(want.dtype, got.dtype)})" if dtype_only else
                   "  hint: the fused module always has a bias (b = 0 when the original has none), in the original's "
                   "dtype and device"))
        assert_close(f"{attribute} of the module {name} returned", got, want, dtype=_np(want.dtype), case=case,
                     mistakes=mistakes["W2" if attribute == "weight" else "b2"], api="torch",
                     hint="weight = W * scale along the output axis 0; bias = (b - running_mean) * scale + beta, "
                          "scale = gamma / sqrt(running_var + eps)")


@graded
def check_fuse_conv_bn(fuse_conv_bn, device, inputs=VISIBLE):
    """fuse_conv_bn(conv, bn) equals torch's fuse_conv_bn_eval: weights, hyperparameters, outputs; inputs unchanged."""
    __tracebackhide__ = True
    _check_fused(fuse_conv_bn, "fuse_conv_bn", "Conv2d", inputs, device)


@graded
def check_fuse_linear_bn(fuse_linear_bn, device, inputs=VISIBLE):
    """fuse_linear_bn(linear, bn) equals torch's fuse_linear_bn_weights (affine=False included); inputs unchanged."""
    __tracebackhide__ = True
    _check_fused(fuse_linear_bn, "fuse_linear_bn", "Linear", inputs, device)


@graded
def check_fuse_errors(fuse_conv_bn, fuse_linear_bn, device, inputs=VISIBLE):
    """Both fusers raise ValueError, saying why, for a BN in training mode or without running statistics."""
    __tracebackhide__ = True
    for name, fuse, layer, bn_class in (("fuse_conv_bn", fuse_conv_bn, nn.Conv2d(3, 4, 3), nn.BatchNorm2d),
                                        ("fuse_linear_bn", fuse_linear_bn, nn.Linear(3, 4), nn.BatchNorm1d)):
        layer = layer.to(device).eval()
        for situation, bn in (("in training mode", bn_class(4).to(device).train()),
                              ("without running statistics (track_running_stats=False)",
                               bn_class(4, track_running_stats=False).to(device).eval())):
            case = {"layer": type(layer).__name__, "bn": situation, "device": str(device)}
            try:
                fuse(twin_beside(fuse, layer), twin_beside(fuse, bn))
            except ValueError as error:
                if not str(error).strip():
                    raise CheckFailure(f"{name} raised ValueError without a message for a BN {situation}; say "
                                       f"why it cannot be fused\n  input: {describe_case(case)}") from None
                continue
            except NotImplementedError as error:
                raise CheckFailure(f"{name} raised NotImplementedError: it is not implemented yet.") from error
            except Exception as error:
                raise CheckFailure(f"{name} raised {type(error).__name__} for a BN {situation}; raise ValueError\n"
                                   f"  input: {describe_case(case)}") from error
            raise CheckFailure(f"{name} fused a BN {situation} without an error.\n  input: {describe_case(case)}\n"
                               f"  likely cause: {sentence('fuse_in_training_mode', 'torch')}")


# Folding a whole model -----------------------------------------------------------------------

def _model(device, seed):
    """An eval-mode model with BN that can be folded (after Conv2d or Linear, nested too) and BN that cannot."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(4, affine=False), nn.ReLU()),
        nn.BatchNorm2d(4),  # after a ReLU: stays
        nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2, track_running_stats=False),  # no running statistics: stays
        nn.Flatten(), nn.Linear(2 * 5 * 5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3),
    ).to(torch.float64)
    for module in model.modules():
        _fill(module, generator)
    return model.to(device).eval()


EXPECTED_LAYOUT = ["Conv2d", "ReLU", ["Conv2d", "ReLU"], "BatchNorm2d", "Conv2d", "BatchNorm2d", "Flatten", "Linear",
                   "ReLU", "Linear"]


def _layout(module):
    return [_layout(child) if is_instance(child, nn.Sequential) else type(child).__name__ for child in module]


@graded
def check_fold_all_bn(fold_all_bn, device, inputs=VISIBLE):
    """fold_all_bn(model) returns a folded copy: foldable BNs removed (nested ones too), the others kept, same outputs."""
    __tracebackhide__ = True
    model = _model(device, inputs.seed)
    x = torch.tensor(cases.activations((inputs.batch_size, 3, 5, 5), np.float64, inputs.seed, constant_channel=False),
                     device=device)
    with torch.no_grad():
        expected_y = model(x)
    model = twin_beside(fold_all_bn, model)
    before = _state(model)
    case = {"model": "Conv-BN-ReLU, a nested Conv-BN(affine=False)-ReLU, a BN after a ReLU, a BN without running "
                     "statistics, Linear-BN-ReLU, Linear", "device": str(device), "seed": inputs.seed}
    folded = run_torch("fold_all_bn(model)", lambda: fold_all_bn(model), case)
    _assert_unmodified(before, (model,), ("model",), case)
    if folded is model or not is_instance(folded, nn.Module):
        raise CheckFailure("fold_all_bn must return a new module (a folded copy), not "
                           + ("the model itself" if folded is model else type(folded).__name__)
                           + f"\n  input: {describe_case(case)}\n  hint: start from copy.deepcopy(model)")
    layout = _layout(folded) if is_instance(folded, nn.Sequential) else None
    if layout != EXPECTED_LAYOUT:
        cause = None
        flat = str(layout)
        if "['Conv2d', 'BatchNorm2d', 'ReLU']" in flat:
            cause = "nested_sequential_missed"
        elif layout and layout.count("BatchNorm2d") < 2:
            cause = "bn_after_activation_folded"
        raise CheckFailure(
            f"the folded model's layers are {layout}, expected {EXPECTED_LAYOUT}\n  input: {describe_case(case)}\n"
            + (f"  likely cause: {sentence(cause, 'torch')}" if cause else
               "  hint: fuse each Conv2d or Linear with the BN right after it in the same Sequential (a BN with "
               "running statistics); keep every other module, in order"))
    with torch.no_grad():
        got_y = run_torch("the folded model applied to x", lambda: folded.eval()(x), case)
    assert_close("the folded model's output", got_y, expected_y, dtype=np.float64, case=case, api="torch")


# Building blocks -------------------------------------------------------------------------------

def _compare_train_and_eval(student, reference, name, x, case):
    """The student's module and the reference, with the same weights, agree in training and in eval mode."""
    __tracebackhide__ = True
    for mode in ("train", "eval"):
        student.train(mode == "train")
        reference.train(mode == "train")
        got = run_torch(f"{name} applied to x ({mode} mode)", lambda: student(x), case)
        assert_close(f"the output of {name} in {mode} mode", got, reference(x), dtype=np.float64,
                     case=dict(case, mode=mode), api="torch")


@graded
def check_conv_bn_relu(conv_bn_relu, device, inputs=VISIBLE):
    """conv_bn_relu(in_ch, out_ch, kernel_size) is Conv2d (no bias, same padding) -> BatchNorm2d -> ReLU."""
    __tracebackhide__ = True
    for in_channels, out_channels, kernel_size in ((3, 5, 3), (4, 2, 1), (2, 3, 5)):
        case = {"call": f"conv_bn_relu({in_channels}, {out_channels}, kernel_size={kernel_size})", "device": str(device)}
        block = run_torch(case["call"], lambda: conv_bn_relu(in_channels, out_channels, kernel_size=kernel_size), case)
        layout = _layout(block) if is_instance(block, nn.Sequential) else type(block).__name__
        if layout != ["Conv2d", "BatchNorm2d", "ReLU"]:
            raise CheckFailure(f"{case['call']} must be nn.Sequential(Conv2d, BatchNorm2d, ReLU), got {layout}\n"
                               "  hint: BN goes between the convolution and the nonlinearity")
        conv = block[0]
        if conv.bias is not None:
            raise CheckFailure(f"{case['call']}: the convolution has a bias\n"
                               f"  likely cause: {sentence('conv_bias_before_bn', 'torch')}")
        if (conv.in_channels, conv.out_channels, conv.kernel_size) != (in_channels, out_channels, (kernel_size,) * 2):
            raise CheckFailure(f"{case['call']}: the convolution is {conv}, expected in_channels={in_channels}, "
                               f"out_channels={out_channels}, kernel_size={kernel_size}")
        if conv.padding != (kernel_size // 2,) * 2 or conv.stride != (1, 1):
            raise CheckFailure(f"{case['call']}: the convolution has padding={conv.padding}, stride={conv.stride}\n"
                               f"  likely cause: {sentence('padding_not_same', 'torch')}")
        block = block.to(device, torch.float64)
        reference = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                                            bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
        reference = reference.to(device, torch.float64)
        reference.load_state_dict(block.state_dict())  # the same weights
        x = torch.tensor(cases.activations((inputs.batch_size, in_channels, 6, 5), np.float64, inputs.seed), device=device)
        _compare_train_and_eval(block, reference, case["call"], x, case)


class _ReferencePreActBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        for number in (1, 2):
            setattr(self, f"bn{number}", nn.BatchNorm2d(channels))
            setattr(self, f"conv{number}", nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False))

    def forward(self, x):
        return x + self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))


@graded
def check_preact_block(PreActBlock, device, inputs=VISIBLE):
    """PreActBlock(channels) computes x + conv2(relu(bn2(conv1(relu(bn1(x)))))), in training and in eval mode."""
    __tracebackhide__ = True
    for channels in (3, 5):
        case = {"call": f"PreActBlock({channels})", "device": str(device), "seed": inputs.seed}
        block = run_torch(case["call"], lambda: PreActBlock(channels), case)
        reference = _ReferencePreActBlock(channels)
        missing = [name for name in ("bn1", "conv1", "bn2", "conv2") if not is_instance(getattr(block, name, None),
                                                                                        nn.Module)]
        if missing:
            raise CheckFailure(f"{case['call']} has no submodule {', '.join(missing)}\n"
                               "  hint: self.bn1, self.conv1, self.bn2, self.conv2, created in __init__")
        block = block.to(device, torch.float64)
        reference = _fill(reference.to(torch.float64), torch.Generator().manual_seed(inputs.seed)).to(device)
        run_torch(f"{case['call']}.load_state_dict(the reference block's state_dict)",
                  lambda: block.load_state_dict(reference.state_dict(), strict=True), case,
                  "bn1 and bn2 are BatchNorm2d(channels); conv1 and conv2 are Conv2d(channels, channels, 3, "
                  "padding=1, bias=False)")
        x = torch.tensor(cases.activations((inputs.batch_size, channels, 6, 6), np.float64, inputs.seed), device=device)
        try:
            _compare_train_and_eval(block, reference, case["call"], x, case)
        except CheckFailure as failure:
            raise CheckFailure(f"{failure}\n" + _preact_cause(block, x)) from None


def _preact_cause(block, x):
    """The likely mistake, judged from what the student's block computes in eval mode."""
    with torch.no_grad():
        block.eval()
        got = block(x)
        inner = block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x))))))
        post = x + torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))
    if torch.allclose(got, inner):
        return f"  likely cause: {sentence('preact_identity_missing', 'torch')}"
    if torch.allclose(got, post):
        return f"  likely cause: {sentence('preact_order', 'torch')}"
    return "  hint: bn1 -> ReLU -> conv1 -> bn2 -> ReLU -> conv2, then add the input x"
