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
"""

import builtins
import secrets
import warnings
from pathlib import Path

import numpy as np

from . import remote_server
from .remote_server import ProtocolError, decode, dumps, encode, loads

SERVER_SOURCE = Path(remote_server.__file__).read_text()
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


class Remote:
    """The student's kernel, reached through ``ask``."""

    def __init__(self, ask, timeout):
        self._ask, self.timeout = ask, timeout
        self.exchange = None  # exchange(request text, timeout) -> answer text, while the kernel serves
        self._handles, self._classes = {}, {}
        self._name = f"_autograder_remote_{secrets.token_hex(8)}"
        install = (f"def {self._name}():\n"
                   f"    namespace = {{'__name__': '_autograder_remote'}}\n"
                   f"    exec(compile({SERVER_SOURCE!r}, {remote_server.SERVER_FILENAME!r}, 'exec'), namespace)\n"
                   f"    return namespace['serve'](globals())\n"
                   f"{self._name} = {self._name}()\n")
        # The answer's text is IPython's repr, which the student may have changed: whether the server is there
        # is proved by its connecting when the grader serves a test cell.
        self._ask(f"type({self._name}).__name__", self.timeout, code=install)

    # Operations --------------------------------------------------------------------------------

    def global_value(self, name):
        return self.request(["global", name])

    def call(self, handle, arguments, keywords):
        encoded = [self.encode(a) for a in arguments]
        returned, after = self.request(["call", handle._number, encoded,
                                        [[k, self.encode(v)] for k, v in keywords.items()]], with_arguments=True)
        for argument, value in zip(arguments, after):
            # The student's function changed an array argument in place: change ours the same way.
            if isinstance(argument, np.ndarray) and isinstance(value, np.ndarray) and value.shape == argument.shape \
                    and argument.flags.writeable and not np.array_equal(argument, value, equal_nan=True):
                argument[...] = value
        return returned

    @property
    def server_name(self):
        return self._name

    def request(self, request, with_arguments=False):
        if self.exchange is None:
            raise ProtocolError("the kernel is not serving the grader")
        text = self.exchange(dumps(request), self.timeout)
        try:
            answer = loads(text, ANSWER_LIMIT)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
            raise ProtocolError(f"the kernel's answer is not one of the protocol: {error}") from None
        if not isinstance(answer, list) or len(answer) < 2:
            raise ProtocolError("the kernel's answer is not one of the protocol")
        *outcome, said = answer
        self._warn(said)
        if outcome[0] == "raised" and len(outcome) == 5:
            raise self._exception(*outcome[1:])
        if outcome[0] != "returned" or len(outcome) != 3:
            raise ProtocolError("the kernel's answer is not one of the protocol")
        returned = decode(outcome[1], self._resolve)
        if with_arguments:
            return returned, [decode(value, self._resolve) for value in outcome[2]]
        return returned

    # Codec -------------------------------------------------------------------------------------

    def encode(self, value):
        def handle_of(item):
            if isinstance(item, Handle) and item._remote is self:
                return ["handle", item._number, type(item).__name__]
            raise TypeError(f"{type(item).__name__} cannot be passed to the student's code (only data and "
                            "objects that came from it)")
        return encode(value, handle_of)

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
    def _exception(type_name, message, where, text):
        for value in (type_name, message, where, text):
            if type(value) is not str:
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
