"""The package students install: built for real, it holds the check library and nothing an instructor keeps.

The setup cell of every notebook runs ``%pip install "bn-from-scratch @ git+..."``,
so pip builds a wheel from the repository. These tests build that wheel from a
copy of the working tree (tracked files and untracked ones git does not
ignore, so uncommitted changes are tested), open it, and install it into a
fresh virtual environment. A planted-fault control shows that every check can
fail.
"""

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pytest
import torch

from autograder.grading.mutants import corpus
from autograder.grading.pipeline import EXERCISES, SOLUTIONS

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
