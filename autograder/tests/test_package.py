"""The package students install: built for real, it holds the check library and nothing an instructor keeps.

The setup cell of every notebook runs ``%pip install "bn-from-scratch @ git+..."``,
so pip builds a wheel from the repository. These tests build that wheel from a
copy of the working tree (tracked files and untracked ones git does not
ignore, so uncommitted changes are tested), open it, and install it into a
fresh virtual environment. A planted-fault control shows that every check can
fail. Last, a student's machine: a new virtual environment into which pip
installs the wheel with its dependencies (NumPy, torch) and ipykernel, from the
registry pip is configured with, and a real kernel of it runs a released
notebook, answered and unanswered, from a folder that holds nothing else.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat

import numpy
import pytest
import torch
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from autograder.grading.mutants import corpus
from autograder.grading.pipeline import EXERCISES, SOLUTIONS, filled_in, grade_id

from .conftest import REPOSITORY, normalized, read_notebook, secret_lines

pytestmark = pytest.mark.xdist_group("package")

DIST_INFO = re.compile(r"^bn_from_scratch-[^/]+\.dist-info/[^/]+$")
TOP_LEVEL_MODULE = re.compile(r"^autograder/[^/]+\.py$")
PROBED = ("autograder", "autograder.four_steps", "autograder.four_steps_torch", "autograder.four_steps_triton",
          "autograder.grading",
          "autograder.grading.mutants", "autograder.tests", "autograder.nbgrader_config")


# --- building, reading and installing the wheel -----------------------------

def copy_of_working_tree(destination):
    """The files pip would see in a clone with the current changes: tracked plus untracked-not-ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPOSITORY, capture_output=True, check=True).stdout.decode().split("\0")
    # Copied in path order with fresh modification times, as a checkout writes them:
    # setuptools compares times to decide whether a stale build/ copy is replaced.
    for name in sorted(set(filter(None, listed))):
        source = REPOSITORY / name
        if source.is_file():  # a tracked file deleted in the working tree is gone from the copy too
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination / name)
    return destination


def build_wheel(tree, output):
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(output), str(tree)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    wheels = list(output.glob("bn_from_scratch-*.whl"))
    assert len(wheels) == 1, f"expected one bn_from_scratch wheel, got {wheels}"
    return wheels[0]


def wheel_texts(wheel):
    """Every file of the wheel, as normalized text."""
    with zipfile.ZipFile(wheel) as archive:
        return {name: normalized(archive.read(name).decode("utf-8", errors="replace"))
                for name in archive.namelist()}


def install_and_probe(wheel, workdir):
    """Install the wheel into a fresh venv (NumPy and torch borrowed, never the repository) and try imports.

    Returns {module: file it was imported from, or the error it raised}.
    """
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # Paths listed in a .pth file are added without processing their own .pth files,
    # so the development environment's editable install of the repository stays out.
    borrowed = {str(Path(module.__file__).resolve().parents[1]) for module in (numpy, torch)}
    (site / "borrowed_dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    probe = (
        "import importlib, json, sys\n"
        "result = {}\n"
        f"for name in {PROBED!r}:\n"
        "    try:\n"
        "        result[name] = importlib.import_module(name).__file__\n"
        "    except Exception as error:\n"
        "        result[name] = 'ERROR ' + type(error).__name__ + ': ' + str(error)\n"
        "result['triton imported'] = 'triton' in sys.modules\n"
        "print(json.dumps(result))\n")
    completed = subprocess.run([str(python), "-I", "-c", probe], cwd=workdir, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), site


# --- what must not be in the wheel ------------------------------------------

def released_text():
    """Everything the release shows students: a line found here is not a secret."""
    return normalized("\n".join(cell.source for path in EXERCISES.glob("*/*.ipynb")
                                for cell in read_notebook(path).cells))


def secrets():
    """Solution and hidden-test lines of every source notebook that no release shows."""
    public = released_text()
    found = set()
    for notebook in SOLUTIONS.glob("*/*.ipynb"):
        found |= secret_lines(read_notebook(notebook))
    return {line for line in found if normalized(line) not in public}


def planted_bug_texts():
    """Distinctive text each planted bug introduces: {text: mutant}, minus text the notebooks already hold."""
    public = released_text()
    texts = {}
    for notebook in SOLUTIONS.glob("*/*.ipynb"):
        own = normalized("\n".join(cell.source for cell in read_notebook(notebook).cells))
        for mutant in corpus(notebook.stem):
            for _, _, new in mutant.replacements:
                for text in [new.strip()] + [line.strip() for line in new.splitlines()]:
                    text_seen = normalized(text)
                    if (len(text) >= 25 and not text.startswith("#")
                            and text_seen not in public and text_seen not in own):
                        texts[text] = f"{notebook.stem}:{mutant.name}"
    return texts


