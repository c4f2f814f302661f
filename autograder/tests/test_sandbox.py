"""Grading in the sandbox, proved with the real ``nbgrader autograde`` CLI on a temporary course.

One run of ``nbgrader autograde`` with the course's configuration: honest students first and last, and between them
students whose correct submission ends with an attack cell; each attack prints ``RESULT`` lines that the tests read
from the autograded notebook. The grader must run as root (it switches each kernel to a uid of its own).
"""

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder.grading import pipeline, sandbox

ASSIGNMENT, NOTEBOOK = "01_four_steps", "01_four_steps_numpy.ipynb"
pytestmark = pytest.mark.xdist_group("sandbox")  # the attacked class is graded once, on one worker
MARK = "PW" + "NED"  # never spelled out in a notebook, so it is found only where an attack wrote it


# Course helpers ---------------------------------------------------------------------------

def run_autograde(course, extra=(), path=None):
    """Run the real ``nbgrader autograde ASSIGNMENT`` in ``course``; return (returncode, output, seconds)."""
    bin_directory = Path(sys.executable).parent
    command = [str(bin_directory / "nbgrader"), "autograde", ASSIGNMENT, "--force",
               f"--CourseDirectory.root={course}", "--CourseDirectory.source_directory=source",
               "--CourseDirectory.release_directory=release",
               f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}", *extra]
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       PATH=path or f"{bin_directory}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.monotonic()
    completed = subprocess.run(command, cwd=course, capture_output=True, text=True, env=environment)
    return completed.returncode, completed.stdout + completed.stderr, time.monotonic() - start


def correct_submission(course):
    release = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    solution = nbformat.read(pipeline.SOLUTIONS / ASSIGNMENT / NOTEBOOK, as_version=4)
    return pipeline.filled_in(release, solution)


def submit(course, student, extra_code=None):
    notebook = correct_submission(course)
    if extra_code is not None:
        notebook.cells.append(nbformat.v4.new_code_cell(extra_code))
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / NOTEBOOK)


def scores(course, students):
    return pipeline.read_gradebook(course, ASSIGNMENT, {s: {NOTEBOOK: None} for s in students})


def results(course, student):
    """The ``RESULT key=value`` lines printed by the student's last cell, as a dict."""
    notebook = nbformat.read(course / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4)
    text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    return dict(line[len("RESULT "):].split("=", 1) for line in text.splitlines() if line.startswith("RESULT "))


