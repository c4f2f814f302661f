"""The trusted side of the protocol: the student's kernel seen through handles that carry data only.

``Remote(ask)`` installs the server (:mod:`autograder.grading.remote_server`) in
the kernel, then turns a global of the student's namespace into a value (data)
or a :class:`Handle` (anything else). Calling a handle, or reading or setting
one of its attributes, asks the kernel; arguments and results cross as data,
exceptions as their type name and message. ``ask(expression, timeout, code="")``
runs ``code`` and evaluates ``expression`` in the kernel, and returns the
expression's text (the ``text/plain`` of an IPython user expression): it
installs the server. Requests then go through ``exchange``, a unix socket that
the server answers while the grader runs a test cell.

Tensors cross as data. When a call's result has an autograd history in the
kernel, its tensors here are the outputs of a :class:`Bridge` node, whose
backward asks the kernel to run the student's backward: ``y.backward(dy)`` here
fills ``x.grad`` here, and the gradients of the student's parameters there.
"""

import builtins
import secrets
import sys
import warnings
from pathlib import Path

import numpy as np

from .. import introspect, processes, watch
from . import remote_server
from .remote_server import ProtocolError, decode, dumps, encode, loads

SERVER_SOURCE = Path(remote_server.__file__).read_text()
# What the server uses from the course, by module: each module's source runs in its own namespace in the kernel
# (none of them imports anything from the course), and these names are given to the server.
SERVER_USES = {module: names for module, names in ((introspect, ("describe",)), (watch, ("NAMES", "NormalizationWatcher", "normalizations_in_graph")),
                                                    (processes, ("run_in_group",)))}
ANSWER_LIMIT = 256 << 20  # characters of one answer


class CallTimedOut(BaseException):
    """The student's code did not answer in time (not an Exception: no check may catch it)."""


class Handle:
    """An object that stays in the student's kernel; ``type(handle).__name__`` is its type's name there."""

    __slots__ = ("_remote", "_number")

    def __init__(self, remote, number):
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_number", number)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._remote.request(["getattr", self._number, name])

    def __setattr__(self, name, value):
        self._remote.request(["setattr", self._number, name, self._remote.encode(value)])

    def __call__(self, *arguments, **keywords):
        return self._remote.call(self, arguments, keywords)

    def __repr__(self):
        return f"<{type(self).__name__} object in your notebook>"

    def __iter__(self):
        items = self._remote.request(["iterate", self._number])
        if not isinstance(items, list):
            raise ProtocolError("an iteration that is not a list")
        return iter(items)

    def __getitem__(self, key):
        return self._remote.request(["getitem", self._number, self._remote.encode(key)])

    def __len__(self):
        length = self._remote.request(["len", self._number])
        if type(length) is not int or length < 0:
            raise ProtocolError("a length that is not a natural number")
        return length

    def describe_in_kernel(self):
        """:func:`autograder.introspect.describe` of the object, run in the kernel."""
        facts = self._remote.request(["describe", self._number])
        if not (isinstance(facts, dict) and set(facts) == {"type", "is_class", "mro", "code"}):
            raise ProtocolError("a malformed description")
        return facts

    def assign_in_kernel(self, name, value):
        """``self.<name>.copy_(value)`` under ``torch.no_grad()``, in the kernel."""
        self._remote.request(["assign", self._number, name, self._remote.encode(value)])

    def run_in_group_in_kernel(self, cases, timeout):
        """:func:`autograder.processes.run_in_group` of the object, forked from the kernel."""
        try:
            return self._remote.request(["group", self._number, self._remote.encode(cases), timeout])
        except Exception as error:
            if type(error).__name__ == "GroupFailure":
                raise processes.GroupFailure(str(error)) from None
            raise

    def module_in_kernel(self, name):
        """The kernel's module ``name`` (``torch.nn``), as a handle: where checks build layers for the student."""
        return self._remote.request(["module", name])


