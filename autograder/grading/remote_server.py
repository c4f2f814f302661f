"""The data-only protocol between the trusted checks and the student's kernel, and the server that runs there.

Everything that crosses is a JSON text of tagged values::

    ["none"] ["bool", b] ["int", "12"] ["float", "0x1.8p+1"] ["complex", re, im] ["str", s]
    ["tuple", [...]] ["list", [...]] ["dict", [[key, value], ...]]
    ["array", dtype, shape, base64 bytes, is_scalar]
    ["tensor", dtype, shape, base64 bytes, device, requires_grad, grad_fn name or None,
     "tensor" or "parameter", its .grad (a tensor form) or None]
    ["device", "cuda:0"] ["dtype", "float32"]  torch.device and torch.dtype
    ["iterator", [...]]                      a list or tuple iterator (consumed), as an iterator
    ["handle", number, type name]            an object that stays in the kernel
    ["raised", type name, message, where, traceback text, frames]

No pickle and no ``eval``: decoding builds only these values (arrays of numeric
dtypes through ``np.frombuffer``). A function, class or any other object stays
in the kernel and crosses as a handle; calling a handle, reading or setting an
attribute of one, describing one (:func:`autograder.introspect.describe`) and
running the backward pass of a call's outputs are the server's only operations.

Torch tensors cross as their data, dtype, device and whether they require a
gradient. A call whose result holds tensors with an autograd history keeps that
history in the kernel (a *graph*, numbered in the answer); the grader's
``backward`` request sends the gradients of those outputs and receives the
gradients of the call's tensor arguments, so that autograd runs across the
boundary (:class:`autograder.grading.remote.Bridge`).

The grader imports this file for the codec, and sends its source to the kernel
(after that of ``autograder/introspect.py``, its one import from the course),
where :func:`serve` answers requests.
"""

import base64
import collections
import json
import math
import re
import sys

import numpy as np

try:  # in the kernel, the grader defines these from the sources of autograder/introspect.py, watch.py and processes.py
    describe, NAMES, NormalizationWatcher, normalizations_in_graph, run_in_group  # noqa: B018
except NameError:
    from autograder.introspect import describe
    from autograder.processes import run_in_group
    from autograder.watch import NAMES, NormalizationWatcher, normalizations_in_graph

SERVER_FILENAME = "<autograder-remote>"  # the server's code objects, as compiled in the kernel
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")
TENSOR_DTYPES = (*DTYPES, "bfloat16")
DEVICE = re.compile(r"(cpu|cuda(:[0-9]{1,2})?)")
MAX_DEPTH = 32
MAX_ITEMS = 100_000  # of one iteration
MODULES = ("torch", "torch.nn", "torch.nn.functional")  # what the grader may import in the kernel


class ProtocolError(ValueError):
    """What came from the kernel is not a value of the protocol."""


# Encoding ----------------------------------------------------------------------------------

def encode(value, handle_of, depth=0, tensors=None):
    """The tagged form of ``value``; objects that are not data become ``handle_of(object)``.

    Every tensor encoded is appended to ``tensors`` (a list, when given), in the order of the encoding.
    """
    if depth > MAX_DEPTH:
        return handle_of(value)
    nested = (lambda item: encode(item, handle_of, depth + 1, tensors))
    if value is None:
        return ["none"]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int) and type(value) is int:
        return ["int", str(value)]
    if type(value) is float:
        return ["float", value.hex()]
    if type(value) is complex:
        return ["complex", value.real.hex(), value.imag.hex()]
    if type(value) is str:
        return ["str", value]
    if type(value) in (tuple, list):
        return [type(value).__name__, [nested(item) for item in value]]
    if type(value) in (dict, collections.OrderedDict) and all(type(key) in (str, int) for key in value):
        return ["dict", [[nested(key), nested(item)] for key, item in value.items()]]
    if type(value) in (type(iter([])), type(iter(()))):
        return ["iterator", [nested(item) for item in value]]
    if _is_plain_tensor(value):
        if tensors is not None:
            tensors.append(value)
        return _tensor_form(value)
    torch = sys.modules.get("torch")
    if torch is not None and type(value) is getattr(torch, "device", None):
        return ["device", str(value)]
    if torch is not None and type(value) is getattr(torch, "dtype", None):
        return ["dtype", str(value).removeprefix("torch.")]
    if isinstance(value, (np.ndarray, np.generic)) and type(value) in (np.ndarray, *_SCALARS) \
            and value.dtype.name in DTYPES:
        array = np.ascontiguousarray(value)
        return ["array", array.dtype.name, list(array.shape), base64.b64encode(array.tobytes()).decode("ascii"),
                isinstance(value, np.generic)]
    return handle_of(value)


