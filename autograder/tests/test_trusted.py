"""Trusted verdicts: a NumPy notebook's test cells run in the grader's process, so code in the kernel cannot fool them.

One run of the real ``nbgrader autograde`` on Chapter 1's NumPy notebook. Each attacker hands in the release (every
function still raises NotImplementedError) with an attack cell after the setup cell: patched NumPy, a replaced
``AssertionError``, a fake ``numpy`` module, a patched or shadowed check library, import hooks, IPython hooks, a
tampered grading server. Every attack must score 0, and the correct submission right after each must score 17.
"""

import json
import textwrap

import nbformat
import pytest

from autograder.grading import pipeline

ASSIGNMENT, NOTEBOOK = "01_four_steps", "01_four_steps_numpy.ipynb"
FULL_MARKS = 17.0
pytestmark = pytest.mark.xdist_group("trusted")  # one worker builds the graded class, once

def in_kernel(check_call):
    """Code that runs a visible check in the kernel and prints whether it passed there (``RESULT in_kernel=``)."""
    return (f"\ntry:\n    {check_call}\n    print(\"RESULT in_kernel=passed\")\n"
            "except BaseException as error:\n    print(\"RESULT in_kernel=failed \" + type(error).__name__)\n")


# Each attack ends by running a visible check on a wrong function in the kernel, and prints whether it passed there.
IN_KERNEL = in_kernel("checks.check_batch_mean(lambda x: x[0])")

ATTACKS = {
    "numpy_patched": '''
import numpy as np, numpy.testing
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.shape(a), bool)
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
np.max = np.amax = lambda *args, **kwargs: 0.0
np.abs = np.absolute = lambda x, *args, **kwargs: np.zeros(np.shape(x))
np.where = lambda condition, *args: (np.array([], int),) * max(1, np.ndim(condition)) if not args else args[1]
def batch_mean(x):
    return np.zeros(x.shape[1])
''',
    "assertion_replaced": '''
import builtins, sys
class Quiet(Exception):
    pass
builtins.AssertionError = Quiet
import autograder.compare
autograder.compare.CheckFailure = Quiet
sys.excepthook = lambda *args: None
''',
    "numpy_module_replaced": '''
import sys, numpy
class Lenient:
    def __getattr__(self, name):
        if name in ("allclose", "array_equal"):
            return lambda *args, **kwargs: True
        return getattr(numpy, name)
sys.modules["numpy"] = Lenient()
''',
    "library_patched": '''
import sys, autograder, autograder.four_steps as four_steps, autograder.grading.hidden as hidden
for name in dir(four_steps):
    if name.startswith("check_"):
        setattr(four_steps, name, lambda *args, **kwargs: None)
hidden.hidden_inputs = lambda module_name: four_steps.VISIBLE
try:
    open(autograder.__file__, "a").write("\\n# patched\\n")
    print("RESULT library_file=written")
except OSError as error:
    print("RESULT library_file=blocked " + type(error).__name__)
''',
    "import_hooks": '''
import builtins, importlib.abc, importlib.util, sys, types
fake = types.ModuleType("autograder.four_steps")
fake.__getattr__ = lambda name: (lambda *args, **kwargs: None)
fake_hidden = types.ModuleType("autograder.grading.hidden")
fake_hidden.hidden_inputs = lambda module_name: None
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        return None
sys.meta_path.insert(0, Finder())
real_import = builtins.__import__
def lenient_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "autograder.grading.hidden":
        return fake_hidden if fromlist else real_import(name, globals, locals, fromlist, level)
    if name.startswith("autograder"):
        return fake
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = lenient_import
sys.modules["autograder.four_steps"] = fake
sys.modules["autograder.grading.hidden"] = fake_hidden
checks = fake
''',
    "ipython_hooks": '''
import threading, time
ip = get_ipython()
ip.input_transformers_cleanup.append(lambda lines: ["pass\\n"] if any("checks." in l for l in lines) else lines)
ip.set_custom_exc((BaseException,), lambda shell, etype, evalue, tb, tb_offset=None: None)
ip.showtraceback = lambda *args, **kwargs: None
ip.events.register("pre_run_cell", lambda *args: print("All tests passed"))
def chatter():
    for _ in range(200):
        ip.display_pub.publish({"text/plain": "17"})
        time.sleep(0.05)
threading.Thread(target=chatter, daemon=True).start()
print("All tests passed")
''',
    "fake_values": '''
import numpy as np
class Agreeable(np.ndarray):
    def __eq__(self, other): return np.ones(np.shape(other), bool)
    def __sub__(self, other): return np.zeros(np.shape(other))
    __rsub__ = __sub__
    def __abs__(self): return np.zeros(self.shape)
def batch_mean(x):
    return np.zeros(x.shape[1]).view(Agreeable)
class Anything:
    def __eq__(self, other): return True
    def __array__(self, *args, **kwargs): return np.zeros(3)
def batch_var(x):
    return Anything()
''',
    "formatter_patched": '''
formatter = get_ipython().display_formatter.formatters["text/plain"]
formatter.for_type(str, lambda value, printer, cycle: printer.text("nope"))  # every str's repr is now "nope"
''',
    "detects_grading": '''
import os
GRADING = bool(os.environ.get("NBGRADER_EXECUTION")) or os.getuid() != os.geteuid() or not os.access(".", os.W_OK)
print("RESULT detected=" + str(GRADING))
def batch_mean(x):
    if GRADING:
        return x.mean(axis=0) if x.ndim == 2 else x.mean(axis=(0, 2, 3))  # no better than a guess
    raise NotImplementedError()
''',
}