def snapshot(course, folders=("source", "release", "submitted")):
    return {str(p.relative_to(course)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((course / folder).rglob("*")) if p.is_file()}


def processes_mentioning(text):
    """PIDs of the processes whose command line contains ``text`` (the course path: this run's, not another
    worker's sandboxed kernels)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            pass
    return found


def leftover_runtimes(parent):
    return sorted(Path(parent).glob("nbgrader-sandbox-*"))


# Attacks ---------------------------------------------------------------------------------

PRELUDE = '''
import os, sys, time
COURSE, MARK, CWD = {course!r}, "PW" + "NED", os.getcwd()
def attempt(name, action):
    try:
        outcome = action()
        print(f"RESULT {{name}}=SUCCEEDED {{outcome!r}}"[:300])
    except BaseException as error:
        print(f"RESULT {{name}}=BLOCKED {{type(error).__name__}}")
'''

ATTACKS = {
    "c1_gradebook": '''
def overwrite():
    with open(COURSE + "/gradebook.db", "r+b") as f:
        f.write(MARK.encode())
def sql():
    import sqlite3
    db = sqlite3.connect(COURSE + "/gradebook.db")
    db.execute("INSERT INTO student (id) VALUES (?)", (MARK,))
    db.commit()
    return db.execute("SELECT count(*) FROM student").fetchone()
attempt("gradebook_write", overwrite)
attempt("gradebook_sqlite", sql)
attempt("gradebook_read", lambda: len(open(COURSE + "/gradebook.db", "rb").read()))
''',
    "c2_source": '''
attempt("source_read", lambda: open(COURSE + "/source/01_four_steps/01_four_steps_numpy.ipynb").read()[:20])
attempt("release_list", lambda: os.listdir(COURSE + "/release"))
attempt("repo_solutions_read", lambda: open({solutions!r} + "/01_four_steps/01_four_steps_numpy.ipynb").read()[:20])
attempt("course_list", lambda: os.listdir(COURSE))
''',
    "c3_peer": '''
PEER = "/submitted/a_honest/01_four_steps/01_four_steps_numpy.ipynb"
attempt("peer_submitted_read", lambda: open(COURSE + PEER).read()[:20])
attempt("peer_submitted_write", lambda: open(COURSE + PEER, "a").write(MARK))
attempt("peer_autograded_read", lambda: open(COURSE + PEER.replace("submitted", "autograded")).read()[:20])
attempt("own_folder_write", lambda: open(CWD + "/" + MARK, "w").write(MARK))
attempt("own_folder_listed", lambda: sorted(os.listdir(CWD)))
''',
    "c4_kill": '''
print("RESULT ppid=" + str(os.getppid()))
attempt("kill_parent", lambda: os.kill(os.getppid(), 9))
attempt("kill_all", lambda: os.kill(-1, 9))
time.sleep(1)
print("RESULT alive=yes")
print("RESULT uid=" + str(os.getuid()))
print("RESULT env=" + ",".join(sorted(k for k in os.environ if k.startswith(("JPY", "NBGRADER")))))
print("RESULT processes=" + str(len([p for p in os.listdir("/proc") if p.isdigit()])))
''',
    "c5_socket": '''
import socket
def connect():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    s.sendall(MARK.encode())
    return "connected"
attempt("socket_connect", connect)
attempt("interfaces", lambda: [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]])
''',
    "c6_bigfile": '''
def write(path):
    def action():
        with open(path, "wb") as f:
            for _ in range(1024):
                f.write(b"x" * (1 << 20))
        return os.path.getsize(path)
    return action
attempt("bigfile_tmp", write("/tmp/big"))
attempt("bigfile_cwd", write(CWD + "/big"))
attempt("bigfile_course", write(COURSE + "/big"))
def fill():  # 10 files of 40 MiB, each under the file size limit: more than the 256 MiB /tmp
    for i in range(10):
        with open(f"/tmp/fill{{i}}", "wb") as f:
            for _ in range(40):
                f.write(b"x" * (1 << 20))
attempt("tmp_fill", fill)
''',
    "c7_memory": '''
attempt("bytearray_8g", lambda: len(bytearray(8 << 30)))
import numpy as np
attempt("numpy_8g", lambda: np.ones(1 << 30).sum())
''',
    "c8_fork": '''
def bomb():
    children = []
    try:
        for _ in range(500):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
        return f"forked {{len(children)}}"
    finally:
        print("RESULT forked=" + str(len(children)))
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
attempt("fork_bomb", bomb)
''',
    "c9_atexit": '''
import atexit, subprocess
LATE = ("import os, time\\n"
        "time.sleep(6)\\n"
        "for path in [{course!r} + '/late_' + 'PW' + 'NED', os.getcwd() + '/late_' + 'PW' + 'NED',"
        " '/tmp/late_' + 'PW' + 'NED']:\\n"
        "    try: open(path, 'w').write('x')\\n"
        "    except OSError: pass\\n")
def at_exit():
    for path in [COURSE + "/atexit_" + MARK, CWD + "/atexit_" + MARK]:
        try:
            open(path, "w").write(MARK)
        except OSError:
            pass
atexit.register(at_exit)
attempt("detached", lambda: subprocess.Popen([sys.executable, "-c", LATE], start_new_session=True,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)
''',
    "d_dies": '''
print("RESULT dying=yes", flush=True)
os.kill(os.getpid(), 9)  # the kernel dies in the last cell: the grader records it and goes on
''',
    "y_loop": '''
print("RESULT loop=started", flush=True)
while True:
    pass
''',
}


class Listener:
    """A TCP listener on the grader's 127.0.0.1 that records every connection."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, address = self.server.accept()
            except OSError:
                return
            self.connections.append(address)
            connection.close()


# Runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    course = pipeline.new_course(ASSIGNMENT, tmp_path_factory.mktemp("attacked") / "course")
    listener = Listener()
    submit(course, "a_honest")
    for student, code in ATTACKS.items():
        submit(course, student, textwrap.dedent(PRELUDE + code).format(course=str(course), port=listener.port,
                                                                solutions=str(pipeline.SOLUTIONS)))
    submit(course, "z_honest")
    before = snapshot(course)
    runtime = tmp_path_factory.mktemp("runtime")  # this run's kernel folders only (another worker grades too)
    code, output, seconds = run_autograde(course, extra=["--Execute.timeout=30",
                                                         f"--SandboxedKernelManager.runtime_parent={runtime}"])
    time.sleep(8)  # let a detached process that escaped write its files
    return {"course": course, "code": code, "output": output, "before": before, "listener": listener,
            "students": ["a_honest", *ATTACKS, "z_honest"],
            "runtime": runtime}


# Tests -----------------------------------------------------------------------------------

def test_grader_survives_and_grades_everyone(attacked):
    course = attacked["course"]
    graded = scores(course, attacked["students"])
    for student in attacked["students"]:  # every attack sits after a correct submission
        assert graded[student]["score"] == graded[student]["max_score"] == 17.0, (student, attacked["output"][-3000:])
    assert "CellTimeoutError" in json.dumps(nbformat.read(
        course / "autograded" / "y_loop" / ASSIGNMENT / NOTEBOOK, as_version=4).cells[-1].outputs)
    assert "KernelDied" in json.dumps(nbformat.read(
        course / "autograded" / "d_dies" / ASSIGNMENT / NOTEBOOK, as_version=4).cells[-1].outputs)
    assert attacked["code"] == 0, attacked["output"][-3000:]


def test_gradebook_intact(attacked):
    course = attacked["course"]
    data = (course / "gradebook.db").read_bytes()
    assert data.startswith(b"SQLite format 3\x00") and MARK.encode() not in data
    with sqlite3.connect(course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert sorted(r[0] for r in db.execute("SELECT id FROM student")) == sorted(attacked["students"])
    result = results(course, "c1_gradebook")
    assert all(result[k].startswith("BLOCKED") for k in ("gradebook_write", "gradebook_sqlite", "gradebook_read"))


def test_course_files_hidden_and_unchanged(attacked):
    course = attacked["course"]
    assert snapshot(course) == attacked["before"]
    source, peer = results(course, "c2_source"), results(course, "c3_peer")
    assert all(source[k].startswith("BLOCKED") for k in ("source_read", "release_list", "repo_solutions_read"))
    assert source["course_list"] == "SUCCEEDED ['autograded']"  # a tmpfs, with the way to its own folder
    for key in ("peer_submitted_read", "peer_submitted_write", "peer_autograded_read", "own_folder_write"):
        assert peer[key].startswith("BLOCKED"), peer
    assert peer["own_folder_listed"] == f"SUCCEEDED [{NOTEBOOK!r}]"  # its own folder, read-only
    marked = [p for p in [*course.rglob("*"), *Path("/tmp").iterdir()] if MARK in p.name]
    assert marked == []
    for path in course.rglob("*"):
        if path.is_file() and not path.name.endswith((".ipynb", ".py")):
            assert MARK.encode() not in path.read_bytes(), path


def test_signals_network_identity(attacked):
    kill, net = results(attacked["course"], "c4_kill"), results(attacked["course"], "c5_socket")
    assert kill["ppid"] == "1" and kill["kill_parent"].startswith("BLOCKED")
    assert kill["alive"] == "yes" and int(kill["uid"]) >= sandbox.FIRST_UID and kill["env"] == ""
    assert int(kill["processes"]) < 10  # its own PID namespace
    assert net["socket_connect"].startswith("BLOCKED") and attacked["listener"].connections == []
    assert net["interfaces"] == "SUCCEEDED ['lo']"


def test_resource_limits(attacked):
    big, memory, fork = (results(attacked["course"], s) for s in ("c6_bigfile", "c7_memory", "c8_fork"))
    assert all(v.startswith("BLOCKED") for v in big.values()), big
    assert memory == {"bytearray_8g": "BLOCKED MemoryError", "numpy_8g": "BLOCKED MemoryError"}
    assert fork["fork_bomb"] == "BLOCKED BlockingIOError" and int(fork["forked"]) < 256


def test_nothing_outlives_the_kernel(attacked):
    assert results(attacked["course"], "c9_atexit")["detached"].startswith("SUCCEEDED")  # it did start
    assert processes_mentioning(str(attacked["course"])) == []
    assert leftover_runtimes(attacked["runtime"]) == []
    assert not any(MARK in p.name for p in Path("/tmp").iterdir())


def test_refuses_without_bwrap_unless_allowed_and_then_says_so(tmp_path):
    course = pipeline.new_course(ASSIGNMENT, tmp_path / "course")
    submit(course, "a_honest")
    bin_directory = str(Path(sys.executable).parent)  # PATH without /usr/bin: no bwrap, setpriv, prlimit
    code, output, _ = run_autograde(course, path=bin_directory)
    assert code != 0 and "Refusing to run a student's kernel without a sandbox" in output
    assert not (course / "autograded" / "a_honest" / ASSIGNMENT / NOTEBOOK).exists()
    # The instructor's explicit flag grades anyway, and the graded notebook (so the feedback) says so first.
    code, output, _ = run_autograde(course, extra=["--SandboxedKernelManager.allow_unsandboxed=True"],
                                    path=bin_directory)
    assert code == 0, output[-3000:]
    graded = nbformat.read(course / "autograded" / "a_honest" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert graded.cells[0].cell_type == "markdown" and sandbox.UNSANDBOXED in graded.cells[0].source
    assert "bwrap, setpriv, prlimit not found" in graded.cells[0].source
    assert scores(course, ["a_honest"])["a_honest"]["score"] == 17


LOOPS = [
    "while True:\n    pass",
    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)  # ignores the interrupt of a cell timeout\n"
    "while True:\n    pass",
    "import time\ntime.sleep(10 ** 6)",
]
BUDGET, PER_CELL = 20, 15


def test_one_time_budget_for_the_whole_notebook(tmp_path):
    course = pipeline.new_course(ASSIGNMENT, tmp_path / "course")
    notebook = correct_submission(course)
    notebook.cells.extend(nbformat.v4.new_code_cell(code) for code in LOOPS)
    folder = course / "submitted" / "looping" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / NOTEBOOK)
    submit(course, "z_honest")
    code, output, seconds = run_autograde(course, extra=[f"--Execute.timeout={PER_CELL}",
                                                         f"--SandboxedExecute.notebook_budget={BUDGET}"])
    assert code == 0, output[-3000:]
    # The looping notebook within its budget plus 10 s, and the honest one after it (about 6 s).
    assert seconds < BUDGET + 10 + 15, seconds
    graded = nbformat.read(course / "autograded" / "looping" / ASSIGNMENT / NOTEBOOK, as_version=4)
    errors = [output.ename for cell in graded.cells[-len(LOOPS):] for output in cell.outputs
              if output.output_type == "error"]
    # The first loop is interrupted, the one that ignores SIGINT times out, the last never runs.
    assert errors[0] == "KeyboardInterrupt" and "CellTimeoutError" in errors, errors
    assert errors[-1] == "NotebookTimeBudgetSpent", errors
    print(f"autograde of the looping and the honest notebook: {seconds:.1f} s (budget {BUDGET} s)")
    assert scores(course, ["z_honest"])["z_honest"]["score"] == 17.0


FLOODS = [
    'print("x" * 20_000_000)  # one line of 20 MB',
    'chunk = "y" * (2 << 20)\nfor _ in range(100):  # 200 MB in 2 MB prints\n    print(chunk)',
    'raise ValueError("the error after a flood is still recorded")',
]


def test_output_is_capped_by_bytes(tmp_path):
    course = pipeline.new_course(ASSIGNMENT, tmp_path / "course")
    submit(course, "flooding", "\n".join(FLOODS[:1]))
    notebook_path = course / "submitted" / "flooding" / ASSIGNMENT / NOTEBOOK
    notebook = nbformat.read(notebook_path, as_version=4)
    notebook.cells.extend(nbformat.v4.new_code_cell(code) for code in FLOODS[1:])
    nbformat.write(notebook, notebook_path)
    submit(course, "z_honest")
    code, output, _ = run_autograde(course)
    assert code == 0, output[-3000:]
    graded_path = course / "autograded" / "flooding" / ASSIGNMENT / NOTEBOOK
    assert graded_path.stat().st_size < 4 << 20, graded_path.stat().st_size
    graded = nbformat.read(graded_path, as_version=4)
    flood_one, flood_many, error = graded.cells[-3:]
    for cell in (flood_one, flood_many):
        assert "[output capped" in "".join(o.get("text", "") for o in cell.outputs)
    assert [o.ename for o in error.outputs if o.output_type == "error"] == ["ValueError"]
    assert scores(course, ["flooding", "z_honest"])["flooding"]["score"] == 17.0
    assert scores(course, ["z_honest"])["z_honest"]["score"] == 17.0


def test_a_dead_kernel_is_flagged_and_the_run_goes_on(tmp_path):
    course = pipeline.new_course(ASSIGNMENT, tmp_path / "course")
    notebook = correct_submission(course)
    first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    notebook.cells.insert(first_code, nbformat.v4.new_code_cell("import os\nos.kill(os.getpid(), 9)"))
    folder = course / "submitted" / "dying" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / NOTEBOOK)
    submit(course, "z_honest")
    code, output, _ = run_autograde(course)
    assert code == 0 and "error processing" not in output, output[-3000:]
    graded = nbformat.read(course / "autograded" / "dying" / ASSIGNMENT / NOTEBOOK, as_version=4)
    errors = [[o.ename for o in cell.outputs if o.output_type == "error"]
              for cell in graded.cells if cell.cell_type == "code"]
    assert all(names == ["KernelDied"] for names in errors), errors  # the dying cell and every one after it
    assert "code cell 1 ran" in json.dumps(graded.cells[first_code].outputs)
    graded_scores = scores(course, ["dying", "z_honest"])
    assert graded_scores["dying"]["score"] == 0 and graded_scores["z_honest"]["score"] == 17.0