_SCALARS = tuple(np.dtype(name).type for name in DTYPES)


def _is_plain_tensor(value):
    """A torch.Tensor or an nn.Parameter, not a subclass of the student's (which stays in the kernel)."""
    torch = sys.modules.get("torch")
    return torch is not None and type(value) in (getattr(torch, "Tensor", None), getattr(torch.nn, "Parameter", None))


def _tensor_form(tensor, with_grad=True):
    torch = torch_module()
    data = tensor.detach().to("cpu").contiguous()
    dtype = str(data.dtype).removeprefix("torch.")
    raw = data.view(torch.int16) if dtype == "bfloat16" else data
    node = tensor.grad_fn
    grad = tensor.grad if with_grad and tensor.is_leaf else None
    return ["tensor", dtype, list(data.shape), base64.b64encode(raw.numpy().tobytes()).decode("ascii"),
            str(tensor.device), bool(tensor.requires_grad), None if node is None else type(node).__name__,
            "parameter" if type(tensor) is torch.nn.Parameter else "tensor",
            _tensor_form(grad, with_grad=False) if _is_plain_tensor(grad) else None]


def torch_module():
    import torch
    return torch


def decode(tagged, resolve, depth=0, tensors=None):
    """The value of a tagged form; ``resolve(number, type_name)`` gives what a handle stands for.

    Every tensor decoded is appended to ``tensors`` (a list, when given) as ``(tensor, grad_fn name)``.
    """
    if depth > MAX_DEPTH or not isinstance(tagged, list) or not tagged or not isinstance(tagged[0], str):
        raise ProtocolError(f"not a value of the protocol: {str(tagged)[:80]}")
    tag, rest = tagged[0], tagged[1:]
    nested = (lambda item: decode(item, resolve, depth + 1, tensors))
    try:
        if tag == "none":
            return None
        if tag == "bool":
            return _typed(rest[0], bool)
        if tag == "int":
            return int(_typed(rest[0], str))
        if tag == "float":
            return float.fromhex(_typed(rest[0], str))
        if tag == "complex":
            return complex(float.fromhex(_typed(rest[0], str)), float.fromhex(_typed(rest[1], str)))
        if tag == "str":
            return _typed(rest[0], str)
        if tag in ("tuple", "list"):
            items = [nested(item) for item in _typed(rest[0], list)]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            pairs = [(nested(key), nested(item)) for key, item in _typed(rest[0], list)]
            if any(type(key) not in (str, int) for key, _item in pairs):
                raise ProtocolError("a dict key that is not a str or an int")
            return dict(pairs)
        if tag == "array":
            return _array(*rest)
        if tag == "tensor":
            tensor, node = _tensor(*rest)
            if tensors is not None:
                tensors.append((tensor, node))
            return tensor
        if tag == "device":
            if not DEVICE.fullmatch(_typed(rest[0], str)):
                raise ProtocolError(f"device {rest[0]!r} is not allowed")
            return torch_module().device(rest[0])
        if tag == "dtype":
            if _typed(rest[0], str) not in TENSOR_DTYPES:
                raise ProtocolError(f"dtype {rest[0]!r} is not allowed")
            return getattr(torch_module(), rest[0])
        if tag == "iterator":
            return iter([nested(item) for item in _typed(rest[0], list)])
        if tag == "handle":
            return resolve(_typed(rest[0], int), _typed(rest[1], str))
    except (IndexError, TypeError, ValueError, OverflowError) as error:
        raise ProtocolError(f"a malformed {tag!r}: {error}") from None
    raise ProtocolError(f"unknown tag {tag!r}")


