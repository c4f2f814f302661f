"""Grade a whole class: every submission of an assignment, in parallel, isolated as before, resumable.

Run from ``autograder/`` (like nbgrader, it reads ``nbgrader_config.py`` from the working directory)::

    python -m autograder.grading.grade 01_four_steps                  # one worker per core of this machine
    python -m autograder.grading.grade 01_four_steps --workers 2
    python -m autograder.grading.grade 01_four_steps --scheduler tcp://10.0.0.5:8786    # a Dask cluster's workers

Each submission (one student's folder ``submitted/<student>/<assignment>/``) is one task: a worker process runs
nbgrader's own autograde on it (:class:`nbgrader.apps.NbGraderAPI`, so the course's configuration applies: the
sandbox, trusted verdicts, intake), keeping nbgrader and the grader's check library imported from one submission to
the next. The tasks run on a Dask distributed cluster: a :class:`distributed.LocalCluster` of ``--workers``
processes, or the cluster whose scheduler ``--scheduler`` names. Dask reschedules the task of a worker that dies
(a grading machine lost, a worker killed), so a lost worker costs time, not submissions.

**Resuming.** The journal (``autograded/.journal/<assignment>.jsonl``) gets one line per graded submission, with a
digest of the submitted files. A second run grades only the submissions with no line for their current files: an
interrupted run, continued, grades nothing twice. A task marks its submission as started before nbgrader touches
it; a started submission that never reached the journal (its worker or the whole run was stopped) is removed from
the gradebook and the autograded folder before it is graded again, so the gradebook never keeps a half-graded
submission. Ctrl-C stops the workers and does this at once.

**The gradebook** is the course's ``c.CourseDirectory.db_url``. Several workers write it at once: use PostgreSQL
(``postgresql+psycopg://user@host/gradebook``), as nbgrader's FAQ advises; SQLite works with local workers (each
waits for the others' short writes, ``?timeout=60`` is added to a SQLite URL), not across machines.
"""

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SQLITE_TIMEOUT = 60  # seconds a worker waits for another's write to a SQLite gradebook
# What a graded notebook records when something kept it from being graded normally: (marker, why).
FLAG_ERRORS = {"KernelDied": "its kernel died", "CellTimeoutError": "a cell ran out of time",
               "NotebookTimeBudgetSpent": "the notebook's time budget ran out",
               "GraderProtocolError": "the grader could not read its kernel"}
FLAG_HEADINGS = {"INVALID NOTEBOOK": "the notebook could not be read and was graded as the release",
                 "GRADED WITHOUT THE SANDBOX": "graded without the sandbox"}


# The course, as its configuration describes it ------------------------------------------------------------------

def load_config(config_file, overrides=()):
    """The course's traitlets Config: ``config_file`` then ``--Class.trait=value`` overrides."""
    from traitlets.config import Config
    from traitlets.config.loader import KVArgParseConfigLoader, PyFileConfigLoader
    config = Config()
    if config_file:
        path = Path(config_file).resolve()
        config.merge(PyFileConfigLoader(path.name, path=str(path.parent)).load_config())
    if overrides:
        config.merge(KVArgParseConfigLoader(list(overrides)).load_config())
    return config


def course_api(config):
    """nbgrader's API object for the course (its CourseDirectory holds the paths and the gradebook URL)."""
    from nbgrader.apps import NbGraderAPI
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    return NbGraderAPI(config=config)


def with_sqlite_timeout(db_url):
    """A SQLite URL with a busy timeout: concurrent writers wait for each other's short writes instead of failing."""
    if db_url.startswith("sqlite:") and "timeout=" not in db_url:
        return f"{db_url}{'&' if '?' in db_url else '?'}timeout={SQLITE_TIMEOUT}"
    return db_url


