"""Helpers of the PyTorch checks: tensors on the notebook's device, their dtype and device, torch's errors.

Nothing here puts a student's tensor on a fixed device, so the same checks run
unchanged on CUDA, where a tensor created on the CPU shows up as a wrong
``.device`` or a "same device" error.
"""

import numpy as np
import torch
from torch import nn

from .compare import CheckFailure, describe_case, dtypes_in_out
from .mistakes import sentence
from .student import run
from .watch import NormalizationWatcher  # noqa: F401 the checks' watcher, here with the other helpers

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
DTYPE_CAUSE = ("a tensor created without dtype=x.dtype (torch.tensor, torch.zeros, torch.ones and torch.empty "
               "default to float32) or a cast such as .float(); keep the input's dtype")
DEVICE_CAUSE = ("a tensor created on the CPU while x is on another device: create tensors with "
                "device=x.device (and dtype=x.dtype), or use torch.zeros_like(x) / x.new_zeros(...)")


def numpy_dtype(dtype):
    """The NumPy dtype of a torch floating-point dtype."""
    return np.float64 if dtype == torch.float64 else np.float32


def on(device, *arrays, requires_grad=False):
    """Tensors on ``device`` holding ``arrays`` (same dtype), optionally tracking gradients."""
    __tracebackhide__ = True
    return tuple(torch.tensor(a, device=device, requires_grad=requires_grad) for a in arrays)


def assign(module, name, values):
    """Give ``module.<name>`` (a parameter or buffer) the values ``values`` in place, outside autograd; in the
    student's kernel when the module lives there."""
    __tracebackhide__ = True
    in_kernel = getattr(type(module), "assign_in_kernel", None)
    if in_kernel is not None:
        in_kernel(module, name, values)
        return
    with torch.no_grad():
        getattr(module, name).copy_(torch.as_tensor(values))


def nn_beside(student_object):
    """``torch.nn`` in the process of ``student_object``: where a check builds the layers it hands to student code."""
    __tracebackhide__ = True
    in_kernel = getattr(type(student_object), "module_in_kernel", None)
    return in_kernel(student_object, "torch.nn") if in_kernel is not None else nn


def twin_beside(student_object, local):
    """The module to hand to student code: ``local`` itself when that code runs here; else a copy built in the
    student's kernel with its ``torch.nn`` (torch's own layers only: see :func:`rebuilt`), with ``local``'s
    state_dict, dtype, device and training flags."""
    __tracebackhide__ = True
    beside = nn_beside(student_object)
    if beside is nn:
        return local
    twin = rebuilt(beside, local)
    floating = [t for t in [*local.parameters(), *local.buffers()] if t.is_floating_point()]
    if floating:
        twin.to(floating[0].device, floating[0].dtype)
    twin.load_state_dict(local.state_dict())
    for ours, theirs in zip(local.modules(), twin.modules()):
        theirs.training = ours.training
    return twin


def rebuilt(nn_there, module):
    """A new module like ``module`` (its constructor's arguments, not its state), made by ``nn_there``."""
    __tracebackhide__ = True
    kind = type(module).__name__
    if isinstance(module, nn.Sequential):
        return nn_there.Sequential(*[rebuilt(nn_there, child) for child in module])
    if isinstance(module, nn.Conv2d):
        return nn_there.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                               padding=module.padding, dilation=module.dilation, groups=module.groups,
                               bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, nn.Linear):
        return nn_there.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return getattr(nn_there, kind)(module.num_features, eps=module.eps, momentum=module.momentum,
                                       affine=module.affine, track_running_stats=module.track_running_stats)
    if isinstance(module, nn.Flatten):
        return nn_there.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, nn.ReLU):
        return nn_there.ReLU()
    raise TypeError(f"no recipe to rebuild a {kind} in the student's kernel")


def cpu64(tensor):
    """A float64 CPU copy of a tensor, outside any graph."""
    return tensor.detach().to("cpu", torch.float64)


def describe(value):
    """A tensor's shape, dtype and device in words (or the type of a non-tensor)."""
    if not torch.is_tensor(value):
        return type(value).__name__
    return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype}, device {value.device}"


def expect_placement(name, tensor, like, case):
    """``tensor`` has the dtype and the device of ``like``."""
    __tracebackhide__ = True
    if tensor.dtype != like.dtype:
        raise CheckFailure(f"{name}: expected dtype {like.dtype}, got {tensor.dtype}\n"
                           f"  input: {describe_case(case)}\n  likely cause: {DTYPE_CAUSE} "
                           f"({dtypes_in_out(like.dtype, tensor.dtype)})")
    if tensor.device != like.device:
        raise CheckFailure(f"{name}: expected a tensor on {like.device} (the input's device), "
                           f"got one on {tensor.device}\n"
                           f"  input: {describe_case(case)}\n  likely cause: {DEVICE_CAUSE}")


def run_torch(name, action, case, hint=None):
    """Run student code; PyTorch's own error messages get a likely cause (else ``hint``)."""
    __tracebackhide__ = True
    return run(name, action, case, lambda error: error_hint(str(error), hint))


def error_hint(message, hint=None):
    """A likely cause for an exception PyTorch raised, judged from its message."""
    __tracebackhide__ = True
    if "must match the size of tensor" in message:
        return f"likely cause: {sentence('broadcast_along_last_axis', 'torch')}"
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
    return f"hint: {hint or 'read the traceback above to find the failing line.'}"