def _typed(value, kind):
    if type(value) is not kind:
        raise ProtocolError(f"expected a {kind.__name__}, got {type(value).__name__}")
    return value


def _array(dtype, shape, data, is_scalar):
    if _typed(dtype, str) not in DTYPES:
        raise ProtocolError(f"dtype {dtype!r} is not allowed")
    shape = tuple(_typed(n, int) for n in _typed(shape, list))
    if any(n < 0 for n in shape):
        raise ProtocolError("a negative dimension")
    raw = base64.b64decode(_typed(data, str), validate=True)
    if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise ProtocolError(f"{len(raw)} bytes for shape {shape} of {dtype}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array[()] if _typed(is_scalar, bool) else array


def _tensor(dtype, shape, data, device, requires_grad, node, kind, grad):
    """A tensor from its tagged form, and the name of its autograd node in the kernel (None: no history)."""
    torch = torch_module()
    if kind not in ("tensor", "parameter"):
        raise ProtocolError(f"a tensor of kind {kind!r}")
    if _typed(dtype, str) not in TENSOR_DTYPES:
        raise ProtocolError(f"dtype {dtype!r} is not allowed")
    if not DEVICE.fullmatch(_typed(device, str)):
        raise ProtocolError(f"device {device!r} is not allowed")
    if node is not None and not (type(node) is str and node.isidentifier()):
        raise ProtocolError("a malformed autograd node name")
    if any(_typed(n, int) < 0 for n in _typed(shape, list)):
        raise ProtocolError("a negative dimension")
    size = [math.prod(shape)]
    if dtype == "bfloat16":
        flat = torch.from_numpy(_array("int16", size, data, False)).view(torch.bfloat16)
    else:
        flat = torch.from_numpy(_array(dtype, size, data, False))
    tensor = flat.reshape(shape).to(device)
    differentiable = tensor.is_floating_point() or tensor.is_complex()
    if kind == "parameter":
        tensor = torch.nn.Parameter(tensor, requires_grad=_typed(requires_grad, bool) and differentiable)
    elif _typed(requires_grad, bool) and differentiable:
        tensor.requires_grad_(True)
    if grad is not None:
        if not (isinstance(grad, list) and len(grad) == 9 and grad[0] == "tensor" and grad[8] is None):
            raise ProtocolError("a malformed gradient")
        gradient, _ = _tensor(*grad[1:])
        if gradient.shape != tensor.shape or gradient.dtype != tensor.dtype or gradient.device != tensor.device:
            raise ProtocolError("a gradient unlike its tensor")
        tensor.grad = gradient
    return tensor, node


def dumps(tagged):
    return json.dumps(tagged, separators=(",", ":"), allow_nan=False)


def loads(text, limit):
    if type(text) is not str or len(text) > limit:
        raise ProtocolError(f"an answer of more than {limit} characters, or not a text")
    return json.loads(text)


# The server, in the kernel -----------------------------------------------------------------

class Server:
    """Answers the grader's requests on the kernel's objects: look up a global, call, get or set an attribute."""

    def __init__(self, namespace):
        self.namespace = namespace
        self.objects = {}  # handle number -> object; kept alive while the kernel runs
        self.numbers = {}  # id(object) -> handle number, so that one object is always one handle
        self.graphs = {}  # graph number -> (the call's tensor arguments that require grad, its outputs with history)
        self.seen = []  # torch's normalizations seen while answering the current request

    def handle_of(self, value):
        number = self.numbers.get(id(value))
        if number is None or self.objects[number] is not value:
            number = len(self.objects) + 1
            self.objects[number] = value
            self.numbers[id(value)] = number
        return ["handle", number, type(value).__name__]

    def resolve(self, number, _type_name):
        if number not in self.objects:
            raise ProtocolError(f"no object {number}")
        return self.objects[number]

    def answer(self, request_text):
        """The JSON answer to one JSON request: ``["returned", value, arguments after]`` or ``["raised", ...]``."""
        import warnings
        seen = self.seen = []
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            try:
                request = json.loads(request_text)
                with _watching(seen, request[0] == "call" and request[-1] is True):
                    outcome = self._perform(request)
            except BaseException as error:  # the student's exception, KeyboardInterrupt of a timeout included
                outcome = self._raised(error)
        said = [[w.category.__name__, str(w.message), str(w.filename), int(w.lineno or 0)] for w in recorded[:10]]
        return dumps(outcome + [said, [str(call) for call in seen[:100]]])

    def _perform(self, request):
        operation, target = request[0], request[1]
        if operation == "global":
            if target not in self.namespace:
                raise NameError(f"name {target!r} is not defined")
            return ["returned", encode(self.namespace[target], self.handle_of), []]
        if operation == "module":
            if target not in MODULES:
                raise ProtocolError(f"module {target!r} is not one the grader may import")
            import importlib
            return ["returned", self.handle_of(importlib.import_module(target)), []]
        if operation == "backward":
            if target not in self.graphs:
                raise ProtocolError(f"no graph {target}")
            return self._backward(target, request[2])
        subject = self.resolve(target, "")
        if operation == "getattr":
            return ["returned", encode(getattr(subject, request[2]), self.handle_of), []]
        if operation == "setattr":
            setattr(subject, request[2], decode(request[3], self.resolve))
            return ["returned", ["none"], []]
        if operation == "describe":
            return ["returned", encode(describe(subject), self.handle_of), []]
        if operation == "iterate":
            items = []
            for item in subject:
                items.append(item)
                if len(items) > MAX_ITEMS:
                    raise ValueError(f"more than {MAX_ITEMS} items")
            return ["returned", encode(items, self.handle_of), []]
        if operation == "getitem":
            return ["returned", encode(subject[decode(request[2], self.resolve)], self.handle_of), []]
        if operation == "group":
            outcome = run_in_group(subject, decode(request[2], self.resolve), float(request[3]))
            return ["returned", encode(outcome, self.handle_of), []]
        if operation == "len":
            return ["returned", encode(len(subject), self.handle_of), []]
        if operation == "assign":
            torch = torch_module()
            with torch.no_grad():
                getattr(subject, request[2]).copy_(torch.as_tensor(decode(request[3], self.resolve)))
            return ["returned", ["none"], []]
        if operation == "call":
            return self._call(subject, *request[2:])
        raise ProtocolError(f"unknown operation {operation!r}")

    def _call(self, function, arguments, keywords, grad_enabled=True, watched=False):
        received = []
        arguments = [decode(a, self.resolve, tensors=received) for a in arguments]
        keywords = {name: decode(value, self.resolve, tensors=received) for name, value in keywords}
        leaves = [tensor for tensor, _ in received if tensor.requires_grad]  # before the student can change them
        with _grad_mode(grad_enabled):
            returned = function(*arguments, **keywords)
        outputs = []
        answer = encode(returned, self.handle_of, tensors=outputs)
        outputs = [tensor for tensor in outputs if tensor.grad_fn is not None]
        graph = 0
        if outputs:
            if watched:
                self.seen.extend(normalizations_in_graph(outputs))
            graph = len(self.graphs) + 1
            self.graphs[graph] = (leaves, outputs)
        # Arrays and tensors passed by value come back as they are now, so that an in-place change is seen.
        after = [encode(a, self.handle_of) if isinstance(a, np.ndarray) or _is_plain_tensor(a) else ["none"]
                 for a in arguments]
        return ["returned", answer, after, graph]

    def _backward(self, graph, gradients):
        """Backpropagate ``gradients`` (of a call's outputs) through the kernel: the student's backward runs."""
        torch = torch_module()
        arguments, outputs = self.graphs[graph]
        gradients = [decode(g, self.resolve) for g in gradients]
        pairs = [(output, gradient) for output, gradient in zip(outputs, gradients) if gradient is not None]
        for argument in arguments:
            argument.grad = None
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs], retain_graph=True)
        return ["returned", encode([a.grad for a in arguments], self.handle_of), []]

    def _raised(self, error):
        import traceback
        frames = traceback.extract_tb(error.__traceback__)[1:]  # without the server's own frame
        student = [frame for frame in frames if frame.filename != SERVER_FILENAME]
        raw, frame = [], error.__traceback__  # each frame's file and qualified name, for passed_through
        while frame is not None:
            code = frame.tb_frame.f_code
            if code.co_filename != SERVER_FILENAME:
                raw.append([code.co_filename, code.co_qualname])
            frame = frame.tb_next
        for frame in student:  # "Cell In[6]", as IPython names a notebook cell in its tracebacks
            cell = _cell_numbers().get(frame.filename)
            frame.filename = f"Cell In[{cell}]" if cell is not None else frame.filename
        where = student[-1].name if student else "your code"
        text = "".join(traceback.format_list(student[-8:])) if student else ""
        return ["raised", type(error).__name__, str(error)[:2000], where, text[-6000:], raw[-50:]]

    def serve_socket(self, path):
        """Connect to the grader's unix socket at ``path`` and answer its requests until it sends ``"stop"``.

        Runs in the kernel's main thread, as a cell would: an interrupt from the grader (a call that took too
        long) reaches the student's code as KeyboardInterrupt, and the answer says so.
        """
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(path)
            while True:
                request = receive(connection)
                if request == "stop":
                    return "stopped"
                send(connection, self.answer(request))