def required_distributions(texts):
    """The names of the distributions the wheel's metadata requires (Requires-Dist)."""
    metadata = next(text for name, text in texts.items() if DIST_INFO.match(name) and name.endswith("/METADATA"))
    return sorted(re.findall(r"Requires-Dist: ([A-Za-z0-9_.-]+)", metadata))


def files_outside_the_check_library(texts):
    return sorted(n for n in texts if not (TOP_LEVEL_MODULE.match(n) or DIST_INFO.match(n)))


def instructor_config(texts):
    return sorted(n for n in texts if Path(n).name == "nbgrader_config.py")


def differences_from_the_tree(wheel, tree):
    """Modules the wheel ships that are not the tree's check library as it is (stale, missing or extra)."""
    expected = {f"autograder/{p.name}": p.read_bytes() for p in (tree / "autograder").glob("*.py")
                if p.name != "nbgrader_config.py"}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n: archive.read(n) for n in archive.namelist() if TOP_LEVEL_MODULE.match(n)}
    return sorted(n for n in expected.keys() | shipped.keys() if expected.get(n) != shipped.get(n))


def leaked_lines(texts, lines):
    return sorted((line, name) for line in lines for name, text in texts.items() if normalized(line) in text)


# --- the real wheel ------------------------------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return copy_of_working_tree(tmp_path_factory.mktemp("package") / "tree")


@pytest.fixture(scope="module")
def wheel(tree):
    return build_wheel(tree, tree.parent / "dist")


@pytest.fixture(scope="module")
def texts(wheel):
    return wheel_texts(wheel)


def test_wheel_holds_only_the_check_library(texts):
    assert any(TOP_LEVEL_MODULE.match(n) for n in texts) and "autograder/four_steps.py" in texts
    outside = files_outside_the_check_library(texts)
    assert not outside, f"the student wheel holds files beyond autograder/*.py and its dist-info: {outside}"


def test_wheel_holds_the_check_library_as_it_is(wheel, tree):
    """Every module of autograder/ (but nbgrader_config.py), byte for byte: no stale copy from a build/ folder."""
    differing = differences_from_the_tree(wheel, tree)
    assert not differing, (f"the wheel's modules differ from autograder/ (missing, extra or stale): {differing}; "
                           "is a build/ folder committed?")


def test_wheel_requires_numpy_and_torch_only(texts):
    """Triton is the optional exercise's: its notebook installs it; the check library neither needs nor imports it."""
    assert required_distributions(texts) == ["numpy", "torch"]


def test_wheel_holds_no_nbgrader_config(texts):
    assert not instructor_config(texts)


def test_wheel_holds_no_solution_or_hidden_test_line(texts):
    lines = secrets()
    assert len(lines) > 50, "too few secret lines found: is the scan looking at the notebooks?"
    leaked = leaked_lines(texts, lines)
    assert not leaked, "the student wheel contains solution or hidden-test lines:\n" + "\n".join(
        f"  {name}: {line}" for line, name in leaked)


def test_wheel_holds_no_planted_bug(texts):
    bugs = planted_bug_texts()
    assert len(bugs) > 20, "too few planted-bug texts found: is the scan looking at the corpus?"
    leaked = leaked_lines(texts, bugs)
    assert not leaked, "the student wheel contains planted-bug text:\n" + "\n".join(
        f"  {name}: {line} ({bugs[line]})" for line, name in leaked)


def test_wheel_installs_with_the_checks_and_without_the_grading_tooling(wheel, tmp_path):
    imported, site = install_and_probe(wheel, tmp_path)
    assert imported["triton imported"] is False, "importing the check library imported triton"
    for name in ("autograder", "autograder.four_steps", "autograder.four_steps_torch", "autograder.four_steps_triton"):
        assert not imported[name].startswith("ERROR"), f"{name}: {imported[name]}"
        assert Path(imported[name]).is_relative_to(site), f"{name} came from {imported[name]}, not the wheel"
    for name in ("autograder.grading", "autograder.grading.mutants", "autograder.tests",
                 "autograder.nbgrader_config"):
        assert imported[name].startswith("ERROR ModuleNotFoundError"), f"{name} is importable: {imported[name]}"


# --- the control: a copy with every fault planted ------------------------------

