"""The data-only protocol between the trusted checks and the student's kernel, and the server that runs there.

Everything that crosses is a JSON text of tagged values::

    ["none"] ["bool", b] ["int", "12"] ["float", "0x1.8p+1"] ["complex", re, im] ["str", s]
    ["tuple", [...]] ["list", [...]] ["dict", [[key, value], ...]]
    ["array", dtype, shape, base64 bytes, is_scalar]
    ["handle", number, type name]            an object that stays in the kernel
    ["raised", type name, message, where, traceback text]

No pickle and no ``eval``: decoding builds only these values (arrays of numeric
dtypes through ``np.frombuffer``). A function, class or any other object stays
in the kernel and crosses as a handle; calling a handle, reading or setting an
attribute of one are the server's only operations.

This file has no import from the course: the grader imports it for the codec,
and sends its source to the kernel, where :func:`serve` answers requests.
"""

import base64
import json
import math

import numpy as np

SERVER_FILENAME = "<autograder-remote>"  # the server's code objects, as compiled in the kernel
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")
MAX_DEPTH = 32


class ProtocolError(ValueError):
    """What came from the kernel is not a value of the protocol."""


# Encoding ----------------------------------------------------------------------------------

def encode(value, handle_of, depth=0):
    """The tagged form of ``value``; objects that are not data become ``handle_of(object)``."""
    if depth > MAX_DEPTH:
        return handle_of(value)
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
        return [type(value).__name__, [encode(item, handle_of, depth + 1) for item in value]]
    if type(value) is dict and all(type(key) in (str, int) for key in value):
        return ["dict", [[encode(key, handle_of, depth + 1), encode(item, handle_of, depth + 1)]
                         for key, item in value.items()]]
    if isinstance(value, (np.ndarray, np.generic)) and type(value) in (np.ndarray, *_SCALARS) \
            and value.dtype.name in DTYPES:
        array = np.ascontiguousarray(value)
        return ["array", array.dtype.name, list(array.shape), base64.b64encode(array.tobytes()).decode("ascii"),
                isinstance(value, np.generic)]
    return handle_of(value)


_SCALARS = tuple(np.dtype(name).type for name in DTYPES)


def decode(tagged, resolve, depth=0):
    """The value of a tagged form; ``resolve(number, type_name)`` gives what a handle stands for."""
    if depth > MAX_DEPTH or not isinstance(tagged, list) or not tagged or not isinstance(tagged[0], str):
        raise ProtocolError(f"not a value of the protocol: {str(tagged)[:80]}")
    tag, rest = tagged[0], tagged[1:]
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
            items = [decode(item, resolve, depth + 1) for item in _typed(rest[0], list)]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            pairs = [(decode(key, resolve, depth + 1), decode(item, resolve, depth + 1))
                     for key, item in _typed(rest[0], list)]
            if any(type(key) not in (str, int) for key, _item in pairs):
                raise ProtocolError("a dict key that is not a str or an int")
            return dict(pairs)
        if tag == "array":
            return _array(*rest)
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
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            try:
                outcome = self._perform(json.loads(request_text))
            except BaseException as error:  # the student's exception, KeyboardInterrupt of a timeout included
                outcome = self._raised(error)
        said = [[w.category.__name__, str(w.message), str(w.filename), int(w.lineno or 0)] for w in recorded[:10]]
        return dumps(outcome + [said])

    def _perform(self, request):
        operation, target = request[0], request[1]
        if operation == "global":
            if target not in self.namespace:
                raise NameError(f"name {target!r} is not defined")
            return ["returned", encode(self.namespace[target], self.handle_of), []]
        subject = self.resolve(target, "")
        if operation == "getattr":
            return ["returned", encode(getattr(subject, request[2]), self.handle_of), []]
        if operation == "setattr":
            setattr(subject, request[2], decode(request[3], self.resolve))
            return ["returned", ["none"], []]
        if operation == "call":
            arguments = [decode(a, self.resolve) for a in request[2]]
            keywords = {name: decode(value, self.resolve) for name, value in request[3]}
            returned = subject(*arguments, **keywords)
            # Arrays passed by value come back as they are now, so that an in-place change is seen.
            after = [encode(a, self.handle_of) if isinstance(a, np.ndarray) else ["none"] for a in arguments]
            return ["returned", encode(returned, self.handle_of), after]
        raise ProtocolError(f"unknown operation {operation!r}")

    def _raised(self, error):
        import traceback
        frames = traceback.extract_tb(error.__traceback__)[1:]  # without the server's own frame
        student = [frame for frame in frames if frame.filename != SERVER_FILENAME]
        for frame in student:  # "Cell In[6]", as IPython names a notebook cell in its tracebacks
            cell = _cell_numbers().get(frame.filename)
            frame.filename = f"Cell In[{cell}]" if cell is not None else frame.filename
        where = student[-1].name if student else "your code"
        text = "".join(traceback.format_list(student[-8:])) if student else ""
        return ["raised", type(error).__name__, str(error)[:2000], where, text[-6000:]]


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
