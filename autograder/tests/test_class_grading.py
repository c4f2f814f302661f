"""Grading a class at scale: the same class graded three ways holds the same score in every cell.

A class of 40 students hands in Chapter 1's NumPy and PyTorch notebooks: correct ones, untouched releases, every
planted bug of both corpora and a few attacks of the isolation tests. It is graded

1. serially by the real ``nbgrader autograde`` CLI into SQLite (the reference);
2. by ``python -m autograder.grading.grade --workers 2`` into a real PostgreSQL server, interrupted halfway (one
   worker killed with SIGKILL, then SIGINT to the whole command, as Ctrl-C sends it) and run again;
3. by the same command on the workers of a Dask ``LocalCluster`` of 2 processes (``--scheduler``), into PostgreSQL.

The three gradebooks must agree on every cell of every submission, and the interrupted run must have graded every
submission exactly once, never leaving a half-graded one in the gradebook.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder.grading import pipeline
from autograder.grading.mutants import corpus

from .postgres import postgres_server
from .test_trusted import ATTACKS as NUMPY_ATTACKS, with_cell
from .test_trusted_torch import ATTACKS as TORCH_ATTACKS, RUN_ATTACKS, WRONG

ASSIGNMENT = "01_four_steps"
NOTEBOOKS = ("01_four_steps_numpy.ipynb", "01_four_steps_torch.ipynb")
# The class size; BN_CLASS_STUDENTS=12 makes a quick run, e.g. to watch a planted bug in grade.py fail it.
STUDENTS = int(os.environ.get("BN_CLASS_STUDENTS", 40))
pytestmark = pytest.mark.xdist_group("class_grading")


def variants(notebook_name):
    """(name, notebook) of what students hand in: correct, untouched, each planted bug, a few attacks."""
    release = nbformat.read(pipeline.EXERCISES / ASSIGNMENT / notebook_name, as_version=4)
    solution = nbformat.read(pipeline.SOLUTIONS / ASSIGNMENT / notebook_name, as_version=4)
    if "torch" in notebook_name:
        attacks = [("torch_patched", WRONG + TORCH_ATTACKS["torch_patched"]), ("os_exit", WRONG + RUN_ATTACKS["os_exit"])]
    else:
        attacks = [("numpy_patched", NUMPY_ATTACKS["numpy_patched"]), ("os_exit", RUN_ATTACKS["os_exit"])]
    # Attacks first, so that a small class (BN_CLASS_STUDENTS) has them too.
    found = [("correct", pipeline.filled_in(release, solution)), ("untouched", release)]
    found += [(f"attack_{name}", with_cell(release, code, after="setup")) for name, code in attacks]
    return found + [(f"bug_{m.name}", pipeline.filled_in(release, solution, m.replacements))
                    for m in corpus(notebook_name[:-len(".ipynb")])]


def write_class(course):
    """Submit the class into ``course``; return {student: {notebook: variant name}}."""
    handed_in = {}
    choices = {name: variants(name) for name in NOTEBOOKS}
    for number in range(STUDENTS):
        student = f"s{number:02d}"
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        handed_in[student] = {}
        for offset, name in enumerate(NOTEBOOKS):
            variant, notebook = choices[name][(number + offset * 3) % len(choices[name])]
            nbformat.write(notebook, folder / name)
            handed_in[student][name] = variant
    return handed_in


def course_copy(template, folder, db_url=None):
    """A copy of the course with its submissions; its assignment generated into the gradebook at ``db_url``."""
    shutil.copytree(template, folder, symlinks=True)
    if db_url:
        pipeline.nbgrader(["generate_assignment", ASSIGNMENT, "--force"], folder, db_url)
    return folder


def grade_command(course, db_url, *options):
    return [sys.executable, "-m", "autograder.grading.grade", ASSIGNMENT, *options,
            f"--config-file={course / 'nbgrader_config.py'}", f"--CourseDirectory.root={course}",
            "--CourseDirectory.source_directory=source", "--CourseDirectory.release_directory=release",
            f"--CourseDirectory.db_url={db_url}"]


def environment():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def cell_scores(course, db_url, students):
    graded = pipeline.read_gradebook(course, ASSIGNMENT, {s: dict.fromkeys(NOTEBOOKS) for s in students}, db_url)
    return {student: result["cells"] for student, result in graded.items()}


def journal_lines(course):
    path = course / "autograded" / ".journal" / f"{ASSIGNMENT}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def command_line(process):
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def grading_workers(command):
    """The Dask worker processes of a running grade command (multiprocessing children of the command)."""
    return [p for p in command.children(recursive=True)
            if "multiprocessing" in command_line(p) and "resource_tracker" not in command_line(p)]


def busy(worker):
    """Whether a worker is grading now: a sandboxed kernel (bwrap) runs under it."""
    try:
        return any(child.name() == "bwrap" for child in worker.children(recursive=True))
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def graded_three_ways(tmp_path_factory):
    from distributed import LocalCluster

    workdir = tmp_path_factory.mktemp("class")
    template = pipeline.new_course(ASSIGNMENT, workdir / "template")
    handed_in = write_class(template)
    students = sorted(handed_in)
    with postgres_server() as server:
        serial = course_copy(template, workdir / "serial")
        start = time.monotonic()
        pipeline.nbgrader(["autograde", ASSIGNMENT, "--force"], serial)
        seconds = {"serial": time.monotonic() - start}

        local_url = server.create_database("local")
        local = course_copy(template, workdir / "local", local_url)
        interrupted = interrupt_and_resume(local, local_url, students)

        dask_url = server.create_database("dask")
        on_dask = course_copy(template, workdir / "dask", dask_url)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=0,
                          dashboard_address=None) as cluster:
            start = time.monotonic()
            subprocess.run(grade_command(on_dask, dask_url, f"--scheduler={cluster.scheduler_address}"),
                           check=True, capture_output=True, text=True, env=environment())
            seconds["dask"] = time.monotonic() - start
        yield {"handed_in": handed_in, "seconds": seconds, "interrupted": interrupted,
               "serial": cell_scores(serial, None, students), "local": cell_scores(local, local_url, students),
               "dask": cell_scores(on_dask, dask_url, students), "courses": (serial, local, on_dask)}


def interrupt_and_resume(course, db_url, students):
    """Grade with 2 local workers; kill a busy worker, then Ctrl-C the command, halfway; then grade again."""
    first = subprocess.Popen(grade_command(course, db_url, "--workers=2"), env=environment(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    command = psutil.Process(first.pid)
    wait_for(lambda: len(journal_lines(course)) >= STUDENTS // 4, 600, "a quarter of the class to be graded")
    wait_for(lambda: any(busy(w) for w in grading_workers(command)), 60, "a worker to be grading")
    killed = next(w for w in grading_workers(command) if busy(w))
    killed.kill()
    wait_for(lambda: len(journal_lines(course)) >= STUDENTS // 2, 600, "half of the class to be graded")
    os.killpg(first.pid, signal.SIGINT)
    output, _ = first.communicate(timeout=120)
    after_interrupt = {"returncode": first.returncode, "output": output, "journal": journal_lines(course),
                       "in_gradebook": submissions_in_gradebook(course, db_url),
                       "left_running": [p.pid for p in psutil.process_iter(["cmdline"])
                                        if str(course) in " ".join(p.info["cmdline"] or [])]}
    second = subprocess.run(grade_command(course, db_url, "--workers=2"), env=environment(), text=True,
                            capture_output=True)
    return {"first": after_interrupt, "second": {"returncode": second.returncode,
                                                 "output": second.stdout + second.stderr},
            "journal": journal_lines(course), "killed": killed.pid}


def submissions_in_gradebook(course, db_url):
    from nbgrader.api import Gradebook
    with Gradebook(db_url) as gradebook:
        return sorted(s.student.id for s in gradebook.assignment_submissions(ASSIGNMENT))


def test_the_class_is_varied(graded_three_ways):
    """The class holds full marks, zeros and partial scores in both notebooks (else equality proves little)."""
    totals = {}
    for student, cells in graded_three_ways["serial"].items():
        for notebook in NOTEBOOKS:
            stem = notebook[:-len(".ipynb")]
            got = [score for cell, score in cells.items() if cell.startswith(stem + "/")]
            totals.setdefault(stem, set()).add((sum(s for s, _ in got), sum(m for _, m in got)))
    for stem, seen in totals.items():
        scores = {score for score, _ in seen}
        top = max(maximum for _, maximum in seen)
        assert 0 in scores and top in scores and len(scores) >= 4, f"{stem}: scores {sorted(scores)}"


@pytest.mark.parametrize("way", ["local", "dask"])
def test_every_cell_scores_as_graded_serially(graded_three_ways, way):
    serial, other = graded_three_ways["serial"], graded_three_ways[way]
    assert sorted(other) == sorted(serial)
    differing = {student: {cell: (serial[student].get(cell), other[student].get(cell))
                           for cell in set(serial[student]) | set(other[student])
                           if serial[student].get(cell) != other[student].get(cell)}
                 for student in serial}
    differing = {student: cells for student, cells in differing.items() if cells}
    assert not differing, f"{way} disagrees with the serial nbgrader run (serial, {way}): {differing}"
    assert sum(len(cells) for cells in serial.values()) >= STUDENTS * 2 * 5


def test_interrupted_run_graded_everyone_once_and_left_nothing_half_graded(graded_three_ways):
    run = graded_three_ways["interrupted"]
    first = run["first"]
    assert first["returncode"] == 130, first["output"][-3000:]
    assert "interrupted:" in first["output"] and "run the same command again" in first["output"]
    graded_then = sorted(entry["student"] for entry in first["journal"])
    assert STUDENTS // 2 <= len(graded_then) < STUDENTS, "the interrupt did not come halfway"
    # At the interrupt, the gradebook holds exactly the submissions the journal says were graded.
    assert first["in_gradebook"] == graded_then, "a half-graded submission was left in the gradebook"
    assert not first["left_running"], f"processes of the interrupted run still running: {first['left_running']}"
    assert run["second"]["returncode"] == 0, run["second"]["output"][-3000:]
    assert f"{len(graded_then)} already graded" in run["second"]["output"]
    counts = {}
    for entry in run["journal"]:
        counts[entry["student"]] = counts.get(entry["student"], 0) + 1
    assert counts == dict.fromkeys(sorted(graded_three_ways["serial"]), 1), \
        f"graded other than exactly once: {[s for s, n in counts.items() if n != 1]}"
    assert not any(entry.get("failed") for entry in run["journal"])
    workers = {entry["worker"] for entry in run["journal"]}
    assert len(workers) >= 3, f"the killed worker was not replaced: workers {workers}"


def test_summary_names_the_flagged_submissions(graded_three_ways):
    """The closing summary lists every submission whose kernel died, with the reason."""
    output = graded_three_ways["interrupted"]["second"]["output"]
    journal = graded_three_ways["interrupted"]["journal"]
    died = sorted(e["student"] for e in journal if any("kernel died" in flag for flag in e.get("flags", [])))
    attackers = sorted(s for s, handed in graded_three_ways["handed_in"].items()
                       if "attack_os_exit" in handed.values())
    assert died == attackers
    for student in attackers:
        assert f"FLAGGED {student}" in output and "its kernel died" in output
    assert "submission(s) graded, 0 failed" in output