def test_planted_faults_are_caught(texts, tmp_path):
    """Each check above fails on a copy that ships the tooling, the config, a secret, a planted bug, a stale build/ file
    and a broken module."""
    tree = copy_of_working_tree(tmp_path / "tree")
    pyproject = tree / "pyproject.toml"
    assert 'packages = ["autograder"]' in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(
        'packages = ["autograder"]', 'packages = ["autograder", "autograder.grading", "autograder.grading.mutants"]')
        .replace('"torch>=2.1"]', '"torch>=2.1", "triton"]'))
    setup = tree / "setup.py"
    assert 'INSTRUCTOR_MODULES = {"nbgrader_config"}' in setup.read_text()
    setup.write_text(setup.read_text().replace('INSTRUCTOR_MODULES = {"nbgrader_config"}', "INSTRUCTOR_MODULES = set()"))
    # A secret line and a planted bug, written into a check module as a check library might quote them.
    # Pick ones the real wheel does not already hold, so that only the plant can explain a hit.
    secret = sorted(line for line in secrets() if not leaked_lines(texts, [line]))[0]
    bug = sorted(text for text in planted_bug_texts() if not leaked_lines(texts, [text]))[0]
    module = tree / "autograder" / "display.py"
    module.write_text(module.read_text() + f"\n\n_QUOTED = {secret!r}\n_HINT = {bug!r}\n")
    # A module the checks import breaks: only the wheel, not the repository, can make this import fail.
    cases = tree / "autograder" / "cases.py"
    cases.write_text(cases.read_text() + '\nraise ImportError("planted in the wheel")\n')
    # The check library imports triton.
    triton_checks = tree / "autograder" / "four_steps_triton.py"
    triton_checks.write_text("import triton  # noqa: F401\n" + triton_checks.read_text())
    # A stale module left in a build/ folder.
    (tree / "build" / "lib" / "autograder").mkdir(parents=True, exist_ok=True)
    (tree / "build" / "lib" / "autograder" / "stale_module.py").write_text("STALE = True\n")

    faulty_wheel = build_wheel(tree, tmp_path / "dist")
    faulty = wheel_texts(faulty_wheel)
    assert any(n.startswith("autograder/grading/") for n in files_outside_the_check_library(faulty))
    assert instructor_config(faulty) == ["autograder/nbgrader_config.py"]
    assert (secret, "autograder/display.py") in leaked_lines(faulty, [secret])
    assert (bug, "autograder/display.py") in leaked_lines(faulty, [bug])
    assert "autograder/stale_module.py" in differences_from_the_tree(faulty_wheel, tree)
    assert required_distributions(faulty) == ["numpy", "torch", "triton"]

    imported, _ = install_and_probe(faulty_wheel, tmp_path)
    assert "planted in the wheel" in imported["autograder.four_steps"], imported["autograder.four_steps"]
    assert imported["triton imported"] is True
    assert not imported["autograder.grading"].startswith("ERROR"), imported["autograder.grading"]
    # Found (importing it outside nbgrader raises NameError for get_config, but it is there).
    assert not imported["autograder.nbgrader_config"].startswith("ERROR ModuleNotFoundError")


# --- a student's machine: the wheel in a new virtual environment, in a real kernel --------------------------------

STUDENT_NOTEBOOK = EXERCISES / "01_four_steps" / "01_four_steps_numpy.ipynb"
WHERE_FROM = "import autograder, sys\nprint(autograder.__file__)\nprint(sys.executable)"


def constraints(path):
    """requirements.txt's pins as a pip constraints file (the editable install of the repository left out)."""
    lines = [line for line in (REPOSITORY / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith(("#", "-e"))]
    path.write_text("\n".join(lines) + "\n")
    return path


def student_environment():
    """The environment a student's shell has: no PYTHONPATH, no virtual environment of ours on PATH."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    environment["PATH"] = os.pathsep.join(p for p in environment.get("PATH", "").split(os.pathsep)
                                          if Path(p) != Path(sys.executable).parent)
    return dict(environment, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def make_student_venv(wheel, workdir):
    """A new virtual environment with the wheel, its declared dependencies and ipykernel, installed by pip with
    requirements.txt's pins (torch 2.13.0, the CPU wheel here); {"python", "site", "seconds"}."""
    venv = workdir / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=student_environment())
    python = venv / "bin" / "python"
    completed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--only-binary=:all:",
         "--constraint", str(constraints(workdir / "constraints.txt")), str(wheel), "ipykernel"],
        capture_output=True, text=True, timeout=900, cwd=workdir, env=student_environment())
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    site = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return {"python": python, "site": Path(site), "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def student_venv(wheel, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("student")
    venv = make_student_venv(wheel, workdir)
    print(f"new virtual environment with the wheel, NumPy, torch and ipykernel: {venv['seconds']:.1f} s")
    yield venv
    shutil.rmtree(workdir / "venv", ignore_errors=True)  # about 1 GB


def answered_release():
    return filled_in(read_notebook(STUDENT_NOTEBOOK), read_notebook(SOLUTIONS / STUDENT_NOTEBOOK.relative_to(EXERCISES)))


def run_in_student_kernel(venv, notebook, folder, kernel=None):
    """Execute ``notebook`` (and a last cell that prints where autograder came from) in a kernel of the student's
    environment (or the named kernel), from an empty folder; return it."""
    kernels = folder / "kernels"
    (kernels / "student").mkdir(parents=True)
    (kernels / "student" / "kernel.json").write_text(json.dumps({
        "argv": [str(venv["python"]), "-I", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "student", "language": "python"}))
    manager = KernelManager(kernel_name="student", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])) \
        if kernel is None else KernelManager(kernel_name=kernel)
    notebook.cells.append(nbformat.v4.new_code_cell(WHERE_FROM))
    work = folder / "notebook"
    work.mkdir()
    NotebookClient(notebook, km=manager, timeout=180, allow_errors=True,
                   resources={"metadata": {"path": str(work)}}).execute(env=student_environment())
    return notebook


