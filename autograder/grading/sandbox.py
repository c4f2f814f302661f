"""Run each notebook's kernel inside a bubblewrap sandbox during ``nbgrader autograde``.

nbgrader executes a student's notebook in an ipykernel that normally runs as the
grader, with the grader's files, network and processes in reach. This module
launches that kernel instead as::

    bwrap <mounts> <namespaces> --clearenv <env> -- \\
        prlimit <limits> -- setpriv --reuid=65534 ... -- python -m ipykernel_launcher -f CONN

* ``bwrap`` (run by root, without a user namespace, see ``NAMESPACES``): the
  system read-only, a private ``/tmp``, ``/dev`` and ``/proc``; the course root
  and every path of ``hidden_paths`` covered by empty tmpfs; the interpreter
  (``sys.prefix``, ``sys.base_prefix``) and ``readable_paths`` bound back
  read-only; the notebook's working directory bound back read-only (or
  read-write with ``writable_cwd``); new PID, network, IPC, UTS and cgroup
  namespaces; ``--die-with-parent`` and ``--new-session``.
* ``prlimit``: address space, processes, file size, CPU time, no core dumps.
* ``setpriv``: a uid and gid of its own (leased from ``FIRST_UID`` on, one per
  running kernel, see :class:`UidLease`), no supplementary groups, no
  capabilities, no_new_privs. RLIMIT_NPROC counts every process and thread of
  a uid on the whole machine: kernels sharing one uid would share one limit,
  and one student's fork bomb would stop another's kernel from forking.

The kernel talks to the grader over ZeroMQ ``ipc`` (unix sockets), since TCP
cannot leave its network namespace. The sockets and the connection file (HMAC
key) live in ``<runtime>/kernel``: ``<runtime>`` is a root-only (0700) folder on
the host; only ``kernel/`` is bound into the sandbox. Once the kernel has bound
its sockets, ``kernel/`` is handed back to root so that the kernel can create no
more files there; the whole folder is deleted when the kernel is cleaned up.

Hook (nbgrader 0.9.6): ``Execute.__init__`` passes ``kernel_manager_class`` as a
keyword argument, which beats configuration, so ``c.Execute.kernel_manager_class``
is silently ignored. ``SandboxedExecute`` replaces ``Execute`` in
``c.Autograde.autograde_preprocessors`` (see ``autograde_preprocessors()``); it
reads the same ``c.Execute.*`` options. ``SandboxedKernelManager`` is configured
through ``c.SandboxedKernelManager.*``.

Without bwrap, setpriv, prlimit or root, the kernel refuses to start
(``SandboxUnavailable``), unless ``c.SandboxedKernelManager.allow_unsandboxed = True``.
"""

import asyncio
import contextlib
import fcntl
import fnmatch
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbformat.notebooknode import NotebookNode
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, List, Unicode

