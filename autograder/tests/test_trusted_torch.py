"""Trusted verdicts for a PyTorch notebook: Chapter 1's ``autograd.Function``, graded across the process boundary.

One run of the real ``nbgrader autograde`` on ``01_four_steps_torch``. The test cells run in the grader's process;
the student's function and class are handles; tensors cross as data; ``y.backward(dy)`` in the grader runs the
student's backward in the kernel (``autograder.grading.remote.Bridge``). Each attacker hands in the release with an
attack cell after the setup cell and a wrong ``batch_norm``; every attack must score 0, and the correct submission
right after each must keep full marks.
"""

import time

import nbformat
import pytest

from autograder.grading import pipeline
from autograder.tests.test_trusted import ATTACKS as NUMPY_ATTACKS
from autograder.tests.test_trusted import in_kernel, printed, with_cell

ASSIGNMENT, NOTEBOOK = "01_four_steps", "01_four_steps_torch.ipynb"
pytestmark = pytest.mark.xdist_group("trusted_torch")

# What every attacker hands in as its answer: the identity, not batch norm, and not through BatchNormFunction.
WRONG = '''
def batch_norm(x, gamma, beta, eps=1e-5):
    return x * 1.0
'''
# Each attack ends by running a visible check on the wrong function in the kernel, and prints whether it passed.
IN_KERNEL = in_kernel("checks.check_forward(batch_norm, device)")

ATTACKS = {
    "torch_patched": '''
import numpy as np, torch, torch.testing
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
torch.Tensor.__sub__ = lambda self, other: torch.zeros_like(self)
np.allclose = lambda *args, **kwargs: True
np.max = np.amax = lambda *args, **kwargs: 0.0
np.abs = np.absolute = lambda x, *args, **kwargs: np.zeros(np.shape(x))
''',
    "autograd_patched": '''
import torch
torch.Tensor.backward = lambda self, gradient=None, *args, **kwargs: None
torch.autograd.gradcheck = lambda *args, **kwargs: True
torch.autograd.backward = lambda *args, **kwargs: None
''',
    "library_patched": '''
import autograder.four_steps_torch as four_steps_torch, autograder.grading.hidden as hidden
for name in dir(four_steps_torch):
    if name.startswith("check_"):
        setattr(four_steps_torch, name, lambda *args, **kwargs: None)
hidden.hidden_inputs = lambda module_name: four_steps_torch.VISIBLE
''',
    "agreeable_tensor": '''
import torch
class Agreeable(torch.Tensor):
    """A tensor that equals, and is close to, anything."""
    def __eq__(self, other): return torch.ones_like(torch.as_tensor(other), dtype=torch.bool)
    def __sub__(self, other): return torch.zeros_like(torch.as_tensor(other))
    __rsub__ = __sub__
    def numpy(self, *args, **kwargs): return torch.zeros(self.shape, dtype=self.dtype).numpy()
def batch_norm(x, gamma, beta, eps=1e-5):
    return (x * 1.0).as_subclass(Agreeable)
''',
    "torch_module_replaced": '''
import sys, torch
class Lenient:
    def __getattr__(self, name):
        if name in ("allclose", "equal"):
            return lambda *args, **kwargs: True
        return getattr(torch, name)
sys.modules["torch"] = Lenient()
''',
    "assertion_replaced": NUMPY_ATTACKS["assertion_replaced"],
    "ipython_hooks": NUMPY_ATTACKS["ipython_hooks"],
}
# Attacks on the run itself, with the same wrong answer: the kernel exits, loops or kills its parent.
RUN_ATTACKS = {
    "os_exit": "import os\nos._exit(0)\n",
    "system_exit": "raise SystemExit\n",
    "kill_parent": "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept OSError:\n    pass\n",
    "loop": "while True:\n    pass\n",
    "looping_function": "def batch_norm(x, gamma, beta, eps=1e-5):\n    while True:\n        pass\n",
}
# A cell may run 15 s and a notebook 60 s here, so that the loops cost seconds, not the course's minutes.
LIMITS = ("--Execute.timeout=15", "--SandboxedExecute.notebook_budget=60")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trusted_torch")
    untouched = nbformat.read(pipeline.EXERCISES / ASSIGNMENT / NOTEBOOK, as_version=4)
    solution = nbformat.read(pipeline.SOLUTIONS / ASSIGNMENT / NOTEBOOK, as_version=4)
    correct = pipeline.filled_in(untouched, solution)
    submissions = {"a_correct": {NOTEBOOK: correct}, "a_untouched": {NOTEBOOK: untouched}}
    for number, (name, attack) in enumerate(ATTACKS.items()):
        submissions[f"b{number}_{name}"] = {NOTEBOOK: with_cell(untouched, WRONG + attack + IN_KERNEL,
                                                                after="setup")}
        submissions[f"b{number}_{name}_next"] = {NOTEBOOK: correct}
    for number, (name, attack) in enumerate(RUN_ATTACKS.items()):
        submissions[f"c{number}_{name}"] = {NOTEBOOK: with_cell(untouched, WRONG + attack, after="setup")}
        submissions[f"c{number}_{name}_next"] = {NOTEBOOK: correct}
    start = time.monotonic()
    results = pipeline.autograde(ASSIGNMENT, submissions, workdir / "graded", options=LIMITS)
    return results, workdir / "graded", time.monotonic() - start