@dataclass
class Course:
    """The folders and the gradebook of one course, and the configuration every worker loads."""

    config_file: str
    overrides: tuple = ()
    api: object = field(init=False, repr=False)

    def __post_init__(self):
        # nbgrader runs `alembic` from PATH when it makes a gradebook: the one of this environment.
        bin_directory = str(Path(sys.executable).parent)
        if bin_directory not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = f"{bin_directory}{os.pathsep}{os.environ.get('PATH', '')}"
        self.api = course_api(load_config(self.config_file, self.overrides))
        coursedir = self.api.coursedir
        coursedir.db_url = with_sqlite_timeout(coursedir.db_url)
        # The workers load the same configuration: the URL they get is this one, busy timeout included.
        self.overrides = (*(o for o in self.overrides if not o.startswith("--CourseDirectory.db_url=")),
                          f"--CourseDirectory.db_url={coursedir.db_url}")

    @property
    def root(self):
        return Path(self.api.coursedir.root)

    @property
    def db_url(self):
        return self.api.coursedir.db_url

    def folder(self, kind, student, assignment):
        """``submitted``/``autograded`` folder of one student's assignment."""
        directory = getattr(self.api.coursedir, f"{kind}_directory")
        return Path(self.api.coursedir.format_path(directory, student, assignment))

    def students(self, assignment):
        """The students who handed ``assignment`` in, sorted."""
        pattern = self.folder("submitted", "*", assignment)
        return sorted(p.relative_to(self.root).parts[1] for p in self.root.glob(str(pattern.relative_to(self.root)))
                      if p.is_dir())

    def gradebook(self):
        from nbgrader.api import Gradebook
        return Gradebook(self.db_url, course_id=self.api.coursedir.course_id)


def digest(folder):
    """SHA-256 of a submitted folder's files (names and contents): what the journal says was graded."""
    summary = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        summary.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return summary.hexdigest()


# The journal ------------------------------------------------------------------------------------------------------