NOBODY = 65534
# The kernels' uids: unused by any account (above the usual subordinate-uid
# ranges, below 2**31 for tools that read uids as signed).
FIRST_UID, UID_COUNT = 2_000_000_000, 4096
UID_LOCKS = "/tmp/nbgrader-sandbox-uids"  # root-only; in the grader's /tmp, never the kernel's
# --unshare-all would add a user namespace; bwrap run by root then maps only
# uid 0 in it, so setpriv cannot switch to 65534 (EINVAL), and ``--uid 65534``
# would map the sandbox's 65534 to the host's root. These are the other
# namespaces of --unshare-all.
NAMESPACES = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
# Paths the kernel never needs, covered by tmpfs besides the course root.
DEFAULT_HIDDEN = ["/root", "/home", "/run", "/var/tmp", "/var/run", "/mnt", "/media", "/srv"]
DEFAULT_ENV = ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED"]
SHM_SIZE = 64 << 20  # the private /dev/shm, in bytes
IPC_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
CHANNELS = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up on this machine; the kernel is not started."""


# The bwrap command -------------------------------------------------------------------------

def outermost(paths):
    """``paths`` without those inside another of them (covering those hides them already)."""
    paths = [os.path.abspath(p) for p in paths]
    return [p for i, p in enumerate(paths)
            if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths) and p not in paths[:i]]


def made_parents(path, covers):
    """bwrap options making ``path``'s missing parents, those below a tmpfs of ``covers``, mode 0755.

    bwrap gives the parents it creates for a bind the host's modes (0700 for a
    root-only folder), which uid 65534 could not cross.
    """
    parents = [str(p) for p in reversed(Path(path).parents)]
    below = [p for p in parents if any(p.startswith(c.rstrip("/") + "/") for c in covers)]
    return [argument for p in below for argument in ("--perms", "0755", "--dir", p)]


def mount_arguments(cwd, runtime, hidden, readable, writable_cwd=False, tmp_size=256 << 20):
    """bwrap's mount options: read-only system, tmpfs over ``hidden``, ``readable``, ``cwd`` and ``runtime`` bound back."""
    arguments = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--perms", "1777", "--size", str(tmp_size), "--tmpfs", "/tmp",
                 # POSIX semaphores (multiprocessing's queues and locks) live in /dev/shm.
                 "--perms", "1777", "--size", str(SHM_SIZE), "--tmpfs", "/dev/shm"]
    covers = ["/tmp", "/dev/shm"]
    for path in outermost(hidden):
        if os.path.isdir(path) and not os.path.islink(path):
            arguments += [*made_parents(path, covers), "--tmpfs", path]
            covers.append(path)
        elif os.path.exists(path) and not os.path.islink(path):
            arguments += ["--ro-bind", "/dev/null", path]  # a file: show a (nodev, unreadable) device
    binds = [("--ro-bind", path) for path in readable if os.path.exists(path)]
    binds += [("--bind" if writable_cwd else "--ro-bind", cwd), ("--bind", runtime)]
    for option, path in binds:
        arguments += [*made_parents(path, covers), option, path, path]
    return arguments + ["--chdir", cwd]


def environment_arguments(environment):
    """bwrap's environment options: nothing from the grader but ``environment`` (HOME is /tmp)."""
    arguments = ["--clearenv", "--setenv", "HOME", "/tmp"]
    for name, value in sorted(environment.items()):
        arguments += ["--setenv", name, value]
    return arguments


def limit_arguments(address_space, processes, file_size, cpu_seconds):
    """prlimit's options (hard and soft limits alike)."""
    return ["prlimit", f"--as={address_space}", f"--nproc={processes}", f"--fsize={file_size}",
            f"--cpu={cpu_seconds}", "--core=0", "--"]


def user_arguments(uid=NOBODY, gid=NOBODY):
    """setpriv's options: an unprivileged user without groups or capabilities."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def sandbox_command(kernel_command, mounts, environment, limits, user):
    """The full command line that runs ``kernel_command`` in the sandbox."""
    return [shutil.which("bwrap") or "bwrap", *mounts, *NAMESPACES, "--die-with-parent", "--new-session",
            *environment, "--", *limits, *user, *kernel_command]


# Availability ------------------------------------------------------------------------------

def sandbox_problem():
    """Why the sandbox cannot run here, or None when it can."""
    missing = [tool for tool in ("bwrap", "setpriv", "prlimit") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install bubblewrap util-linux)"
    if os.geteuid() != 0:
        return "the grader must run as root to switch the kernel to an unprivileged user"
    probe = [shutil.which("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *NAMESPACES,
             "--die-with-parent", "--", *user_arguments(), "true"]
    completed = subprocess.run(probe, capture_output=True, text=True)
    if completed.returncode != 0:
        return f"bwrap cannot create namespaces here: {completed.stderr.strip() or completed.returncode}"
    return None


# A uid per kernel ------------------------------------------------------------------------

def uid_running(uid):
    """True when a process of the machine runs as ``uid`` (real, effective or saved)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as status:
                uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
        except (OSError, StopIteration):
            continue  # the process has ended
        if str(uid) in uids:
            return True
    return False


