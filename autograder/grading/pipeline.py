"""The grading pipeline: release exercises and autograde submissions with the real nbgrader CLI.

Used by the instructor commands in the README and by the test suite. Every
step runs ``nbgrader`` as a subprocess with this course's configuration
(``autograder/nbgrader_config.py``), pointed at a course directory.

Command line::

    python -m autograder.grading.pipeline release         # regenerate exercises/ from solutions/
    python -m autograder.grading.pipeline check-release   # fail if exercises/ is stale

``release`` first rewrites the check library's install line in the README,
``book/`` and the notebooks' setup cells from ``_config.yml``'s
``repository.url`` (:mod:`autograder.grading.publishing`).
"""

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from . import hidden, publishing

REPOSITORY = Path(__file__).resolve().parents[2]
SOLUTIONS = REPOSITORY / "solutions"
EXERCISES = REPOSITORY / "exercises"
CONFIG = REPOSITORY / "autograder" / "nbgrader_config.py"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"


class PipelineError(RuntimeError):
    """An nbgrader step failed; the message carries its output."""


def assignments():
    """The assignment names (NN_slug) that have source notebooks."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader(arguments, course, db_url=None):
    """Run ``nbgrader ARGUMENTS`` on the course directory ``course`` (its gradebook: ``db_url``); return its output."""
    bin_directory = Path(sys.executable).parent
    # nbgrader reads nbgrader_config.py from its working directory; this one
    # loads the course's configuration, and the options below re-point it.
    (Path(course) / "nbgrader_config.py").write_text(
        f"exec(compile(open({str(CONFIG)!r}).read(), {str(CONFIG)!r}, 'exec'),\n"
        f"     {{'get_config': get_config, '__file__': {str(CONFIG)!r}}})\n"
    )
    command = [
        str(bin_directory / "nbgrader"), *arguments,
        f"--CourseDirectory.root={course}",
        "--CourseDirectory.source_directory=source",
        "--CourseDirectory.release_directory=release",
        f"--CourseDirectory.db_url={db_url or sqlite_url(course)}",
    ]
    # nbgrader runs `alembic` from PATH, so the environment's bin goes first.
    # One thread per kernel: the checks use small tensors, for which torch's
    # thread pool costs more than it gains, badly so when kernels share cores.
    environment = dict(os.environ, PATH=f"{bin_directory}{os.pathsep}{os.environ.get('PATH', '')}",
                       OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    completed = subprocess.run(command, cwd=course, capture_output=True, text=True, env=environment)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise PipelineError(f"{' '.join(command)} exited with {completed.returncode}:\n{output}")
    return output


def sqlite_url(course):
    """The URL of a temporary course's own gradebook."""
    return f"sqlite:///{Path(course) / 'gradebook.db'}"


def new_course(assignment, workdir):
    """A course directory in ``workdir`` with ``assignment``'s sources, released."""
    course = Path(workdir)
    course.mkdir(parents=True, exist_ok=True)
    # The public seed, not a secret one: the planted bugs' expected losses are proved on fixed hidden inputs.
    (course / hidden.SEED_FILE).write_text(f"{hidden.SEED}\n")
    shutil.copytree(SOLUTIONS / assignment, course / "source" / assignment)
    nbgrader(["generate_assignment", assignment, "--force"], course)
    return course


def generate_release(assignment, workdir):
    """Generate ``assignment`` from solutions/ in ``workdir``; return the release folder."""
    return new_course(assignment, workdir) / "release" / assignment


def write_exercises():
    """Regenerate every exercises/NN_slug/ from solutions/NN_slug/."""
    for assignment in assignments():
        with tempfile.TemporaryDirectory() as workdir:
            release = generate_release(assignment, workdir)
            shutil.rmtree(EXERCISES / assignment, ignore_errors=True)
            shutil.copytree(release, EXERCISES / assignment)
            print(f"exercises/{assignment}: {', '.join(sorted(p.name for p in release.iterdir()))}")


def stale_exercises():
    """The files of exercises/ that differ from a fresh generation (empty when in sync)."""
    stale = []
    for assignment in assignments():
        with tempfile.TemporaryDirectory() as workdir:
            release = generate_release(assignment, workdir)
            fresh = {p.relative_to(release): p.read_bytes() for p in release.rglob("*") if p.is_file()}
            folder = EXERCISES / assignment
            committed = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} \
                if folder.exists() else {}
            for name in sorted(set(fresh) | set(committed)):
                if fresh.get(name) != committed.get(name):
                    stale.append(f"exercises/{assignment}/{name}")
    return stale