def errors(cell):
    return [output for output in cell.get("outputs", []) if output.output_type == "error"]


def graded_cells(notebook):
    return [cell for cell in notebook.cells
            if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("grade")]


def imported_from(notebook, venv):
    """Where the kernel imported the check library from, checked to be the student's environment."""
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream").split()
    assert len(printed) == 2, f"the last cell printed {printed}"
    module, executable = map(Path, printed)
    assert executable == venv["python"], f"the kernel ran {executable}, not the student's {venv['python']}"
    assert module.is_relative_to(venv["site"]), f"autograder came from {module}, not the wheel in {venv['site']}"


def test_answered_release_passes_its_visible_tests_in_a_new_environment(student_venv, tmp_path):
    start = time.perf_counter()
    executed = run_in_student_kernel(student_venv, answered_release(), tmp_path)
    print(f"{STUDENT_NOTEBOOK.name}, answered, in the student's kernel: {time.perf_counter() - start:.1f} s "
          f"(environment made in {student_venv['seconds']:.1f} s)")
    imported_from(executed, student_venv)
    setup = next(cell for cell in executed.cells if grade_id(cell) == "setup")
    assert not setup.outputs, f"the setup cell printed or installed something: {setup.outputs}"
    failed = {grade_id(cell): [f"{e.ename}: {e.evalue[:300]}" for e in errors(cell)]
              for cell in executed.cells if cell.cell_type == "code" and errors(cell)}
    assert len(graded_cells(executed)) >= 8 and not failed, f"cells failed in the student's environment: {failed}"


def test_unanswered_release_fails_its_tests_with_the_check_librarys_message(student_venv, tmp_path):
    executed = run_in_student_kernel(student_venv, read_notebook(STUDENT_NOTEBOOK), tmp_path)
    imported_from(executed, student_venv)
    cells = graded_cells(executed)
    assert len(cells) >= 8
    for cell in cells:
        found = errors(cell)
        assert found, f"{grade_id(cell)} passed in the unanswered release"
        if not grade_id(cell).startswith("test_quiz"):   # an unanswered quiz cell has no answer variable
            assert found[0].ename == "CheckFailure" and "it is not implemented yet" in found[0].evalue, \
                f"{grade_id(cell)}: {found[0].ename}: {found[0].evalue[:300]}"


def test_a_check_library_from_elsewhere_is_caught(student_venv, tmp_path):
    """The control: the development kernel (the repository's editable install) is told apart from the wheel."""
    executed = run_in_student_kernel(student_venv, answered_release(), tmp_path, kernel="python3")
    with pytest.raises(AssertionError, match="not the student's"):
        imported_from(executed, student_venv)


def test_a_wheel_that_forgets_its_dependencies_fails_in_a_new_environment(tmp_path):
    """The control: with no dependencies declared, a student's environment lacks NumPy, and the setup cell says so
    (the import of the check library itself succeeds, so nothing is installed from the network)."""
    tree = copy_of_working_tree(tmp_path / "tree")
    pyproject = tree / "pyproject.toml"
    declared = 'dependencies = ["numpy>=1.24", "torch>=2.1"]'
    assert declared in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(declared, "dependencies = []"))
    venv = make_student_venv(build_wheel(tree, tmp_path / "dist"), tmp_path)
    executed = run_in_student_kernel(venv, answered_release(), tmp_path)
    imported_from(executed, venv)
    setup = next(cell for cell in executed.cells if grade_id(cell) == "setup")
    assert [(e.ename, e.evalue) for e in errors(setup)] == [("ModuleNotFoundError", "No module named 'numpy'")]