class UidLease:
    """A uid held by one kernel: an exclusive lock on ``<locks>/<uid>``, released by :meth:`release` or at exit.

    A lock dies with the process that holds it, so a grader that was killed leaves no uid taken; a uid that
    still runs a process (of a kernel whose grader died) is skipped.
    """

    def __init__(self, first=FIRST_UID, count=UID_COUNT, locks=UID_LOCKS):
        os.makedirs(locks, mode=0o700, exist_ok=True)
        if os.stat(locks).st_uid != os.geteuid():
            raise SandboxUnavailable(f"{locks} belongs to another user: the kernels' uids cannot be leased safely")
        for uid in range(first, first + count):
            descriptor = os.open(os.path.join(locks, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            if uid_running(uid):
                os.close(descriptor)
                continue
            self.uid, self._descriptor = uid, descriptor
            return
        raise SandboxUnavailable(f"all {count} kernel uids from {first} are in use")

    def release(self):
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


# Runtime folder ----------------------------------------------------------------------------

def make_runtime(parent, uid=NOBODY, gid=NOBODY):
    """A root-only folder holding ``kernel/``, the kernel's (uid's) folder for its sockets."""
    runtime = Path(tempfile.mkdtemp(prefix="nbgrader-sandbox-", dir=parent))  # 0700, root
    kernel = runtime / "kernel"
    kernel.mkdir(mode=0o700)
    os.chown(kernel, uid, gid)
    return runtime


def lock_folder(folder):
    """Hand ``folder`` back to root (0755): the kernel can no longer create files in it.

    The mode first: between a chown and a chmod, the folder would be root's and still 0700, and a kernel that
    looks at its connection file in that instant (ipykernel does, right after binding its sockets) would fail.
    """
    os.chmod(folder, 0o755)
    os.chown(folder, 0, 0)


# Kernel manager ----------------------------------------------------------------------------

class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel runs in bwrap + prlimit + setpriv, over ipc."""

    hidden_paths = List(Unicode(), DEFAULT_HIDDEN,
                        help="Paths covered by an empty tmpfs (folders) or /dev/null (files); "
                             "the course root, source folder and gradebook are always added.").tag(config=True)
    readable_paths = List(Unicode(), [],
                          help="Paths bound back read-only after hiding (sys.prefix and "
                               "sys.base_prefix always are).").tag(config=True)
    passed_environment = List(Unicode(), DEFAULT_ENV,
                              help="Environment variables passed from the grader to the kernel.").tag(config=True)
    writable_cwd = Bool(False, help="Bind the notebook's folder read-write (default read-only).").tag(config=True)
    address_space = Integer(4 << 30, help="RLIMIT_AS in bytes.").tag(config=True)
    processes = Integer(64, help="RLIMIT_NPROC (processes and threads of the uid).").tag(config=True)
    file_size = Integer(50 << 20, help="RLIMIT_FSIZE in bytes.").tag(config=True)
    cpu_seconds = Integer(1800, help="RLIMIT_CPU of the kernel, all cells together.").tag(config=True)
    tmp_size = Integer(256 << 20, help="Size of the kernel's private /tmp in bytes.").tag(config=True)
    runtime_parent = Unicode(tempfile.gettempdir(), help="Where the runtime folders are made.").tag(config=True)
    allow_unsandboxed = Bool(False, help="Run the kernel unsandboxed (with a warning) where bwrap "
                                         "is unavailable, instead of refusing.").tag(config=True)

    _runtime = None
    _sandboxed = False
    _lease = None

    def course_paths(self):
        """The course root, source folder and gradebook file, from nbgrader's configuration."""
        course = self.config.get("CourseDirectory", {})
        root = os.path.abspath(course.get("root", os.getcwd()))
        paths = [root, os.path.join(root, course.get("source_directory", "source"))]
        db_url = course.get("db_url", "")
        if db_url.startswith("sqlite:///"):
            paths.append(os.path.abspath(db_url[len("sqlite:///"):]))
        return paths

    def hidden(self):
        return list(dict.fromkeys([*self.hidden_paths, *self.course_paths()]))

    def readable(self):
        interpreter = [os.path.realpath(sys.base_prefix), sys.prefix, os.path.realpath(sys.prefix)]
        return list(dict.fromkeys([*interpreter, *self.readable_paths]))

    def kernel_environment(self):
        return {name: os.environ[name] for name in self.passed_environment if name in os.environ}

    def use_sandbox(self):
        """True to sandbox; False when unavailable and allowed; raises SandboxUnavailable otherwise."""
        problem = sandbox_problem()
        if problem is None:
            return True
        if self.allow_unsandboxed:
            self.log.warning("Kernel NOT sandboxed (SandboxedKernelManager.allow_unsandboxed): %s", problem)
            self.unsandboxed_because = problem
            return False
        raise SandboxUnavailable(
            f"Refusing to run a student's kernel without a sandbox: {problem}. Set "
            "c.SandboxedKernelManager.allow_unsandboxed = True to run it unsandboxed anyway.")

    def prepare_ipc(self, uid):
        """Point the connection file and ipc sockets at a new runtime folder, ``kernel/`` owned by ``uid``."""
        self._runtime = make_runtime(self.runtime_parent, uid, uid)
        weakref.finalize(self, shutil.rmtree, str(self._runtime), True)
        kernel = self._runtime / "kernel"
        self.transport = "ipc"
        self.ip = str(kernel / "ipc")
        self.connection_file = str(kernel / "connection.json")
        if len(f"{self.ip}-65535".encode()) > IPC_PATH_MAX:
            raise SandboxUnavailable(f"the kernel's ipc sockets in {kernel} would have paths longer than "
                                     f"{IPC_PATH_MAX} bytes: set c.SandboxedKernelManager.runtime_parent "
                                     "to a shorter folder")

    async def _async_pre_start_kernel(self, **kw):
        self._sandboxed = self.use_sandbox()
        if not self._sandboxed:
            return await super()._async_pre_start_kernel(**kw)
        if self._lease is None:  # a restarted kernel keeps its uid
            self._lease = UidLease()
            weakref.finalize(self, self._lease.release)
        uid = self._lease.uid
        self.prepare_ipc(uid)
        kernel_command, kw = await super()._async_pre_start_kernel(**kw)
        os.chown(self.connection_file, uid, uid)
        os.chmod(self.connection_file, 0o400)
        # bwrap does not forward SIGINT: interrupt (cell timeouts) by a control message.
        self.kernel_spec.interrupt_mode = "message"
        cwd = os.path.abspath(kw.get("cwd") or os.getcwd())
        command = sandbox_command(
            kernel_command,
            mount_arguments(cwd, str(self._runtime / "kernel"), self.hidden(), self.readable(),
                            self.writable_cwd, self.tmp_size),
            environment_arguments(self.kernel_environment()),
            limit_arguments(self.address_space, self.processes, self.file_size, self.cpu_seconds),
            user_arguments(uid, uid))
        self.log.debug("Sandboxed kernel: %s", command)
        # The kernel's console banner is no message for the grader's terminal; its errors still reach stderr.
        kw["stdout"] = subprocess.DEVNULL
        return command, kw

    async def _async_post_start_kernel(self, **kw):
        await super()._async_post_start_kernel(**kw)
        if self._sandboxed:
            await self.wait_for_sockets()
            lock_folder(self._runtime / "kernel")

    async def wait_for_sockets(self, timeout=60.0):
        """Wait until the kernel has bound its five ipc sockets (or has died)."""
        sockets = [f"{self.ip}-{getattr(self, channel)}" for channel in CHANNELS]
        for _ in range(int(timeout / 0.05)):
            if all(os.path.exists(path) for path in sockets) or not await self.is_alive():
                return
            await asyncio.sleep(0.05)

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart=restart)
        if self._runtime is not None and not restart:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None
        if self._lease is not None and not restart:
            self._lease.release()
            self._lease = None


class SandboxedExecute(Execute):
    """nbgrader's Execute preprocessor with the kernel in the sandbox; configured by c.Execute.*.

    All cells of one notebook share one time budget (``notebook_budget``, kernel start included): each cell may run
    for the configured per-cell timeout or what is left of the budget, whichever is less, and once the budget is
    spent the remaining code cells are not run (each records ``NotebookTimeBudgetSpent``, so a test cell scores 0).
    """

    notebook_budget = Integer(600, help="Seconds all the cells of one notebook may run together.").tag(config=True)
    trusted_notebooks = List(Unicode(), [], help="Notebook names (fnmatch patterns, without .ipynb) whose test "
                             "cells run in the grader's process on the kernel's objects (see "
                             "autograder.grading.trusted), not in the student's kernel.").tag(config=True)
    # A kernel that ignores the interrupt never goes idle after a timeout; raising then would drop the whole
    # notebook from the gradebook ("Removing failed assignment"): record the timeout and go on instead.
    raise_on_iopub_timeout = Bool(False, help=Execute.raise_on_iopub_timeout.help).tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    output_bytes = Integer(1 << 20, help="Bytes of printed or displayed output one cell may record; errors "
                                         "are always recorded.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = time.monotonic() + self.notebook_budget
        self._output_recorded = {}
        self._died_in = None
        name = (resources or {}).get("unique_key", "")
        self._trusts = any(fnmatch.fnmatch(name, pattern) for pattern in self.trusted_notebooks)
        self._instructor = instructor_cells(resources) if self._trusts else {}
        self._trusted, self._stuck, self._unreachable = None, False, False
        self._unsandboxed = None
        nb, resources = super().preprocess(nb, resources, km)
        if self._unsandboxed:
            nb.cells.insert(0, unsandboxed_note(self._unsandboxed))
        return nb, resources

    def output(self, outs, msg, display_id, cell_index):
        """Record an output unless the cell's printed and displayed output exceeds ``output_bytes``.

        Error outputs are always recorded: a test cell's verdict is its error, and a flood of output before it
        must not hide it.
        """
        if msg["msg_type"] not in CAPPED_OUTPUTS:
            return super().output(outs, msg, display_id, cell_index)
        recorded = self._output_recorded.get(cell_index, 0)
        size = output_size(msg["content"])
        if recorded + size > self.output_bytes:
            if recorded <= self.output_bytes:  # the first output over the cap: say so, once
                outs.append(NotebookNode(output_type="stream", name="stdout", text=(  # stderr would cost the cell its points
                    f"[output capped: this cell printed or displayed more than {self.output_bytes} bytes; "
                    "the rest is not recorded]\n")))
                self._output_recorded[cell_index] = self.output_bytes + 1
            return None
        self._output_recorded[cell_index] = recorded + size
        return super().output(outs, msg, display_id, cell_index)

    def preprocess_cell(self, cell, resources, index):
        """Run one cell within the budget; after the kernel has died, record why instead of running it.

        nbclient raises DeadKernelError when the kernel dies (out of memory, ``os._exit``, a crash in native
        code), which nbgrader does not catch: the submission would be dropped and the run would end with an
        error. The cell that was running and every code cell after it record ``KernelDied`` instead.
        """
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        remaining = self._deadline - time.monotonic()
        if self._died_in is not None:
            cell.outputs = [kernel_died(self._died_in, index)]
            return cell, resources
        if remaining <= 0:
            cell.outputs = [budget_spent(self.notebook_budget)]
            return cell, resources
        self._unsandboxed = self._unsandboxed or getattr(self.km, "unsandboxed_because", None)
        per_cell = self.timeout
        self.timeout_func = lambda _cell: max(1, int(min(per_cell or remaining, remaining)) + 1)
        role, source = self._instructor.get(cell.metadata.get("nbgrader", {}).get("grade_id"), (None, None))
        role = "test" if role == "test" and cell.cell_type == "code" else None
        try:
            if role == "test":
                cell.outputs = self.trusted_verdict(source)
                return cell, resources
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.log.warning("The kernel died in cell %d; the cells after it are not run", index)
            self._died_in = self.code_cell_number(index)
            cell.outputs.append(kernel_died(self._died_in, index))
            return cell, resources

    # Trusted test cells ------------------------------------------------------------------------

    def trusted_verdict(self, source):
        """The outputs of a test cell, from the trusted side; an error output when the kernel cannot be reached."""
        from .remote import CallTimedOut, ProtocolError
        from .trusted import error_output
        try:
            trusted = self.trusted_side()
        except (ProtocolError, CallTimedOut) as error:
            return [error_output("GraderProtocolError", f"the grader could not reach your kernel: {error}")]
        with self.serving(trusted.remote):
            return trusted.verdict(source)

    def trusted_side(self):
        """The notebook's trusted side, made at its first test cell: the server installed, every setup cell run.

        The setup cells are the gradebook's, all of them, whether or not the submission still has them: a name
        they define (``checks``) is never looked up among the student's, even if the student deleted the cell and
        defined a lenient ``checks`` of their own.
        """
        if self._trusted is None:
            from . import hidden
            from .remote import Remote
            from .trusted import TrustedNotebook
            hidden.use_course_seed(self.config.get("CourseDirectory", {}).get("root", os.getcwd()))
            self._trusted = TrustedNotebook(Remote(self.ask, self.timeout or self.notebook_budget))
            for role, source in self._instructor.values():
                if role == "setup":
                    self._trusted.run_setup(source)
        return self._trusted

    @contextlib.contextmanager
    def serving(self, remote):
        """While the block runs, the kernel's main thread answers ``remote``'s requests on a unix socket."""
        from .remote_server import send
        folder = getattr(self.km, "_runtime", None)
        folder = (folder / "kernel") if folder is not None else Path(tempfile.mkdtemp(prefix="nbgrader-rpc-"))
        path = str(folder / "rpc")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            os.chmod(path, 0o666)  # the kernel's uid connects
            listener.listen(1)
            # Once the kernel has failed to connect (its server replaced, a hook that blocks), later test cells
            # do not wait for it again.
            listener.settimeout(0.5 if self._unreachable else 10)
            message_id = self.kc.execute(f"{remote.server_name}.serve_socket({path!r})", silent=True,
                                         store_history=False, allow_stdin=False)
            try:
                connection, _ = listener.accept()
            except (socket.timeout, OSError):
                connection, self._unreachable = None, True
            try:
                remote.exchange = (lambda text, timeout: self.exchange(connection, text, timeout)) if connection \
                    else self.not_serving
                yield
            finally:
                remote.exchange = None
                if connection is not None:
                    with contextlib.suppress(OSError):
                        send(connection, "stop")
                    connection.close()
                os.unlink(path)
        # The serving cell ends when it reads "stop"; one that never connected is interrupted at once.
        if connection is None or run_sync(self.shell_reply)(message_id, 10) is None:
            run_sync(self.km.interrupt_kernel)()
            if run_sync(self.shell_reply)(message_id, 5) is None:
                self._stuck = True

    def not_serving(self, _text, _timeout):
        from .remote import ProtocolError
        raise ProtocolError("the kernel did not connect to the grader (was the grader's server replaced?)")

    def exchange(self, connection, text, timeout):
        """Send one request to the serving kernel and return its answer; interrupt the call after ``timeout`` s."""
        from .remote import ANSWER_LIMIT, CallTimedOut, ProtocolError
        from .remote_server import receive, send
        if self._stuck:
            raise CallTimedOut("the kernel stopped answering after an earlier call")
        timeout = min(timeout, self._deadline - time.monotonic())
        if timeout <= 0:
            raise CallTimedOut("the notebook's time budget is spent")
        try:
            connection.settimeout(timeout)
            send(connection, text)
            return receive(connection, ANSWER_LIMIT)
        except socket.timeout:
            run_sync(self.km.interrupt_kernel)()
            connection.settimeout(5)
            with contextlib.suppress(OSError, ProtocolError):
                receive(connection, ANSWER_LIMIT)  # the interrupted call's answer
                raise CallTimedOut("") from None
            self._stuck = True
            raise CallTimedOut("") from None
        except (OSError, ProtocolError) as error:
            if not run_sync(self.km.is_alive)():
                raise DeadKernelError("Kernel died") from None
            raise ProtocolError(f"the connection to the kernel broke: {error}") from None

    def ask(self, expression, timeout, code=""):
        """Run ``code`` and evaluate ``expression`` in the kernel, silently; the expression's text/plain."""
        from .remote import CallTimedOut, ProtocolError
        if self._stuck:
            raise CallTimedOut("the kernel stopped answering after an earlier call")
        timeout = min(timeout, self._deadline - time.monotonic())
        if timeout <= 0:
            raise CallTimedOut("the notebook's time budget is spent")
        message_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False,
                                     user_expressions={"answer": expression})
        reply = run_sync(self.shell_reply)(message_id, timeout)
        if reply is None:
            run_sync(self.km.interrupt_kernel)()
            if run_sync(self.shell_reply)(message_id, 5) is None:
                self._stuck = True
            raise CallTimedOut("")
        content = reply["content"]
        answer = content.get("user_expressions", {}).get("answer", {}) if content.get("status") == "ok" else content
        if answer.get("status") != "ok":
            raise ProtocolError(f"the kernel could not run the grader's request ({answer.get('ename')}: "
                                f"{str(answer.get('evalue'))[:200]})")
        text = answer.get("data", {}).get("text/plain")
        if not isinstance(text, str):
            raise ProtocolError("the kernel's answer has no text")
        return text

    async def shell_reply(self, message_id, timeout):
        """The kernel's reply to ``message_id``, or None after ``timeout`` s; DeadKernelError if it died."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = await self.kc.get_shell_msg(timeout=min(1.0, remaining))
            except queue.Empty:
                if not await self.km.is_alive():
                    raise DeadKernelError("Kernel died") from None
                continue
            if message.get("parent_header", {}).get("msg_id") == message_id:
                return message
        return None

    def code_cell_number(self, index):
        """The 1-based number of the code cell at ``index``, as a student counts them."""
        return sum(1 for cell in self.nb.cells[:index + 1] if cell.cell_type == "code")


def instructor_cells(resources):
    """grade_id -> ("test" or "setup", source) for the notebook's code cells as the gradebook stores them.

    Only these sources run in the grader's process: the gradebook holds the instructor's release, so a cell the
    student added or relabelled (``grade: true``, ``locked: true``, a new ``grade_id``) is never among them.
    """
    from nbgrader.api import Gradebook
    info = resources["nbgrader"]
    with Gradebook(info["db_url"]) as gradebook:
        notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
        graded = {cell.name for cell in notebook.grade_cells}
        solutions = {cell.name for cell in notebook.solution_cells}
        roles = {}
        for cell in notebook.source_cells:
            if cell.cell_type != "code" or cell.name in solutions:
                continue
            if cell.name in graded:
                roles[cell.name] = ("test", cell.source)
            elif cell.locked:
                roles[cell.name] = ("setup", cell.source)
        return roles


CAPPED_OUTPUTS = ("stream", "display_data", "execute_result", "update_display_data")


def output_size(content):
    """The bytes (characters) an output message would add to the notebook."""
    if "text" in content:
        return len(content["text"])
    return sum(len(str(value)) for value in content.get("data", {}).values())


UNSANDBOXED = "GRADED WITHOUT THE SANDBOX"


def unsandboxed_note(problem):
    """The first cell of a notebook graded with ``allow_unsandboxed``: the feedback says so."""
    return nbformat.v4.new_markdown_cell(
        f"**{UNSANDBOXED}.** This notebook's code ran without the grader's sandbox ({problem}), because the "
        "instructor allowed it (`--SandboxedKernelManager.allow_unsandboxed=True`): the verdicts of its test cells "
        "still come from the grader's process, but the code could reach the machine it ran on.")


def budget_spent(budget):
    """The error output of a cell that was not run because the notebook's time budget was spent."""
    message = (f"not run: the notebook's cells had run for {budget} s together, the grading budget "
               "(a loop that never ends, or a very slow cell, before this one)")
    return NotebookNode(output_type="error", ename="NotebookTimeBudgetSpent", evalue=message,
                        traceback=[f"NotebookTimeBudgetSpent: {message}"])


def kernel_died(cell_number, index):
    """The error output of a cell whose kernel died while it ran, or before it."""
    message = (f"the kernel died while code cell {cell_number} ran; the cells after it were not run. Likely "
               "causes: memory beyond the grader's limit, os._exit or a signal, a crash in native code")
    return NotebookNode(output_type="error", ename="KernelDied", evalue=message, traceback=[f"KernelDied: {message}"])


def autograde_preprocessors():
    """nbgrader's default autograde preprocessors with Execute replaced by SandboxedExecute."""
    from nbgrader.converters import Autograde
    defaults = Autograde.class_traits()["autograde_preprocessors"].default()
    return [SandboxedExecute if preprocessor is Execute else preprocessor for preprocessor in defaults]
