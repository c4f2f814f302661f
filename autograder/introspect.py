"""What a check may know about a student's class or function, as data: the same facts in the kernel and outside it.

A check that asks whether ``BatchNormFunction`` subclasses ``torch.autograd.Function`` or defines its own
``@staticmethod forward`` cannot use ``issubclass`` when the class lives in another process (the student's kernel,
reached through a handle). :func:`describe` gives those facts as plain data; the grader's server runs this same
function in the kernel (this file has no import from the course, so its source can be sent there), and
:func:`facts` asks a handle for them, or computes them here for an object of this process.
"""


def describe(value):
    """``{"type", "is_class", "mro", "code"}``: the type's name; each class of the MRO of ``value`` (a class) or
    of its type (any other object) as ``[module, qualname, {member: kind}]`` (members without dunder names; kind
    ``staticmethod``, ``classmethod``, ``function`` or ``other``); for a function, ``[file name, qualified name]``
    of its code."""
    is_class = isinstance(value, type)
    found = {"type": type(value).__name__, "is_class": is_class, "mro": [], "code": None}
    for klass in (value if is_class else type(value)).__mro__:
        members = {name: _kind(member) for name, member in vars(klass).items()
                   if isinstance(name, str) and not name.startswith("__")} if is_class else {}
        found["mro"].append([str(klass.__module__), str(klass.__qualname__), members])
    code = getattr(value, "__code__", None)
    if code is not None:
        found["code"] = [str(code.co_filename), str(code.co_qualname)]
    return found


def _kind(member):
    for kind in (staticmethod, classmethod):
        if isinstance(member, kind):
            return kind.__name__
    return "function" if callable(member) else "other"


def facts(value):
    """:func:`describe` of ``value``, asked of the student's kernel when ``value`` is a handle to an object there."""
    ask = getattr(type(value), "describe_in_kernel", None)
    return ask(value) if ask is not None else describe(value)


def subclasses(found, module, qualname):
    """Whether the described class (or object's type) has ``module.qualname`` (e.g. ``torch.autograd.function``,
    ``Function``) in its MRO."""
    return any(entry[0] == module and entry[1] == qualname for entry in found["mro"])


def same_class(value, klass):
    """``type(value) is klass``, also when the object or the class is the student's, in the kernel."""
    found = facts(value)
    return not found["is_class"] and found["mro"][0][:2] == facts(klass)["mro"][0][:2]


def is_instance(value, *classes):
    """``isinstance(value, classes)``, also when the object or a class is the student's, in the kernel: a class
    is named by its module and qualified name."""
    found = facts(value)
    if found["is_class"]:
        return False
    for klass in classes:
        module, qualname, _members = facts(klass)["mro"][0]
        if subclasses(found, module, qualname):
            return True
    return False
