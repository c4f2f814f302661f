"""The delegation watcher: it sees torch's normalizations, and watching costs no import of torch's compiler.

Each test runs in a fresh interpreter, so that what the watch imports is not hidden by what other tests imported.
"""

import subprocess
import sys

WATCHED_CALL = """
import sys, torch, torch.nn.functional as F
from autograder.watch import NormalizationWatcher
x = torch.randn(8, 3)
with NormalizationWatcher() as watcher:
    F.batch_norm(x, None, None, training=True)
    (x - x.mean(0)).sum()
print("calls", sorted(set(watcher.calls)))
print("dynamo", "torch._dynamo" in sys.modules)
"""


def run(code):
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in completed.stdout.splitlines())


def test_a_watched_call_is_seen_and_imports_no_dynamo():
    """torch wraps a dispatch mode's __torch_dispatch__ to disable Dynamo, importing torch._dynamo (about 1.9 s) at
    the first call, in every kernel a check watches; the watcher opts out of that wrapper."""
    seen = run(WATCHED_CALL)
    assert "batch_norm" in seen["calls"], seen
    assert seen["dynamo"] == "False", "a watched call imported torch._dynamo (the dispatch mode lost its opt-out)"


def test_control_a_dispatch_mode_without_the_opt_out_imports_dynamo():
    """The cost the opt-out avoids is real in this torch: a plain dispatch mode imports torch._dynamo at its first call."""
    plain_mode = WATCHED_CALL.replace("from autograder.watch import NormalizationWatcher", """
from torch.utils._python_dispatch import TorchDispatchMode
class NormalizationWatcher(TorchDispatchMode):
    calls = []
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(str(func))
        return func(*args, **(kwargs or {}))
""")
    assert run(plain_mode)["dynamo"] == "True"
