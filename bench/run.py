"""The course's benchmarks, measured side by side in one run (by hand; not a test). From the repository root::

    .venv/bin/python bench/run.py                  # everything (about 15 minutes on 2 cores)
    .venv/bin/python bench/run.py --skip-book      # without the two book builds

Each figure is printed on its own line; the grading one as
``grading: stock S notebooks/min, course C notebooks/min, ratio R x``, so that runs can be compared. The machine's
load average is printed before and after: figures taken on a busy machine are not comparable.

* grading: one class (Chapter 1's two notebooks, correct and wrong submissions) graded by stock ``nbgrader
  autograde`` (its default preprocessors: no sandbox, tests in the student's kernel, one notebook after another)
  and by ``python -m autograder.grading.grade --workers N`` (sandboxed kernels, trusted verdicts);
* the slowest visible test cell of every released notebook answered with the solution, in a Jupyter kernel;
* the book: a cold ``jupyter-book build`` of a fresh copy, then a rebuild after editing one chapter page;
* Chapter 1's reference implementations (NumPy forward + backward; the PyTorch ``BatchNormFunction``) against
  ``torch.nn.functional.batch_norm`` with autograd, on the same (64, 64, 32, 32) float32 input (and on CUDA
  against cuDNN when a GPU is present).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

import nbformat  # noqa: E402

from autograder.grading import pipeline  # noqa: E402
from autograder.grading.mutants import corpus  # noqa: E402
from autograder.grading.solved import solved  # noqa: E402

ASSIGNMENT = "01_four_steps"
NOTEBOOKS = ("01_four_steps_numpy.ipynb", "01_four_steps_torch.ipynb")
STOCK_CONFIG = """c = get_config()
c.CourseDirectory.course_id = "bench"
c.Execute.timeout = 180
c.Autograde.create_student = True
"""


def load():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def environment():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


# Grading --------------------------------------------------------------------------------------------------------

def submissions(notebook_name):
    release = nbformat.read(pipeline.EXERCISES / ASSIGNMENT / notebook_name, as_version=4)
    solution = nbformat.read(pipeline.SOLUTIONS / ASSIGNMENT / notebook_name, as_version=4)
    found = [pipeline.filled_in(release, solution)]
    found += [pipeline.filled_in(release, solution, m.replacements) for m in corpus(notebook_name[:-len(".ipynb")])]
    return found


def make_class(course, students):
    choices = {name: submissions(name) for name in NOTEBOOKS}
    for number in range(students):
        folder = course / "submitted" / f"s{number:03d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        for name in NOTEBOOKS:
            nbformat.write(choices[name][number % len(choices[name])], folder / name)


def course_options(course):
    return [f"--CourseDirectory.root={course}", "--CourseDirectory.source_directory=source",
            "--CourseDirectory.release_directory=release", f"--CourseDirectory.db_url={pipeline.sqlite_url(course)}"]


def timed(command, cwd):
    start = time.monotonic()
    completed = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{(completed.stdout + completed.stderr)[-3000:]}")
    return time.monotonic() - start


def bench_grading(students, workers, workdir):
    template = pipeline.new_course(ASSIGNMENT, workdir / "template")
    make_class(template, students)
    notebooks = students * len(NOTEBOOKS)

    stock = workdir / "stock"
    shutil.copytree(template, stock)
    (stock / "nbgrader_config.py").write_text(STOCK_CONFIG)
    stock_seconds = timed([Path(sys.executable).parent / "nbgrader", "autograde", ASSIGNMENT, "--force",
                           *course_options(stock)], stock)

    course = workdir / "course"
    shutil.copytree(template, course)
    course_seconds = timed([sys.executable, "-m", "autograder.grading.grade", ASSIGNMENT, f"--workers={workers}",
                            f"--config-file={course / 'nbgrader_config.py'}", *course_options(course)], course)
    stock_rate, course_rate = notebooks / stock_seconds * 60, notebooks / course_seconds * 60
    print(f"grading class: {students} students x {len(NOTEBOOKS)} notebooks = {notebooks} notebooks; stock "
          f"{stock_seconds:.1f} s serial, course {course_seconds:.1f} s with {workers} workers (cluster start "
          f"included)")
    print(f"grading: stock {stock_rate:.1f} notebooks/min, course {course_rate:.1f} notebooks/min, "
          f"ratio {course_rate / stock_rate:.2f} x")


# Visible test cells ------------------------------------------------------------------------------------------------

def bench_test_cells(workdir):
    """Seconds of the slowest visible test cell of each released notebook, answered, in a plain Jupyter kernel."""
    from nbclient import NotebookClient
    slowest = {}
    for assignment, name in ((a, p.name) for a in pipeline.assignments()
                             for p in sorted((pipeline.EXERCISES / a).glob("*.ipynb"))):
        release = nbformat.read(pipeline.EXERCISES / assignment / name, as_version=4)
        answered = pipeline.filled_in(release, nbformat.read(pipeline.SOLUTIONS / assignment / name, as_version=4))
        client = NotebookClient(answered, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}})
        times = []
        with client.setup_kernel():
            for index, cell in enumerate(answered.cells):
                if cell.cell_type != "code":
                    continue
                start = time.monotonic()
                client.execute_cell(cell, index)
                if cell.metadata.get("nbgrader", {}).get("grade"):
                    times.append((time.monotonic() - start, pipeline.grade_id(cell)))
        slowest[name[:-len(".ipynb")]] = max(times)
    worst = max(slowest.values())
    for stem, (seconds, cell) in slowest.items():
        print(f"visible test cell: {stem} slowest {seconds:.2f} s ({cell})")
    print(f"visible test cells: slowest of all {worst[0]:.2f} s (goal under 1 s)")


# The book -----------------------------------------------------------------------------------------------------------

def bench_book(workdir):
    copy = workdir / "book"
    subprocess.run(["git", "clone", "--quiet", str(REPOSITORY), str(copy)], check=True)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    cold = timed([jupyter_book, "build", ".", "-W", "--keep-going"], copy)
    page = copy / "book" / "01_four_steps.md"
    page.write_text(page.read_text() + "\n<!-- edited by bench/run.py -->\n")
    warm = timed([jupyter_book, "build", ".", "-W", "--keep-going"], copy)
    print(f"book: cold build {cold:.1f} s (goal under 300 s)")
    print(f"book: rebuild after editing book/01_four_steps.md {warm:.1f} s (goal under 30 s)")


# Reference implementations ------------------------------------------------------------------------------------------

def best_of(function, repeats=7):
    function()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_references(devices):
    import numpy as np
    import torch
    import torch.nn.functional as F
    torch.manual_seed(0)
    shape = (64, 64, 32, 32)
    numpy_reference = solved("01_four_steps_numpy", {"np": np})
    torch_reference = solved("01_four_steps_torch", {"torch": torch})
    for device in devices:
        synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        x = torch.randn(shape, device=device)
        gamma, beta, dy = torch.rand(64, device=device) + 0.5, torch.randn(64, device=device), torch.randn_like(x)

        def torch_builtin():
            xs, g, b = (t.detach().requires_grad_() for t in (x, gamma, beta))
            F.batch_norm(xs, None, None, g, b, training=True).backward(dy)
            synchronize()

        def course_function():
            xs, g, b = (t.detach().requires_grad_() for t in (x, gamma, beta))
            torch_reference["batch_norm"](xs, g, b).backward(dy)
            synchronize()

        builtin = best_of(torch_builtin)
        function = best_of(course_function)
        name = "cuDNN" if device == "cuda" else "F.batch_norm"
        print(f"reference on {device}: {name} forward+backward {builtin * 1e3:.1f} ms; course BatchNormFunction "
              f"{function * 1e3:.1f} ms, {function / builtin:.2f} x (goal within {1.5 if device == 'cuda' else 1.3} x)")
        if device == "cpu":
            xn, gn, bn, dyn = (t.cpu().numpy() for t in (x, gamma, beta, dy))

            def numpy_forward_backward():
                _, cache = numpy_reference["bn_forward"](xn, gn, bn)
                numpy_reference["bn_backward"](dyn, cache)

            numpy_time = best_of(numpy_forward_backward)
            print(f"reference on cpu: NumPy bn_forward+bn_backward {numpy_time * 1e3:.1f} ms, "
                  f"{numpy_time / builtin:.2f} x F.batch_norm (goal within 1.5 x)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=40, help="class size for the grading figure")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--skip-book", action="store_true")
    parser.add_argument("--only", choices=["grading", "cells", "book", "references"])
    arguments = parser.parse_args(argv)
    import torch
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; {load()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        workdir = Path(workdir)
        steps = {"references": lambda: bench_references(devices), "cells": lambda: bench_test_cells(workdir),
                 "grading": lambda: bench_grading(arguments.students, arguments.workers, workdir),
                 "book": lambda: bench_book(workdir)}
        for name, step in steps.items():
            if (arguments.only and name != arguments.only) or (name == "book" and arguments.skip_book):
                continue
            step()
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