class Remote:
    """The student's kernel, reached through ``ask``."""

    def __init__(self, ask, timeout):
        self._ask, self.timeout = ask, timeout
        self.exchange = None  # exchange(request text, timeout) -> answer text, while the kernel serves
        self._handles, self._classes = {}, {}
        self._name = f"_autograder_remote_{secrets.token_hex(8)}"
        filename = remote_server.SERVER_FILENAME
        uses = "".join(f"    part = {{'__name__': '_autograder_{module.__name__.rsplit('.', 1)[-1]}'}}\n"
                       f"    exec(compile({Path(module.__file__).read_text()!r}, {filename!r}, 'exec'), part)\n"
                       f"    namespace.update((name, part[name]) for name in {names!r})\n"
                       for module, names in SERVER_USES.items())
        install = (f"def {self._name}():\n"
                   f"    namespace = {{'__name__': '_autograder_remote'}}\n"
                   f"{uses}"
                   f"    exec(compile({SERVER_SOURCE!r}, {filename!r}, 'exec'), namespace)\n"
                   f"    return namespace['serve'](globals())\n"
                   f"{self._name} = {self._name}()\n")
        # The answer's text is IPython's repr, which the student may have changed: whether the server is there
        # is proved by its connecting when the grader serves a test cell.
        self._ask(f"type({self._name}).__name__", self.timeout, code=install)

    # Operations --------------------------------------------------------------------------------

    def global_value(self, name):
        return self.request(["global", name])

    def call(self, handle, arguments, keywords):
        sent = []
        encoded = [self.encode(a, sent) for a in arguments]
        encoded_keywords = [[k, self.encode(v, sent)] for k, v in keywords.items()]
        torch = sys.modules.get("torch")
        grad_enabled = None if torch is None else torch.is_grad_enabled()
        received = []
        watched = bool(watch.ACTIVE)  # a check watches for torch's normalizations: so does the kernel
        returned, after, graph = self.request(["call", handle._number, encoded, encoded_keywords, grad_enabled,
                                               watched], with_arguments=True, tensors=received)
        if graph:
            returned = Bridge.connect(self, graph, returned, received, [t for t in sent if t.requires_grad])
        for argument, value in zip(arguments, after):
            mirror(argument, value)
        return returned

    @property
    def server_name(self):
        return self._name

    def request(self, request, with_arguments=False, tensors=None):
        if self.exchange is None:
            raise ProtocolError("the kernel is not serving the grader")
        text = self.exchange(dumps(request), self.timeout)
        try:
            answer = loads(text, ANSWER_LIMIT)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
            raise ProtocolError(f"the kernel's answer is not one of the protocol: {error}") from None
        if not isinstance(answer, list) or len(answer) < 3:
            raise ProtocolError("the kernel's answer is not one of the protocol")
        *outcome, said, seen = answer
        self._warn(said)
        if not (isinstance(seen, list) and all(type(call) is str for call in seen)):
            raise ProtocolError("a malformed list of calls")
        watch.report(seen)
        if outcome[0] == "raised" and len(outcome) == 6:
            raise self._exception(*outcome[1:])
        if outcome[0] != "returned" or len(outcome) not in (3, 4) or not isinstance(outcome[2], list):
            raise ProtocolError("the kernel's answer is not one of the protocol")
        returned = decode(outcome[1], self._resolve, tensors=tensors)
        if with_arguments:
            graph = outcome[3] if len(outcome) == 4 else 0
            if type(graph) is not int or graph < 0:
                raise ProtocolError("a malformed graph number")
            return returned, [decode(value, self._resolve) for value in outcome[2]], graph
        return returned

    # Codec -------------------------------------------------------------------------------------

    def encode(self, value, tensors=None):
        def handle_of(item):
            if isinstance(item, Handle) and item._remote is self:
                return ["handle", item._number, type(item).__name__]
            raise TypeError(f"{type(item).__name__} cannot be passed to the student's code (only data and "
                            "objects that came from it)")
        return encode(value, handle_of, tensors=tensors)

    def _resolve(self, number, type_name):
        handle = self._handles.get(number)
        if handle is None:
            cls = self._classes.get(type_name)
            if cls is None:
                cls = self._classes[type_name] = type(type_name if type_name.isidentifier() else "object",
                                                      (Handle,), {"__slots__": ()})
            handle = self._handles[number] = cls(self, number)
        return handle

    @staticmethod
    def _exception(type_name, message, where, text, frames):
        for value in (type_name, message, where, text):
            if type(value) is not str:
                raise ProtocolError("a malformed exception")
        if not (isinstance(frames, list) and all(isinstance(f, list) and len(f) == 2 and
                                                 all(type(v) is str for v in f) for f in frames)):
            raise ProtocolError("a malformed exception")
        if type_name == "KeyboardInterrupt":
            raise CallTimedOut(message)
        builtin = getattr(builtins, type_name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin.__module__ == "builtins":
            try:
                error = builtin(message)
            except Exception:
                error = Exception(message)
        else:
            error = type(type_name if type_name.isidentifier() else "StudentError", (Exception,), {})(message)
        error.student_where, error.student_traceback = where, text
        error.student_frames = [tuple(frame) for frame in frames]
        return error

    @staticmethod
    def _warn(said):
        if not isinstance(said, list):
            raise ProtocolError("malformed warnings")
        for item in said[:10]:
            if not (isinstance(item, list) and len(item) == 4 and all(type(v) is str for v in item[:3])
                    and type(item[3]) is int):
                raise ProtocolError("a malformed warning")
            category = getattr(builtins, item[0], None)
            if not (isinstance(category, type) and issubclass(category, Warning)):
                category = UserWarning
            warnings.warn_explicit(item[1], category, item[2], item[3])


def mirror(argument, value):
    """The student's function changed an array or tensor argument in place: change ours the same way."""
    if isinstance(argument, np.ndarray) and isinstance(value, np.ndarray) and value.shape == argument.shape \
            and argument.flags.writeable and not np.array_equal(argument, value, equal_nan=True):
        argument[...] = value
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.is_tensor(argument) and torch.is_tensor(value) \
            and value.shape == argument.shape and value.dtype == argument.dtype \
            and not torch.equal(argument.detach().cpu(), value.detach().cpu()):
        with torch.no_grad():
            argument.copy_(value.to(argument.device))


class Bridge:
    """An autograd node here whose backward is the kernel's: made by :meth:`connect`, one Function class per node name.

    Its outputs are the call's tensors that have an autograd history in the kernel, and its inputs the tensors of
    this process that the call was given with ``requires_grad`` (or, when there are none, an anchor, so that
    ``y.backward(dy)`` still reaches the kernel, where the student's parameters take their gradients). The node's
    type is named as the kernel's (``BatchNormFunctionBackward``), so checks of ``type(y.grad_fn).__name__`` read
    the student's node.
    """

    _functions = {}

    @classmethod
    def connect(cls, remote, graph, returned, received, inputs):
        import torch
        differentiable = [(tensor, node) for tensor, node in received if node is not None]
        if not differentiable or not torch.is_grad_enabled():
            return returned
        anchor = [] if inputs else [torch.zeros((), requires_grad=True)]
        function = cls._function(differentiable[0][1])
        outputs = function.apply((remote, graph, len(inputs)), *inputs, *anchor,
                                 *[tensor.detach() for tensor, _ in differentiable])
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        replaced = {id(tensor): output for (tensor, _), output in zip(differentiable, outputs)}
        return _replace(returned, replaced)

    @classmethod
    def _function(cls, node_name):
        function = cls._functions.get(node_name)
        if function is None:
            import torch

            def forward(ctx, call, *tensors):
                ctx.remote, ctx.graph, count = call
                ctx.count = max(count, 1)
                return tuple(t.clone() for t in tensors[ctx.count:])

            def backward(ctx, *gradients):
                encoded = [ctx.remote.encode(g) for g in gradients]
                grads = ctx.remote.request(["backward", ctx.graph, encoded])
                if not isinstance(grads, list) or any(g is not None and not torch.is_tensor(g) for g in grads):
                    raise ProtocolError("malformed gradients")
                grads = (grads + [None] * ctx.count)[:ctx.count]
                return (None, *grads, *[None] * len(gradients))

            stem = node_name.removesuffix("Backward") or "Remote"
            function = type(stem if stem.isidentifier() else "Remote", (torch.autograd.Function,),
                            {"forward": staticmethod(forward), "backward": staticmethod(backward)})
            function._backward_cls.__name__ = function._backward_cls.__qualname__ = node_name
            cls._functions[node_name] = function
        return function


def _replace(value, replaced):
    """``value`` with the tensors whose ids are in ``replaced`` replaced (inside tuples, lists and dicts)."""
    if id(value) in replaced:
        return replaced[id(value)]
    if type(value) in (tuple, list):
        return type(value)(_replace(item, replaced) for item in value)
    if type(value) is dict:
        return {key: _replace(item, replaced) for key, item in value.items()}
    return value
