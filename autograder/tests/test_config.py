"""The course's nbgrader configuration is the one nbgrader loads when an instructor follows the README.

A temporary folder is laid out like the repository (``solutions/01_four_steps/``
and ``autograder/nbgrader_config.py``; the configuration finds the course root
from its own location), and the real ``nbgrader`` runs in it. Controls: run
from the root, where no ``nbgrader_config.py`` is, or with ``--config`` (which
nbgrader 0.9.6 ignores), nbgrader falls back on its defaults.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grading.pipeline import CONFIG, SOLUTIONS

pytestmark = pytest.mark.xdist_group("config")

ASSIGNMENT = "01_four_steps"
BIN = Path(sys.executable).parent

# What nbgrader itself resolves once it has loaded its configuration: the
# objects `nbgrader autograde` and `generate_feedback` are built from.
RESOLVED = """
import json
from nbgrader.apps import AutogradeApp
from nbgrader.converters import GenerateFeedback
from nbgrader.preprocessors import Execute
app = AutogradeApp()
app.initialize([])
print(json.dumps({
    "loaded": app.loaded_config_files,
    "timeout": Execute(parent=app).timeout,
    "root": app.coursedir.root,
    "source": app.coursedir.source_directory,
    "release": app.coursedir.release_directory,
    "db_url": app.coursedir.db_url,
    "feedback": [p.__name__ for p in GenerateFeedback(coursedir=app.coursedir, parent=app).preprocessors],
}))
"""


@pytest.fixture
def course(tmp_path):
    """A folder laid out like the repository, with one assignment's sources."""
    shutil.copytree(SOLUTIONS / ASSIGNMENT, tmp_path / "solutions" / ASSIGNMENT)
    (tmp_path / "autograder").mkdir()
    shutil.copy(CONFIG, tmp_path / "autograder" / "nbgrader_config.py")
    return tmp_path


def run(command, cwd):
    """Run ``command`` in ``cwd`` with the environment's bin first on PATH (nbgrader runs `alembic` from it)."""
    environment = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environment, timeout=300)
    return completed.returncode, completed.stdout + completed.stderr, completed.stdout


def generate_assignment(cwd, *options):
    return run([str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force", *options], cwd)[:2]


def released(course):
    folder = course / "exercises" / ASSIGNMENT
    return sorted(p.name for p in folder.glob("*.ipynb")) if folder.is_dir() else []


def test_generate_assignment_from_autograder_uses_the_course_configuration(course):
    returncode, output = generate_assignment(course / "autograder")
    assert returncode == 0, output
    sources = sorted(p.name for p in (course / "solutions" / ASSIGNMENT).glob("*.ipynb"))
    assert sources and released(course) == sources, output
    for notebook in (course / "exercises" / ASSIGNMENT).glob("*.ipynb"):
        assert "### BEGIN SOLUTION" not in notebook.read_text(), f"{notebook.name} is not a student release"
    assert (course / "gradebook.db").is_file(), "the gradebook is not at the course root"
    for default in ("release", "autograder/release", "autograder/gradebook.db", "gradebook.db-journal"):
        assert not (course / default).exists(), f"nbgrader wrote {default}: its defaults, not the course's"


def test_generate_assignment_from_the_root_does_not_load_it(course):
    """Control: from the root, where no nbgrader_config.py is, nbgrader looks for source/ and releases nothing."""
    returncode, output = generate_assignment(course)
    assert "No nbgrader_config.py file found" in output, output
    assert returncode != 0 and not (course / "exercises").exists(), output


def test_config_option_is_ignored_and_config_file_is_not(course):
    """nbgrader 0.9.6 warns about --config and goes on with its defaults; --JupyterApp.config_file works."""
    returncode, output = generate_assignment(course, "--config=autograder/nbgrader_config.py")
    assert "Unrecognized alias: 'config'" in output, output
    assert returncode != 0 and not released(course), output
    returncode, output = generate_assignment(course, "--JupyterApp.config_file=autograder/nbgrader_config.py")
    assert returncode == 0 and released(course), output
    assert (course / "gradebook.db").is_file()


def resolved(cwd):
    returncode, output, stdout = run([sys.executable, "-c", RESOLVED], cwd)
    assert returncode == 0, output
    return json.loads(stdout)


def test_nbgrader_sees_the_configured_values(course):
    seen = resolved(course / "autograder")
    assert seen["loaded"] == [str(course / "autograder" / "nbgrader_config.py")]
    assert seen["timeout"] == 180
    assert (Path(seen["root"]), seen["source"], seen["release"]) == (course, "solutions", "exercises")
    assert seen["db_url"] == f"sqlite:///{course / 'gradebook.db'}"
    assert seen["feedback"] == ["GetGrades", "HideHiddenTests", "CSSHTMLHeaderPreprocessor"]
    # Control: from the root nbgrader loads no configuration and keeps its defaults.
    seen = resolved(course)
    assert seen["loaded"] == [] and seen["timeout"] != 180, seen
    assert (seen["source"], seen["release"]) == ("source", "release"), seen
    assert "HideHiddenTests" not in seen["feedback"], seen