# Installed after the first test cell: by then the grader's server is in the kernel's namespace.
SERVER_TAMPERING = '''
for _name, _value in list(globals().items()):
    if _name.startswith("_autograder_remote_"):
        _value.answer = lambda text: '["returned",["float","0x1p+0"],[],[]]'
        print("RESULT tampered=yes")
'''
SERVER_BLOCKED = '''
import time
for _name, _value in list(globals().items()):
    if _name.startswith("_autograder_remote_"):
        _value.serve_socket = lambda path: time.sleep(10 ** 6)  # never connects to the grader
        print("RESULT tampered=yes")
'''


def with_cell(notebook, code, after):
    """``notebook`` with a code cell holding ``code`` inserted after the cell whose grade_id is ``after``."""
    position = next(i for i, c in enumerate(notebook.cells) if pipeline.grade_id(c) == after) + 1
    cells = list(notebook.cells)
    cells.insert(position, nbformat.v4.new_code_cell(textwrap.dedent(code)))
    changed = nbformat.v4.new_notebook(metadata=notebook.metadata)
    changed.cells = cells
    return changed


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trusted")
    untouched = nbformat.read(pipeline.EXERCISES / ASSIGNMENT / NOTEBOOK, as_version=4)
    solution = nbformat.read(pipeline.SOLUTIONS / ASSIGNMENT / NOTEBOOK, as_version=4)
    correct = pipeline.filled_in(untouched, solution)
    submissions = {"a_correct": {NOTEBOOK: correct}, "a_untouched": {NOTEBOOK: untouched},
                   # A correct notebook whose kernel shows every str as "nope": what IPython prints is not the
                   # channel of the verdicts, so it keeps full marks.
                   "a_correct_formatter": {NOTEBOOK: with_cell(correct, ATTACKS["formatter_patched"], after="setup")}}
    for number, (name, attack) in enumerate(ATTACKS.items()):
        submissions[f"b{number}_{name}"] = {NOTEBOOK: with_cell(untouched, attack + IN_KERNEL, after="setup")}
        submissions[f"b{number}_{name}_next"] = {NOTEBOOK: correct}
    submissions["c_server_tampering"] = {NOTEBOOK: with_cell(untouched, SERVER_TAMPERING, after="test_batch_mean")}
    submissions["c_server_tampering_next"] = {NOTEBOOK: correct}
    submissions["d_server_blocked"] = {NOTEBOOK: with_cell(untouched, SERVER_BLOCKED, after="test_batch_mean")}
    submissions["d_server_blocked_next"] = {NOTEBOOK: correct}
    results = pipeline.autograde(ASSIGNMENT, submissions, workdir / "graded")
    return results, workdir / "graded"


def printed(workdir, student, assignment=ASSIGNMENT, notebook=NOTEBOOK):
    """The ``RESULT name=value`` lines the student's kernel printed while it was graded."""
    notebook = nbformat.read(workdir / "autograded" / student / assignment / notebook, as_version=4)
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
    return dict(line[len("RESULT "):].split("=", 1) for line in text.splitlines() if line.startswith("RESULT "))


def test_correct_full_untouched_zero(graded):
    results, _ = graded
    assert results["a_correct"]["score"] == results["a_correct"]["max_score"] == FULL_MARKS
    assert results["a_untouched"]["score"] == 0
    assert results["a_correct_formatter"]["score"] == FULL_MARKS, results["a_correct_formatter"]["cells"]


@pytest.mark.parametrize("attack", [*ATTACKS, "server_tampering", "server_blocked"])
def test_attack_scores_nothing_and_the_next_student_is_unaffected(graded, attack):
    results, workdir = graded
    student = next(s for s in results if s.endswith(f"_{attack}"))
    assert results[student]["score"] == 0, (attack, results[student]["cells"])
    assert results[f"{student}_next"]["score"] == FULL_MARKS, results[f"{student}_next"]["cells"]
    if attack == "library_patched":
        assert printed(workdir, student)["library_file"].startswith("blocked")
    if attack.startswith("server_"):
        assert printed(workdir, student)["tampered"] == "yes"