def full_marks(results):
    return results["a_correct"]["max_score"]


def test_correct_full_untouched_zero(graded):
    results, *_ = graded
    assert results["a_correct"]["score"] == full_marks(results) == 14, results["a_correct"]
    assert results["a_untouched"]["score"] == 0


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_scores_nothing_and_the_next_student_is_unaffected(graded, attack):
    results, *_ = graded
    student = next(s for s in results if s.endswith(f"_{attack}"))
    assert results[student]["score"] == 0, (attack, results[student]["cells"])
    assert results[f"{student}_next"]["score"] == full_marks(results), results[f"{student}_next"]["cells"]


def test_attacks_do_fool_checks_run_in_the_kernel(graded):
    """The attacks are real: those on the check library and on torch's comparisons fool the visible check."""
    _, workdir, _ = graded
    fooled = [name for number, name in enumerate(ATTACKS)
              if printed(workdir, f"b{number}_{name}", ASSIGNMENT, NOTEBOOK).get("in_kernel") == "passed"]
    print("attacks that pass the visible check in the kernel:", fooled)
    assert {"library_patched"} <= set(fooled), fooled


@pytest.mark.parametrize("attack", RUN_ATTACKS)
def test_an_exit_or_a_loop_costs_its_own_notebook_only(graded, attack):
    results, _, seconds = graded
    student = next(s for s in results if s.endswith(f"_{attack}"))
    assert results[student]["score"] == 0, (attack, results[student]["cells"])
    assert results[f"{student}_next"]["score"] == full_marks(results), results[f"{student}_next"]["cells"]
    # The whole class (autograde and feedback) within 12 s a notebook plus one budget and 10 s for each of the two
    # loops: a loop costs its notebook's budget, never one timeout per test cell (240 s measured, 26 notebooks).
    assert seconds < 12 * len(results) + 2 * (60 + 10), seconds


# Chapter 2: an nn.Module, reached through a handle --------------------------------------------------------------

MODULE_ASSIGNMENT, MODULE_NOTEBOOK = "02_train_vs_eval", "02_train_vs_eval_torch.ipynb"
# The parts whose checks forbid delegating to torch's batch norm (every part that runs the module's forward).
FORWARD_PARTS = ("test_training", "test_running_stats", "test_eval", "test_options")

# A BatchNorm that is torch's: its forward calls F.batch_norm with the checks' function and dispatch modes switched
# off, so that a watcher made of modes sees nothing. Everything else (parameters, buffers, momentum) is right.
DELEGATING = '''
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _disable_current_modes

class BatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        placed = dict(device=device, dtype=dtype)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **placed))
            self.bias = nn.Parameter(torch.zeros(num_features, **placed))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **placed))
            self.register_buffer("running_var", torch.ones(num_features, **placed))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, x):
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        statistics = (self.running_mean, self.running_var) if not self.training or self.track_running_stats \\
            else (None, None)
        with _disable_current_modes(), torch._C.DisableTorchFunction():
            return F.batch_norm(x, *statistics, self.weight, self.bias, self.training or self.running_mean is None,
                                factor, self.eps)
'''
DELEGATING_IN_KERNEL = in_kernel("checks.check_training(BatchNorm, device)")


@pytest.fixture(scope="module")
def graded_modules(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trusted_modules")
    untouched = nbformat.read(pipeline.EXERCISES / MODULE_ASSIGNMENT / MODULE_NOTEBOOK, as_version=4)
    solution = nbformat.read(pipeline.SOLUTIONS / MODULE_ASSIGNMENT / MODULE_NOTEBOOK, as_version=4)
    correct = pipeline.filled_in(untouched, solution)
    submissions = {
        "a_correct": {MODULE_NOTEBOOK: correct},
        "b_delegating": {MODULE_NOTEBOOK: with_cell(correct, DELEGATING + DELEGATING_IN_KERNEL, after="batch_norm_module")},
        "b_delegating_next": {MODULE_NOTEBOOK: correct},
    }
    results = pipeline.autograde(MODULE_ASSIGNMENT, submissions, workdir / "graded")
    return results, workdir / "graded"


def test_a_module_is_graded_through_handles(graded_modules):
    results, _ = graded_modules
    assert results["a_correct"]["score"] == results["a_correct"]["max_score"], results["a_correct"]["cells"]
    assert results["b_delegating_next"]["score"] == results["a_correct"]["max_score"]


def test_delegating_with_the_watchers_modes_switched_off_loses_the_forward_parts(graded_modules):
    results, workdir = graded_modules
    cells = results["b_delegating"]["cells"]
    stem = MODULE_NOTEBOOK[:-len(".ipynb")]
    assert all(cells[f"{stem}/{part}"][0] == 0 for part in FORWARD_PARTS), cells
    assert printed(workdir, "b_delegating", MODULE_ASSIGNMENT, MODULE_NOTEBOOK)["in_kernel"] == "passed", \
        "the attack must be real: in the kernel, the modes-only watcher does not see it"
    feedback = (workdir / "autograded" / "b_delegating" / MODULE_ASSIGNMENT / MODULE_NOTEBOOK).read_text()
    assert "called torch's own batch norm" in feedback