def send(connection, text):
    """One length-prefixed message."""
    data = text.encode()
    connection.sendall(len(data).to_bytes(8, "big") + data)


def receive(connection, limit=1 << 30):
    """One length-prefixed message, as text."""
    size = int.from_bytes(_exactly(connection, 8), "big")
    if size > limit:
        raise ProtocolError(f"a message of {size} bytes, more than {limit}")
    return _exactly(connection, size).decode()


def _exactly(connection, size):
    chunks, remaining = [], size
    while remaining:
        chunk = connection.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _watching:
    """While a call the grader watches runs, torch's normalizations that run are appended to ``seen``.

    Three witnesses, as a student could silence one: the function and dispatch modes of the course's watcher; the
    profiler, which records aten operators below Python (modes switched off around a call do not hide them); and,
    after the call, the autograd graph of its outputs (:func:`normalizations_in_graph`).
    """

    def __init__(self, seen, watched):
        self.seen, self.watched, self.watcher, self.profiler = seen, watched, None, None

    def __enter__(self):
        if self.watched and "torch" in sys.modules:
            from torch.autograd.profiler import profile
            self.profiler = profile()
            self.profiler.__enter__()
            self.watcher = NormalizationWatcher().__enter__()

    def __exit__(self, *exc):
        if self.watcher is not None:
            self.watcher.__exit__(*exc)
            self.seen.extend(self.watcher.calls)
        if self.profiler is not None:
            try:
                self.profiler.__exit__(*exc)
                names = {event.name for event in self.profiler.function_events}
            except Exception:  # noqa: BLE001 the student's code stopped the grader's profiler
                names = {"the profiler stopped by your code (batch_norm, layer_norm, group_norm unknown)"}
            self.seen.extend(sorted(name for name in names if any(n in name for n in NAMES)))
        return False


def _grad_mode(enabled):
    """The grader's gradient mode (``torch.set_grad_enabled``) for a call, when torch is loaded."""
    import contextlib
    torch = sys.modules.get("torch")
    return contextlib.nullcontext() if torch is None else torch.set_grad_enabled(bool(enabled))


def _cell_numbers():
    """IPython's map from a cell's compiled file name to its execution count ({} outside IPython)."""
    try:
        from IPython import get_ipython
        return dict(get_ipython().compile._filename_map)
    except Exception:  # noqa: BLE001 not in IPython, or an IPython without the map
        return {}


def serve(namespace):
    """A server on ``namespace`` (the kernel's user namespace); its ``answer`` is what the grader calls."""
    return Server(namespace)