# Submissions --------------------------------------------------------------------------

def solution_code(source):
    """A solution cell's source as a student who solved it would hand it in (markers removed)."""
    lines = source.split("\n")
    return "\n".join(line for line in lines if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))


def grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def filled_in(release_notebook, solution_notebook, replacements=()):
    """The release notebook with every solution cell answered from the solution notebook.

    ``replacements`` is a sequence of ``(grade_id, old, new)``: the text ``old``
    in that cell's answer becomes ``new`` (a planted bug).
    """
    submission = copy.deepcopy(release_notebook)
    answers = {grade_id(c): c.source for c in solution_notebook.cells
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    for cell_id, old, new in replacements:
        if cell_id not in answers or old not in answers[cell_id]:
            raise ValueError(f"cannot plant the bug: {old!r} is not in solution cell {cell_id!r}")
        answers[cell_id] = answers[cell_id].replace(old, new)
    for cell in submission.cells:
        if grade_id(cell) in answers and cell.metadata.nbgrader.get("solution"):
            cell.source = solution_code(answers[grade_id(cell)])
    return submission


def autograde(assignment, submissions, workdir, options=()):
    """Autograde ``submissions`` ({student: {notebook file name: notebook}}) with nbgrader (and ``options``).

    Returns {student: {"score", "max_score", "cells": {"notebook/grade_id": (score, max)},
    "feedback": {notebook name: feedback HTML}, "log": nbgrader's output}}.
    """
    course = new_course(assignment, workdir)
    for student, notebooks in submissions.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        for name, notebook in notebooks.items():
            nbformat.write(notebook, folder / name)
    log = nbgrader(["autograde", assignment, "--force", *options], course)
    nbgrader(["generate_feedback", assignment, "--force"], course)
    results = read_gradebook(course, assignment, submissions)
    for student in submissions:
        feedback = course / "feedback" / student / assignment
        results[student]["feedback"] = {p.stem: p.read_text() for p in sorted(feedback.glob("*.html"))}
        results[student]["log"] = log
    return results


def read_gradebook(course, assignment, submissions, db_url=None):
    """Scores of the submitted notebooks, per student, from the course's gradebook (or the one at ``db_url``).

    A student's ``score`` and ``max_score`` add up the notebooks they handed
    in; ``cells`` maps ``"<notebook>/<grade_id>"`` to ``(score, max_score)``.
    """
    from nbgrader.api import Gradebook

    results = {}
    with Gradebook(db_url or sqlite_url(course)) as gradebook:
        for student, notebooks in submissions.items():
            handed_in = {Path(name).stem for name in notebooks}
            submission = gradebook.find_submission(assignment, student)
            score = max_score = 0.0
            cells = {}
            for notebook in submission.notebooks:
                if notebook.name not in handed_in:
                    continue
                score += notebook.score
                max_score += notebook.max_score
                for grade in notebook.grades:
                    cells[f"{notebook.name}/{grade.name}"] = (grade.score, grade.max_score)
            results[student] = {"score": score, "max_score": max_score, "cells": cells}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["release", "check-release"])
    arguments = parser.parse_args(argv)
    if arguments.command == "release":
        for name in publishing.write_install_lines():
            print(f"{name}: install line set to {publishing.install_requirement(publishing.repository_url())}")
        write_exercises()
        return 0
    stale = stale_exercises()
    if stale:
        print("exercises/ is out of date with solutions/; run `python -m autograder.grading.pipeline release`:")
        print("\n".join(f"  {name}" for name in stale))
    disagreeing = publishing.disagreements()
    if disagreeing:
        print(f"the repository URL is not {publishing.CONFIG}'s everywhere; run "
              "`python -m autograder.grading.pipeline release`:")
        print("\n".join(f"  {line}" for line in disagreeing))
    if stale or disagreeing:
        return 1
    print("exercises/ matches a fresh nbgrader generate_assignment of solutions/, "
          f"and every install line uses {publishing.CONFIG}'s repository.url")
    return 0


if __name__ == "__main__":
    sys.exit(main())
