"""A real PostgreSQL server for the tests: Debian's binaries, a temporary data folder, an unprivileged user.

``initdb`` refuses to run as root, so as root the server runs as ``nobody``; it listens on 127.0.0.1 on a free port
(and a unix socket in its folder), trusts local connections, and is stopped, with nothing left running, when the
``with`` block ends.
"""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

NOBODY = 65534
SUPERUSER = "grader"


def postgres_bin():
    """Debian's PostgreSQL binaries folder (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, port, folder):
        self.port, self.folder = port, folder

    def url(self, database):
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, database):
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)

    def processes(self):
        """The server's processes still running (its data folder is on their command line)."""
        data = str(self.folder / "data")
        return [p for p in psutil.process_iter(["cmdline"]) if data in " ".join(p.info["cmdline"] or [])]


def as_unprivileged(command):
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *command]


@contextlib.contextmanager
def postgres_server():
    """Start a PostgreSQL server in a temporary folder; yield a :class:`Server`; stop it and check it is gone."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("Debian's postgresql is not installed (.ci/setup installs it: apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="pg-"))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    port = free_port()
    environment = dict(os.environ, LC_ALL="C.UTF-8", HOME=str(folder))
    run = lambda *command: subprocess.run(as_unprivileged([str(binaries / command[0]), *command[1:]]), check=True,
                                          capture_output=True, text=True, env=environment, cwd=folder)
    server = Server(port, folder)
    try:
        run("initdb", "-D", str(folder / "data"), "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8")
        # fsync off: the tests prove concurrency and resuming, not durability across power loss.
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        run("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-o", options, "-w", "-t", "60",
            "start")
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run("pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "-t", "60", "stop")
        deadline = time.monotonic() + 30
        while server.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = server.processes()
        for process in left:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"PostgreSQL processes left running after pg_ctl stop: {[p.pid for p in left]}"
