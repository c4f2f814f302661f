"""nbgrader configuration for the course.

The course directory is the repository root: ``solutions/`` holds the source
notebooks, ``exercises/`` the release that students receive and
``gradebook.db`` the gradebook. nbgrader reads ``nbgrader_config.py`` from its
working directory, so run nbgrader from ``autograder/`` (the README lists the
commands), or from anywhere with ``--JupyterApp.config_file=PATH/TO/autograder/nbgrader_config.py``.
nbgrader 0.9.6 ignores ``--config``: it warns "Unrecognized alias: 'config'" and
goes on with its defaults (``source/``, ``release/``, a gradebook in the working
directory). The paths below come from this file's location, not from the working
directory. ``autograder.grading.pipeline`` loads this same file in a temporary
course directory and re-points it there with ``--CourseDirectory.*`` options;
``autograder/tests/test_config.py`` proves that nbgrader loads it.
"""

import importlib
import importlib.util
import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

repository_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.course_id = "bn-from-scratch"
c.CourseDirectory.root = repository_root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(repository_root, "gradebook.db")

# Each cell may run for three minutes (a whole correct notebook takes well
# under one); nbgrader then interrupts it and records a CellTimeoutError, so a
# student's infinite loop costs points, not the run.
c.ExecutePreprocessor.timeout = 180
c.Execute.timeout = 180

# What a student sees in place of the reference solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Students may not hand in a notebook whose test cells were edited.
c.Autograde.create_student = True

# Returned feedback shows verdicts and messages, never the hidden tests: their
# code is removed from the test cells and from the tracebacks (nbgrader's own
# feedback would show both). GetGrades and the CSS header are nbgrader's defaults.
def _grading_module(name):
    """``autograder.grading.<name>``, or this clone's copy of it (no editable install, or the student wheel)."""
    try:
        return importlib.import_module(f"autograder.grading.{name}")
    except ImportError:
        path = os.path.join(repository_root, "autograder", "grading", f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"autograder_grading_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


HideHiddenTests = _grading_module("feedback").HideHiddenTests
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]

# Every submission's kernel runs in a sandbox (autograder/grading/sandbox.py): bubblewrap with the system read-only,
# no network, its own PID namespace and private /tmp, as a uid of its own with limits on memory, processes, file size
# and CPU time. It sees the interpreter and the check library, never the course folder, the gradebook, the solutions or
# other submissions; its own folder read-only. Without bwrap (apt-get install bubblewrap) or root, autograde refuses;
# c.SandboxedKernelManager.allow_unsandboxed = True runs unsandboxed anyway (then the feedback is not trustworthy).
c.Autograde.autograde_preprocessors = _grading_module("sandbox").autograde_preprocessors()
# A submission nbgrader cannot read or validate (truncated JSON, not a notebook, nbformat 3, edited nbgrader
# metadata) is graded as the release headed by an INVALID NOTEBOOK cell: 0 points, and the run goes on
# (stock nbgrader drops the student, or ends the whole run at SchemaTooOldError).
_grading_module("intake").install()
# Test cells deleted, renamed or stripped of their metadata come back from the gradebook, as released.
c.OverwriteCells.add_missing_cells = True
c.SandboxedKernelManager.hidden_paths = ["/root", "/home", "/run", "/var/tmp", "/var/run", "/mnt", "/media", "/srv",
                                         repository_root]
c.SandboxedKernelManager.readable_paths = [os.path.join(repository_root, "autograder")]
# All cells of one notebook share one time budget (each cell still stops at c.Execute.timeout): an infinite loop
# in several functions costs one budget, not one timeout per cell; the cells left when it is spent score 0.
c.SandboxedExecute.notebook_budget = 300
# Every notebook's test cells run in the grader's process, on the student's functions, classes and modules reached
# through data-only handles, tensors crossing as data and autograd bridged (autograder/grading/trusted.py and
# remote.py): code in the kernel cannot change their verdicts.
c.SandboxedExecute.trusted_notebooks = ["*"]
# Threads count too: a torch kernel and the two gloo processes of Chapter 4's check stay well below this.
c.SandboxedKernelManager.processes = 256