class Journal:
    """What has been graded (one JSON line per submission) and what was started (one marker file per submission)."""

    def __init__(self, course, assignment):
        self.folder = course.root / Path(course.api.coursedir.autograded_directory).parts[0] / ".journal"
        self.path = self.folder / f"{assignment}.jsonl"
        self.started_folder = self.folder / f"{assignment}.started"

    def entries(self):
        """student -> the latest journal entry."""
        if not self.path.exists():
            return {}
        latest = {}
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                latest[entry["student"]] = entry
        return latest

    def record(self, entry):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as journal:
            journal.write(json.dumps(entry, sort_keys=True) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        with contextlib.suppress(FileNotFoundError):
            self.started_marker(entry["student"]).unlink()

    def started_marker(self, student):
        return self.started_folder / student

    def mark_started(self, student):
        self.started_folder.mkdir(parents=True, exist_ok=True)
        self.started_marker(student).write_text(f"{os.getpid()} {time.time()}\n")

    def unfinished(self):
        """Students whose grading was started and never recorded."""
        if not self.started_folder.exists():
            return []
        return sorted(p.name for p in self.started_folder.iterdir())


def discard_partial(course, assignment, students, journal):
    """Remove what an unfinished grading left (gradebook rows, autograded folder) for ``students``."""
    from nbgrader.api import MissingEntry
    with course.gradebook() as gradebook:
        for student in students:
            with contextlib.suppress(MissingEntry):
                gradebook.remove_submission(assignment, student)
    for student in students:
        shutil.rmtree(course.folder("autograded", student, assignment), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            journal.started_marker(student).unlink()


# One submission, in a worker --------------------------------------------------------------------------------------

_COURSES = {}  # (config file, overrides) -> Course, kept by each worker process


def grade_submission(config_file, overrides, assignment, student):
    """Autograde one student's submission with nbgrader; return the journal entry (scores, flags, time)."""
    key = (config_file, tuple(overrides))
    if key not in _COURSES:
        _COURSES[key] = Course(config_file, tuple(overrides))
    course = _COURSES[key]
    journal = Journal(course, assignment)
    submitted = course.folder("submitted", student, assignment)
    files = digest(submitted)
    journal.mark_started(student)
    started = time.monotonic()
    result = course.api.autograde(assignment, student, force=True, create=True)
    entry = {"student": student, "digest": files, "seconds": round(time.monotonic() - started, 3),
             "worker": f"{os.uname().nodename}:{os.getpid()}", "finished": time.time()}
    if not result.get("success"):
        # Not in the gradebook (nbgrader removes a failed submission): the next run tries again.
        return {**entry, "failed": True, "why": failure_reason(result)}
    entry.update(scores(course, assignment, student))
    entry["flags"] = flags(course.folder("autograded", student, assignment))
    return entry


def failure_reason(result):
    text = (result.get("error") or "") + (result.get("log") or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "nbgrader autograde failed"


def scores(course, assignment, student):
    with course.gradebook() as gradebook:
        submission = gradebook.find_submission(assignment, student)
        return {"score": submission.score, "max_score": submission.max_score,
                "notebooks": {nb.name: [nb.score, nb.max_score] for nb in submission.notebooks}}


def flags(autograded):
    """Why a graded submission needs a look: invalid notebooks, dead kernels, timeouts, no sandbox."""
    import nbformat
    found = []
    for path in sorted(Path(autograded).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        first = notebook.cells[0].source if notebook.cells else ""
        found += [f"{path.stem}: {why}" for heading, why in FLAG_HEADINGS.items() if heading in first]
        errors = {output.get("ename") for cell in notebook.cells if cell.cell_type == "code"
                  for output in cell.get("outputs", []) if output.get("output_type") == "error"}
        found += [f"{path.stem}: {why}" for name, why in FLAG_ERRORS.items() if name in errors]
    return found


# The class, from the coordinator ----------------------------------------------------------------------------------

class Progress:
    """One line on stderr: submissions done, failures so far, rate and time left."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.done, self.failed, self.flagged = total, 0, 0, 0
        self.started, self.stream = time.monotonic(), stream
        self.live = stream.isatty()

    def update(self, entry):
        self.done += 1
        self.failed += bool(entry.get("failed"))
        self.flagged += bool(entry.get("flags"))
        self.show(entry["student"])

    def show(self, student=""):
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed * 60 if elapsed > 0 and self.done else 0.0
        left = (self.total - self.done) / (rate / 60) if rate else None
        bar = "#" * int(30 * self.done / max(self.total, 1))
        line = (f"[{bar:<30}] {self.done}/{self.total} graded, {self.failed} failed, {self.flagged} flagged, "
                f"{rate:.1f}/min, {'about ' + duration(left) + ' left' if left is not None else 'time left unknown'}")
        if self.live:
            self.stream.write("\r" + line.ljust(120))
        else:
            self.stream.write(f"{line}  ({student})\n" if student else line + "\n")
        self.stream.flush()

    def close(self):
        if self.live:
            self.stream.write("\n")


def duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@contextlib.contextmanager
def dask_client(workers, scheduler):
    """A Dask client: on the cluster at ``scheduler``, or on a LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # One thread per worker process: nbgrader and the kernel it drives use one core between them. No memory
    # limit of Dask's: the sandbox limits each kernel, and Dask would pause a worker for its kernels' memory.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def to_grade(course, assignment, journal, regrade=False):
    """Students whose current files have no journal entry (all of them with ``regrade``)."""
    graded = {} if regrade else journal.entries()
    todo = []
    for student in course.students(assignment):
        entry = graded.get(student)
        if entry is None or entry.get("failed") or entry.get("digest") != digest(
                course.folder("submitted", student, assignment)):
            todo.append(student)
    return todo


def grade_class(course, assignment, workers=None, scheduler=None, regrade=False, stream=sys.stderr):
    """Grade every submission of ``assignment`` not graded yet; return {student: journal entry} for all of them.

    Raises KeyboardInterrupt after cleaning up when interrupted.
    """
    journal = Journal(course, assignment)
    unfinished = journal.unfinished()
    if unfinished:
        stream.write(f"{len(unfinished)} submission(s) left half-graded by an earlier run: removed from the "
                     f"gradebook, graded again: {', '.join(unfinished)}\n")
        discard_partial(course, assignment, unfinished, journal)
    with course.gradebook():
        pass  # creates the gradebook's tables once, before several workers open it
    todo = to_grade(course, assignment, journal, regrade)
    already = len(course.students(assignment)) - len(todo)
    stream.write(f"{assignment}: {len(todo)} submission(s) to grade"
                 f"{f', {already} already graded (journal {journal.path})' if already else ''}\n")
    progress = Progress(len(todo), stream)
    try:
        if todo and (scheduler or (workers or 1) > 1):
            run_on_dask(course, assignment, todo, workers, scheduler, journal, progress)
        else:
            for student in todo:
                entry = grade_submission(course.config_file, course.overrides, assignment, student)
                journal.record(entry)
                progress.update(entry)
    except KeyboardInterrupt:
        progress.close()
        left = journal.unfinished()
        discard_partial(course, assignment, left, journal)
        stream.write(f"interrupted: {progress.done} graded in this run; {len(left)} in progress were discarded; "
                     f"run the same command again to grade the rest\n")
        raise
    progress.close()
    return journal.entries()


def run_on_dask(course, assignment, todo, workers, scheduler, journal, progress):
    from distributed import as_completed
    with dask_client(workers, scheduler) as client:
        futures = [client.submit(grade_submission, course.config_file, course.overrides, assignment, student,
                                 key=f"grade-{assignment}-{student}", pure=False) for student in todo]
        try:
            for future in as_completed(futures):
                entry = future.result()
                journal.record(entry)
                progress.update(entry)
        except KeyboardInterrupt:
            client.cancel(futures)
            raise


def summary(entries, assignment):
    """The closing report: scores, failures and flagged submissions, with the reason for each."""
    graded = [e for e in entries.values() if not e.get("failed")]
    lines = [f"{assignment}: {len(graded)} submission(s) graded, {len(entries) - len(graded)} failed"]
    if graded:
        totals = sorted(e["score"] for e in graded)
        top = max(e["max_score"] for e in graded)
        full = sum(e["score"] == e["max_score"] for e in graded)
        lines.append(f"scores out of {top:g}: mean {sum(totals) / len(totals):.2f}, median "
                     f"{totals[len(totals) // 2]:g}, min {totals[0]:g}, max {totals[-1]:g}; "
                     f"{full} full marks, {sum(t == 0 for t in totals)} zero")
    for entry in sorted(entries.values(), key=lambda e: e["student"]):
        if entry.get("failed"):
            lines.append(f"  FAILED  {entry['student']}: {entry['why']} (not in the gradebook; rerun to retry)")
        elif entry.get("flags"):
            lines.append(f"  FLAGGED {entry['student']} ({entry['score']:g}/{entry['max_score']:g}): "
                         f"{'; '.join(entry['flags'])}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="worker processes on this machine (default: the number of cores, %(default)s)")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (tcp://host:8786): grade on its workers")
    parser.add_argument("--config-file", default="nbgrader_config.py",
                        help="the course's nbgrader configuration (default: ./nbgrader_config.py, as nbgrader)")
    parser.add_argument("--regrade", action="store_true", help="grade every submission again, graded or not")
    arguments, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if not o.startswith("--") or "=" not in o or "." not in o.split("=")[0]]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (nbgrader options look like --Class.trait=value)")
    if not Path(arguments.config_file).exists():
        parser.error(f"no {arguments.config_file} here: run from the course's autograder/ folder, or pass "
                     "--config-file PATH/TO/nbgrader_config.py")
    course = Course(str(Path(arguments.config_file).resolve()), tuple(overrides))
    try:
        entries = grade_class(course, arguments.assignment, arguments.workers, arguments.scheduler,
                              arguments.regrade)
    except KeyboardInterrupt:
        return 130
    print(summary(entries, arguments.assignment))
    return 1 if any(e.get("failed") for e in entries.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
