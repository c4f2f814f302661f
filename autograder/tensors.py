"""Helpers of the PyTorch checks: tensors on the notebook's device, their dtype and device, torch's errors.

Nothing here puts a student's tensor on a fixed device, so the same checks run
unchanged on CUDA, where a tensor created on the CPU shows up as a wrong
``.device`` or a "same device" error.
"""

import numpy as np
import torch

from .compare import CheckFailure, describe_case, dtypes_in_out
from .mistakes import sentence
from .student import run

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


class NormalizationWatcher:
    """Records calls of torch's own normalizations while active, both as Python functions (``F.layer_norm``,
    ``torch.rms_norm``: a function mode) and as aten operators (``aten.native_layer_norm``: a dispatch mode),
    because some of them (RMSNorm) decompose into plain operators before dispatch."""

    NAMES = ("layer_norm", "group_norm", "rms_norm", "batch_norm", "instance_norm")

    def __init__(self):
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        calls = self.calls = []
        names = self.NAMES

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, "__name__", str(func))
                if any(n in name for n in names):
                    calls.append(name)
                return func(*args, **(kwargs or {}))

        class Operators(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if any(n in str(func) for n in names):
                    calls.append(str(func))
                return func(*args, **(kwargs or {}))

        self._modes = (Functions(), Operators())

    def __enter__(self):
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        return False