HOLD_PROCESSES = '''
import os, time
children = []
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except BlockingIOError:
    pass
print(len(children))
'''

FORK_SOME = '''
import os
pids = [os.fork() or os._exit(0) for _ in range(8)]
print(sum(os.waitpid(pid, 0)[1] == 0 for pid in pids))
'''


async def run_in_sandboxed_kernel(manager, code):
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    printed = []
    await client.execute_interactive(code, timeout=60, output_hook=lambda message: printed.append(
        message["content"].get("text", message["content"].get("evalue", ""))))
    client.stop_channels()
    return "".join(printed).strip()


def test_each_kernel_has_its_own_process_limit(tmp_path):
    """One kernel holding every process its limit allows does not stop another kernel from forking."""
    import asyncio

    # A short folder: the kernel's ipc socket paths must fit in 107 bytes.
    runtime, work = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp")), tmp_path / "work"
    work.mkdir()

    async def both():
        managers = [sandbox.SandboxedKernelManager(kernel_name="python3", processes=64,
                                                   runtime_parent=str(runtime)) for _ in range(2)]
        for manager in managers:
            await manager.start_kernel(cwd=str(work))
        try:
            uids = [manager._lease.uid for manager in managers]
            held = await run_in_sandboxed_kernel(managers[0], HOLD_PROCESSES)
            forked = await run_in_sandboxed_kernel(managers[1], FORK_SOME)
            return uids, held, forked
        finally:
            for manager in managers:
                await manager.shutdown_kernel(now=True)

    uids, held, forked = asyncio.run(both())
    assert uids[0] != uids[1] and min(uids) >= sandbox.FIRST_UID, uids
    assert 40 < int(held) < 64, held  # the first kernel reached its own limit
    assert forked == "8", forked  # and the second still forks
    assert leftover_runtimes(runtime) == []
    runtime.rmdir()
