"""Watching for torch's own normalization layers: a check's way to see that a student delegated to them.

:class:`NormalizationWatcher` records the calls of torch's normalizations while it is active, both as Python
functions (``F.layer_norm``, ``torch.rms_norm``: a function mode) and as aten operators
(``aten.native_batch_norm``: a dispatch mode), because some of them (RMSNorm) decompose into plain operators
before dispatch. This file has no import from the course: when a check runs in the grader's process and the
student's code in the kernel, the grader's server runs the same watcher there around every call, and
:func:`report` adds what it saw to the watchers active here.
"""

NAMES = ("layer_norm", "group_norm", "rms_norm", "batch_norm", "instance_norm")
ACTIVE = []  # the watchers now active in this process, innermost last


class NormalizationWatcher:
    """``with NormalizationWatcher() as watcher: ...``; then ``watcher.calls`` lists what ran, by name."""

    NAMES = NAMES
    _mode_classes = None  # made once: a function mode and a dispatch mode class, both appending to .calls

    def __init__(self):
        self.calls = []
        self._modes = tuple(mode(self.calls) for mode in self._classes())

    @classmethod
    def _classes(cls):
        if cls._mode_classes is None:
            from torch.overrides import TorchFunctionMode
            from torch.utils._python_dispatch import TorchDispatchMode

            class Functions(TorchFunctionMode):
                def __init__(self, calls):
                    super().__init__()
                    self.calls = calls

                def __torch_function__(self, func, types, args=(), kwargs=None):
                    name = getattr(func, "__name__", str(func))
                    if any(n in name for n in NAMES):
                        self.calls.append(name)
                    return func(*args, **(kwargs or {}))

            class Operators(TorchDispatchMode):
                @classmethod
                def _should_skip_dynamo(cls):
                    # Else torch wraps __torch_dispatch__ to disable Dynamo, importing torch._dynamo at the first
                    # call (about 1.9 s, in every kernel a check watches); nothing here is compiled.
                    return False

                def __init__(self, calls):
                    super().__init__()
                    self.calls = calls

                def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                    if any(n in str(func) for n in NAMES):
                        self.calls.append(str(func))
                    return func(*args, **(kwargs or {}))

            cls._mode_classes = (Functions, Operators)
        return cls._mode_classes

    def __enter__(self):
        for mode in self._modes:
            mode.__enter__()
        ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        ACTIVE.remove(self)
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        return False

    def named(self, part):
        """The calls whose name contains ``part`` (e.g. ``"batch_norm"``)."""
        return [call for call in self.calls if part in call]


# The autograd nodes of torch's own normalization kernels, and the operator each stands for. They are in the graph
# of an output that torch computed with gradients, even when the modes above were switched off around the call.
NODES = {"NativeBatchNormBackward": "batch_norm", "CudnnBatchNormBackward": "batch_norm",
         "MiopenBatchNormBackward": "batch_norm", "NativeLayerNormBackward": "layer_norm",
         "NativeGroupNormBackward": "group_norm"}


def normalizations_in_graph(outputs, limit=20_000):
    """What :data:`NODES` holds of the autograd graphs of ``outputs`` (tensors), as ``"node (operator)"``."""
    found, seen, stack = [], set(), [tensor.grad_fn for tensor in outputs]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = type(node).__name__
        operator = next((op for prefix, op in NODES.items() if name.startswith(prefix)), None)
        if operator is not None:
            found.append(f"autograd node {name} ({operator})")
        stack.extend(child for child, _ in node.next_functions)
    return found


def report(calls):
    """Calls seen elsewhere (in the student's kernel) while the watchers active here were on."""
    for watcher in ACTIVE:
        watcher.calls.extend(calls)