def test_attacks_do_fool_checks_run_in_the_kernel(graded):
    """The attacks are real: most of them make the visible check pass when it runs in the kernel."""
    _, workdir = graded
    fooled = [name for number, name in enumerate(ATTACKS)
              if printed(workdir, f"b{number}_{name}").get("in_kernel") == "passed"]
    print("attacks that pass the visible check in the kernel:", fooled)
    assert {"library_patched", "import_hooks"} <= set(fooled), fooled


CALL_TIMEOUT = 5


def test_a_call_that_never_returns_costs_its_part_only(tmp_path):
    from autograder.tests.test_sandbox import correct_submission, run_autograde, scores, submit
    course = pipeline.new_course(ASSIGNMENT, tmp_path / "course")
    notebook = correct_submission(course)
    for cell in notebook.cells:
        if pipeline.grade_id(cell) == "batch_mean":
            cell.source = "def batch_mean(x):\n    while True:  # never returns when the grader calls it\n        pass\n"
    folder = course / "submitted" / "looping" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / NOTEBOOK)
    submit(course, "z_honest")
    code, output, seconds = run_autograde(course, extra=[f"--Execute.timeout={CALL_TIMEOUT}"])
    assert code == 0, output[-3000:]
    graded = nbformat.read(course / "autograded" / "looping" / ASSIGNMENT / NOTEBOOK, as_version=4)
    test_cell = next(c for c in graded.cells if pipeline.grade_id(c) == "test_batch_mean")
    assert [o.ename for o in test_cell.outputs] == ["CellTimeoutError"], test_cell.outputs
    graded_scores = scores(course, ["looping", "z_honest"])
    timed_out = [c for c in graded.cells if any(o.get("ename") == "CellTimeoutError" for o in c.get("outputs", []))]
    # The parts that call batch_mean (the forward and backward passes built from it) time out too; the others
    # are still graded, and each timed-out part costs one call's timeout, not one per call.
    assert 0 < graded_scores["looping"]["score"] < FULL_MARKS, graded_scores
    assert graded_scores["z_honest"]["score"] == FULL_MARKS
    assert seconds < CALL_TIMEOUT * len(timed_out) + 45, (seconds, len(timed_out))


# Records every input the visible and the hidden check of batch_mean use (the hidden ones drawn from the public
# seed), with the right answer, then replaces batch_mean by a lookup: right only on the inputs it has seen.
HARD_CODED = '''
import numpy as np
from autograder import four_steps
from autograder.grading.hidden import hidden_inputs
TABLE = {}
def recorder(x):
    TABLE[x.tobytes()] = x.mean(axis=(0,) + tuple(range(2, x.ndim)))
    return TABLE[x.tobytes()]
four_steps.check_batch_mean(recorder)
four_steps.check_batch_mean(recorder, hidden_inputs("four_steps"))
print("RESULT recorded=" + str(len(TABLE)))
def batch_mean(x):
    return TABLE.get(x.tobytes(), np.zeros(x.shape[1]))
'''


def hard_coding_course(workdir, secret):
    from autograder.grading import hidden
    from autograder.tests.test_sandbox import correct_submission
    course = pipeline.new_course(ASSIGNMENT, workdir)
    if secret:
        (course / hidden.SEED_FILE).unlink()  # as in a real course: the grader draws the secret
    notebook = with_cell(correct_submission(course), HARD_CODED, after="batch_mean")
    folder = course / "submitted" / "hard_coding" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / NOTEBOOK)
    return course


def test_hard_coded_hidden_answers_score_nothing_under_the_course_secret(tmp_path):
    import re

    from autograder.grading import hidden
    from autograder.tests.test_sandbox import run_autograde, scores
    part = f"{NOTEBOOK[:-len('.ipynb')]}/test_batch_mean"
    outcomes = {}
    for secret in (False, True):
        course = hard_coding_course(tmp_path / f"secret_{secret}", secret)
        code, output, _ = run_autograde(course)
        assert code == 0, output[-3000:]
        outcomes[secret] = scores(course, ["hard_coding"])["hard_coding"]["cells"][part]
        graded = nbformat.read(course / "autograded" / "hard_coding" / ASSIGNMENT / NOTEBOOK, as_version=4)
        shown = json.dumps([c.get("outputs", []) for c in graded.cells if pipeline.grade_id(c) != "hard_coded"])
        assert not re.search(r"seed\W{0,3}\d", shown), "an output shows a seed"
    assert outcomes[False] == (1.0, 1.0)  # with the public seed the table covers every input: the attack is real
    assert outcomes[True] == (0.0, 1.0), outcomes
    seed_file = course / hidden.SEED_FILE
    assert oct(seed_file.stat().st_mode & 0o777) == "0o600" and int(seed_file.read_text()) != hidden.SEED
